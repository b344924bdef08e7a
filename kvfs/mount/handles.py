"""The open-file cache: staged writes shared by every handle on a file, and read-ahead.

A file opened in the mount is an :class:`OpenFile`, shared by all its handles. While
nobody writes, reads go to the store through a per-handle :class:`ReadAhead`: ``pread``
on the value's own file where the store keeps local files, else ``get_range`` through a
read-ahead buffer. The first write, truncate or append makes a staged copy
(:class:`StagedData`): in memory while it is small and the mount's staged bytes stay
within its memory budget, else in a temporary file on local disk. The old value is fetched into it only
when the write needs it (not after ``O_TRUNC`` or ``create``). The staged copy is
uploaded with one ``put``/``put_file`` on flush, fsync and release; until then the
store keeps the old value. On a store with ``supports_staging`` (FilesystemStore) the
file is the store's own staging file, and the upload commits it (a rename): no copy.
The committed file is then the stored value, so the staged copy is dropped and the
next write stages anew.
"""

from __future__ import annotations

import errno
import io
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from typing import IO, TYPE_CHECKING

from ..store import KeyInfo, KeyValueStore, Metadata
from .metadata import Shown
from .readcache import CachedValue

if TYPE_CHECKING:
    from .streaming import StreamedData

#: Read-ahead grows to this many bytes per handle on sequential reads.
MAX_READ_AHEAD = 8 * 1024 * 1024
#: Staged values up to this size are uploaded as one bytes object, larger ones streamed.
_COPY_LIMIT = 4 * 1024 * 1024
#: Chunk size of streamed uploads.
CHUNK = 1024 * 1024
#: Reads start with this much read-ahead once a second sequential read is seen.
MIN_READ_AHEAD = 256 * 1024
#: A staged copy growing past this size moves to a temporary file even within the
#: memory budget: writing it is then one copy into the page cache (no growing buffer),
#: and a store that takes a file name (FilesystemStore) uploads it with a copy in the kernel.
MEMORY_FILE_LIMIT = 8 * 1024 * 1024


class MemoryBudget:
    """How many staged bytes may be held in memory, over all open files together."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def take(self, amount: int) -> bool:
        """Reserve *amount* bytes; False (nothing reserved) when over the limit."""
        with self._lock:
            if self.used + amount > self.limit:
                return False
            self.used += amount
            return True

    def give_back(self, amount: int) -> None:
        with self._lock:
            self.used -= amount


class StagedData:
    """A file's new content: a ``bytearray`` while small and within the budget, else a file.

    "Small" is up to :data:`MEMORY_FILE_LIMIT`. The file is a staging file of the store
    where *staging_file* gives one (it returns None where the store has none), else a
    temporary file in *directory*.

    Not thread-safe on its own: the owning :class:`OpenFile` serialises access.
    """

    def __init__(
        self,
        budget: MemoryBudget,
        directory: str | None,
        staging_file: Callable[[], IO[bytes] | None] | None = None,
    ) -> None:
        self._budget = budget
        self._directory = directory
        self._staging_file = staging_file
        self._memory: bytearray | None = bytearray()
        self._reserved = 0  # bytes of the budget this copy holds
        self._fd = -1
        self._staged_file: IO[bytes] | None = None  # the store's staging file, if used
        self.size = 0

    # ------------------------------------------------------------------ access

    def read_into(self, offset: int, buffer: memoryview) -> int:
        """Copy the content from *offset* into *buffer*; return how many bytes that was."""
        if offset >= self.size:
            return 0
        size = min(len(buffer), self.size - offset)
        if self._memory is not None:
            with memoryview(self._memory) as view:  # released at once: the buffer may grow
                buffer[:size] = view[offset : offset + size]
            return size
        return os.preadv(self._fd, [buffer[:size]], offset)

    def write(self, offset: int, data: bytes | memoryview) -> None:
        end = offset + len(data)
        if self._memory is not None:
            if end > MEMORY_FILE_LIMIT or (end > self._reserved and not self._reserve(end)):
                self._spill()
            else:
                memory = self._memory
                if offset > len(memory):
                    memory.extend(bytes(offset - len(memory)))
                memory[offset:end] = data
                self.size = max(self.size, end)
                return
        view = memoryview(data)
        while view:
            written = os.pwrite(self._fd, view, offset)
            view, offset = view[written:], offset + written
        self.size = max(self.size, end)

    def truncate(self, length: int) -> None:
        if self._memory is not None:
            if length <= len(self._memory):
                del self._memory[length:]
            elif length > MEMORY_FILE_LIMIT or (length > self._reserved and not self._reserve(length)):
                self._spill()
                os.ftruncate(self._fd, length)
            else:
                self._memory.extend(bytes(length - len(self._memory)))
        else:
            os.ftruncate(self._fd, length)
        self.size = length

    def upload(self, store: KeyValueStore, key: str, metadata: Metadata | None = None) -> bool:
        """Store the whole content under *key* (one put, with *metadata*; raises what the store raises).

        Returns True when the store's staging file was committed: it is the stored value
        now, and this object is released (the caller drops it). Returns False when the
        content was copied into the store and this object stays usable.
        """
        if self._staged_file is not None:
            store.commit_staging_file(key, self._staged_file, metadata=metadata)  # closes the file
            self._staged_file, self._fd = None, -1
            self.release()
            return True
        if self._memory is not None:
            if len(self._memory) <= _COPY_LIMIT:
                store.put(key, bytes(self._memory), metadata=metadata)
            else:  # streamed from the buffer: no second copy of a large value
                with memoryview(self._memory) as view:
                    store.put_file(key, io.BufferedReader(_ViewReader(view), CHUNK), metadata=metadata)
        else:
            # A file name lets a store copy in the kernel (FilesystemStore); the
            # temporary file has no name of its own any more, so use its descriptor's.
            store.put_file(key, f"/proc/self/fd/{self._fd}", metadata=metadata)
        return False

    def share_for_cache(self, memory_limit: int) -> bytes | int | None:
        """A copy of the content for a read cache, which keeps it unchanged from now on.

        Returns the bytes (content up to *memory_limit* bytes held in memory), or a new
        descriptor of the temporary file holding the content (larger content held in memory
        moves there first), or None for a store's staging file or when that fails. A file
        shared so is written again only after the cache dropped its copy.
        """
        try:
            if self._memory is not None:
                if len(self._memory) <= memory_limit:
                    return bytes(self._memory)
                self._spill_to_temporary()
            if self._staged_file is not None or self._fd < 0:
                return None
            return os.dup(self._fd)
        except OSError:
            return None

    def release(self) -> None:
        """Free the memory or file (an uncommitted staging file is discarded). The object is unusable afterwards."""
        if self._reserved:
            self._budget.give_back(self._reserved)
            self._reserved = 0
        self._memory = None
        if self._staged_file is not None:
            self._staged_file.close()
            self._staged_file, self._fd = None, -1
        elif self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    # ------------------------------------------------------------------ memory

    def _reserve(self, size: int) -> bool:
        # Reserve in steps, so a growing file does not ask the budget on every write.
        want = max(size, 2 * self._reserved, 64 * 1024) - self._reserved
        if not self._budget.take(want):
            want = size - self._reserved
            if not self._budget.take(want):
                return False
        self._reserved += want
        return True

    def _spill_to_temporary(self) -> None:
        staging_file, self._staging_file = self._staging_file, None
        try:
            self._spill()
        finally:
            self._staging_file = staging_file

    def _spill(self) -> None:
        """Move the content to the store's staging file, or a temporary file on local disk."""
        staged_file = self._staging_file() if self._staging_file is not None else None
        if staged_file is not None:
            fd = staged_file.fileno()
        else:
            fd, path = tempfile.mkstemp(prefix="kvfs-staged-", dir=self._directory)
            os.unlink(path)  # gone with the descriptor, even if the daemon is killed
        memory = self._memory
        assert memory is not None
        try:
            view = memoryview(memory)
            offset = 0
            while offset < len(view):
                offset += os.pwrite(fd, view[offset:], offset)
            view.release()
        except BaseException:
            if staged_file is not None:
                staged_file.close()
            else:
                os.close(fd)
            raise
        self._fd, self._staged_file, self._memory = fd, staged_file, None
        self._budget.give_back(self._reserved)
        self._reserved = 0


class _ViewReader(io.RawIOBase):
    """A readable file over a memoryview, without copying it whole."""

    def __init__(self, view: memoryview) -> None:
        self._view = view
        self._position = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        chunk = self._view[self._position : self._position + len(buffer)]
        buffer[: len(chunk)] = chunk
        self._position += len(chunk)
        return len(chunk)


class _StagedWriter(io.RawIOBase):
    """A write-only file object appending to a :class:`StagedData` (for ``get_file``)."""

    def __init__(self, staged: StagedData) -> None:
        self._staged = staged

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:  # type: ignore[override]
        data = bytes(data)
        self._staged.write(self._staged.size, data)
        return len(data)


class OpenFile:
    """A file open in the mount: what all its handles share.

    Once the file was unlinked or renamed over it is ``detached``: its handles keep the
    data, nothing is uploaded any more, and ``key`` is libfuse's hidden name for it (or
    None). ``lock`` guards every field.
    """

    def __init__(self, key: str, size: int, *, exists: bool) -> None:
        self.key: str | None = key
        self.lock = threading.RLock()
        self.size = size
        self.staged: StagedData | None = None
        #: The staged copy differs from the store.
        self.dirty = False
        #: The key exists in the store (False for a created file not uploaded yet).
        self.exists = exists
        #: Modification time (ns) of the last write through the mount, None if none yet.
        self.mtime_ns: int | None = None
        self.handles = 0
        self.detached = False
        #: Counts the staged copies committed as the stored value: readers opened before
        #: a commit read the old value, and start again (see :class:`ReadAhead`).
        self.version = 0
        #: Created by this mount, and nothing but an empty value uploaded yet (a shell's
        #: ``> file`` flushes the new file before the first write): if a write fails, the
        #: key is removed again, as if the file had never been made.
        self.placeholder = not exists
        #: What the download of the stored value told of it (its mode and owner where
        #: the store's listings do not say them: S3), None if nothing.
        self.loaded: KeyInfo | None = None
        #: The errno of a write or truncate that failed: the staged copy may miss what
        #: was written, so it is never uploaded (flush, fsync and close report this
        #: errno) until a truncate to zero starts the content anew. None: no failure.
        self.failure: int | None = None
        #: The content is going to the store as it is written (see
        #: :mod:`kvfs.mount.streaming`): then ``staged`` is None.
        self.streamed: StreamedData | None = None
        #: Every write since the content started empty came at its end: it may be streamed.
        self.sequential = False

    def stage(
        self,
        store: KeyValueStore,
        budget: MemoryBudget,
        directory: str | None,
        *,
        load: bool,
        local_copy: CachedValue | None = None,
    ) -> StagedData:
        """Return the staged copy, making it first; with *load*, the old value is fetched into it.

        A *local_copy* of the old value (from a read cache; its descriptor is closed here)
        is loaded instead of fetching the value from the store.
        """
        try:
            if self.staged is None:
                staged = StagedData(budget, directory, self._staging_file(store) if store.supports_staging else None)
                try:
                    if load and self.exists and self.key is not None and self.size > 0:
                        if local_copy is not None:
                            _load_local_copy(staged, local_copy)
                        elif store.keeps_metadata and not store.listing_has_metadata:
                            # The GET's answer says the mode and owner the upload must keep.
                            source, self.loaded = store.open_with_info(self.key)
                            with source:
                                shutil.copyfileobj(source, _StagedWriter(staged), CHUNK)
                        else:
                            store.get_file(self.key, _StagedWriter(staged))
                except BaseException:
                    staged.release()
                    raise
                self.staged = staged
                self.size = staged.size
            return self.staged
        finally:
            if local_copy is not None and local_copy.fd >= 0:
                os.close(local_copy.fd)

    def _staging_file(self, store: KeyValueStore) -> Callable[[], IO[bytes] | None]:
        def new() -> IO[bytes] | None:
            # Called under self.lock, when the copy moves out of memory: the key then.
            # A detached file is never stored: its copy needs no staging file.
            if self.detached or self.key is None:
                return None
            try:
                return store.new_staging_file(self.key)
            except (OSError, ValueError):  # a temporary file of the mount's own serves too
                return None

        return new

    def touch(self) -> None:
        self.dirty = True
        self.mtime_ns = time.time_ns()

    def committed(self) -> None:
        """The staged copy was committed as the stored value (see :meth:`StagedData.upload`)."""
        self.staged = None
        self.version += 1

    def drop_staged(self) -> None:
        if self.staged is not None:
            self.staged.release()
            self.staged = None
        if self.streamed is not None:  # not stored (a failure, a file unlinked): nothing is
            self.streamed.abort()
            self.streamed = None


def _load_local_copy(staged: StagedData, copy: CachedValue) -> None:
    if copy.data is not None:
        staged.write(0, copy.data)
        return
    offset = 0
    while offset < copy.size:
        chunk = os.pread(copy.fd, min(CHUNK, copy.size - offset), offset)
        if not chunk:
            raise OSError(errno.EIO, "the read cache's copy is shorter than its value")
        staged.write(offset, chunk)
        offset += len(chunk)


class ReadAhead:
    """A per-handle reader of a stored value.

    On a store that keeps values in local files (``open`` gives a file with a
    descriptor: FilesystemStore) the handle opens the value once, at its first read, and
    reads it with ``pread``, as a program on a local disk reads a file it holds open.
    Elsewhere each read is a ``get_range`` through a buffer that grows on sequential
    reads. *local* is shared by the mount's handles: whether the store gives local files
    (None until the first read finds out).
    """

    def __init__(self, local: LocalValues) -> None:
        self.lock = threading.Lock()
        self._local = local
        self._fd = -1
        self._data = b""
        self._start = 0
        self._next = -1  # where a sequential read would start
        self._window = 0
        self._version = 0  # the OpenFile.version of what was read
        self._whole = False  # _data is the whole value (from a read cache)
        #: The whole value when one read fetched all of it (for a read cache), else None.
        self.fetched_whole: bytes | None = None

    def preload(self, data: bytes | None, fd: int = -1) -> None:
        """Serve reads from a local copy of the whole value: *data*, or the file *fd* (now owned)."""
        with self.lock:
            self._forget()
            if fd >= 0:
                self._fd = fd
            elif data is not None:
                self._data, self._start, self._whole = data, 0, True

    def read_into(self, store: KeyValueStore, key: str, offset: int, buffer: memoryview, version: int = 0) -> int:
        """Read from *offset* into *buffer*; return how many bytes were read (0 at the end).

        *version* is the file's :attr:`OpenFile.version`: what was read of an older one is forgotten.
        """
        with self.lock:
            if version != self._version:
                self._forget()
                self._version = version
            if self._fd < 0 and self._local.enabled is not False:
                self._fd = self._local.open(store, key)
            if self._fd >= 0:
                return os.preadv(self._fd, [buffer], offset)  # no copy in Python
            data = self._read(store, key, offset, len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def _read(self, store: KeyValueStore, key: str, offset: int, size: int) -> bytes:
        start, data = self._start, self._data
        if self._whole:
            return data[offset : offset + size]
        if start <= offset and offset + size <= start + len(data):
            self._next = offset + size
            return data[offset - start : offset - start + size]
        if offset == self._next or (start <= offset <= start + len(data) and data):
            self._window = min(max(2 * self._window, MIN_READ_AHEAD), MAX_READ_AHEAD)
        else:
            self._window = 0
        wanted = max(size, self._window)
        fetched = store.get_range(key, offset, wanted)
        self._data, self._start, self._next = fetched, offset, offset + size
        if offset == 0 and len(fetched) < wanted:
            self.fetched_whole = fetched
        return fetched[:size]

    def clear(self) -> None:
        """Forget what was read (also the open value); the reader stays usable."""
        with self.lock:
            self._forget()

    def _forget(self) -> None:
        self._data, self._next, self._window, self._whole = b"", -1, 0, False
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class LocalValues:
    """Whether a store keeps its values in local files, found out by the first read."""

    def __init__(self) -> None:
        #: True or False once known.
        self.enabled: bool | None = None

    def open(self, store: KeyValueStore, key: str) -> int:
        """A new descriptor of *key*'s value, or -1 if the store does not give local files.

        Raises what ``store.open`` raises (``KeyError`` for a missing key).
        """
        if store.is_remote:  # a server's values are never local files: no open to find out
            self.enabled = False
            return -1
        value = store.open(key)
        try:
            fd = os.dup(value.fileno())
        except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both
            # Asked once per mount (a store streaming its values opens one for nothing):
            # a store without local files then reads by get_range.
            self.enabled = False
            return -1
        finally:
            value.close()
        self.enabled = True
        return fd


class Handle:
    """One open file descriptor's state in the daemon."""

    __slots__ = ("file", "writable", "append", "reader", "shown")

    def __init__(self, file: OpenFile, writable: bool, local: LocalValues, append: bool = False) -> None:
        self.file = file
        self.writable = writable
        #: Opened with ``O_APPEND``: every write goes to the end of the staged content.
        self.append = append
        self.reader = ReadAhead(local)
        #: (size, mtime) of the stored value when opened, for a read cache; None if unknown.
        self.shown: Shown | None = None


__all__ = ["MemoryBudget", "StagedData", "OpenFile", "ReadAhead", "LocalValues", "Handle", "MAX_READ_AHEAD"]
