"""How the mount's failures reach programs and the log: errno mapping and store health.

Each operation maps what it raises to an errno (:func:`errno_for`): ``KeyError`` →
``ENOENT``, a name too long → ``ENAMETOOLONG``, another invalid key → ``EINVAL``,
:class:`~kvfs.errors.ReadOnlyError` → ``EROFS``, :class:`~kvfs.errors.NotADirectoryKeyError`
→ ``ENOTDIR``, an ``OSError`` whose errno means something to a program
(:data:`PASSED_THROUGH`: a full disk, a refusal, ...) → that errno, and any other failure →
``EIO``. Failures of the store are logged once per outage, and its recovery
(:class:`StoreHealth`); every request goes through a :class:`WatchedStore` for that.
"""

from __future__ import annotations

import errno
import functools
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

from ..errors import NotADirectoryKeyError, ReadOnlyError
from ..store import KeyValueStore
from .binding import mfusepy
from .paths import PathError

log = logging.getLogger("kvfs.mount")

FuseOSError = mfusepy.FuseOSError

#: The errnos of a store's ``OSError`` (or of the mount's own staging files) that reach
#: programs as they are: each asks for something a program can act on. Others are EIO.
PASSED_THROUGH = frozenset(
    {
        errno.ENOSPC,  # no space left (the store's disk, the staging directory)
        errno.EDQUOT,  # over a quota
        errno.EFBIG,  # a value too large for the store
        errno.EACCES,  # refused: credentials, permissions (S3 AccessDenied)
        errno.EPERM,
        errno.EROFS,  # a read-only store, filesystem or bucket
        errno.ENAMETOOLONG,  # a key the store found too long
        errno.ETIMEDOUT,  # the store did not answer in time
    }
)

#: The operations that upload a file: a failure is EIO unless its errno is PASSED_THROUGH.
UPLOADS = frozenset({"flush", "fsync", "release"})
#: The two kinds of store requests whose failures are followed apart (a full disk
#: fails writes while reads go on).
READS, WRITES = "reads", "writes"
#: The store methods that change something (every other one reads).
_WRITE_METHODS = frozenset(
    {
        "put",
        "put_file",
        "delete",
        "copy",
        "move",
        "put_directory",
        "delete_directory",
        "new_staging_file",
        "open_writer",
        "commit_staging_file",
        "sync",
        "set_metadata",
        "delete_many",
        "move_directory",
        "symlink",
    }
)
#: What a store raises as an answer, not as a failure: a missing key, a refused name.
_ANSWERS = (KeyError, ValueError, ReadOnlyError, NotADirectoryKeyError, NotImplementedError)
#: The attribute that marks an exception raised by a store request with its kind.
_KIND = "_kvfs_store_request"
#: The operations that only read: a local ``OSError`` in them is a failed read.
_READ_OPERATIONS = frozenset(
    {"getattr", "open", "opendir", "read", "read_into", "readdir", "readdir_page", "readlink", "statfs"}
)


def errno_for(error: BaseException) -> int | None:
    """The errno an exception from the store means, or None for "unexpected: EIO"."""
    if isinstance(error, FuseOSError):
        return error.errno
    if isinstance(error, PathError):
        return error.errno
    if isinstance(error, KeyError):
        return errno.ENOENT
    if isinstance(error, ReadOnlyError):
        return errno.EROFS
    if isinstance(error, NotADirectoryKeyError):
        return errno.ENOTDIR
    if isinstance(error, OSError) and error.errno in PASSED_THROUGH:
        return error.errno
    if isinstance(error, ValueError):
        return errno.EINVAL
    return None


class StoreHealth:
    """Logs failures of the store once per outage, and the recovery.

    The first failure of a kind (reads or writes) is an error naming the operation,
    the path and the store's message; later ones are logged at debug level only, until
    a request of that kind succeeds, which is logged as a warning with the number of
    failures meanwhile. Thread-safe.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failures = {READS: 0, WRITES: 0}

    def failed(self, kind: str, operation: str, where: object, error: BaseException) -> None:
        with self._lock:
            count = self._failures[kind]
            self._failures[kind] = count + 1
        if count == 0:
            log.error(
                "store %s failed: %s %s: %s (further failures at debug level, until one works)",
                kind,
                operation,
                where,
                error,
                exc_info=log.isEnabledFor(logging.DEBUG),
            )
        else:
            log.debug("store %s still failing: %s %s: %s", kind, operation, where, error)

    def failing(self) -> dict[str, int]:
        """The kinds of request failing now, with their failures since the last success."""
        with self._lock:
            return {kind: count for kind, count in self._failures.items() if count}

    def answered(self, kind: str) -> None:
        if not self._failures[kind]:  # the usual case: no lock
            return
        with self._lock:
            count = self._failures[kind]
            self._failures[kind] = 0
        if count:
            log.warning("store %s work again (%d failed)", kind, count)

    def errno_of(self, operation: str, where: object, error: BaseException) -> int:
        """The errno *error* gives the program; a failure is logged (once per outage)."""
        code = errno_for(error)
        kind = _failure_kind(error, operation)
        if kind is not None:
            self.failed(kind, operation, where, error)
        elif code is None:  # not the store's failure: a bug, logged every time
            log.error("%s %s failed: %s", operation, where, error, exc_info=log.isEnabledFor(logging.DEBUG))
        if code is None or (operation in UPLOADS and code not in PASSED_THROUGH):
            return errno.EIO  # close() and fsync() know no ENOTDIR or ENOENT
        return code


class WatchedStore:
    """The mount's view of its store: every request's outcome goes to a :class:`StoreHealth`.

    Attributes are the store's; its public methods are wrapped once, at first use. A
    failure is marked with its kind (:data:`_KIND`), for the operation to log it.
    """

    def __init__(self, store: KeyValueStore, health: StoreHealth) -> None:
        self._store = store
        self._health = health

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._store, name)
        if name.startswith("_") or not callable(value):
            return value
        wrapped = self._watch(value, WRITES if name in _WRITE_METHODS else READS, name.startswith("iter"))
        self.__dict__[name] = wrapped
        return wrapped

    def _watch(self, method: Callable[..., Any], kind: str, listing: bool) -> Callable[..., Any]:
        """*method* reporting its outcome; a *listing*'s once its iterator ends."""
        health = self._health

        @functools.wraps(method)
        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                result = method(*args, **kwargs)
            except _ANSWERS:
                health.answered(kind)
                raise
            except Exception as error:
                _mark(error, kind)
                raise
            if listing:
                return _watch_iterator(result, health, kind)
            health.answered(kind)
            return result

        return call


def _watch_iterator(iterator: Iterator[Any], health: StoreHealth, kind: str) -> Iterator[Any]:
    """*iterator* (a listing), reporting its outcome once it ends."""
    try:
        yield from iterator
    except _ANSWERS:
        health.answered(kind)
        raise
    except Exception as error:
        _mark(error, kind)
        raise
    health.answered(kind)


def _mark(error: BaseException, kind: str) -> None:
    try:
        setattr(error, _KIND, kind)
    except AttributeError:  # an exception type without attributes: counted as a local one
        pass


def _failure_kind(error: BaseException, operation: str) -> str | None:
    """READS or WRITES for a failure to log once per outage, None for one that is not a failure.

    A store request's failure has its kind marked; an ``OSError`` of the mount's own
    (a staging file on a full disk, a value's local file) counts by the *operation*.
    """
    kind = getattr(error, _KIND, None)
    if kind is not None:
        return kind
    if isinstance(error, OSError) and not isinstance(
        error, (FuseOSError, PathError, ReadOnlyError, NotADirectoryKeyError)
    ):
        return READS if operation in _READ_OPERATIONS else WRITES
    return None


__all__ = ["PASSED_THROUGH", "UPLOADS", "READS", "WRITES", "errno_for", "StoreHealth", "WatchedStore", "FuseOSError"]
