"""The open-file cache: staged writes shared by every handle on a file, and read-ahead.

A file opened in the mount is an :class:`OpenFile`, shared by all its handles. While
nobody writes, reads go to the store (``get_range``) through a per-handle
:class:`ReadAhead` buffer. The first write, truncate or append makes a staged copy
(:class:`StagedData`): in memory while the mount's staged bytes stay within its memory
budget, else in a temporary file on local disk. The old value is fetched into it only
when the write needs it (not after ``O_TRUNC`` or ``create``). The staged copy is
uploaded with one ``put``/``put_file`` on flush, fsync and release; until then the
store keeps the old value.
"""

from __future__ import annotations

import io
import os
import tempfile
import threading
import time

from ..store import KeyValueStore

#: Read-ahead grows to this many bytes per handle on sequential reads.
MAX_READ_AHEAD = 8 * 1024 * 1024
#: Staged values up to this size are uploaded as one bytes object, larger ones streamed.
_COPY_LIMIT = 4 * 1024 * 1024
#: Chunk size of streamed uploads.
CHUNK = 1024 * 1024
#: Reads start with this much read-ahead once a second sequential read is seen.
MIN_READ_AHEAD = 256 * 1024


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
    """A file's new content: a ``bytearray`` within the budget, else a temporary file.

    Not thread-safe on its own: the owning :class:`OpenFile` serialises access.
    """

    def __init__(self, budget: MemoryBudget, directory: str | None) -> None:
        self._budget = budget
        self._directory = directory
        self._memory: bytearray | None = bytearray()
        self._reserved = 0  # bytes of the budget this copy holds
        self._fd = -1
        self.size = 0

    # ------------------------------------------------------------------ access

    def read(self, offset: int, size: int) -> bytes:
        if offset >= self.size:
            return b""
        size = min(size, self.size - offset)
        if self._memory is not None:
            return bytes(self._memory[offset : offset + size])
        return os.pread(self._fd, size, offset)

    def write(self, offset: int, data: bytes) -> None:
        end = offset + len(data)
        if self._memory is not None:
            if end > self._reserved and not self._reserve(end):
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
            elif length > self._reserved and not self._reserve(length):
                self._spill()
                os.ftruncate(self._fd, length)
            else:
                self._memory.extend(bytes(length - len(self._memory)))
        else:
            os.ftruncate(self._fd, length)
        self.size = length

    def upload(self, store: KeyValueStore, key: str) -> None:
        """Store the whole content under *key* (one put; raises what the store raises)."""
        if self._memory is not None:
            if len(self._memory) <= _COPY_LIMIT:
                store.put(key, bytes(self._memory))
            else:  # streamed from the buffer: no second copy of a large value
                with memoryview(self._memory) as view:
                    store.put_file(key, io.BufferedReader(_ViewReader(view), CHUNK))
        else:
            # A file name lets a store copy in the kernel (FilesystemStore); the
            # temporary file has no name of its own any more, so use its descriptor's.
            store.put_file(key, f"/proc/self/fd/{self._fd}")

    def release(self) -> None:
        """Free the memory or temporary file. The object is unusable afterwards."""
        if self._reserved:
            self._budget.give_back(self._reserved)
            self._reserved = 0
        self._memory = None
        if self._fd >= 0:
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

    def _spill(self) -> None:
        """Move the content to a temporary file on local disk."""
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
            os.close(fd)
            raise
        self._fd, self._memory = fd, None
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

    def stage(self, store: KeyValueStore, budget: MemoryBudget, directory: str | None, *, load: bool) -> StagedData:
        """Return the staged copy, making it first; with *load*, the old value is fetched into it."""
        if self.staged is None:
            staged = StagedData(budget, directory)
            try:
                if load and self.exists and self.key is not None and self.size > 0:
                    store.get_file(self.key, _StagedWriter(staged))
            except BaseException:
                staged.release()
                raise
            self.staged = staged
            self.size = staged.size
        return self.staged

    def touch(self) -> None:
        self.dirty = True
        self.mtime_ns = time.time_ns()

    def drop_staged(self) -> None:
        if self.staged is not None:
            self.staged.release()
            self.staged = None


class ReadAhead:
    """A per-handle buffer for reads from the store, growing on sequential access."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._data = b""
        self._start = 0
        self._next = -1  # where a sequential read would start
        self._window = 0

    def read(self, store: KeyValueStore, key: str, offset: int, size: int) -> bytes:
        with self.lock:
            start, data = self._start, self._data
            if start <= offset and offset + size <= start + len(data):
                self._next = offset + size
                return data[offset - start : offset - start + size]
            if offset == self._next or (start <= offset <= start + len(data) and data):
                self._window = min(max(2 * self._window, MIN_READ_AHEAD), MAX_READ_AHEAD)
            else:
                self._window = 0
            fetched = store.get_range(key, offset, max(size, self._window))
            self._data, self._start, self._next = fetched, offset, offset + size
            return fetched[:size]

    def clear(self) -> None:
        with self.lock:
            self._data, self._next, self._window = b"", -1, 0


class Handle:
    """One open file descriptor's state in the daemon."""

    __slots__ = ("file", "writable", "reader")

    def __init__(self, file: OpenFile, writable: bool) -> None:
        self.file = file
        self.writable = writable
        self.reader = ReadAhead()


__all__ = ["MemoryBudget", "StagedData", "OpenFile", "ReadAhead", "Handle", "MAX_READ_AHEAD"]
