"""A write-through cache in front of a slower store: :class:`CacheDecorator`."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import IO, TypeVar

from .decorator import StoreDecorator
from .mixins import TTL
from .store import KeyValueStore, Metadata

T = TypeVar("T")

# Writes bump a counter in one of these slots (chosen by the key's hash) so that a fill
# racing with a write can tell; a fixed number of slots bounds the memory.
_GENERATION_SLOTS = 1024

# What a cache raises when it cannot help: a failure (OSError), or a key that is valid for
# the store but not for the cache (ValueError, e.g. a file-name limit). A miss is KeyError.
_UNUSABLE = (OSError, ValueError)


class CacheDecorator(StoreDecorator):
    """Reads from *cache* first, filling it from *store* on a miss (simplekv's order).

    ``CacheDecorator(cache, store)``: *store* is the authoritative backend, *cache* any
    faster store (a :class:`~kvfs.memory.DictStore`, a local filesystem store, Redis).
    The cache decides how much it keeps; the decorator never evicts.

    * **Reads** (:meth:`get`, :meth:`open`, :meth:`get_file`, :meth:`get_range`) are
      answered by the cache. On a miss the whole value is copied from *store* into the
      cache (streamed, except for ``get``), then served from it. A missing key raises
      ``KeyError`` from *store*.
    * A cache that fails with an ``OSError``, or rejects a key with ``ValueError`` (a
      stricter key limit than *store*'s), is bypassed and *store* answers, except for ``get_file`` into an open file object, where data may already
      have been written: the error is raised, as in simplekv. A failure while filling the
      cache is not an error: the value comes from *store* and the cache entry is dropped.
    * **Writes** (:meth:`put`, :meth:`put_file`, :meth:`delete`, :meth:`copy`,
      :meth:`move`) go to *store*; afterwards, whether they succeeded or not, the keys
      they touched are deleted from the cache. An error deleting from the cache is raised.
    * ``in``, listings, :meth:`stat`, :meth:`iter_level` and directory markers are
      answered by *store* alone; its capability flags are the decorator's, except
      ``fast_ranges``, which is the cache's (ranges are served from the cache).

    Thread-safe: a fill that races with a write to the same key never leaves the old value
    in the cache (the write bumps a generation counter; a fill that sees it changed drops
    what it cached). Writes made to *store* directly, or expiry of a ``ttl_secs`` value,
    are not seen: such entries stay cached until overwritten through the decorator.
    :meth:`close` closes both stores.
    """

    def __init__(self, cache: KeyValueStore, store: KeyValueStore) -> None:
        super().__init__(store)
        self.cache = cache
        self._generations = [0] * _GENERATION_SLOTS
        self._generation_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.cache!r}, {self._dstore!r})"

    @property
    def fast_ranges(self) -> bool:  # type: ignore[override]
        """Whether the cache serves ranges natively."""
        return bool(self.cache.fast_ranges)

    def close(self) -> None:
        """Close the backing store, then the cache."""
        try:
            self._dstore.close()
        finally:
            self.cache.close()

    # ------------------------------------------------------------------ generations

    def _generation(self, key: str) -> int:
        return self._generations[hash(key) % _GENERATION_SLOTS]

    def _invalidate(self, *keys: str) -> None:
        """Drop *keys* from the cache after a write, and stop fills in flight keeping them."""
        with self._generation_lock:
            for key in keys:
                self._generations[hash(key) % _GENERATION_SLOTS] += 1
        for key in keys:
            try:
                self.cache.delete(key)
            except ValueError:
                pass  # a key the cache cannot hold is not in it

    def _fill(self, key: str, generation: int, write: Callable[[], object]) -> bool:
        """Run *write* (a cache write of *key*); keep its result only if no write raced it.

        *generation* was read before the value was read from the store. Returns whether
        the value is now in the cache.
        """
        try:
            write()
        except _UNUSABLE:
            self._drop(key)
            return False
        if self._generation(key) != generation:
            self._drop(key)  # a write to the store raced the fill: what we cached may be old
            return False
        return True

    def _drop(self, key: str) -> None:
        try:
            self.cache.delete(key)
        except _UNUSABLE:
            pass

    def _fill_from_store(self, key: str) -> bool:
        """Stream *key* from the store into the cache. ``KeyError`` if the store lacks it."""
        generation = self._generation(key)
        with self._dstore.open(key) as source:
            return self._fill(key, generation, lambda: self.cache.put_file(key, source))

    def _read(self, key: str, from_cache: Callable[[], T], from_store: Callable[[], T]) -> T:
        """Answer from the cache; on a miss fill it and answer from it; else from the store."""
        try:
            return from_cache()
        except KeyError:
            pass
        except _UNUSABLE:
            return from_store()
        if self._fill_from_store(key):
            try:
                return from_cache()
            except (KeyError, *_UNUSABLE):
                pass  # evicted or invalidated since the fill
        return from_store()

    # ------------------------------------------------------------------ reads

    def _get(self, key: str) -> bytes:
        try:
            return self.cache.get(key)
        except KeyError:
            pass
        except _UNUSABLE:
            return self._dstore.get(key)
        generation = self._generation(key)
        data = self._dstore.get(key)
        self._fill(key, generation, lambda: self.cache.put(key, data))
        return data

    def _open(self, key: str) -> IO[bytes]:
        return self._read(key, lambda: self.cache.open(key), lambda: self._dstore.open(key))

    def _get_file(self, key: str, file: IO[bytes]) -> None:
        # A cache failure is raised: part of the value may be in *file* already.
        try:
            return self.cache.get_file(key, file)
        except KeyError:
            pass
        except ValueError:
            return self._dstore.get_file(key, file)  # checked before anything was written
        if self._fill_from_store(key):
            try:
                return self.cache.get_file(key, file)
            except KeyError:
                pass
        return self._dstore.get_file(key, file)

    def _get_filename(self, key: str, filename: str) -> None:
        # Writing a file name is atomic, so falling back to the store after an error is safe.
        self._read(
            key,
            lambda: self.cache.get_file(key, filename),
            lambda: self._dstore.get_file(key, filename),
        )

    def _get_range(self, key: str, start: int, length: int) -> bytes:
        return self._read(
            key,
            lambda: self.cache.get_range(key, start, length),
            lambda: self._dstore.get_range(key, start, length),
        )

    # ------------------------------------------------------------------ writes

    def _delete(self, key: str) -> None:
        try:
            super()._delete(key)
        finally:
            self._invalidate(key)

    def _put(self, key: str, data: bytes, ttl_secs: TTL = None, metadata: Metadata | None = None) -> str:
        try:
            return super()._put(key, data, ttl_secs, metadata=metadata)
        finally:
            self._invalidate(key)

    def _put_file(self, key: str, file: IO[bytes], ttl_secs: TTL = None, metadata: Metadata | None = None) -> str:
        try:
            return super()._put_file(key, file, ttl_secs, metadata=metadata)
        finally:
            self._invalidate(key)

    def _put_filename(self, key: str, filename: str, ttl_secs: TTL = None, metadata: Metadata | None = None) -> str:
        try:
            return super()._put_filename(key, filename, ttl_secs, metadata=metadata)
        finally:
            self._invalidate(key)

    def _copy(self, source: str, dest: str) -> str:
        try:
            return super()._copy(source, dest)
        finally:
            self._invalidate(dest)

    def _move(self, source: str, dest: str) -> str:
        try:
            return super()._move(source, dest)
        finally:
            self._invalidate(source, dest)


__all__ = ["CacheDecorator"]
