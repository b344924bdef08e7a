"""In-memory stores: :class:`DictStore` here, Redis in :mod:`kvfs.memory.redisstore`."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator, MutableMapping
from typing import IO, Any

from ..errors import KeyNotFoundError
from ..mixins import CopyMixin
from ..store import DIRECTORY_MARKER_SUFFIX, KeyInfo, KeyValueStore


class DictStore(CopyMixin, KeyValueStore):
    """Keeps values in a dictionary (``d``, a new one unless given); nothing persists.

    Each store has its own dictionary: two ``DictStore()`` never share data. Empty
    directories are kept as marker entries (``a/b/``) in the same dictionary. A pickle
    of the store holds a copy of its content: the other process gets a store of its own.
    """

    fast_stat = True
    fast_ranges = True
    listing_has_sizes = True
    supports_directories = True

    def __init__(self, d: MutableMapping[str, bytes] | None = None) -> None:
        self.d: MutableMapping[str, bytes] = {} if d is None else d
        # Last-modified times, for the mount; single dict operations are atomic under
        # the GIL, the lock only guards compound updates.
        self._mtimes: dict[str, float] = {}
        self._lock = threading.Lock()

    def _travelling_arguments(self, arguments: dict[str, Any]) -> dict[str, Any]:
        # The content travels: a pickle holds a copy of the dictionary, as it is now.
        return {**arguments, "d": self.d}

    def _travelling_state(self) -> dict[str, Any]:
        return {"_mtimes": dict(self._mtimes)}

    def _delete(self, key: str) -> None:
        with self._lock:
            self.d.pop(key, None)
            self._mtimes.pop(key, None)

    def _iter_keys(self, prefix: str) -> Iterator[str]:
        # A snapshot, so other threads may write while the caller iterates.
        return iter([k for k in list(self.d) if k.startswith(prefix)])

    def _has_key(self, key: str) -> bool:
        return key in self.d

    def _get(self, key: str) -> bytes:
        try:
            return self.d[key]
        except KeyError:
            raise KeyNotFoundError(key) from None

    def _open(self, key: str) -> IO[bytes]:
        return io.BytesIO(self._get(key))

    def _put(self, key: str, data: bytes) -> str:
        # Two single dict stores, each atomic under the GIL: no lock on the hot path.
        self.d[key] = data
        self._mtimes[key] = time.time()
        return key

    def _put_file(self, key: str, file: IO[bytes]) -> str:
        return self._put(key, file.read())

    def _stat(self, key: str) -> KeyInfo:
        value = self._get(key)
        return KeyInfo(key, len(value), self._mtimes.get(key))

    def _get_range(self, key: str, start: int, length: int) -> bytes:
        return self._get(key)[start : start + length]

    def _iter_level(self, prefix: str, delimiter: str) -> Iterator[KeyInfo]:
        for entry in super()._iter_level(prefix, delimiter):
            if entry.is_prefix:
                yield entry
            else:
                value = self.d.get(entry.key)
                if value is not None:
                    yield KeyInfo(entry.key, len(value), self._mtimes.get(entry.key))

    def _copy(self, source: str, dest: str) -> str:
        return self._put(dest, self._get(source))

    def _has_directory(self, key: str) -> bool:
        return key + DIRECTORY_MARKER_SUFFIX in self.d or super()._has_directory(key)


__all__ = ["DictStore"]
