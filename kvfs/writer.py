"""Writers: a new value of one key, written in order and stored when closed.

:meth:`kvfs.store.KeyValueStore.open_writer` returns a :class:`ValueWriter`. Every store
has one: the core's default (:class:`StagedValueWriter`) collects the value in a local
file (the store's own staging file where it has one) and stores it with one
``put_file`` at :meth:`~ValueWriter.close`. A store that can send a value while it is
written (S3's multipart upload) gives its own writer and sets ``streams_writes``: the
value then never has to be whole on local disk, and ``close`` waits only for its end.
"""

from __future__ import annotations

import tempfile
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .store import KeyValueStore, Metadata

#: The default writer keeps a value in memory up to this size, then in a temporary file.
SPOOL_SIZE = 1024 * 1024


class ValueWriter:
    """The new value of :attr:`key`, written from its start: nothing is stored before :meth:`close`.

    :meth:`write` appends bytes; :meth:`close` stores everything written as the key's
    value, atomically (a reader sees the old value or the whole new one, never a part);
    :meth:`abort` discards it. Used as a context manager, the writer is closed when the
    block ends normally and aborted when it raises. A writer that is dropped without
    :meth:`close` stores nothing.

    A failure raises what the store raises (:class:`~kvfs.errors.BackendError`, an
    ``OSError``) from :meth:`write` or :meth:`close` (a streaming writer reports the
    failure of a part sent in the background at the next call) and aborts the writer:
    nothing is stored. One writer is used by one thread at a time.

    Backends subclass it and fill the hooks :meth:`_write`, :meth:`_commit` and
    :meth:`_abort`; this class keeps the state (open, closed, aborted) and the count.
    """

    #: Most bytes the writer holds in memory at once (its part buffers), for the caller's
    #: budget; 0 where it buffers on local disk.
    memory: int = 0

    def __init__(self, key: str) -> None:
        #: The key the value is stored under (as the caller named it).
        self.key = key
        #: Bytes written so far.
        self.written = 0
        self._state = "open"  # -> "closed" (stored) or "aborted" (discarded)

    @property
    def closed(self) -> bool:
        """True once the value was stored or discarded."""
        return self._state != "open"

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Append *data* (any bytes-like object; copied before returning); return its length.

        Raises ``ValueError`` once the writer is closed or aborted, ``TypeError`` for
        data that is not bytes-like, and what the store raises (then the writer is aborted).
        """
        if self._state != "open":
            raise ValueError(f"cannot write: the writer of {self.key!r} is {self._state}")
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"a writer takes bytes-like data, not {type(data).__name__}")
        with memoryview(data) as view, view.cast("B") as octets:
            if not octets:
                return 0
            try:
                self._write(octets)
            except BaseException:
                self.abort()
                raise
            self.written += len(octets)
            return len(octets)

    def close(self) -> None:
        """Store what was written as the value of :attr:`key`; nothing more can be written.

        Closing a closed writer does nothing; closing an aborted one raises
        ``ValueError``. On failure the writer is aborted, nothing is stored (the old
        value stays), and what the store raised is raised.
        """
        if self._state == "closed":
            return
        if self._state == "aborted":
            raise ValueError(f"the writer of {self.key!r} was aborted: nothing to store")
        try:
            self._commit()
        except BaseException:
            self.abort()
            raise
        self._state = "closed"

    def abort(self) -> None:
        """Discard what was written; the stored value (if any) stays as it was.

        Does nothing on a closed or aborted writer. Never raises for the store's
        failures: what cannot be cleaned up at once (an S3 multipart upload while the
        server is away) is left for the server to expire.
        """
        if self._state != "open":
            return
        self._state = "aborted"
        self._abort()

    def __enter__(self) -> ValueWriter:
        return self

    def __exit__(self, kind: object, error: object, traceback: object) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.key!r} {self._state}, {self.written} bytes>"

    # ------------------------------------------------------------------ hooks

    def _write(self, data: memoryview) -> None:
        """Append *data* (not empty; valid during the call only)."""
        raise NotImplementedError

    def _commit(self) -> None:
        """Store everything written, atomically; release what the writer holds."""
        raise NotImplementedError

    def _abort(self) -> None:
        """Release what the writer holds, storing nothing; never raise for the store's failures."""
        raise NotImplementedError


class StagedValueWriter(ValueWriter):
    """The core's writer: the value goes to a local file, and to the store at :meth:`close`.

    On a store with ``supports_staging`` the file is the store's staging file and the
    close commits it (a rename, no copy); elsewhere it is a temporary file (in memory up
    to :data:`SPOOL_SIZE`) stored with one ``put_file``.
    """

    def __init__(self, store: KeyValueStore, key: str, metadata: Metadata | None = None) -> None:
        super().__init__(key)
        self._store = store
        self._metadata = metadata  # stored with the value at the close, as put stores it
        self._target = key  # the store's own key (``key`` is the caller's, a decorator's view)
        self._staged = store.supports_staging
        self._file: IO[bytes] | Any
        if self._staged:
            self._file = store._new_staging_file(key)
        else:
            self._file = tempfile.SpooledTemporaryFile(max_size=SPOOL_SIZE, prefix="kvfs-writer-")  # noqa: SIM115

    def _write(self, data: memoryview) -> None:
        self._file.write(data)

    def _commit(self) -> None:
        if self._staged:
            self._store_with(self._store._commit_staging_file)  # closes the file
            return
        self._file.seek(0)
        self._store_with(self._store._put_file)
        self._file.close()

    def _store_with(self, hook: Any) -> None:
        if self._metadata is None:
            hook(self._target, self._file)
        else:
            self._store._write_with_metadata(hook, self._target, self._file, self._metadata)

    def _abort(self) -> None:
        self._file.close()


__all__ = ["ValueWriter", "StagedValueWriter", "SPOOL_SIZE"]
