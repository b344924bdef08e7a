"""The FUSE operations: a store shown as a directory tree (see ``docs/mount.rst``).

Names map to keys through :mod:`kvfs.mount.paths`; what is known about names is cached
in :mod:`kvfs.mount.metadata`; open files and staged writes live in
:mod:`kvfs.mount.handles`. Each operation maps store errors to an errno:
``KeyError`` → ``ENOENT``, a name too long → ``ENAMETOOLONG``, another invalid key →
``EINVAL``, :class:`~kvfs.errors.ReadOnlyError` → ``EROFS``,
:class:`~kvfs.errors.NotADirectoryKeyError` → ``ENOTDIR``, an ``OSError`` whose errno
means something to a program (:data:`PASSED_THROUGH`: a full disk, a refusal, ...)
→ that errno, and any other failure → ``EIO``. Failures of the store are logged once
per outage, and its recovery (see :class:`_StoreHealth`).
"""

from __future__ import annotations

import errno
import functools
import itertools
import logging
import os
import re
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any, TypeVar, overload

from ..errors import NotADirectoryKeyError, ReadOnlyError
from ..store import KeyInfo, KeyValueStore
from .binding import DIRECT_WRITES, RENAME_NOREPLACE, mfusepy
from .handles import Handle, LocalValues, MemoryBudget, OpenFile, StagedData
from .metadata import DIRECTORY, AttributeOverrides, Entry, MetadataCache, Overrides
from .options import MountOptions
from .readcache import MEMORY_VALUE_LIMIT, CachedValue, ReadCache
from .paths import (
    PathError,
    check_path_key,
    component_name,
    is_raw_name,
    join_key,
    name_component,
    parent_key,
    path_components,
)

log = logging.getLogger("kvfs.mount")

FuseOSError = mfusepy.FuseOSError

#: utimensat(2)'s special nanosecond values, which libfuse3 passes through unchanged.
UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2

#: Largest write request the kernel is asked to send.
MAX_WRITE = 1024 * 1024
#: Paths whose keys are remembered (every request names a path; the mapping is fixed).
_KEY_CACHE_SIZE = 100_000
#: On a remote store a name not in the caches is looked up by listing its directory
#: (one request that answers every name in it) when the directory has at most this
#: many entries: one page of an S3 or GCS listing.
_LOOKUP_LISTING_LIMIT = 1000
#: The mount remembers the times it showed for this many written files (see _Written).
_WRITTEN_LIMIT = 100_000
#: Lately released keys remembered (see ``rename``); a few suffice, the race is short.
#: Directory entries handed to libfuse per call of ``readdir_page``.
_READDIR_PAGE = 256
#: libfuse3's capability bit (fuse_common.h) that lets the kernel choose READDIRPLUS
#: only for a directory's first chunk of entries.
_CAP_READDIRPLUS_AUTO = 1 << 14

_F = TypeVar("_F", bound=Callable[..., Any])

#: The names libfuse gives open files that were unlinked (see ``hide_node`` in libfuse).
@dataclass(frozen=True)
class _Written:
    """What the mount showed for a value it stored: size, and mtime (the time of the write).

    The store's own time for the value (a little later or, on S3 and GCS, in whole
    seconds) is shown as this one while the size matches and the store's time falls
    within the write (*started* to *finished*, with a little slack): a changed mtime would
    make the kernel drop the cached pages of a file just written, and asking the store
    for its time after each write would cost a request per file.
    """

    size: int
    mtime: float
    started: float
    finished: float

    def matches(self, size: int | None, mtime: float) -> bool:
        return size == self.size and self.started - 2 <= mtime <= self.finished + 2


_HIDDEN = re.compile(r"\.fuse_hidden[0-9a-f]{16}\Z")


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


def _errno_for(error: BaseException) -> int | None:
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


def _directory_entry(info: KeyInfo) -> Entry:
    """The entry of a directory the store describes (with its mode and owner where kept)."""
    if info.mode is None and info.uid is None and info.gid is None:
        return DIRECTORY
    return Entry(True, 0, info.last_modified, info.mode, info.uid, info.gid)


def _store_fields(changes: dict[str, int]) -> dict[str, float]:
    """chmod/chown/utimens changes (:class:`Overrides` fields) as ``set_metadata`` arguments."""
    names = {"mode": "mode", "uid": "uid", "gid": "gid", "mtime_ns": "mtime", "atime_ns": "atime"}
    return {
        names[name]: _seconds(value) if name.endswith("_ns") else value
        for name, value in changes.items()
        if value is not None
    }


def _seconds(nanoseconds: int) -> float:
    """*nanoseconds* in seconds, as near as a float gets (``ns / 1e9`` rounds the ns first)."""
    return nanoseconds // 1_000_000_000 + nanoseconds % 1_000_000_000 / 1e9
#: The operations that upload a file: a failure is EIO unless its errno is PASSED_THROUGH.
_UPLOADS = frozenset({"flush", "fsync", "release"})
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


class _StoreHealth:
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


class _WatchedStore:
    """The mount's view of its store: every request's outcome goes to a :class:`_StoreHealth`.

    Attributes are the store's; its public methods are wrapped once, at first use. A
    failure is marked with its kind (:data:`_KIND`), for the operation to log it.
    """

    def __init__(self, store: KeyValueStore, health: _StoreHealth) -> None:
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


def _watch_iterator(iterator: Iterator[Any], health: _StoreHealth, kind: str) -> Iterator[Any]:
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


#: The operations that only read: a local ``OSError`` in them is a failed read.
_READ_OPERATIONS = frozenset({"getattr", "open", "opendir", "read", "read_into", "readdir", "readdir_page", "statfs"})


def _failure_kind(error: BaseException, operation: str) -> str | None:
    """READS or WRITES for a failure to log once per outage, None for one that is not a failure.

    A store request's failure has its kind marked; an ``OSError`` of the mount's own
    (a staging file on a full disk, a value's local file) counts by the *operation*.
    """
    kind = getattr(error, _KIND, None)
    if kind is not None:
        return kind
    if isinstance(error, OSError) and not isinstance(error, (FuseOSError, PathError, ReadOnlyError, NotADirectoryKeyError)):
        return READS if operation in _READ_OPERATIONS else WRITES
    return None


def _shown(component: str) -> str:
    """The name a listing shows for *component* (``.`` and ``..`` as they are)."""
    return component if component in (".", "..") else component_name(component)


def _operation(method: _F) -> _F:
    """Turn what an operation raises into the errno FUSE returns, logging failures."""

    @functools.wraps(method)
    def wrapper(self: KvfsOperations, path: Any, *args: Any) -> Any:
        try:
            return method(self, path, *args)
        except Exception as error:
            where = path
            if where is None and args:  # an operation on a handle: name its file
                where = self._handle_key(args[-1])
            raise FuseOSError(self._failed(method.__name__, where, error)) from None

    return wrapper  # type: ignore[return-value]


class KvfsOperations(mfusepy.Operations):
    """mfusepy operations serving *store* (run with ``raw_fi=True``, libfuse3, threads).

    *on_ready* is called once the kernel has accepted the mount.
    """

    use_ns = True

    def __init__(
        self,
        store: KeyValueStore,
        options: MountOptions | None = None,
        on_ready: Callable[[], None] | None = None,
    ) -> None:
        options = options or MountOptions()
        self._health = _StoreHealth()
        # Every request to the store goes through this, to log an outage once.
        self.store: KeyValueStore = _WatchedStore(store, self._health)  # type: ignore[assignment]
        self.options = options
        self.read_only = options.read_only or not store.supports_writes
        self.uid = os.getuid() if options.uid is None else options.uid
        self.gid = os.getgid() if options.gid is None else options.gid
        self._file_mode = 0o666 & ~options.umask
        self._directory_mode = 0o777 & ~options.umask
        self._mount_time_ns = time.time_ns()
        # The store keeps modes, owners and times: shown from it and changed in it.
        self._keeps_metadata = store.keeps_metadata
        self._on_ready = on_ready
        self._meta = MetadataCache(options.attr_timeout, options.listing_timeout)
        self._overrides = AttributeOverrides()
        self._budget = MemoryBudget(options.cache_size)
        self._local_values = LocalValues()
        self._keys: dict[str, str] = {}  # path -> key, see _key
        # Keys whose last handle was released lately (libfuse may still hide them, see rename).
        self._cache_dir = options.cache_dir
        # Open files by key, and handles by number; _table guards both and _extra_dirs.
        self._files: dict[str, OpenFile] = {}
        self._handles: dict[int, Handle] = {}
        # Open directories: handle -> [key, the listing served to it (None until read)].
        self._directories: dict[int, list[Any]] = {}
        self._table = threading.Lock()
        self._numbers = itertools.count(1)
        # Directories known only to this mount: every one on stores without directory
        # markers, and on others the parents of deleted files (kept like on a disk).
        self._extra_dirs: set[str] = set()
        # The (size, mtime, when seen) each key had when last opened: unchanged means the kernel
        # may keep its cached pages.
        self._seen: dict[str, tuple[int, float, float]] = {}
        # Files created here whose upload failed: the kernel may still hold their names for
        # entry_timeout, and then sends an open(O_CREAT) of one as a plain open.
        self._unstored_creates: set[str] = set()
        self._written: dict[str, _Written] = {}
        # Local copies of values, where fetching one again is a download.
        self._read_cache = ReadCache(options.read_cache_size if self.store.is_remote else 0, options.cache_dir)
        # Negative lookups from one listing of the directory only where each request is a round trip.
        self._lists_for_lookups = bool(self.store.is_remote and self.store.fast_level_listing)

    # ================================================================== lifecycle

    def init_with_config(self, conn: Any, config: Any) -> None:
        if conn is not None:
            conn.max_write = MAX_WRITE
            # The kernel takes the smaller of this and its own read-ahead: let the one
            # the mounter sets (mounter.READ_AHEAD_KB) stand.
            conn.max_readahead = 0xFFFFFFFF
            # Always READDIRPLUS: with "auto" the kernel asks for attributes with the
            # first chunk only and then sends a LOOKUP per later name (ls -l, grep -r);
            # the attributes come with the listing anyway.
            conn.want &= ~_CAP_READDIRPLUS_AUTO
        if config is not None:
            timeout = float(self.options.attr_timeout)
            config.entry_timeout = timeout
            config.attr_timeout = timeout
            config.negative_timeout = timeout
            config.nullpath_ok = 1  # handle operations are served from the handle
            # hard_remove stays off: libfuse then renames an open file that is unlinked
            # to a hidden name (see rename), so fstat on it still has a path to ask for.
            config.hard_remove = 0
            config.use_ino = 0
            config.kernel_cache = 0  # page cache kept per open (keep_cache) instead
            config.auto_cache = 0
            config.direct_io = 0
        if self._on_ready is not None:
            self._on_ready()

    def destroy(self, path: str) -> None:
        self._read_cache.clear()
        log.debug("unmounted")

    def status(self) -> dict[str, Any]:
        """What ``kvfs status`` shows: open files, staged and cached bytes, store health."""
        with self._table:
            files = list(self._files.values())
            handles = len(self._handles)
        return {
            "mode": "synchronous",
            "started": self._mount_time_ns / 1e9,
            "open_files": len(files),
            "open_handles": handles,
            "unsaved_files": sum(1 for file in files if file.dirty),
            "staged_memory_bytes": self._budget.used,
            "staged_memory_limit": self._budget.limit,
            "read_cache": self._read_cache.usage() | {"limit": self._read_cache.limit},
            "store_failing": self._health.failing(),
        }

    def _failed(self, operation: str, where: object, error: BaseException) -> int:
        """The errno *error* gives the program; a failure is logged (once per outage)."""
        code = _errno_for(error)
        kind = _failure_kind(error, operation)
        if kind is not None:
            self._health.failed(kind, operation, where, error)
        elif code is None:  # not the store's failure: a bug, logged every time
            log.error("%s %s failed: %s", operation, where, error, exc_info=log.isEnabledFor(logging.DEBUG))
        if code is None or (operation in _UPLOADS and code not in PASSED_THROUGH):
            return errno.EIO  # close() and fsync() know no ENOTDIR or ENOENT
        return code

    def _handle_key(self, fh: Any) -> str | None:
        handle = self._handles.get(getattr(fh, "fh", None))  # type: ignore[arg-type]
        return None if handle is None else handle.file.key

    # ================================================================== names

    def _key(self, path: str) -> str:
        """The key of *path*, checked against the store's limits."""
        key = self._keys.get(path)
        if key is not None:
            return key
        key = ""
        raw = False
        for name in path_components(path):
            component = name_component(name)
            if is_raw_name(name):
                raw = True
                component = self._raw_component(key, name, component)
            key = join_key(key, component)
        if key:
            check_path_key(key, self.store.max_key_length, self.store.max_component_length)
        if not raw:  # a raw name's key depends on what the store holds: not kept
            if len(self._keys) >= _KEY_CACHE_SIZE:
                self._keys.clear()
            self._keys[path] = key
        return key

    def _raw_component(self, directory: str, name: str, component: str) -> str:
        # A key written by other means whose name does not decode to itself is shown
        # as it is: find it under that name unless the encoded name exists too.
        listing = self._listing(directory)
        if component not in listing and name in listing:
            return name
        return component

    def _entry(self, key: str) -> Entry | None:
        """What *key* is (None: nothing), from open files, caches, or the store."""
        if not key:
            return DIRECTORY
        known, entry = self._meta.lookup(key)
        file = self._files.get(key)
        if file is not None:
            if entry is None or entry.is_dir:
                return Entry(False, file.size)
            return Entry(False, file.size, entry.mtime, entry.mode, entry.uid, entry.gid)
        if known and entry is not None and (entry.is_dir or entry.size is not None):
            return entry
        if key in self._extra_dirs:
            return DIRECTORY
        if known and entry is None:
            return None
        if self._lists_for_lookups:
            listing = self._small_listing(parent_key(key))
            if listing is not None:
                return listing.get(key[key.rfind("/") + 1 :])
        entry = self._query(key)
        self._meta.remember(key, entry)
        return entry

    def _small_listing(self, directory: str) -> dict[str, Entry] | None:
        """The listing of *directory* if it has at most _LOOKUP_LISTING_LIMIT entries, else None."""
        size = self._meta.listing_size(directory)
        if size is not None and size > _LOOKUP_LISTING_LIMIT:
            return None
        return self._listing(directory, limit=_LOOKUP_LISTING_LIMIT)

    def _query(self, key: str) -> Entry | None:
        # A key and keys below it may both exist: the directory wins (docs/mount.rst).
        info = self.store.describe(key)
        if info is None:
            return None
        if info.is_prefix:
            return _directory_entry(info)
        return self._file_entry(key, info.size or 0, info.last_modified, info)

    def _file_entry(self, key: str, size: int, mtime: float | None, info: KeyInfo | None = None) -> Entry:
        """The entry of a file as the store describes it, with the time the mount showed for its own write."""
        if self._written and mtime is not None:
            written = self._written.get(key)
            if written is not None:
                if written.matches(size, mtime):
                    mtime = written.mtime
                elif mtime > written.finished:
                    self._written.pop(key, None)  # changed by others since (not a listing from before)
        if info is None:
            return Entry(False, size, mtime)
        return Entry(False, size, mtime, info.mode, info.uid, info.gid)

    @overload
    def _listing(self, directory: str) -> dict[str, Entry]: ...
    @overload
    def _listing(self, directory: str, limit: int) -> dict[str, Entry] | None: ...

    def _listing(self, directory: str, limit: int | None = None) -> dict[str, Entry] | None:
        """The store's entries directly below *directory*, by key component (cached).

        With *limit*, a directory found to have more entries than that gives None.
        """
        cached = self._meta.listing(directory)
        if cached is not None:
            return cached
        generation = self._meta.generation
        prefix = directory + "/" if directory else ""
        entries: dict[str, Entry] = {}
        for info in self.store.iter_level(prefix):
            component = info.key[len(prefix) :]
            if info.is_prefix:
                entries[component[:-1]] = _directory_entry(info)
            elif component not in entries:
                entries[component] = self._file_entry(info.key, info.size or 0, info.last_modified, info)
            if limit is not None and len(entries) > limit:
                self._meta.note_big(directory, len(entries))
                return None
        self._meta.remember_listing(directory, entries, generation)
        return entries

    def _children(self, directory: str) -> dict[str, Entry]:
        """The listing of *directory* with this mount's unsaved files and kept directories."""
        entries = dict(self._listing(directory))
        with self._table:
            files = [
                (key, file.size)
                for key, file in self._files.items()
                if not file.detached and parent_key(key) == directory
            ]
            extra = [key for key in self._extra_dirs if key and parent_key(key) == directory]
        for key, size in files:
            component = key[key.rfind("/") + 1 :]
            if component not in entries or not entries[component].is_dir:
                entries[component] = Entry(False, size, None)
        for key in extra:
            component = key[key.rfind("/") + 1 :]
            if component not in entries or not entries[component].is_dir:
                entries[component] = DIRECTORY
        return entries

    def _existing(self, key: str) -> Entry:
        entry = self._entry(key)
        if entry is None:
            raise FuseOSError(errno.ENOENT)
        return entry

    def _writable(self) -> None:
        if self.read_only:
            raise FuseOSError(errno.EROFS)

    # ================================================================== attributes

    def _attributes(self, key: str, entry: Entry, file: OpenFile | None = None) -> dict[str, Any]:
        if self._keeps_metadata and entry.mode is None and key is not None:
            entry = self._with_metadata(key, entry) if key else self._root_entry()
        overrides = self._overrides.get(key) if key is not None else None
        if entry.is_dir:
            mode, size, nlink = stat.S_IFDIR | self._directory_mode, 4096, 2
        else:
            mode, size, nlink = stat.S_IFREG | self._file_mode, entry.size or 0, 1
        if entry.mode is not None:
            mode = stat.S_IFMT(mode) | entry.mode
        if file is not None:
            size = file.size
        mtime = None
        if file is not None and file.mtime_ns is not None:
            mtime = file.mtime_ns
        uid = self.uid if entry.uid is None else entry.uid
        gid = self.gid if entry.gid is None else entry.gid
        atime = None
        if overrides is not None:
            if overrides.mode is not None:
                mode = stat.S_IFMT(mode) | overrides.mode
            uid = uid if overrides.uid is None else overrides.uid
            gid = gid if overrides.gid is None else overrides.gid
            if overrides.mtime_ns is not None:
                mtime = overrides.mtime_ns
            atime = overrides.atime_ns
        if mtime is None:
            mtime = self._mount_time_ns if entry.mtime is None else int(entry.mtime * 1e9)
        return {
            "st_mode": mode,
            "st_nlink": nlink,
            "st_size": size,
            "st_uid": uid,
            "st_gid": gid,
            "st_mtime": mtime,
            "st_ctime": mtime,
            "st_atime": mtime if atime is None else atime,
            "st_blocks": (size + 511) // 512,
            "st_blksize": 128 * 1024,
        }

    def _root_entry(self) -> Entry:
        """The top directory, with the mode and owner of the store's root where it keeps them.

        A private root (``0700``) then keeps the files in it private, as on the disk.
        """
        info = self.store.describe_root()
        return DIRECTORY if info is None else _directory_entry(info)

    def _with_metadata(self, key: str, entry: Entry) -> Entry:
        """*entry* with the mode and owner the store keeps for *key*, from the cache or the store.

        An entry the mount made itself (a new or written file) has none: the store is
        asked, since a permissive default shown for a private file would let the kernel
        grant what the file's mode refuses. A name not stored yet keeps its defaults.
        """
        known, cached = self._meta.lookup(key)
        if cached is None or cached.mode is None or cached.is_dir != entry.is_dir:
            info = self.store.describe(key)
            if info is None or info.is_prefix != entry.is_dir:
                return entry
            cached = _directory_entry(info) if info.is_prefix else Entry(False, 0, None, info.mode, info.uid, info.gid)
        return replace(entry, mode=cached.mode, uid=cached.uid, gid=cached.gid)

    @_operation
    def getattr(self, path: str | None, fh: Any = None) -> dict[str, Any]:
        if fh is not None:
            file = self._handles[fh.fh].file
            return self._attributes(file.key, Entry(False, file.size), file)  # type: ignore[arg-type]
        key = self._key(path)  # type: ignore[arg-type]
        entry = self._existing(key)
        return self._attributes(key, entry, None if entry.is_dir else self._files.get(key))

    @_operation
    def opendir(self, path: str) -> int:
        key = self._key(path)
        if not self._existing(key).is_dir:
            raise FuseOSError(errno.ENOTDIR)
        number = next(self._numbers)
        self._directories[number] = [key, None]
        return number

    @_operation
    def releasedir(self, path: str | None, fh: int) -> int:
        self._directories.pop(fh, None)
        return 0

    def _listed(self, fh: int, offset: int) -> tuple[str, list[tuple[str, Entry]]]:
        """The directory of handle *fh* and its entries; listed anew when read from the start.

        Later pages of one ``readdir`` pass come from the same listing, so offsets stay
        meaningful while the directory changes.
        """
        state = self._directories[fh]
        if offset == 0 or state[1] is None:
            key = state[0]
            state[1] = [(".", DIRECTORY), ("..", DIRECTORY), *self._children(key).items()]
        return state[0], state[1]

    @_operation
    def readdir(self, path: str | None, fh: int) -> list[tuple[str, dict[str, int], int]]:
        _, entries = self._listed(fh, 0)
        return [(_shown(name), self._type(entry), 0) for name, entry in entries]

    @staticmethod
    def _type(entry: Entry) -> dict[str, int]:
        return {"st_mode": stat.S_IFDIR if entry.is_dir else stat.S_IFREG}

    @_operation
    def readdir_page(self, path: str | None, fh: int, offset: int, plus: bool) -> list[tuple[str, dict[str, Any]]]:
        """Up to 256 entries from *offset* on, with full attributes when *plus* (READDIRPLUS).

        See ``KvfsFUSE.readdir_fuse_3``. With attributes the kernel needs no LOOKUP per
        name: ``ls -l`` of a big directory is one listing, with no store request per entry.
        """
        key, entries = self._listed(fh, offset)
        page = []
        for component, entry in entries[offset : offset + _READDIR_PAGE]:
            if not plus:
                page.append((_shown(component), self._type(entry)))
                continue
            if component in (".", ".."):
                directory = key if component == "." else parent_key(key)
                page.append((component, self._attributes(directory, DIRECTORY)))
                continue
            child = join_key(key, component)
            file = None if entry.is_dir else self._files.get(child)
            if not entry.is_dir and entry.size is None and file is None:
                entry = self._entry(child) or entry
            page.append((component_name(component), self._attributes(child, entry, file)))
        return page

    @_operation
    def statfs(self, path: str) -> dict[str, int]:
        block = 4096
        blocks = (1 << 50) // block  # a petabyte, all free: a store has no fixed size
        names = min(255, self.store.max_component_length or 255)
        return {
            "f_bsize": block,
            "f_frsize": block,
            "f_blocks": blocks,
            "f_bfree": blocks,
            "f_bavail": blocks,
            "f_files": 1 << 32,
            "f_ffree": 1 << 32,
            "f_favail": 1 << 32,
            "f_namemax": names,
        }

    def _target_key(self, path: str | None, fh: Any) -> str | None:
        if fh is not None:
            return self._handles[fh.fh].file.key
        return self._key(path)  # type: ignore[arg-type]

    @_operation
    def chmod(self, path: str | None, mode: int, fh: Any = None) -> int:
        self._writable()
        key = self._target_key(path, fh)
        if key is not None:
            self._change_metadata(key, self._existing(key), mode=stat.S_IMODE(mode))
        return 0

    @_operation
    def chown(self, path: str | None, uid: int, gid: int, fh: Any = None) -> int:
        self._writable()
        key = self._target_key(path, fh)
        if key is not None:
            entry = self._existing(key)
            changes = {}
            if uid != -1:
                changes["uid"] = uid
            if gid != -1:
                changes["gid"] = gid
            if changes:
                self._change_metadata(key, entry, **changes)
        return 0

    @_operation
    def utimens(self, path: str | None, times: tuple[int, int] | None = None, fh: Any = None) -> int:
        self._writable()
        key = self._target_key(path, fh)
        if key is None:
            return 0
        entry = self._existing(key)
        now = time.time_ns()
        atime, mtime = (now, now) if times is None else times
        changes = {}
        for name, value in (("atime_ns", atime), ("mtime_ns", mtime)):
            if value == UTIME_NOW:
                changes[name] = now
            elif value != UTIME_OMIT:
                changes[name] = value
        if changes:
            self._change_metadata(key, entry, **changes)
        return 0

    def _change_metadata(self, key: str, entry: Entry, **changes: int) -> None:
        """Apply what chmod, chown or utimens set (:class:`Overrides` fields) to *key*.

        A store that keeps metadata gets it at once, unless *key* is an open file whose
        content waits for its upload (new, or changed): then it waits too, in the
        overrides, and :meth:`_stored` writes it after the upload, which would otherwise
        give the value a new time. Elsewhere it lives in the overrides, in memory.
        """
        with self._table:
            file = self._files.get(key)
            waiting = file is not None and (file.dirty or not file.exists)
        if not self._keeps_metadata or waiting or not key:  # the top directory: in memory
            self._overrides.update(key, **changes)
            return
        try:
            self.store.set_metadata(key, **_store_fields(changes))  # type: ignore[arg-type]
        except KeyError:
            # Not in the store (a directory only this mount keeps): in memory.
            self._overrides.update(key, **changes)
            return
        except OSError as error:
            if error.errno in (errno.EPERM, errno.EACCES):
                raise FuseOSError(error.errno) from None  # say, a new owner where the mount is not root
            raise
        # The store shows the change from now on; the atime only the mount remembers.
        superseded = {name: None for name in changes if name != "atime_ns"}
        if self._overrides.get(key) is not None and superseded:
            self._overrides.update(key, **superseded)
        if "atime_ns" in changes:
            self._overrides.update(key, atime_ns=changes["atime_ns"])
        known, cached = self._meta.lookup(key)
        base = cached if cached is not None and cached.is_dir == entry.is_dir else entry
        shown = {name: value for name, value in changes.items() if name in ("mode", "uid", "gid")}
        if "mtime_ns" in changes:
            shown["mtime"] = _seconds(changes["mtime_ns"])  # type: ignore[assignment]
            self._written.pop(key, None)
        self._meta.set(key, replace(base, **shown))

    def _write_metadata(self, key: str, fields: dict[str, Any]) -> bool:
        """``set_metadata(key, **fields)``; return whether the owner in *fields* was set.

        A store run by a user who may not give files away refuses a new owner (``EPERM``):
        the rest is still kept, the owner not. Other errors are raised.
        """
        try:
            self.store.set_metadata(key, **fields)
            return True
        except OSError as error:
            if error.errno != errno.EPERM or ("uid" not in fields and "gid" not in fields):
                raise
        rest = {name: value for name, value in fields.items() if name not in ("uid", "gid")}
        if rest:
            self.store.set_metadata(key, **rest)
        return False

    def _write_waiting_metadata(self, key: str) -> Overrides | None:
        """Write what chmod, chown, utimens or the creation of *key* left waiting for its upload.

        Returns what was written (None: nothing). A failure is logged, and what could not
        be written stays in memory.
        """
        waiting = self._overrides.get(key)
        if waiting is None:
            return None
        waiting = replace(waiting)  # a copy: the overrides change below
        fields = _store_fields(
            {"mode": waiting.mode, "uid": waiting.uid, "gid": waiting.gid, "mtime_ns": waiting.mtime_ns}  # type: ignore[dict-item]
        )
        if not fields:
            return None
        try:
            owner = self._write_metadata(key, fields)
        except Exception as error:
            log.error("cannot keep the mode, owner or time of %s in the store (kept in memory): %s", key, error)
            return None
        self._overrides.update(key, mode=None, mtime_ns=None)
        if owner:
            self._overrides.update(key, uid=None, gid=None)
        else:
            waiting.uid = waiting.gid = None
        return waiting

    # ================================================================== files

    def _new_handle(self, file: OpenFile, writable: bool, fi: Any) -> Handle:
        number = next(self._numbers)
        handle = self._handles[number] = Handle(file, writable, self._local_values, bool(fi.flags & os.O_APPEND))
        if DIRECT_WRITES and fi.flags & os.O_ACCMODE == os.O_WRONLY:
            # Nothing reads through this handle: the kernel need not keep a copy of what
            # it writes (other handles' pages of the range are dropped, see binding.py).
            fi.direct_io = 1
        fi.fh = number
        return handle

    def _use_read_cache(self, handle: Handle, key: str, entry: Entry) -> None:
        """Serve *handle* from the read cache's copy of *key*, or let it fill the cache."""
        if entry.mtime is None or handle.file.staged is not None:
            return
        cached = self._read_cache.get(key, entry.size, entry.mtime)
        if cached is not None:
            handle.reader.preload(cached.data, cached.fd)
        elif entry.mtime % 1 != 0 or time.time() >= entry.mtime + 2:
            # A whole-second time is trusted once it is old enough (see _unchanged).
            handle.signature = (entry.size, entry.mtime)

    def _acquire(self, key: str, size: int, *, exists: bool) -> OpenFile:
        with self._table:
            file = self._files.get(key)
            if file is None:
                file = self._files[key] = OpenFile(key, size, exists=exists)
            file.handles += 1
            return file

    @_operation
    def open(self, path: str, fi: Any) -> int:
        flags = fi.flags
        writable = flags & os.O_ACCMODE != os.O_RDONLY
        if writable or flags & os.O_TRUNC:
            self._writable()
        key = self._key(path)
        entry = self._entry(key)
        if entry is None:
            if writable and key in self._unstored_creates:
                self._new_file(key, None, fi)
                return 0
            raise FuseOSError(errno.ENOENT)
        if entry.is_dir:
            raise FuseOSError(errno.EISDIR)
        if entry.size is None:
            entry = self._query(key) or Entry(False, 0)
        file = self._acquire(key, entry.size or 0, exists=True)
        try:
            if flags & os.O_TRUNC and writable:
                with file.lock:
                    self._read_cache.drop(key)  # it may share the staged file
                    file.stage(self.store, self._budget, self._cache_dir, load=False).truncate(0)
                    file.size = 0
                    file.failure = None  # the content starts anew
                    file.touch()
                self._modified(key)
        except BaseException:
            self._release_file(file)
            raise
        keep = False
        if not writable and file.staged is None and entry.mtime is not None:
            keep = self._unchanged(key, entry.size or 0, entry.mtime)
        fi.keep_cache = 1 if keep else 0
        if not writable and not file.dirty and hasattr(fi, "noflush"):
            # Nothing to upload: spare the kernel a FLUSH on close. (A dirty file, say
            # after a failed upload, keeps FLUSH: any close then tries again.)
            fi.noflush = 1
        handle = self._new_handle(file, writable, fi)
        if self._read_cache.enabled:
            self._use_read_cache(handle, key, entry)
        return 0

    @_operation
    def create(self, path: str, mode: int, fi: Any) -> int:
        self._writable()
        key = self._key(path)
        if fi.flags & os.O_EXCL:
            known, entry = self._meta.lookup(key)
            if (known and entry is not None) or key in self._files:
                raise FuseOSError(errno.EEXIST)
        self._new_file(key, mode, fi)
        return 0

    def _new_file(self, key: str, mode: int | None, fi: Any) -> None:
        """Open a new empty file *key* that is not stored until its first flush."""
        self._unstored_creates.discard(key)
        self._read_cache.drop(key)  # it may share the staged file of an open file
        file = self._acquire(key, 0, exists=False)
        try:
            with file.lock:
                file.stage(self.store, self._budget, self._cache_dir, load=False).truncate(0)
                file.size = 0
                file.failure = None  # the content starts anew
                file.touch()
        except BaseException:
            self._release_file(file)
            raise
        if mode is not None:
            uid, gid, _ = mfusepy.fuse_get_context()
            self._overrides.drop(key)
            self._overrides.update(key, mode=stat.S_IMODE(mode), uid=uid, gid=gid)
        self._modified(key)
        self._meta.set(key, Entry(False, 0, None))
        self._new_handle(file, fi.flags & os.O_ACCMODE != os.O_RDONLY, fi)

    def _unchanged(self, key: str, size: int, mtime: float) -> bool:
        """Whether *key* still has the size and mtime the previous open saw (and remember them).

        Stores with whole-second times (S3, GCS) could change a value twice in one
        second: a time is trusted only if it has a fraction, or was already two
        seconds old when it was seen.
        """
        seen = self._seen.get(key)
        unchanged = (
            seen is not None
            and seen[0] == size
            and seen[1] == mtime
            and (mtime % 1 != 0 or seen[2] >= mtime + 2)
        )
        if not unchanged:
            self._seen[key] = (size, mtime, time.time())
        return unchanged

    def _modified(self, key: str) -> None:
        """The mount changed *key*'s content: the kernel's cached pages of it are stale."""
        self._seen.pop(key, None)
        self._read_cache.drop(key)
        overrides = self._overrides.get(key)
        if overrides is not None and overrides.mtime_ns is not None:
            self._overrides.update(key, mtime_ns=None)  # a write sets the mtime to now

    @_operation
    def read(self, path: str | None, size: int, offset: int, fh: Any) -> bytes:
        buffer = bytearray(size)
        return bytes(memoryview(buffer)[: self.read_into(path, memoryview(buffer), offset, fh)])

    @_operation
    def read_into(self, path: str | None, buffer: memoryview, offset: int, fh: Any) -> int:
        """Read from *offset* into *buffer* (libfuse's, see ``KvfsFUSE.read``); return the count."""
        handle = self._handles[fh.fh]
        file = handle.file
        if file.staged is not None:
            with file.lock:
                if file.staged is not None:
                    return file.staged.read_into(offset, buffer)
        key = file.key
        if key is None or offset >= file.size:
            return 0
        reader = handle.reader
        count = reader.read_into(self.store, key, offset, buffer, file.version)
        if reader.fetched_whole is not None:
            whole, reader.fetched_whole = reader.fetched_whole, None
            if handle.signature is not None and handle.signature[0] == len(whole):
                self._read_cache.keep_bytes(key, whole, handle.signature[1])
        return count

    @_operation
    def write(self, path: str | None, data: bytes | memoryview, offset: int, fh: Any) -> int:
        # data may be a view of libfuse's buffer, valid during this call only: copied.
        handle = self._handles[fh.fh]
        file = handle.file
        with file.lock:
            if file.failure is not None:
                raise FuseOSError(file.failure)
            first = not file.dirty
            local_copy = None
            try:
                if first and file.key is not None:
                    local_copy = self._local_copy(file)
                    self._read_cache.drop(file.key)  # it may share the staged file
                staged = file.stage(self.store, self._budget, self._cache_dir, load=True, local_copy=local_copy)
                if handle.append:
                    # The end of the content as staged here, not the kernel's idea of the
                    # size (another mount may have changed it): never a hole of zeros.
                    offset = staged.size
                staged.write(offset, data)
            except Exception as error:
                self._poison(file, error)
                raise
            file.size = staged.size
            file.touch()
        if first and file.key is not None:
            self._modified(file.key)
        return len(data)

    @_operation
    def truncate(self, path: str | None, length: int, fh: Any = None) -> int:
        self._writable()
        if fh is not None:
            file: OpenFile | None = self._handles[fh.fh].file
            key = file.key  # type: ignore[union-attr]
        else:
            key = self._key(path)  # type: ignore[arg-type]
            entry = self._existing(key)
            if entry.is_dir:
                raise FuseOSError(errno.EISDIR)
            file = self._files.get(key)
        if file is not None:
            with file.lock:
                if file.failure is not None and length > 0:
                    raise FuseOSError(file.failure)
                try:
                    if key is not None:
                        self._read_cache.drop(key)  # it may share the staged file
                    file.stage(self.store, self._budget, self._cache_dir, load=length > 0).truncate(length)
                except Exception as error:
                    self._poison(file, error)
                    raise
                file.size = length
                file.failure = None  # a truncate to zero starts the content anew
                file.touch()
            if key is not None:
                self._modified(key)
                if fh is None:
                    self._upload(file)  # a truncate by name is complete when it returns
            return 0
        # No open file: change the stored value directly.
        started = time.time()
        if length == 0:
            self.store.put(key, b"")
        else:
            data = self.store.get(key)[:length]
            self.store.put(key, data + bytes(length - len(data)))
        self._modified(key)
        self._stored(key, length, started)
        return 0

    def _stored(self, key: str, size: int, started: float, mtime: float | None = None) -> None:
        """Cache the attributes of *key* after the mount stored *size* bytes under it.

        The write began at *started*; the file shows *mtime* (default: now) from now on,
        also when the store is asked again later (see :class:`_Written`): no request.
        """
        finished = time.time()
        entry = Entry(False, size)
        if self._keeps_metadata:
            entry = self._stored_metadata(key, entry)
            if entry.mtime is not None:
                mtime = entry.mtime
        shown = finished if mtime is None else mtime
        self._unstored_creates.discard(key)
        if len(self._written) >= _WRITTEN_LIMIT:
            self._written.clear()
        self._written[key] = _Written(size, shown, started, finished)
        self._meta.set(key, replace(entry, mtime=shown))
        # The kernel's pages of this file hold what was just written.
        self._seen[key] = (size, shown, finished)

    def _stored_metadata(self, key: str, entry: Entry) -> Entry:
        """*entry* of a value just stored, with the metadata written now or kept from before.

        The store keeps a replaced value's mode and owner; what waited for the upload
        (a new file's mode and owner, a chmod or utimens meanwhile) is written now. The
        mtime is set only where a utimens waited.
        """
        known, previous = self._meta.lookup(key)
        if previous is not None and not previous.is_dir:
            entry = replace(entry, mode=previous.mode, uid=previous.uid, gid=previous.gid)
        written = self._write_waiting_metadata(key)
        if written is not None:
            entry = replace(
                entry,
                mode=entry.mode if written.mode is None else written.mode,
                uid=entry.uid if written.uid is None else written.uid,
                gid=entry.gid if written.gid is None else written.gid,
                mtime=None if written.mtime_ns is None else _seconds(written.mtime_ns),
            )
        return entry
    def _poison(self, file: OpenFile, error: BaseException) -> None:
        """A write or truncate of *file* failed: its staged copy is never uploaded (see OpenFile.failure)."""
        code = _errno_for(error)
        file.failure = errno.EIO if code is None else code

    def _upload(self, file: OpenFile) -> None:
        """Store a dirty file's staged copy; raises what the store raises, keeping the copy.

        A file whose write failed (``failure``) is not uploaded: its errno is raised.
        """
        with file.lock:
            if file.failure is not None and not file.detached:
                raise FuseOSError(file.failure)
            key, staged = file.key, file.staged
            if not file.dirty or key is None or staged is None or file.detached:
                return
            started = time.time()
            committed = staged.upload(self.store, key)
            file.placeholder = file.placeholder and staged.size == 0
            if committed:  # the staged file is the stored value now: the next write stages anew
                file.committed()
            file.dirty = False
            file.exists = True
            self._stored(key, staged.size, started)
            if self._read_cache.enabled and not committed:
                # Now, not at release: the kernel sends RELEASE after close() returns, and
                # the next open may come first.
                self._keep_copy(key, staged)

    @_operation
    def flush(self, path: str | None, fh: Any) -> int:
        handle = self._handles[fh.fh]
        if handle.file.failure is not None and not handle.writable:
            return 0  # a reader's close: the writers hear of the failure
        self._upload(handle.file)
        return 0

    @_operation
    def fsync(self, path: str | None, datasync: int, fh: Any) -> int:
        """Upload the file if it changed, then make its stored value durable (``store.sync``)."""
        file = self._handles[fh.fh].file
        self._upload(file)
        with file.lock:
            key = None if file.detached or not file.exists else file.key
        if key is not None:
            # Also after a plain flush uploaded it: a close does not sync (it stays fast).
            self.store.sync(key)
        return 0

    @_operation
    def release(self, path: str | None, fh: Any) -> int:
        handle = self._handles.pop(fh.fh)
        handle.reader.clear()
        self._release_file(handle.file)
        return 0

    def _release_file(self, file: OpenFile) -> None:
        with self._table:
            file.handles -= 1
            if file.handles > 0:
                return
            if file.key is not None and self._files.get(file.key) is file:
                del self._files[file.key]
        with file.lock:
            try:
                if file.failure is None:
                    self._upload(file)  # written through mmap after the last flush
                elif file.key is not None and not file.detached:
                    log.debug("%s not stored: a write to it failed (%s)", file.key, os.strerror(file.failure))
                    if file.placeholder and file.exists:
                        self._remove_placeholder(file.key)
                        file.exists = False
            except Exception as error:
                # close() already reported the failed flush; logged as the store's failure.
                self._failed("release", file.key, error)
                if file.placeholder and file.exists and file.key is not None and not file.detached:
                    self._remove_placeholder_quietly(file)
            finally:
                if not file.exists and file.key is not None:
                    self._meta.set(file.key, None)  # created, never stored
                    if not file.detached:
                        self._unstored_creates.add(file.key)
                file.drop_staged()

    def _remove_placeholder(self, key: str) -> None:
        """Delete the empty value this mount stored for a new file whose writes then failed."""
        try:
            if self.store.stat(key).size != 0:
                return  # written by others since: theirs
        except KeyError:
            return
        self.store.delete(key)

    def _remove_placeholder_quietly(self, file: OpenFile) -> None:
        """The new file's content never reached the store: neither does the empty value stored for it."""
        try:
            self._remove_placeholder(file.key)  # type: ignore[arg-type]
            file.exists = False
        except Exception as error:  # the store is failing: the empty file stays
            self._failed("release", file.key, error)

    def _local_copy(self, file: OpenFile) -> CachedValue | None:
        """The read cache's copy of *file*'s stored value, to stage it without a download."""
        key = file.key
        if not self._read_cache.enabled or key is None or file.staged is not None or not file.exists:
            return None
        known, entry = self._meta.lookup(key)
        if not known or entry is None or entry.is_dir:
            return None
        return self._read_cache.get(key, file.size, entry.mtime)

    def _keep_copy(self, key: str, staged: StagedData) -> None:
        """Give the read cache a copy of the value just uploaded from *staged*.

        A file copy shares the staged file: a later write through the mount drops the
        cache's copy before it changes anything (see :meth:`write`).
        """
        written = self._written.get(key)
        if written is None:
            return
        content = staged.share_for_cache(MEMORY_VALUE_LIMIT)
        if isinstance(content, bytes):
            self._read_cache.keep_bytes(key, content, written.mtime)
        elif content is not None:
            self._read_cache.keep_file(key, content, written.size, written.mtime)

    # ================================================================== names

    def _detach(self, file: OpenFile, hidden_key: str | None = None) -> None:
        """*file* lost its name: its handles keep the data, nothing is uploaded any more."""
        with file.lock:
            if file.staged is None and file.exists and file.key is not None:
                file.stage(self.store, self._budget, self._cache_dir, load=True)
            file.key = hidden_key
            file.detached = True
            file.dirty = False
            file.exists = False
        if hidden_key is not None:
            with self._table:
                self._files[hidden_key] = file

    def _keep_parent(self, key: str) -> None:
        parent = parent_key(key)
        if parent:
            with self._table:
                self._extra_dirs.add(parent)

    @_operation
    def unlink(self, path: str) -> int:
        self._writable()
        key = self._key(path)
        # The kernel looked the name up as a file just before (within entry_timeout): no
        # stat to ask again unless this mount knows better (a delete is idempotent).
        known, entry = self._meta.lookup(key)
        if key in self._extra_dirs or (known and entry is None) or (entry is not None and entry.is_dir):
            entry = self._existing(key)
            if entry.is_dir:
                raise FuseOSError(errno.EISDIR)
        self._remove_file(key)
        return 0

    def _remove_file(self, key: str) -> None:
        with self._table:
            file = self._files.pop(key, None)
        stored = file is None or file.exists
        if file is not None:
            self._detach(file)
        if stored:
            self.store.delete(key)
        self._meta.set(key, None)
        self._overrides.drop(key)
        self._seen.pop(key, None)
        self._read_cache.drop(key)
        self._keep_parent(key)

    @_operation
    def mkdir(self, path: str, mode: int) -> int:
        self._writable()
        key = self._key(path)
        if self._entry(key) is not None:
            raise FuseOSError(errno.EEXIST)
        if self.store.supports_directories:
            self.store.put_directory(key)
        else:
            with self._table:
                self._extra_dirs.add(key)
        uid, gid, _ = mfusepy.fuse_get_context()
        self._overrides.drop(key)
        fields = {"mode": stat.S_IMODE(mode), "uid": uid, "gid": gid}
        entry = DIRECTORY
        if self._keeps_metadata and self.store.supports_directories:
            # The creator's mode and owner, kept by the store (the mode comes after the umask).
            try:
                if self._write_metadata(key, fields):
                    entry = Entry(True, 0, time.time(), fields["mode"], uid, gid)
                else:
                    entry = Entry(True, 0, time.time(), fields["mode"])
                    self._overrides.update(key, uid=uid, gid=gid)
            except Exception as error:
                log.error("cannot keep the mode and owner of %s in the store (kept in memory): %s", key, error)
                self._overrides.update(key, **fields)
        else:
            self._overrides.update(key, **fields)
        self._meta.set(key, entry, empty_directory=True)
        return 0

    def _remove_directory(self, key: str) -> None:
        if self.store.supports_directories:
            self.store.delete_directory(key)
        with self._table:
            self._extra_dirs.discard(key)
        self._meta.forget_tree(key)
        self._meta.set(key, None)
        self._overrides.drop(key)

    @_operation
    def rmdir(self, path: str) -> int:
        self._writable()
        key = self._key(path)
        if not key:
            raise FuseOSError(errno.EBUSY)
        entry = self._existing(key)
        if not entry.is_dir:
            raise FuseOSError(errno.ENOTDIR)
        if self._children(key):
            raise FuseOSError(errno.ENOTEMPTY)
        self._remove_directory(key)
        return 0

    @_operation
    def rename(self, old: str, new: str, flags: int = 0) -> int:
        self._writable()
        source, target = self._key(old), self._key(new)
        if not source or not target:
            raise FuseOSError(errno.EBUSY)
        moving = self._existing(source)
        if source == target:
            return 0
        if _HIDDEN.match(target[target.rfind("/") + 1 :]):
            # libfuse hides a file it counts as open. Its count drops only after our
            # release returned, so an unlink racing with the last close arrives here for
            # a file already released: then it is a plain unlink. A hidden name never
            # reaches the store, whatever this mount remembers of the file.
            self._hide(source, target)
            return 0
        replaced = self._entry(target)
        if replaced is not None and flags & RENAME_NOREPLACE:
            raise FuseOSError(errno.EEXIST)
        if moving.is_dir:
            if target.startswith(source + "/"):
                raise FuseOSError(errno.EINVAL)
            if replaced is not None:
                if not replaced.is_dir:
                    raise FuseOSError(errno.ENOTDIR)
                if self._children(target):
                    raise FuseOSError(errno.ENOTEMPTY)
                self._remove_directory(target)
            self._move_directory(source, target)
        else:
            if replaced is not None and replaced.is_dir:
                raise FuseOSError(errno.EISDIR)
            self._move_file(source, target, moving, replaced is not None)
        self._keep_parent(source)
        return 0

    def _hide(self, source: str, hidden: str) -> None:
        """libfuse hides an open file that is unlinked or renamed over: unlink it here."""
        with self._table:
            file = self._files.pop(source, None)
        if file is None:  # released meanwhile (see rename)
            self._remove_file(source)
            return
        stored = file.exists
        self._detach(file, hidden)
        if stored:
            self.store.delete(source)
        self._meta.set(source, None)
        self._overrides.move(source, hidden)
        self._seen.pop(source, None)
        self._read_cache.drop(source)
        self._keep_parent(source)

    def _move_file(self, source: str, target: str, moving: Entry, replacing: bool) -> None:
        with self._table:
            replaced = self._files.pop(target, None)
            file = self._files.pop(source, None)
        if replaced is not None:
            self._detach(replaced)
        size = moving.size
        started = time.time()
        moved = file is None or file.exists
        if file is None:
            self.store.move(source, target)
        else:
            with file.lock:
                if file.exists:
                    self.store.move(source, target)
                elif replacing:
                    self.store.delete(target)  # the staged copy replaces it on the next flush
                file.key = target
                size = file.size
            with self._table:
                self._files[target] = file
        self._meta.set(source, None)
        self._meta.set(target, Entry(False, size, moving.mtime, moving.mode, moving.uid, moving.gid))
        # A copy on the server gives the target a new time: keep showing the old one.
        self._written.pop(source, None)
        if moved and moving.mtime is not None:
            self._written[target] = _Written(size, moving.mtime, started, time.time())
        self._read_cache.move(source, target, moving.mtime if moved else None)
        self._overrides.move(source, target)
        # The kernel keeps the inode's pages across a rename: so does the signature.
        signature = self._seen.pop(source, None)
        self._seen.pop(target, None)
        if signature is not None:
            self._seen[target] = signature

    def _move_directory(self, source: str, target: str) -> None:
        """Move the directory *source* to *target* (see :meth:`KeyValueStore.move_directory`)."""
        self._move_tree(source, target)
        below = source + "/"
        with self._table:
            for key in [k for k in self._files if k.startswith(below)]:
                file = self._files.pop(key)
                file.key = target + key[len(source) :]
                self._files[file.key] = file
            for key in [k for k in self._extra_dirs if k == source or k.startswith(below)]:
                self._extra_dirs.discard(key)
                self._extra_dirs.add(target + key[len(source) :])
        self._overrides.move(source, target, tree=True)
        for key in [k for k in self._seen if k.startswith(below)]:
            self._seen.pop(key, None)
        self._read_cache.drop_tree(source)
        self._meta.forget_tree(source)
        self._meta.forget_tree(target)
        self._meta.set(source, None)
        self._meta.set(target, DIRECTORY)

    def _move_tree(self, source: str, target: str) -> None:
        """Move what the store holds below *source* (one rename on a filesystem store)."""
        try:
            self.store.move_directory(source, target)
        except KeyError:
            pass  # a directory only this mount knows: nothing stored below it yet

    # ================================================================== refused

    @_operation
    def link(self, target: str, source: str) -> int:
        raise FuseOSError(errno.EPERM)  # a path-keyed store has no inodes to share

    @_operation
    def symlink(self, target: str, source: str) -> int:
        raise FuseOSError(errno.EPERM)


__all__ = ["KvfsOperations", "UTIME_NOW", "UTIME_OMIT", "MAX_WRITE"]
