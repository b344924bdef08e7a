"""The exceptions kvfs raises.

Every kvfs exception derives from :class:`KvfsError`, and each also derives from the
built-in exception that simplekv callers already catch:

* a missing key is a :class:`KeyNotFoundError`, which is a :class:`KeyError`;
* an invalid key is an :class:`InvalidKeyError`, which is a :class:`ValueError`;
* a value that is not bytes is an :class:`InvalidValueError`, which is an
  :class:`IOError` (as in simplekv) and a :class:`TypeError`;
* a failure of the backend (network, credentials, server) is a :class:`BackendError`,
  which is an :class:`OSError`;
* a write to a read-only store is a :class:`ReadOnlyError`, an :class:`AttributeError`
  (as simplekv raised) with ``errno.EROFS``;
* a backend whose optional client library is not installed raises
  :class:`MissingExtraError`, an :class:`ImportError` naming the ``pip install`` to run.
"""

from __future__ import annotations

import errno


class KvfsError(Exception):
    """Base class of every exception raised by kvfs."""


class KeyNotFoundError(KvfsError, KeyError):
    """The key does not exist in the store."""

    def __str__(self) -> str:  # KeyError's repr-quoting makes messages hard to read
        return str(self.args[0]) if self.args else "key not found"


class InvalidKeyError(KvfsError, ValueError):
    """The key is not a valid kvfs key (see :data:`kvfs.VALID_KEY_REGEXP`)."""


class KeyTooLongError(InvalidKeyError):
    """The key, or one of its components, is longer than the store allows."""


class InvalidLinkTargetError(KvfsError, ValueError):
    """A symbolic link's target is empty, not a ``str`` or holds a NUL character."""


class InvalidValueError(KvfsError, OSError, TypeError):
    """The value is not bytes. An ``IOError`` as in simplekv, and a ``TypeError``."""


class BackendError(KvfsError, OSError):
    """The backend failed: network, credentials, permissions, a server error."""


class ReadOnlyError(KvfsError, AttributeError):
    """A write was attempted on a read-only store.

    An ``AttributeError``, as simplekv's read-only decorator raised, that carries
    ``errno`` (``errno.EROFS``) and ``strerror`` as an ``OSError`` does. It is not an
    ``OSError``: Python cannot make one exception both.
    """

    def __init__(self, message: str = "store is read-only") -> None:
        super().__init__(message)
        #: ``errno.EROFS``, what the mount answers.
        self.errno = errno.EROFS
        #: The message, as an ``OSError`` has it.
        self.strerror = message


class NotADirectoryKeyError(BackendError):
    """A key cannot be stored because a prefix of it is itself a key (or the reverse).

    Only stores whose ``allows_key_and_prefix`` flag is False raise this (for example
    :class:`kvfs.fs.FilesystemStore`, where ``a`` cannot be both a file and a directory).
    """


class ListingUnsupportedError(BackendError, NotImplementedError):
    """The store cannot list its keys (its ``supports_listing`` flag is False; memcached)."""


class MissingExtraError(KvfsError, ImportError):
    """An optional dependency of a backend is not installed."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(
            f"this store needs the {package!r} package: run  pip install 'kvfs[{extra}]'"
        )
        self.package = package
        self.extra = extra


__all__ = [
    "KvfsError",
    "KeyNotFoundError",
    "InvalidKeyError",
    "KeyTooLongError",
    "InvalidValueError",
    "InvalidLinkTargetError",
    "BackendError",
    "ReadOnlyError",
    "NotADirectoryKeyError",
    "ListingUnsupportedError",
    "MissingExtraError",
]
