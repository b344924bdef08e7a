"""The global options of ``kvfs`` (``--debug``, ``--quiet``, ``--progress``), shared by every verb."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import click


@dataclass
class Settings:
    """What the global options asked for; ``click``'s context object for every verb."""

    #: Show Python tracebacks for errors.
    debug: bool = False
    #: Print nothing but errors (no progress bar, no summary).
    quiet: bool = False
    #: Show a progress bar: True or False when forced, None for "when stderr is a terminal".
    progress: bool | None = None
    #: ``kvfs VERB``, for messages; empty before the verb is known.
    command_path: str = ""

    def show_progress(self) -> bool:
        """Whether a progress bar is wanted now."""
        if self.quiet:
            return False
        if self.progress is not None:
            return self.progress
        return sys.stderr.isatty()


def current_settings() -> Settings:
    """The settings of the running command (defaults outside of one)."""
    context = click.get_current_context(silent=True)
    settings = context.find_object(Settings) if context is not None else None
    return settings if settings is not None else Settings()


__all__ = ["Settings", "current_settings"]
