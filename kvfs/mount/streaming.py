"""Streamed writes: a file written in order goes to the store while it is written.

A file whose content starts empty (a new file, ``O_TRUNC``) and is written at
increasing offsets is staged as any other (:class:`~kvfs.mount.handles.StagedData`)
until it reaches :data:`STREAM_THRESHOLD` bytes. On a store with ``streams_writes`` (S3,
GCS) the mount then opens a :class:`~kvfs.writer.ValueWriter`, hands it what was staged, and
from then on every write goes straight to it (:class:`StreamedData`): the writer sends
parts in the background, holding at most ``writer.memory`` bytes (taken from the
mount's memory budget, ``--cache-size``), so the file never is on local disk and its
close waits only for the last part.

What was sent is no longer here. A write before the end, a truncate that shortens, a
read of the content, a flush or an ``fsync`` (anything that needs what was sent, or
needs the store to have it) first completes the upload: the store then holds what was
written so far, as after an ``fsync``, and the file carries on as any stored file does
(the next write stages a copy, fetched from the store). A write past the end fills
the gap with zeros and keeps streaming.
"""

from __future__ import annotations

from ..store import Metadata
from ..writer import ValueWriter
from .handles import MemoryBudget

#: A sequential file is streamed once it grows past this size (the staged copy would
#: leave memory for a temporary file here: handles.MEMORY_FILE_LIMIT).
STREAM_THRESHOLD = 8 * 1024 * 1024
#: Zeros written at once to fill a gap.
_ZEROS = bytes(1024 * 1024)


class StreamedData:
    """A file's content going to the store through *writer*: only its size is known here.

    *reserved* bytes of *budget* are held for the writer's buffers until :meth:`commit`
    or :meth:`abort`. Not thread-safe on its own: the owning open file's lock serialises it.
    """

    def __init__(
        self, writer: ValueWriter, budget: MemoryBudget, reserved: int, metadata: Metadata | None = None
    ) -> None:
        self.writer = writer
        #: What the upload carries, fixed when it began (S3 sends it in its first request).
        self.metadata = metadata
        self._budget = budget
        self._reserved = reserved

    @property
    def size(self) -> int:
        return self.writer.written

    def write(self, offset: int, data: bytes | memoryview) -> bool:
        """Write *data* at *offset*; False (nothing written) when *offset* is before the end.

        A gap past the end is filled with zeros. Raises what the writer raises (it is
        aborted then).
        """
        if offset < self.size:
            return False
        self._fill(offset)
        self.writer.write(data)
        return True

    def extend(self, length: int) -> bool:
        """Grow the content to *length* bytes with zeros; False when that would shorten it."""
        if length < self.size:
            return False
        self._fill(length)
        return True

    def commit(self) -> None:
        """Store what was written (the writer's close); raises what it raises, having aborted."""
        try:
            self.writer.close()
        finally:
            self._release()

    def abort(self) -> None:
        """Store nothing (the writer's abort)."""
        try:
            self.writer.abort()
        finally:
            self._release()

    def _fill(self, end: int) -> None:
        while self.size < end:
            self.writer.write(_ZEROS[: end - self.size])

    def _release(self) -> None:
        if self._reserved:
            self._budget.give_back(self._reserved)
            self._reserved = 0


__all__ = ["StreamedData", "STREAM_THRESHOLD"]
