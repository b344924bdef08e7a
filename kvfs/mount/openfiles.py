"""The mount's open files: handles, staged copies and their uploads.

Every handle on a name shares one :class:`~kvfs.mount.handles.OpenFile` (see
:mod:`kvfs.mount.handles` for staging and read-ahead). :class:`OpenFiles` keeps them by
key and the handles by number, and binds the store, the memory budget of staged copies
and the directory of staging files once, for every staging and upload.
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import threading
import time
from dataclasses import dataclass
from collections.abc import Callable
from typing import Any

from ..store import KeyValueStore, Metadata
from .binding import DIRECT_WRITES
from .failures import FuseOSError, errno_for
from .handles import CHUNK, Handle, LocalValues, MemoryBudget, OpenFile, StagedData
from .paths import parent_key
from .readcache import CachedValue
from .streaming import STREAM_THRESHOLD, StreamedData

log = logging.getLogger("kvfs.mount")


@dataclass(frozen=True)
class Upload:
    """A staged copy that reached the store under *key*: *size* bytes, begun at *started*.

    *committed*: the staged file became the stored value (see :meth:`StagedData.upload`),
    or the content was streamed (*staged* is None), else *staged* is still a copy of it.
    *carried*: the metadata a streamed upload was begun with.
    """

    key: str
    staged: StagedData | None
    size: int
    started: float
    committed: bool
    carried: Metadata | None = None


class OpenFiles:
    """Open files by key and handles by number, for *store* (thread-safe table).

    Staged copies hold at most *budget* bytes in memory together; larger ones go to
    temporary files in *cache_dir* (None: the system's temporary directory). Files
    written in order past :attr:`stream_threshold` bytes go to a store with
    ``streams_writes`` while they are written (see :mod:`kvfs.mount.streaming`), their
    writers' buffers taken from the same budget.
    """

    def __init__(self, store: KeyValueStore, budget: MemoryBudget, cache_dir: str | None) -> None:
        self.store = store
        self.budget = budget
        self.cache_dir = cache_dir
        self._local_values = LocalValues()
        self._files: dict[str, OpenFile] = {}
        self._handles: dict[int, Handle] = {}
        self._lock = threading.Lock()  # guards both tables
        self._numbers = itertools.count(1)
        #: Size from which a file written in order is streamed.
        self.stream_threshold = STREAM_THRESHOLD

    # ------------------------------------------------------------------ lookup

    def get(self, key: str) -> OpenFile | None:
        return self._files.get(key)

    def usage(self) -> dict[str, int]:
        """Open files and handles, files with unsaved changes, staged bytes in memory."""
        with self._lock:
            files = list(self._files.values())
            handles = len(self._handles)
        return {
            "open_files": len(files),
            "open_handles": handles,
            "unsaved_files": sum(1 for file in files if file.dirty),
            "streamed_files": sum(1 for file in files if file.streamed is not None),
            "staged_memory_bytes": self.budget.used,
            "staged_memory_limit": self.budget.limit,
        }

    def __contains__(self, key: str) -> bool:
        return key in self._files

    def handle(self, number: int) -> Handle:
        """The handle *number* (``KeyError`` if it is not open)."""
        return self._handles[number]

    def handle_key(self, number: Any) -> str | None:
        """The key of handle *number*'s file, None if unknown (for messages)."""
        handle = self._handles.get(number)
        return None if handle is None else handle.file.key

    def streamed_below(self, directory: str) -> list[OpenFile]:
        """The open files below *directory* (at any depth) whose content is being streamed."""
        below = directory + "/"
        with self._lock:
            return [file for key, file in self._files.items() if key.startswith(below) and file.streamed is not None]

    def below(self, directory: str) -> list[tuple[str, int]]:
        """(key, size) of the files open directly in *directory* (not yet stored ones too)."""
        with self._lock:
            return [
                (key, file.size)
                for key, file in self._files.items()
                if not file.detached and parent_key(key) == directory
            ]

    # ------------------------------------------------------------------ handles

    def acquire(self, key: str, size: int, *, exists: bool) -> OpenFile:
        """The open file of *key* (made if none) with one more handle counted."""
        with self._lock:
            file = self._files.get(key)
            if file is None:
                file = self._files[key] = OpenFile(key, size, exists=exists)
            file.handles += 1
            return file

    def new_handle(self, file: OpenFile, writable: bool, fi: Any) -> Handle:
        """A handle on *file* (acquired), numbered into ``fi.fh``."""
        number = next(self._numbers)
        handle = self._handles[number] = Handle(file, writable, self._local_values, bool(fi.flags & os.O_APPEND))
        if DIRECT_WRITES and fi.flags & os.O_ACCMODE == os.O_WRONLY:
            # Nothing reads through this handle: the kernel need not keep a copy of what
            # it writes (other handles' pages of the range are dropped, see binding.py).
            fi.direct_io = 1
        fi.fh = number
        return handle

    def close_handle(self, number: int) -> OpenFile:
        """Forget handle *number*; return its file (whose count :meth:`let_go` lowers)."""
        handle = self._handles.pop(number)
        handle.reader.clear()
        return handle.file

    def let_go(self, file: OpenFile) -> bool:
        """One handle of *file* less: True when it was the last (the file leaves the table)."""
        with self._lock:
            file.handles -= 1
            if file.handles > 0:
                return False
            if file.key is not None and self._files.get(file.key) is file:
                del self._files[file.key]
            return True

    # ------------------------------------------------------------------ names

    def take(self, key: str) -> OpenFile | None:
        """Remove and return the open file of *key*, if any."""
        with self._lock:
            return self._files.pop(key, None)

    def put(self, key: str, file: OpenFile) -> None:
        with self._lock:
            self._files[key] = file

    def move_tree(self, source: str, target: str) -> None:
        """The directory *source* is now *target*: so are the files open below it."""
        below = source + "/"
        with self._lock:
            for key in [k for k in self._files if k.startswith(below)]:
                file = self._files.pop(key)
                file.key = target + key[len(source) :]
                self._files[file.key] = file

    def detach(self, file: OpenFile, hidden_key: str | None = None) -> None:
        """*file* lost its name: its handles keep the data, nothing is uploaded any more."""
        with file.lock:
            if file.streamed is not None:
                # What was sent is not here, and a file without a name is never stored:
                # its handles get EIO rather than a content with holes.
                self.poison(file, OSError(errno.EIO, "a streamed file was removed while open"))
            if file.staged is None and file.exists and file.key is not None:
                self.stage(file, load=True)
            file.key = hidden_key
            file.detached = True
            file.dirty = False
            file.exists = False
        if hidden_key is not None:
            self.put(hidden_key, file)

    # ------------------------------------------------------------------ content

    def stage(self, file: OpenFile, *, load: bool, local_copy: CachedValue | None = None) -> StagedData:
        """*file*'s staged copy (see :meth:`OpenFile.stage`); the caller holds ``file.lock``."""
        return file.stage(self.store, self.budget, self.cache_dir, load=load, local_copy=local_copy)

    def start_anew(self, file: OpenFile) -> None:
        """Empty *file*'s content (``O_TRUNC``, a new file); the caller holds ``file.lock``."""
        if file.streamed is not None:  # what was streamed is dropped: never stored
            file.streamed.abort()
            file.streamed = None
        self.stage(file, load=False).truncate(0)
        file.size = 0
        file.failure = None  # the content starts anew
        file.sequential = True
        file.touch()

    def stream(
        self,
        file: OpenFile,
        offset: int,
        length: int,
        metadata: Callable[[OpenFile], Metadata | None] | None = None,
    ) -> StreamedData | None:
        """*file*'s streamed content, begun now if a write of *length* bytes at *offset* qualifies it.

        None: the write goes to the staged copy. A file qualifies while every write came
        at the end of its content, once it would grow past :attr:`stream_threshold`, on a
        store with ``streams_writes``, when the budget has room for the writer's buffers;
        what was staged goes to the writer first, and *metadata(file)* with the value.
        The caller holds ``file.lock``.
        """
        if file.streamed is not None:
            return file.streamed
        staged = file.staged
        if not file.sequential or staged is None:
            return None
        if offset != staged.size:
            file.sequential = False  # written out of order: staged to the end
            return None
        if offset + length <= self.stream_threshold or file.detached or file.key is None:
            return None
        if not self.store.streams_writes:
            file.sequential = False
            return None
        file.sequential = False  # unless streaming begins below
        carried = metadata(file) if metadata else None
        writer = self.store.open_writer(file.key, metadata=carried)
        if not self.budget.take(writer.memory):
            writer.abort()  # nothing was sent yet
            return None
        streamed = StreamedData(writer, self.budget, writer.memory, carried)
        try:
            buffer = bytearray(CHUNK)
            with memoryview(buffer) as view:
                while writer.written < staged.size:
                    count = staged.read_into(writer.written, view)
                    writer.write(view[:count])
        except Exception as error:
            # The staged copy is whole: the file goes on staged, uploaded at its close.
            streamed.abort()
            log.debug("%s not streamed: %s", file.key, error)
            return None
        file.sequential = True
        file.drop_staged()
        file.streamed = streamed
        return streamed

    @staticmethod
    def poison(file: OpenFile, error: BaseException) -> None:
        """A write or truncate of *file* failed: its staged copy is never uploaded (see OpenFile.failure).

        A streamed content is aborted: nothing of it is stored.
        """
        code = errno_for(error)
        file.failure = errno.EIO if code is None else code
        if file.streamed is not None:
            file.streamed.abort()
            file.streamed = None

    def upload(self, file: OpenFile, metadata: Metadata | None = None) -> Upload | None:
        """Store a dirty file's staged copy (None: nothing to store); the caller holds ``file.lock``.

        *metadata* goes with the upload (see :meth:`KeyValueStore.put`).

        Raises what the store raises, keeping the copy. A file whose write failed
        (``failure``) is not uploaded: :class:`FuseOSError` with its errno.
        """
        if file.failure is not None and not file.detached:
            raise FuseOSError(file.failure)
        if file.streamed is not None and file.key is not None and not file.detached:
            return self._complete_stream(file, file.key, file.streamed)
        key, staged = file.key, file.staged
        if not file.dirty or key is None or staged is None or file.detached:
            return None
        started = time.time()
        committed = staged.upload(self.store, key, metadata)
        file.placeholder = file.placeholder and staged.size == 0
        if committed:  # the staged file is the stored value now: the next write stages anew
            file.committed()
        file.dirty = False
        file.exists = True
        return Upload(key, staged, staged.size, started, committed)

    def _complete_stream(self, file: OpenFile, key: str, streamed: StreamedData) -> Upload:
        """Store what was streamed; a failure poisons *file* (what was sent is lost)."""
        started = time.time()
        file.streamed = None
        file.sequential = False  # the next write stages a copy of the stored value
        try:
            streamed.commit()
        except Exception as error:
            self.poison(file, error)
            raise
        file.placeholder = False
        file.committed()
        file.dirty = False
        file.exists = True
        return Upload(key, None, streamed.size, started, True, streamed.metadata)


__all__ = ["OpenFiles", "Upload"]
