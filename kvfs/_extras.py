"""Import an optional backend client, or explain which extra installs it."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingExtraError


def require(module: str, extra: str, package: str | None = None) -> ModuleType:
    """Import *module*; if it is missing raise :class:`MissingExtraError` naming ``kvfs[extra]``."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        if error.name is not None and not module.startswith(error.name.split(".")[0]):
            raise  # something else is broken inside the package: show that
        raise MissingExtraError(package or module.split(".")[0], extra) from error
