"""Opening the stores named by URLs on the command line."""

from __future__ import annotations

from ..store import KeyValueStore
from ..url import open_store
from .errors import EXIT_USAGE, CliError, describe, display_url


def open_url(url: str) -> KeyValueStore:
    """Open the store at *url* with :func:`kvfs.open_store`.

    Raises :class:`~kvfs.cli.errors.CliError`: exit code 2 for a URL that cannot be
    parsed, names an unknown scheme or has a bad parameter (``ValueError``), 4 when the
    backend's package is missing, 1 when the store cannot be opened (a server that does
    not answer, wrong credentials).
    """
    if not url:
        raise CliError("the store URL is empty", EXIT_USAGE)
    try:
        return open_store(url)
    except Exception as error:  # every failure becomes one line
        raise open_error(error, url) from error


def open_error(error: BaseException, url: str) -> CliError:
    """The :class:`~kvfs.cli.errors.CliError` for *error*, met opening (or checking) *url*.

    A ``ValueError`` is a bad URL (exit code 2), a missing package exit code 4, anything
    else a failed operation (1); the message names the URL with its password hidden.
    """
    problem = describe(error, url)
    if isinstance(error, ValueError) and not isinstance(error, KeyError):
        problem.message = f"bad store URL: {_naming_the_url(str(error), url)}"
    return problem


def _naming_the_url(reason: str, url: str) -> str:
    """*reason*, led by the (masked) URL unless it already names it, as open_store's do."""
    shown = display_url(url)
    if shown in reason or shown.split("?", 1)[0] in reason:
        return reason
    return f"{shown}: {reason}"


__all__ = ["open_error", "open_url"]
