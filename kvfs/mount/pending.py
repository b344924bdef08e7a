"""The store a write-back mount serves: the real store with its pending changes laid over it.

:class:`PendingStore` wraps the mount's store and its :class:`~kvfs.mount.writeback.WriteBack`
queue. Every write (put, delete, copy, move, directory markers) is recorded in the
journal and queued, and returns once it is on local disk; every read (values, ranges,
stat, listings) sees those changes at once, from the journal or from the key they were
copied or moved from, until the store has them. The mount itself is unchanged: it
talks to this store as to any other.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator
from typing import IO, Any, TypeVar

from ..decorator import StoreDecorator
from ..errors import KeyNotFoundError
from ..mixins import TTL
from ..store import DIRECTORY_MARKER_SUFFIX, SEPARATOR, KeyInfo, KeyValueStore
from .writeback import Content, WriteBack

_T = TypeVar("_T")

#: Attempts of a read whose pending change completed under it (the journal's copy went).
_ATTEMPTS = 5


class PendingStore(StoreDecorator):
    """*store* as a write-back mount shows it: see the module's documentation.

    Keeps no modes (``keeps_metadata`` is False). Offers staging files where the
    journal's file system makes nameless files (``supports_staging``): they are made in
    the journal's directory, and a commit records the file itself as the put's content,
    without a copy (see :meth:`~kvfs.mount.journal.Journal.new_staging_file`). ``sync``
    waits for the key's pending changes and raises
    :class:`~kvfs.mount.writeback.WriteBackError` (an ``OSError``) as soon as one failed.
    """

    keeps_metadata = False  # type: ignore[assignment]

    def __init__(self, store: KeyValueStore, queue: WriteBack) -> None:
        super().__init__(store)
        self.queue = queue

    @property
    def supports_staging(self) -> bool:  # type: ignore[override]
        """Whether the journal makes staging files (``O_TMPFILE`` in its directory)."""
        return self.queue.journal.stages

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._dstore!r})"

    def _travelling_arguments(self, arguments: dict[str, Any]) -> dict[str, Any]:
        raise TypeError("a write-back mount's store lives in the mount's process (its queue and journal)")

    def close(self) -> None:
        """Stop the upload workers (what is pending stays in the journal), then close the store."""
        try:
            self.queue.close()
        finally:
            super().close()

    # ------------------------------------------------------------------ reading

    def _read(self, key: str, journal: Callable[[Content], _T], store: Callable[[str], _T]) -> _T:
        """*journal* for a key with pending content, *store* (with the key holding it) otherwise.

        A change may be stored while it is read: its journal copy goes, a moved value
        leaves its old key. Then the queue is asked again where the value is now: *key*
        itself in the store may not hold it yet (a copy onto it, queued behind the put
        of its source that just finished).
        """
        for attempt in range(_ATTEMPTS):
            content = self.queue.resolve(key)
            if content is None:
                return store(key)
            if content.missing:
                raise KeyNotFoundError(key)
            try:
                if content.change is not None:
                    return journal(content)
                return store(content.store_key or key)
            except (FileNotFoundError, KeyError):
                time.sleep(0.01 * attempt)  # the queue is finishing that change
        return store(key)  # the queue kept changing it: what the store holds now

    def _get(self, key: str) -> bytes:
        return self._read(key, lambda c: self.queue.read(c.change, 0, c.change.size), self._dstore.get)  # type: ignore[arg-type,union-attr]

    def _get_range(self, key: str, start: int, length: int) -> bytes:
        return self._read(
            key,
            lambda c: self.queue.read(c.change, start, length),  # type: ignore[arg-type]
            lambda name: self._dstore.get_range(name, start, length),
        )

    def _open(self, key: str) -> IO[bytes]:
        return self._read(key, lambda c: io.BytesIO(self._get(key)), self._dstore.open)

    def _get_file(self, key: str, file: IO[bytes]) -> None:
        with self._open(key) as source:
            while chunk := source.read(1024 * 1024):
                file.write(chunk)

    def _get_filename(self, key: str, filename: str) -> None:
        KeyValueStore._get_filename(self, key, filename)

    def _has_key(self, key: str) -> bool:
        try:
            return self._read(key, lambda c: True, lambda name: name in self._dstore)
        except KeyError:
            return False

    def _stat(self, key: str) -> KeyInfo:
        def stored(name: str) -> KeyInfo:
            info = self._dstore.stat(name)
            return info if name == key else KeyInfo(key, info.size, info.last_modified)

        return self._read(key, lambda c: KeyInfo(key, c.change.size, c.change.mtime), stored)  # type: ignore[union-attr]

    def _describe(self, key: str) -> KeyInfo | None:
        if self.queue.resolve(key) is None and not self.queue.pending_under(key + SEPARATOR):
            return self._dstore.describe(key)  # nothing pending here: the store's one request says all
        if self._has_directory(key):
            return KeyInfo(key + SEPARATOR, is_prefix=True)
        if self.queue.resolve(key) is None:
            found = self._dstore.describe(key)
            return None if found is not None and found.is_prefix else found
        try:
            return self._stat(key)
        except KeyError:
            return None

    def _has_directory(self, key: str) -> bool:
        content = self.queue.resolve(key)
        if content is not None and content.directory:
            return True  # made here, not stored yet
        below = self.queue.pending_under(key + SEPARATOR)
        if any(_exists(state) for state in below.values()):
            return True  # something new below it
        marker_removed = content is not None and content.directory is False
        if not below and not marker_removed:
            return self._dstore.has_directory(key)
        # Its marker or what is pending below it goes away: is anything else stored there?
        stored = [name for name in self._dstore.iter_keys(key + SEPARATOR)]
        if any(name not in below for name in stored):
            return True
        return not marker_removed and not stored and self._dstore.has_directory(key)

    def _iter_keys(self, prefix: str) -> Iterator[str]:
        pending = self.queue.pending_under(prefix)
        for name in self._dstore.iter_keys(prefix):
            if name not in pending:
                yield name
        for name, content in pending.items():
            if content.directory is None and not content.missing:
                yield name

    def _iter_level(self, prefix: str, delimiter: str) -> Iterator[KeyInfo]:
        pending = self.queue.pending_under(prefix)
        if not pending:
            yield from self._dstore.iter_level(prefix, delimiter)
            return
        entries = {info.key: info for info in self._dstore.iter_level(prefix, delimiter)}
        for key, content in sorted(pending.items()):
            rest = key[len(prefix) :]
            cut = rest.find(delimiter)
            if cut >= 0:  # deeper down: its directory exists
                if _exists(content):
                    below = prefix + rest[: cut + len(delimiter)]
                    entries.setdefault(below, KeyInfo(below, is_prefix=True))
            elif content.directory is not None:
                if content.directory:
                    entries.setdefault(key + delimiter, KeyInfo(key + delimiter, is_prefix=True))
                elif not self._has_directory(key):
                    entries.pop(key + delimiter, None)
            elif content.missing:
                entries.pop(key, None)
            else:
                try:
                    entries[key] = self._stat(key)
                except KeyError:
                    entries.pop(key, None)
        yield from (entries[name] for name in sorted(entries))

    # ------------------------------------------------------------------ writing (queued)

    def _put(self, key: str, data: bytes, ttl_secs: TTL = None) -> str:
        self.queue.put(key, data, mtime=time.time())
        return key

    def _put_file(self, key: str, file: IO[bytes], ttl_secs: TTL = None) -> str:
        self.queue.put(key, file, mtime=time.time())
        return key

    def _put_filename(self, key: str, filename: str, ttl_secs: TTL = None) -> str:
        with open(filename, "rb") as file:
            return self._put_file(key, file)

    def _new_staging_file(self, key: str) -> IO[bytes]:
        return self.queue.journal.new_staging_file()

    def _commit_staging_file(self, key: str, file: IO[bytes]) -> str:
        if not self.queue.journal.owns(file):
            raise ValueError("not an open staging file of this store")
        self.queue.put(key, file, mtime=time.time())  # the journal adopts the file
        file.close()
        return key

    def _delete(self, key: str) -> None:
        self.queue.delete(key)

    def _delete_many(self, keys: list[str]) -> None:
        for key in keys:
            self.queue.delete(key)

    def _copy(self, source: str, dest: str) -> str:
        if not self._has_key(source):
            raise KeyNotFoundError(source)
        self.queue.copy(source, dest)
        return dest

    def _move(self, source: str, dest: str) -> str:
        if not self._has_key(source):
            raise KeyNotFoundError(source)
        self.queue.move(source, dest)
        return dest

    def _move_directory(self, source: str, dest: str) -> str:
        below = source + SEPARATOR
        names = [name for name in self._iter_keys(below) if not name.endswith(DIRECTORY_MARKER_SUFFIX)]
        if not names and not self._has_directory(source):
            raise KeyNotFoundError(source)
        # Listed just now, pending changes included: no request to check each.
        self.queue.move_many([(name, dest + SEPARATOR + name[len(below) :]) for name in names])
        if self.supports_directories:
            self._move_markers(source, dest)
        return dest

    def _put_directory(self, key: str) -> None:
        self.queue.put_directory(key)

    def _delete_directory(self, key: str) -> None:
        self.queue.delete_directory(key)

    def _sync(self, key: str) -> None:
        self.queue.wait(key)
        self._dstore.sync(key)

    def _set_metadata(self, key: str, **fields: Any) -> None:
        raise NotImplementedError("a write-back mount keeps no modes in the store")

    def _describe_root(self) -> KeyInfo | None:
        return None


def _exists(state: Content) -> bool:
    """Whether a pending change leaves something at its key (a value or a new directory)."""
    return bool(state.directory) if state.directory is not None else not state.missing


__all__ = ["PendingStore"]
