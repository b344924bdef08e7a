"""Write-back writers: a file written in order goes to the journal, and its upload starts at once.

On a write-back mount of a store that streams writes (S3, GCS) a file written in order
past the stream threshold (see :mod:`kvfs.mount.streaming`) is written through a
:class:`JournaledWriter`: its bytes go to a staging file of the journal, which the
journal adopts at the close (durable, as any other put: nothing is lost after the close
returns). Meanwhile an :class:`EarlyUpload` reads the file as it grows and feeds the
store's own writer (parts of a multipart upload), in a thread of its own: the program's
writes never wait for the store. The object appears only when the queue sends the
change, in its turn among the key's changes: then the upload is completed
(``CompleteMultipartUpload``) instead of sending the whole content again. If the early
upload failed, or the change is sent by a later mount (a crash), the content is
uploaded from the journal as any other.

At most :data:`EARLY_UPLOADS` run at once (each holds its writer's part buffers, beyond
the mount's memory budget once the file is closed); other files are journaled the same
way and uploaded after their close.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import TYPE_CHECKING

from ..store import KeyValueStore
from ..writer import ValueWriter

if TYPE_CHECKING:
    from .writeback import WriteBack

log = logging.getLogger("kvfs.mount.writeback")

#: Early uploads running at once per mount.
EARLY_UPLOADS = 2
#: Bytes read from the file and handed to the store's writer at a time.
_FEED = 1024 * 1024


class EarlyUpload:
    """The upload of a value written to the file *fd* (owned), begun before it is complete.

    A thread feeds *store*'s writer of *key* with what :meth:`grow` announces, from *fd*;
    :meth:`finish` stores it once :meth:`end` gave its size; :meth:`abort` stores
    nothing. *done* is called once, when it finished or was aborted.
    """

    def __init__(self, store: KeyValueStore, key: str, fd: int, done: threading.Semaphore | None = None) -> None:
        self._writer = store.open_writer(key)
        self._fd = fd
        self._done = done
        self._lock = threading.Condition()
        self._available = 0  # bytes of the file written so far
        self._end: int | None = None  # the value's size, once known
        self._stopping = False
        self._failure: BaseException | None = None
        self._finished = False
        self._thread = threading.Thread(target=self._feed, name=f"kvfs-early-{key[-40:]}", daemon=True)
        self._thread.start()

    def grow(self, size: int) -> None:
        """The file holds *size* bytes now."""
        with self._lock:
            self._available = size
            self._lock.notify()

    def end(self, size: int) -> None:
        """The value is the file's first *size* bytes: nothing more will be written."""
        with self._lock:
            self._available = self._end = size
            self._lock.notify()

    def _feed(self) -> None:
        buffer = bytearray(_FEED)
        try:
            with memoryview(buffer) as view:
                while True:
                    with self._lock:
                        fed = self._writer.written
                        while not self._stopping and self._end is None and self._available - fed < _FEED:
                            self._lock.wait()
                        if self._stopping or self._end == fed:
                            return
                        wanted = min(_FEED, self._available - fed)
                    count = os.preadv(self._fd, [view[:wanted]], fed)
                    if count <= 0:
                        raise OSError(f"the staging file ended at {fed} bytes, {wanted} more expected")
                    self._writer.write(view[:count])  # waits while the writer's parts are all in flight
        except BaseException as error:  # the writer aborted itself; the journal has the content
            self._failure = error

    def finish(self) -> None:
        """Wait until everything is fed, then store it (the writer's close).

        Raises what feeding or storing raised (nothing is stored then); call after :meth:`end`.
        """
        try:
            self._thread.join()
            if self._failure is not None:
                raise self._failure
            if self._writer.written != self._end:
                raise ValueError(f"the early upload fed {self._writer.written} of {self._end} bytes")
            self._writer.close()
        finally:
            self._release(abort=True)

    def abort(self) -> None:
        """Store nothing (the upload's parts are discarded); waits for the part being fed."""
        with self._lock:
            self._stopping = True
            self._lock.notify()
        self._thread.join()
        self._release(abort=True)

    def _release(self, *, abort: bool) -> None:
        with self._lock:
            if self._finished:
                return
            self._finished = True
        if abort:
            self._writer.abort()  # nothing after a close
        os.close(self._fd)
        if self._done is not None:
            self._done.release()


class JournaledWriter(ValueWriter):
    """A value of *key* written to a staging file of *queue*'s journal and recorded at the close.

    With *early* slots free (a semaphore), an :class:`EarlyUpload` to *store* runs while it
    is written (see the module). Holds no memory of its own (``memory`` counts the early
    upload's writer, if any). Raises what writing the file or recording the change raises.
    """

    def __init__(self, key: str, queue: WriteBack, store: KeyValueStore, early: threading.Semaphore | None) -> None:
        super().__init__(key)
        self._queue = queue
        self._file = queue.journal.new_staging_file()
        self._early: EarlyUpload | None = None
        if early is not None and early.acquire(blocking=False):
            fd = -1
            try:
                fd = os.dup(self._file.fileno())
                self._early = EarlyUpload(store, key, fd, early)
            except Exception as error:  # the content goes after the close, from the journal
                log.debug("%s: no early upload: %s", key, error)
                if fd >= 0:
                    os.close(fd)
                early.release()
            else:
                self.memory = self._early._writer.memory

    def _write(self, data: memoryview) -> None:
        offset, fd = self.written, self._file.fileno()
        view = data
        while view:
            count = os.pwrite(fd, view, offset)
            view, offset = view[count:], offset + count
        if self._early is not None:
            self._early.grow(offset)

    def _commit(self) -> None:
        early, self._early = self._early, None
        if early is not None:
            early.end(self.written)
        try:
            self._queue.put(self.key, self._file, mtime=time.time(), early=early)  # adopts the file
        except BaseException:
            if early is not None:
                early.abort()
            raise
        self._file.close()

    def _abort(self) -> None:
        if self._early is not None:
            self._early.abort()
            self._early = None
        self._file.close()


__all__ = ["EarlyUpload", "JournaledWriter", "EARLY_UPLOADS"]
