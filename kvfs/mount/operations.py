"""The FUSE operations: a store shown as a directory tree (see ``docs/mount.rst``).

Each operation translates its path or handle and asks the mount's parts: names map to
keys, entries, listings and attributes in :mod:`kvfs.mount.namespace`; open files, their
staged copies and uploads live in :mod:`kvfs.mount.openfiles`; what an operation raises
becomes an errno, and failures of the store are logged once per outage, in
:mod:`kvfs.mount.failures`.
"""

from __future__ import annotations

import errno
import functools
import itertools
import logging
import os
import re
import stat
import time
from collections.abc import Callable
from typing import Any, TypeVar

from ..coordination import ChangeKind
from ..errors import KvfsError
from ..store import LINK_SUFFIX, KeyValueStore, Metadata
from .binding import RENAME_NOREPLACE, mfusepy
from .coordination import CacheCallbacks, KernelInvalidator, MountCoordination
from .failures import PASSED_THROUGH, StoreHealth, WatchedStore, errno_for
from .handles import MemoryBudget, OpenFile
from .metadata import DIRECTORY, Entry, Shown
from .namespace import Namespace
from .openfiles import OpenFiles
from .options import MountOptions
from .paths import check_path_key, component_name, join_key, parent_key

log = logging.getLogger("kvfs.mount")

FuseOSError = mfusepy.FuseOSError

#: utimensat(2)'s special nanosecond values, which libfuse3 passes through unchanged.
UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2

#: Largest write request the kernel is asked to send.
MAX_WRITE = 1024 * 1024
#: The largest file the mount makes (``EFBIG`` beyond): 5 TiB, S3's largest object.
MAX_FILE_SIZE = 5 << 40
#: Directory entries handed to libfuse per call of ``readdir_page``.
_READDIR_PAGE = 256
#: libfuse3's capability bit (fuse_common.h) that lets the kernel choose READDIRPLUS
#: only for a directory's first chunk of entries.
_CAP_READDIRPLUS_AUTO = 1 << 14

_F = TypeVar("_F", bound=Callable[..., Any])

#: The longest target of a symbolic link (PATH_MAX, with its NUL).
_MAX_LINK_TARGET = 4095
#: The kinds of files mknod makes in memory (a regular file is stored).
_SPECIAL_KINDS = frozenset({stat.S_IFIFO, stat.S_IFSOCK, stat.S_IFCHR, stat.S_IFBLK})

#: The names libfuse gives open files that were unlinked (see ``hide_node`` in libfuse).
_HIDDEN = re.compile(r"\.fuse_hidden[0-9a-f]{16}\Z")


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
                where = self.files.handle_key(getattr(args[-1], "fh", None))
            raise FuseOSError(self._health.errno_of(method.__name__, where, error)) from None

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
        self._health = StoreHealth()
        # Every request to the store goes through this, to log an outage once.
        self.store: KeyValueStore = WatchedStore(store, self._health)  # type: ignore[assignment]
        self.options = options
        self.read_only = options.read_only or not store.supports_writes
        self._on_ready = on_ready
        self.files = OpenFiles(self.store, MemoryBudget(options.cache_size), options.cache_dir)
        self.names = Namespace(self.store, options, self.files, store.keeps_metadata)
        # Open directories: handle -> [key, the listing served to it (None until read)].
        self._directories: dict[int, list[Any]] = {}
        self._numbers = itertools.count(1)
        # Set by the mounter with --coordinate: publishes this mount's changes.
        self.coordination: MountCoordination | None = None
        self.kernel = KernelInvalidator()

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
            # A coordinated mount cannot drop a name's negative entry when another host
            # makes the name (see coordination.KernelInvalidator): none is kept.
            config.negative_timeout = 0 if self.coordination is not None else timeout
            config.nullpath_ok = 1  # handle operations are served from the handle
            # hard_remove stays off: libfuse then renames an open file that is unlinked
            # to a hidden name (see rename), so fstat on it still has a path to ask for.
            config.hard_remove = 0
            config.use_ino = 0
            config.kernel_cache = 0  # page cache kept per open (keep_cache) instead
            config.auto_cache = 0
            config.direct_io = 0
        if self.coordination is not None:
            self.kernel.capture()  # libfuse's handle is known only while init runs
        if self._on_ready is not None:
            self._on_ready()

    def destroy(self, path: str) -> None:
        self.kernel.release()
        self.names.read_cache.clear()
        log.debug("unmounted")

    def status(self) -> dict[str, Any]:
        """What ``kvfs status`` shows: open files, staged and cached bytes, store health."""
        read_cache = self.names.read_cache
        return {
            "mode": "synchronous",
            "started": self.names.mount_time_ns / 1e9,
            **self.files.usage(),
            "read_cache": read_cache.usage() | {"limit": read_cache.limit},
            "store_failing": self._health.failing(),
        }

    def cache_callbacks(self) -> CacheCallbacks:
        """What another host's change makes this mount forget (see :class:`MountCoordination`)."""
        return CacheCallbacks(
            forget_entry=self.names.forget_cached,
            forget_listing=self.names.forget_cached_listing,
            invalidate_kernel=self.kernel.invalidate,
            forget_everything=self.names.forget_all_cached,
            forget_tree=self.names.forget_cached_tree,
            learn_file=self.names.learn_file,
        )

    def _publish(self, kind: ChangeKind, *keys: str, directory: bool = False) -> None:
        """Tell the other coordinated mounts of a change that reached the store."""
        if self.coordination is not None:
            self.coordination.publish(kind, keys, directory=directory)

    def _publish_stored(self, key: str) -> None:
        """Announce the regular file *key* the mount just stored, with the size and time it shows."""
        if self.coordination is None:
            return
        _, entry = self.names.meta.lookup(key)
        if entry is None or entry.is_dir or entry.kind is not None or entry.mtime is None:
            self.coordination.publish(ChangeKind.WRITE, (key,))
        else:
            self.coordination.publish(ChangeKind.WRITE, (key,), size=entry.size, mtime=entry.mtime)

    def _writable(self) -> None:
        if self.read_only:
            raise FuseOSError(errno.EROFS)

    def _target_key(self, path: str | None, fh: Any) -> str | None:
        if fh is not None:
            return self.files.handle(fh.fh).file.key
        return self.names.key(path)  # type: ignore[arg-type]

    # ================================================================== attributes

    @_operation
    def getattr(self, path: str | None, fh: Any = None) -> dict[str, Any]:
        if fh is not None:
            file = self.files.handle(fh.fh).file
            return self.names.attributes(file.key, Entry(False, file.size), file)
        key = self.names.key(path)  # type: ignore[arg-type]
        entry = self.names.existing(key)
        return self.names.attributes(key, entry, None if entry.is_dir else self.files.get(key))

    @_operation
    def opendir(self, path: str) -> int:
        key = self.names.key(path)
        if not self.names.existing(key).is_dir:
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
            state[1] = [(".", DIRECTORY), ("..", DIRECTORY), *self.names.children(key).items()]
        return state[0], state[1]

    @_operation
    def readdir(self, path: str | None, fh: int) -> list[tuple[str, dict[str, int], int]]:
        _, entries = self._listed(fh, 0)
        return [(_shown(name), self._type(entry), 0) for name, entry in entries]

    @staticmethod
    def _type(entry: Entry) -> dict[str, int]:
        if entry.kind is not None:
            return {"st_mode": entry.kind}
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
                # An inode number, which libfuse does not give these two: readdir(3)
                # skips an entry whose d_ino is 0 (so would ls -a).
                page.append((component, {**self.names.attributes(directory, DIRECTORY), "st_ino": 1}))
                continue
            child = join_key(key, component)
            file = None if entry.is_dir else self.files.get(child)
            if not entry.is_dir and entry.size is None and file is None:
                entry = self.names.entry(child) or entry
            page.append((component_name(component), self.names.attributes(child, entry, file)))
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

    @_operation
    def chmod(self, path: str | None, mode: int, fh: Any = None) -> int:
        self._writable()
        key = self._target_key(path, fh)
        if key is not None:
            self.names.change_metadata(key, self.names.existing(key), mode=stat.S_IMODE(mode))
            self._publish(ChangeKind.ATTRIBUTES, key)
        return 0

    @_operation
    def chown(self, path: str | None, uid: int, gid: int, fh: Any = None) -> int:
        self._writable()
        key = self._target_key(path, fh)
        if key is not None:
            entry = self.names.existing(key)
            changes = {}
            if uid != -1:
                changes["uid"] = uid
            if gid != -1:
                changes["gid"] = gid
            if changes:
                self.names.change_metadata(key, entry, **changes)
                self._publish(ChangeKind.ATTRIBUTES, key)
        return 0

    @_operation
    def utimens(self, path: str | None, times: tuple[int, int] | None = None, fh: Any = None) -> int:
        self._writable()
        key = self._target_key(path, fh)
        if key is None:
            return 0
        entry = self.names.existing(key)
        now = time.time_ns()
        atime, mtime = (now, now) if times is None else times
        changes = {}
        for name, value in (("atime_ns", atime), ("mtime_ns", mtime)):
            if value == UTIME_NOW:
                changes[name] = now
            elif value != UTIME_OMIT:
                changes[name] = value
        if changes:
            self.names.change_metadata(key, entry, **changes)
            self._publish(ChangeKind.ATTRIBUTES, key)
        return 0

    # ================================================================== files

    @_operation
    def open(self, path: str, fi: Any) -> int:
        flags = fi.flags
        writable = flags & os.O_ACCMODE != os.O_RDONLY
        if writable or flags & os.O_TRUNC:
            self._writable()
        key = self.names.key(path)
        entry = self.names.entry(key)
        if entry is None:
            if writable and self.names.unstored(key):
                self._new_file(key, None, fi)
                return 0
            raise FuseOSError(errno.ENOENT)
        if entry.is_dir:
            raise FuseOSError(errno.EISDIR)
        if entry.size is None:
            entry = self.names.query(key) or Entry(False, 0)
        file = self.files.acquire(key, entry.size or 0, exists=True)
        try:
            if flags & os.O_TRUNC and writable:
                with file.lock:
                    self.names.read_cache.drop(key)  # it may share the staged file
                    self.files.start_anew(file)
                self.names.modified(key)
        except BaseException:
            self._release_file(file)
            raise
        keep = False
        if not writable and file.staged is None and file.streamed is None and entry.mtime is not None:
            keep = self.names.unchanged(key, entry.size or 0, entry.mtime)
        fi.keep_cache = 1 if keep else 0
        if not writable and not file.dirty and hasattr(fi, "noflush"):
            # Nothing to upload: spare the kernel a FLUSH on close. (A dirty file, say
            # after a failed upload, keeps FLUSH: any close then tries again.)
            fi.noflush = 1
        handle = self.files.new_handle(file, writable, fi)
        read_cache = self.names.read_cache
        if read_cache.enabled and entry.mtime is not None and file.staged is None and file.streamed is None:
            # Served from the read cache's copy, or filling it.
            cached = read_cache.get(key, entry.size, entry.mtime)
            if cached is not None:
                handle.reader.preload(cached.data, cached.fd)
            elif entry.mtime % 1 != 0 or time.time() >= entry.mtime + 2:
                # A whole-second time is trusted once it is old enough (see Namespace.unchanged).
                handle.shown = Shown(entry.size, entry.mtime)
        return 0

    @_operation
    def create(self, path: str, mode: int, fi: Any) -> int:
        self._writable()
        key = self.names.key(path)
        if fi.flags & os.O_EXCL:
            known, entry = self.names.meta.lookup(key)
            if (known and entry is not None) or key in self.files:
                raise FuseOSError(errno.EEXIST)
        self._new_file(key, mode, fi)
        return 0

    def _new_file(self, key: str, mode: int | None, fi: Any) -> None:
        """Open a new empty file *key* that is not stored until its first flush."""
        self.names.read_cache.drop(key)  # it may share the staged file of an open file
        file = self.files.acquire(key, 0, exists=False)
        try:
            with file.lock:
                self.files.start_anew(file)
        except BaseException:
            self._release_file(file)
            raise
        self.names.created(key, mode)
        self.files.new_handle(file, fi.flags & os.O_ACCMODE != os.O_RDONLY, fi)

    @_operation
    def read(self, path: str | None, size: int, offset: int, fh: Any) -> bytes:
        buffer = bytearray(size)
        return bytes(memoryview(buffer)[: self.read_into(path, memoryview(buffer), offset, fh)])

    @_operation
    def read_into(self, path: str | None, buffer: memoryview, offset: int, fh: Any) -> int:
        """Read from *offset* into *buffer* (libfuse's, see ``KvfsFUSE.read``); return the count."""
        handle = self.files.handle(fh.fh)
        file = handle.file
        if file.streamed is not None:
            with file.lock:
                if file.streamed is not None:
                    if offset >= file.streamed.size:
                        return 0
                    log.debug("%s read while streamed: its upload is completed first", file.key)
                    self._upload(file)  # what was streamed is read back from the store
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
            if handle.shown is not None and handle.shown.size == len(whole):
                self.names.read_cache.keep_bytes(key, whole, handle.shown.mtime)
        return count

    @_operation
    def write(self, path: str | None, data: bytes | memoryview, offset: int, fh: Any) -> int:
        # data may be a view of libfuse's buffer, valid during this call only: copied.
        handle = self.files.handle(fh.fh)
        file = handle.file
        if offset + len(data) > MAX_FILE_SIZE:
            raise FuseOSError(errno.EFBIG)
        with file.lock:
            if file.failure is not None:
                raise FuseOSError(file.failure)
            if file.streamed is not None:
                if self._write_streamed(file, offset if not handle.append else file.streamed.size, data):
                    return len(data)
                log.debug("%s written at %d, before the end of its streamed upload: completed first", file.key, offset)
                self._upload(file)  # a write before the end: the store gets what was sent first
            first = not file.dirty
            local_copy = None
            try:
                if first and file.key is not None:
                    local_copy = self._local_copy(file)
                    self.names.read_cache.drop(file.key)  # it may share the staged file
                staged = self.files.stage(file, load=True, local_copy=local_copy)
                if handle.append:
                    # The end of the content as staged here, not the kernel's idea of the
                    # size (another mount may have changed it): never a hole of zeros.
                    offset = staged.size
                streamed = self.files.stream(file, offset, len(data), self._upload_metadata)
                if streamed is not None:
                    streamed.write(offset, data)
                else:
                    staged.write(offset, data)
            except Exception as error:
                self.files.poison(file, error)
                raise
            file.size = staged.size if streamed is None else streamed.size
            file.touch()
        if first and file.key is not None:
            self.names.modified(file.key)
            if mfusepy.fuse_get_context()[0] != 0:
                self.names.clear_setid(file.key)
        return len(data)

    def _write_streamed(self, file: OpenFile, offset: int, data: bytes | memoryview) -> bool:
        """Write to *file*'s streamed content; False (nothing written) for a write before its end."""
        assert file.streamed is not None
        try:
            if not file.streamed.write(offset, data):
                return False
        except Exception as error:
            self.files.poison(file, error)
            raise
        file.size = file.streamed.size
        file.touch()
        return True

    def _local_copy(self, file: OpenFile) -> Any:
        """The read cache's copy of *file*'s stored value, to stage it without a download."""
        key = file.key
        read_cache = self.names.read_cache
        if not read_cache.enabled or key is None or file.staged is not None or not file.exists:
            return None
        known, entry = self.names.meta.lookup(key)
        if not known or entry is None or entry.is_dir:
            return None
        return read_cache.get(key, file.size, entry.mtime)

    @_operation
    def truncate(self, path: str | None, length: int, fh: Any = None) -> int:
        self._writable()
        if length > MAX_FILE_SIZE:
            raise FuseOSError(errno.EFBIG)
        if fh is not None:
            file: OpenFile | None = self.files.handle(fh.fh).file
            key = file.key  # type: ignore[union-attr]
        else:
            key = self.names.key(path)  # type: ignore[arg-type]
            if self.names.existing(key).is_dir:
                raise FuseOSError(errno.EISDIR)
            file = self.files.get(key)
        if file is not None:
            with file.lock:
                if file.failure is not None and length > 0:
                    raise FuseOSError(file.failure)
                if file.streamed is not None:
                    if self._extend_streamed(file, length):
                        if key is not None and fh is None:
                            self._upload(file)
                        return 0
                    self._upload(file)  # a shorter content: stored first, then staged
                file.sequential = length == 0
                try:
                    if key is not None:
                        self.names.read_cache.drop(key)  # it may share the staged file
                    self.files.stage(file, load=length > 0).truncate(length)
                except Exception as error:
                    self.files.poison(file, error)
                    raise
                file.size = length
                file.failure = None  # a truncate to zero starts the content anew
                file.touch()
            if key is not None:
                self.names.modified(key)
                if fh is None:
                    self._upload(file)  # a truncate by name is complete when it returns
            return 0
        # No open file: change the stored value directly, fetching only what is kept.
        started = time.time()
        data = self.store.get_range(key, 0, length) if length else b""
        metadata = self.names.upload_metadata(key)
        self.store.put(key, data + bytes(length - len(data)), metadata=metadata)
        self.names.modified(key)
        self.names.stored(key, length, started, metadata=metadata)
        self._publish_stored(key)
        return 0

    def _extend_streamed(self, file: OpenFile, length: int) -> bool:
        """Grow *file*'s streamed content to *length*; False when that would shorten it."""
        assert file.streamed is not None
        try:
            if not file.streamed.extend(length):
                return False
        except Exception as error:
            self.files.poison(file, error)
            raise
        file.size = length
        file.touch()
        return True

    def _upload_metadata(self, file: OpenFile) -> Metadata | None:
        """What the upload of *file*'s new content carries (see :meth:`Namespace.upload_metadata`)."""
        return None if file.key is None else self.names.upload_metadata(file.key, file.loaded)

    def _set_late_metadata(self, key: str, metadata: Metadata) -> None:
        """Write what changed while *key* was streamed (``cp -p``'s chmod and utime come then).

        The upload began with the metadata known at its start; a failure here leaves the
        value stored and the change shown from memory, and is logged.
        """
        try:
            self.store.set_metadata(key, mode=metadata.mode, uid=metadata.uid, gid=metadata.gid, mtime=metadata.mtime)
        except (OSError, KvfsError) as error:
            log.warning("%s: stored, but its mode, owner or time could not be kept: %s", key, error)

    def _upload(self, file: OpenFile) -> None:
        """Store a dirty file's staged copy; raises what the store raises, keeping the copy."""
        with file.lock:
            metadata = None
            if file.key is not None and file.dirty:
                metadata = self.names.upload_metadata(file.key, file.loaded)
            upload = self.files.upload(file, metadata)
            if upload is None:
                return
            if upload.staged is None and metadata is not None and metadata != upload.carried:
                self._set_late_metadata(upload.key, metadata)
            self.names.stored(upload.key, upload.size, upload.started, metadata=metadata)
            self._publish_stored(upload.key)
            if self.names.read_cache.enabled and not upload.committed:
                # Now, not at release: the kernel sends RELEASE after close() returns, and
                # the next open may come first.
                self.names.keep_copy(upload.key, upload.staged)

    @_operation
    def flush(self, path: str | None, fh: Any) -> int:
        handle = self.files.handle(fh.fh)
        if handle.file.failure is not None and not handle.writable:
            return 0  # a reader's close: the writers hear of the failure
        self._upload(handle.file)
        return 0

    @_operation
    def fsync(self, path: str | None, datasync: int, fh: Any) -> int:
        """Upload the file if it changed, then make its stored value durable (``store.sync``)."""
        file = self.files.handle(fh.fh).file
        self._upload(file)
        with file.lock:
            key = None if file.detached or not file.exists else file.key
        if key is not None:
            # Also after a plain flush uploaded it: a close does not sync (it stays fast).
            self.store.sync(key)
        return 0

    @_operation
    def release(self, path: str | None, fh: Any) -> int:
        self._release_file(self.files.close_handle(fh.fh))
        return 0

    def _release_file(self, file: OpenFile) -> None:
        if not self.files.let_go(file):
            return
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
                self._health.errno_of("release", file.key, error)
                if file.placeholder and file.exists and file.key is not None and not file.detached:
                    self._remove_placeholder_quietly(file)
            finally:
                if not file.exists and file.key is not None:
                    self.names.not_stored(file.key, remember=not file.detached)
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
            self._health.errno_of("release", file.key, error)

    # ================================================================== names

    @_operation
    def unlink(self, path: str) -> int:
        self._writable()
        key = self.names.key(path)
        # The kernel looked the name up as a file just before (within entry_timeout): no
        # stat to ask again unless this mount knows better (a delete is idempotent).
        known, entry = self.names.meta.lookup(key)
        if not known or self.names.is_extra_directory(key) or entry is None or entry.is_dir:
            # Unknown here (the kernel's lookup expired): a link or a FIFO is removed otherwise.
            entry = self.names.existing(key)
            if entry.is_dir:
                raise FuseOSError(errno.EISDIR)
        self._remove(key, entry)
        self._publish(ChangeKind.DELETE, key)
        return 0

    def _remove(self, key: str, entry: Entry) -> None:
        """Remove the file, link or special file *key* that is *entry*."""
        if entry.is_special:
            self.names.forget(key)
        elif entry.is_link:
            self.store.delete(key + LINK_SUFFIX)
            self.names.forget(key)
        else:
            self._remove_file(key)

    def _remove_file(self, key: str, hidden: str | None = None) -> None:
        """Remove the file *key*; an open one lives on under libfuse's *hidden* name, if given."""
        file = self.files.take(key)
        stored = file is None or file.exists
        if file is not None:
            self.files.detach(file, hidden)
        if stored:
            self.store.delete(key)
        self.names.forget(key, overrides_to=hidden)

    @_operation
    def mkdir(self, path: str, mode: int) -> int:
        self._writable()
        key = self.names.key(path)
        if self.names.entry(key) is not None:
            raise FuseOSError(errno.EEXIST)
        self.names.make_directory(key, mode)
        self._publish(ChangeKind.MKDIR, key)
        return 0

    @_operation
    def rmdir(self, path: str) -> int:
        self._writable()
        key = self.names.key(path)
        if not key:
            raise FuseOSError(errno.EBUSY)
        entry = self.names.existing(key)
        if not entry.is_dir:
            raise FuseOSError(errno.ENOTDIR)
        if self.names.children(key):
            raise FuseOSError(errno.ENOTEMPTY)
        self.names.remove_directory(key)
        self._publish(ChangeKind.RMDIR, key)
        return 0

    @_operation
    def rename(self, old: str, new: str, flags: int = 0) -> int:
        self._writable()
        source, target = self.names.key(old), self.names.key(new)
        if not source or not target:
            raise FuseOSError(errno.EBUSY)
        moving = self.names.existing(source)
        if source == target:
            return 0
        if _HIDDEN.match(target[target.rfind("/") + 1 :]):
            # libfuse hides a file it counts as open. Its count drops only after our
            # release returned, so an unlink racing with the last close arrives here for
            # a file already released: then it is a plain unlink. A hidden name never
            # reaches the store, whatever this mount remembers of the file.
            self._remove_file(source, target if source in self.files else None)
            self._publish(ChangeKind.DELETE, source)
            return 0
        replaced = self.names.entry(target)
        if replaced is not None and flags & RENAME_NOREPLACE:
            raise FuseOSError(errno.EEXIST)
        if moving.is_dir:
            if target.startswith(source + "/"):
                raise FuseOSError(errno.EINVAL)
            if replaced is not None:
                if not replaced.is_dir:
                    raise FuseOSError(errno.ENOTDIR)
                if self.names.children(target):
                    raise FuseOSError(errno.ENOTEMPTY)
                self.names.remove_directory(target)
            self._move_directory(source, target)
        else:
            if replaced is not None and replaced.is_dir:
                raise FuseOSError(errno.EISDIR)
            if replaced is not None and (replaced.kind is not None or moving.kind is not None):
                if not (replaced.is_link and moving.is_link):  # a link's move replaces a link
                    self._remove(target, replaced)
                    replaced = None
            if moving.is_special:
                self.names.move_special(source, target)
            elif moving.is_link:
                started = time.time()
                self.store.move(source + LINK_SUFFIX, target + LINK_SUFFIX)
                self.names.move(source, target, moving, moving.size, stored=True, started=started)
            else:
                self._move_file(source, target, moving, replaced is not None)
        self.names.keep_parent(source)
        self._publish(ChangeKind.RENAME, source, target, directory=moving.is_dir)
        return 0

    def _move_file(self, source: str, target: str, moving: Entry, replacing: bool) -> None:
        streaming = self.files.get(source)
        if streaming is not None and streaming.streamed is not None:
            self._upload(streaming)  # the upload is to the old name: finished there first
        replaced = self.files.take(target)
        file = self.files.take(source)
        if replaced is not None:
            self.files.detach(replaced)
        size = moving.size
        started = time.time()
        stored = file is None or file.exists
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
            self.files.put(target, file)
        self.names.move(source, target, moving, size, stored=stored, started=started)

    def _move_directory(self, source: str, target: str) -> None:
        """Move the directory *source* to *target* (see :meth:`KeyValueStore.move_directory`)."""
        for file in self.files.streamed_below(source):
            self._upload(file)  # each upload is to its old name: finished there first
        started = time.time()
        try:
            self.store.move_directory(source, target)  # one rename on a filesystem store
        except KeyError:
            pass  # a directory only this mount knows: nothing stored below it yet
        self.files.move_tree(source, target)
        self.names.move_tree(source, target, started)

    # ================================================================== refused

    @_operation
    def link(self, target: str, source: str) -> int:
        raise FuseOSError(errno.EPERM)  # a path-keyed store has no inodes to share

    # ================================================================== links and special files

    @_operation
    def symlink(self, path: str, target: str) -> int:
        """Make *path* a symbolic link to *target*, kept as ``KEY.rclonelink`` (``store.symlink``)."""
        self._writable()
        key = self.names.key(path)
        encoded = target.encode("utf-8", "surrogateescape")
        if len(encoded) > _MAX_LINK_TARGET:
            raise FuseOSError(errno.ENAMETOOLONG)
        check_path_key(key + LINK_SUFFIX, self.store.max_key_length, self.store.max_component_length)
        if self.names.entry(key) is not None:
            raise FuseOSError(errno.EEXIST)
        self.store.symlink(key, target)
        self.names.added(key, Entry(False, len(encoded), time.time(), kind=stat.S_IFLNK))
        self._publish(ChangeKind.WRITE, key)
        return 0

    @_operation
    def readlink(self, path: str) -> str:
        key = self.names.key(path)
        if not self.names.existing(key).is_link:
            raise FuseOSError(errno.EINVAL)
        return self.store.readlink(key)

    @_operation
    def mknod(self, path: str, mode: int, dev: int) -> int:
        """A FIFO, socket or device lives in memory for the life of the mount; a regular file is stored."""
        self._writable()
        key = self.names.key(path)
        kind = stat.S_IFMT(mode)
        if kind not in _SPECIAL_KINDS and kind not in (0, stat.S_IFREG):
            raise FuseOSError(errno.EINVAL)
        if self.names.entry(key) is not None:
            raise FuseOSError(errno.EEXIST)
        if kind in _SPECIAL_KINDS:
            rdev = dev if kind in (stat.S_IFCHR, stat.S_IFBLK) else 0
            self.names.added(key, Entry(False, 0, time.time(), stat.S_IMODE(mode), kind=kind, rdev=rdev))
            return 0
        started = time.time()
        metadata = self.names.creation_metadata(mode)
        self.store.put(key, b"", metadata=metadata)
        self.names.created(key, mode)
        self.names.stored(key, 0, started, metadata=metadata)
        return 0


__all__ = ["KvfsOperations", "UTIME_NOW", "UTIME_OMIT", "MAX_WRITE", "PASSED_THROUGH", "errno_for"]
