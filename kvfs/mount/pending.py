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
from dataclasses import replace
from typing import IO, Any, TypeVar

from ..decorator import StoreDecorator
from ..errors import KeyNotFoundError
from ..mixins import TTL
from ..store import DIRECTORY_MARKER_SUFFIX, SEPARATOR, KeyInfo, KeyValueStore, Metadata
from .writeback import Content, WriteBack

_T = TypeVar("_T")

#: Attempts of a read whose pending change completed under it (the journal's copy went).
_ATTEMPTS = 5


class PendingStore(StoreDecorator):
    """*store* as a write-back mount shows it: see the module's documentation.

    Keeps modes, owners and times where *store* does (``keeps_metadata``): the journal
    carries a put's metadata to its upload (``metadata_with_writes``) and queues
    ``set_metadata`` like any change. Offers staging files where the journal's file
    system makes nameless files (``supports_staging``): they are made in the journal's
    directory, and a commit records the file itself as the put's content, without a copy
    (see :meth:`~kvfs.mount.journal.Journal.new_staging_file`). ``sync`` waits for the
    key's pending changes and raises :class:`~kvfs.mount.writeback.WriteBackError` (an
    ``OSError``) as soon as one failed.
    """

    @property
    def metadata_with_writes(self) -> bool:  # type: ignore[override]
        return bool(self._dstore.keeps_metadata)  # in the journal, with the put, whatever the store does

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
        overlay: dict[str, Any] = {}

        def pending(content: Content) -> KeyInfo:
            overlay.update(content.fields)
            return KeyInfo(key, content.change.size, content.change.mtime)  # type: ignore[union-attr]

        def stored(name: str) -> KeyInfo:
            content = self.queue.resolve(key)
            if content is not None:
                overlay.update(content.fields)  # a set_metadata not stored yet
            info = self._dstore.stat(name)
            return info if name == key else replace(info, key=key)

        return _with_metadata(self._read(key, pending, stored), overlay)

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

    def _put(self, key: str, data: bytes, ttl_secs: TTL = None, metadata: Metadata | None = None) -> str:
        self._queue_put(key, data, metadata)
        return key

    def _put_file(self, key: str, file: IO[bytes], ttl_secs: TTL = None, metadata: Metadata | None = None) -> str:
        self._queue_put(key, file, metadata)
        return key

    def _queue_put(self, key: str, content: IO[bytes] | bytes, metadata: Metadata | None) -> None:
        fields = {} if metadata is None else metadata.fields()
        mtime = fields.get("mtime", time.time())
        if self.keeps_metadata:
            # The time shown while pending is the one stored: the upload, later, carries it.
            fields["mtime"] = mtime
        self.queue.put(key, content, mtime=mtime, metadata=fields)

    def _put_filename(self, key: str, filename: str, ttl_secs: TTL = None, metadata: Metadata | None = None) -> str:
        with open(filename, "rb") as file:
            return self._put_file(key, file, metadata=metadata)

    def _new_staging_file(self, key: str) -> IO[bytes]:
        return self.queue.journal.new_staging_file()

    def _commit_staging_file(self, key: str, file: IO[bytes], metadata: Metadata | None = None) -> str:
        if not self.queue.journal.owns(file):
            raise ValueError("not an open staging file of this store")
        self._queue_put(key, file, metadata)  # the journal adopts the file
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
        names = self._flat_directory(below)
        inner: list[str] | None = [] if names is not None else None
        if names is None:
            names = [name for name in self._iter_keys(below) if not name.endswith(DIRECTORY_MARKER_SUFFIX)]
        if not names and not self._has_directory(source):
            raise KeyNotFoundError(source)
        # Listed just now, pending changes included: no request to check each. Queued at
        # once (the copies start while the markers are looked for).
        self.queue.move_many([(name, dest + SEPARATOR + name[len(below) :]) for name in names])
        if self.supports_directories:
            # Every directory below made under *dest*, then removed from *source*
            # (deepest first), recorded together: one journal sync.
            if inner is None:
                inner = self._directories_below(source)
            made = [dest] + [dest + name[len(source) :] for name in inner]
            removed = [*reversed(inner), source]
            markers = [("put_directory", key) for key in made] + [("delete_directory", key) for key in removed]
            self.queue.add_many([(kind, key, None) for kind, key in markers])
        return dest

    def _flat_directory(self, below: str) -> list[str] | None:
        """The values in *below* when nothing is pending there and it holds no directory:
        one listing of the store's level says all. None otherwise."""
        if self.queue.pending_under(below):
            return None
        level = list(self._dstore.iter_level(below, SEPARATOR))
        if any(info.is_prefix for info in level):
            return None
        return [info.key for info in level]

    def _directories_below(self, directory: str) -> list[str]:
        """Every directory below *directory*, parents first (one listing per directory)."""
        found = []
        for info in list(self._iter_level(directory + SEPARATOR, SEPARATOR)):
            if info.is_prefix:
                inner = info.key[: -len(SEPARATOR)]
                found += [inner, *self._directories_below(inner)]
        return found

    def _put_directory(self, key: str) -> None:
        self.queue.put_directory(key)

    def _delete_directory(self, key: str) -> None:
        self.queue.delete_directory(key)

    def _sync(self, key: str) -> None:
        self.queue.wait(key)
        self._dstore.sync(key)

    def _set_metadata(self, key: str, **fields: Any) -> None:
        if not self._has_key(key):
            if not self._has_directory(key):
                raise KeyNotFoundError(key)
            # A directory (the mount keeps theirs in memory on object stores): at once,
            # once its marker is stored.
            self.queue.wait(key)
            self._dstore.set_metadata(key, **fields)
            return
        given = {name: value for name, value in fields.items() if value is not None}
        if given:
            self.queue.set_metadata(key, given)

    def _describe_root(self) -> KeyInfo | None:
        return None


def _with_metadata(info: KeyInfo, fields: dict[str, Any]) -> KeyInfo:
    """*info* with the mode, owner and mtime among *fields* (pending changes) over its own."""
    if not fields:
        return info
    changes = {name: fields[name] for name in ("mode", "uid", "gid") if name in fields}
    if "mtime" in fields:
        changes["last_modified"] = fields["mtime"]
    return replace(info, **changes)


def _exists(state: Content) -> bool:
    """Whether a pending change leaves something at its key (a value or a new directory)."""
    return bool(state.directory) if state.directory is not None else not state.missing


__all__ = ["PendingStore"]
