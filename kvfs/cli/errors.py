"""Exit codes of the ``kvfs`` command, and the one-line messages for what goes wrong.

Every failure the user can cause or meet (a missing key, a bad URL, a server that does not
answer, wrong credentials) ends the command with one line on standard error, naming the
store URL (passwords hidden) and the key, and one of these exit codes. A Python
traceback is shown only with ``kvfs --debug``.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager

import click

from ..errors import (
    InvalidKeyError,
    KeyNotFoundError,
    KvfsError,
    MissingExtraError,
    ReadOnlyError,
)
from ..url import mask_url

#: Everything worked.
EXIT_OK = 0
#: An operation failed: a backend or local I/O error (unreachable server, wrong
#: credentials, permission denied, full disk), or some keys of a transfer failed.
EXIT_FAILED = 1
#: The command line is wrong: an unknown option, a missing argument, an invalid key, a
#: store URL that cannot be parsed, has an unknown scheme or a bad parameter (click's
#: own code for usage).
EXIT_USAGE = 2
#: A key (or, for ``ls``/``cp``/``sync``/``rm -r``, any key under a prefix) does not exist.
EXIT_NOT_FOUND = 3
#: The store needs a Python package that is not installed (the message names the extra).
EXIT_MISSING_EXTRA = 4
#: Interrupted with Ctrl-C (128 + SIGINT, as shells report it).
EXIT_INTERRUPTED = 130


class CliError(click.ClickException):
    """A failure reported as one line ``kvfs VERB: message`` and exit code *exit_code*."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def display_url(url: str) -> str:
    """*url* as it may be shown in a message: passwords and secret parameters as ``***``.

    The one masking rule of :func:`kvfs.url.mask_url`, so the command never shows more
    than ``open_store``'s own messages do.
    """
    return mask_url(url)


def describe(error: BaseException, url: str | None = None, key: str | None = None) -> CliError:
    """Turn an exception from a store (or from opening one) into a :class:`CliError`.

    The message names *url* (with its password hidden) and *key* where given.
    """
    where = f" in {display_url(url)}" if url else ""
    if isinstance(error, CliError):
        return error
    if isinstance(error, KeyNotFoundError):
        return CliError(f"key not found: {key or str(error)!r}{where}", EXIT_NOT_FOUND)
    if isinstance(error, InvalidKeyError):
        return CliError(f"{error}", EXIT_USAGE)
    if isinstance(error, MissingExtraError):
        return CliError(f"{display_url(url) + ': ' if url else ''}{error}", EXIT_MISSING_EXTRA)
    subject = f"{display_url(url)}" if url else ""
    if key:
        subject = f"{subject}: {key}" if subject else key
    prefix = f"{subject}: " if subject else ""
    if isinstance(error, ReadOnlyError):
        return CliError(f"{prefix}the store is read-only")
    if isinstance(error, OSError):
        return CliError(f"{prefix}{_os_message(error)}")
    if isinstance(error, (ValueError, TypeError, NotImplementedError)):
        return CliError(f"{prefix}{error or type(error).__name__}", EXIT_USAGE if not key else EXIT_FAILED)
    return CliError(f"{prefix}{type(error).__name__}: {error}")


def _os_message(error: OSError) -> str:
    """An ``OSError``'s text without Python's ``[Errno 2]`` decoration."""
    if error.strerror:
        text = error.strerror
        if error.filename is not None:
            text = f"{text}: {error.filename}"
        return text
    if error.args and error.errno is not None and len(error.args) == 1:
        return str(error.args[0])
    text = str(error) or type(error).__name__
    if error.errno is not None:
        text = text.replace(f"[Errno {error.errno}] ", "")
    return text


@contextmanager
def reporting(url: str | None = None, key: str | None = None) -> Iterator[None]:
    """Turn any ``Exception`` raised inside into a :class:`CliError` naming *url* and *key*.

    ``BrokenPipeError`` is left alone: a closed pipe (``kvfs cat ... | head``) is not an
    error of the store.
    """
    try:
        yield
    except (CliError, click.ClickException, BrokenPipeError):
        raise
    except OSError as error:
        if error.errno == errno.EPIPE and not isinstance(error, KvfsError):
            raise
        raise describe(error, url, key) from error
    except Exception as error:
        raise describe(error, url, key) from error


__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_MISSING_EXTRA",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_USAGE",
    "CliError",
    "describe",
    "display_url",
    "reporting",
]
