"""The read cache: local copies of values the mount wrote or read whole, for remote stores.

A file written through the mount and closed, or a small file read whole, keeps a local
copy here, so reading it again (after the kernel dropped its pages, or in another
program) costs no download. A copy is only served while the store still describes the
value as it was (same size and modification time as when the copy was made), and the
mount drops it when it changes, deletes or renames the key. Small values are kept in
memory, larger ones (and small ones once the memory part is full) in unlinked
temporary files; the least recently used copies go first when a limit is reached.
"""

from __future__ import annotations

import os
import resource
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass

#: Values up to this size are kept in memory, larger ones in temporary files.
MEMORY_VALUE_LIMIT = 1024 * 1024
#: At most this much memory for the values kept in memory (or the whole limit if smaller);
#: beyond it small values go to temporary files too.
MEMORY_LIMIT = 64 * 1024 * 1024
#: At most this many temporary files (open descriptors), and at most a quarter of the
#: process's descriptor limit.
MAX_FILES = 4096


@dataclass(frozen=True)
class CachedValue:
    """A local copy of a value: *data* in memory, or the temporary file *fd* (-1 if in memory)."""

    size: int
    mtime: float
    data: bytes | None = None
    fd: int = -1


class ReadCache:
    """Local copies of values by key, bounded to *limit* bytes (0 keeps nothing). Thread-safe.

    The cache owns the descriptors it is given and closes them when a copy goes.
    """

    def __init__(self, limit: int, directory: str | None = None) -> None:
        self.limit = limit
        self._directory = directory
        self._memory_limit = min(limit, MEMORY_LIMIT)
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        self._max_files = MAX_FILES if soft == resource.RLIM_INFINITY else min(MAX_FILES, soft // 4)
        self._values: OrderedDict[str, CachedValue] = OrderedDict()
        self._in_memory = 0
        self._on_disk = 0
        self._files = 0
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.limit > 0

    def get(self, key: str, size: int, mtime: float | None) -> CachedValue | None:
        """The copy of *key* if it was made of a value of this *size* and *mtime*, else None.

        A file copy is returned with a new descriptor of its own, which the caller closes.
        """
        if mtime is None:
            return None
        with self._lock:
            value = self._values.get(key)
            if value is None:
                return None
            if value.size != size or value.mtime != mtime:
                self._remove(key)  # the value changed since: the copy is stale
                return None
            self._values.move_to_end(key)
            if value.fd < 0:
                return value
            return CachedValue(value.size, value.mtime, fd=os.dup(value.fd))

    def keep_bytes(self, key: str, data: bytes, mtime: float | None) -> None:
        """Keep *data* as the value of *key* with *mtime* (dropped if it cannot be kept)."""
        if mtime is None or len(data) > self.limit:
            self.drop(key)
            return
        if len(data) <= MEMORY_VALUE_LIMIT and self._in_memory + len(data) <= self._memory_limit:
            self._add(key, CachedValue(len(data), mtime, data=data))
            return
        try:
            fd, path = tempfile.mkstemp(prefix="kvfs-cached-", dir=self._directory)
        except OSError:
            self.drop(key)
            return
        os.unlink(path)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        except OSError:
            os.close(fd)
            self.drop(key)
            return
        self.keep_file(key, fd, len(data), mtime)

    def keep_file(self, key: str, fd: int, size: int, mtime: float | None) -> None:
        """Keep the temporary file *fd* (the cache owns it from now on) as the value of *key*."""
        if mtime is None or size > self.limit:
            os.close(fd)
            self.drop(key)
            return
        self._add(key, CachedValue(size, mtime, fd=fd))

    def drop(self, key: str) -> None:
        """Forget the copy of *key*, if any."""
        if key in self._values:
            with self._lock:
                self._remove(key)

    def drop_tree(self, directory: str) -> None:
        """Forget the copies of every key below *directory*."""
        below = directory + "/"
        with self._lock:
            for key in [key for key in self._values if key.startswith(below)]:
                self._remove(key)

    def move(self, source: str, target: str, mtime: float | None) -> None:
        """The value of *source* is now that of *target*, showing *mtime*."""
        with self._lock:
            self._remove(target)
            if mtime is None:
                self._remove(source)
                return
            value = self._values.pop(source, None)
            if value is not None:
                self._values[target] = CachedValue(value.size, mtime, value.data, value.fd)

    def usage(self) -> dict[str, int]:
        """How much the cache holds: copies in memory and on disk, and their bytes."""
        with self._lock:
            return {"in_memory_bytes": self._in_memory, "on_disk_bytes": self._on_disk, "files": self._files}

    def clear(self) -> None:
        with self._lock:
            for key in list(self._values):
                self._remove(key)

    # ------------------------------------------------------------------ bookkeeping

    def _add(self, key: str, value: CachedValue) -> None:
        with self._lock:
            self._remove(key)
            self._values[key] = value
            if value.fd < 0:
                self._in_memory += value.size
            else:
                self._on_disk += value.size
                self._files += 1
            # Least recently used first; never the copy just added.
            for old in list(self._values):
                if (
                    self._in_memory <= self._memory_limit
                    and self._on_disk <= self.limit
                    and self._files <= self._max_files
                ):
                    break
                if old != key:
                    self._remove(old)

    def _remove(self, key: str) -> None:
        value = self._values.pop(key, None)
        if value is None:
            return
        if value.fd < 0:
            self._in_memory -= value.size
        else:
            self._on_disk -= value.size
            self._files -= 1
            os.close(value.fd)


__all__ = ["ReadCache", "CachedValue", "MEMORY_VALUE_LIMIT"]
