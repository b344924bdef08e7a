"""A store in memcached: :class:`MemcacheStore` (simplekv's, with TTL; it cannot list keys)."""

from __future__ import annotations

import errno
import io
import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import IO, Any, NoReturn

from .._extras import require
from ..errors import BackendError, KeyNotFoundError, ListingUnsupportedError
from ..mixins import NOT_SET, TTL, TimeToLiveMixin
from ..store import KeyInfo, KeyValueStore, Rebuild

_pymemcache = require("pymemcache", "memcache")
from pymemcache.client.base import Client, PooledClient  # noqa: E402  (after the check)
from pymemcache.exceptions import MemcacheError  # noqa: E402

#: Timeouts of a client made by :meth:`MemcacheStore.from_url`, in seconds.
CONNECT_TIMEOUT = 5.0
SOCKET_TIMEOUT = 30.0
#: Connections of a client made by :meth:`MemcacheStore.from_url`.
MAX_POOL_SIZE = 16
#: memcached's longest key, in bytes.
MAX_MEMCACHED_KEY_LENGTH = 250
#: Expiry times above this many seconds are absolute Unix times to memcached.
_RELATIVE_EXPIRY_LIMIT = 30 * 24 * 3600
#: What an item costs beyond its value (header, key, flags), over-estimated, in bytes.
_ITEM_OVERHEAD = MAX_MEMCACHED_KEY_LENGTH + 100
#: memcached's smallest maximum item size; larger values ask the server for its limit.
_SMALLEST_ITEM_SIZE_MAX = 1024 * 1024


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except MemcacheError as error:
        raise BackendError(f"memcached: {error}") from error
    except OSError as error:  # socket errors: refused, reset, timed out
        if isinstance(error, BackendError):
            raise
        raise BackendError(error.errno or errno.EIO, f"memcached: {error}") from error


class MemcacheStore(TimeToLiveMixin, KeyValueStore):
    """Keeps values as memcached items, one per key, through the pymemcache client *mc*.

    A cache, not storage: memcached may evict any item at any time, and a restart loses
    everything. *mc* is a :mod:`pymemcache` client without a serializer (values are
    bytes, as without ``serde``); a plain ``Client`` holds one connection, so the store takes turns on it,
    while a ``PooledClient`` (what :meth:`from_url` makes) serves threads in parallel.

    Limits, declared as capability flags: memcached cannot list its keys
    (``supports_listing`` is False), so ``keys``, ``iter_keys``, ``iter_level``,
    ``has_directory`` and ``describe`` raise
    :class:`~kvfs.errors.ListingUnsupportedError` (an ``OSError`` and a
    ``NotImplementedError``), and the store cannot be mounted; keys are at most 250
    bytes; a value larger than the server's item size (``-I``; 1 MiB by default) raises
    :class:`~kvfs.errors.BackendError` (``EFBIG``) before anything is sent, so the old
    value stays. ``stat`` and ``get_range`` read the whole value.

    ``put(key, value, ttl_secs=...)`` sets an expiry in whole seconds (rounded up;
    ``0`` expires at once); :data:`~kvfs.mixins.FOREVER` and
    :data:`~kvfs.mixins.NOT_SET` store without one. Every memcached or network failure
    raises :class:`~kvfs.errors.BackendError`.
    """

    is_remote = True
    supports_listing = False
    max_key_length = MAX_MEMCACHED_KEY_LENGTH

    def __init__(self, mc: Any, default_ttl_secs: TTL = NOT_SET) -> None:
        self.mc = mc
        self.default_ttl_secs = default_ttl_secs
        # A plain Client is one socket: calls from several threads must take turns.
        self._lock: Any = threading.Lock() if isinstance(mc, Client) else nullcontext()
        self._item_size_max: int | None = None
        self._owns_client = False
        self.url: str | None = None

    @classmethod
    def from_url(cls, url: str, **options: Any) -> MemcacheStore:
        """Connect to ``memcached://host:port`` (port 11211 if left out) with bounded timeouts.

        *options* are :class:`MemcacheStore`'s (``default_ttl_secs``). The store owns the
        client (a pool of connections) and closes it in :meth:`close`.
        """
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        if parts.scheme != "memcached" or not parts.hostname:
            raise ValueError(f"{url!r} is not a memcached URL; expected memcached://host:port")
        if parts.path.strip("/") or parts.query or parts.username:
            raise ValueError(f"{url!r}: a memcached URL is memcached://host:port, nothing more")
        client = PooledClient(
            (parts.hostname, parts.port or 11211),
            connect_timeout=CONNECT_TIMEOUT,
            timeout=SOCKET_TIMEOUT,
            max_pool_size=MAX_POOL_SIZE,
            default_noreply=False,
        )
        store = cls(client, **options)
        store._owns_client = True
        store.url = url
        store._rebuilt_by(cls.from_url, url, **options)  # travels as its URL (pickle)
        return store

    def _travelling_arguments(self, arguments: dict[str, Any]) -> dict[str, Any]:
        # A client given to the constructor travels as its server's address.
        server = getattr(self.mc, "server", None)
        if not (isinstance(server, tuple) and len(server) == 2):
            raise TypeError(f"{type(self.mc).__name__} has no server address to connect to again in another process")
        return {**arguments, "mc": Rebuild(_new_client, server)}

    def __repr__(self) -> str:
        server = getattr(self.mc, "server", None)
        return f"{type(self).__name__}({server!r})"

    def close(self) -> None:
        if self._owns_client:
            with self._lock:
                self.mc.close()

    def _check(self) -> None:
        """Raise :class:`~kvfs.errors.BackendError` unless the server answers."""
        with _errors(), self._lock:
            self.mc.version()

    # ------------------------------------------------------------------ listing: none

    def _no_listing(self) -> NoReturn:
        raise ListingUnsupportedError(
            errno.EOPNOTSUPP, "memcached cannot list its keys (MemcacheStore.supports_listing is False)"
        )

    def _iter_keys(self, prefix: str) -> Iterator[str]:
        self._no_listing()

    def _iter_level(self, prefix: str, delimiter: str) -> Iterator[KeyInfo]:
        self._no_listing()

    def _has_directory(self, key: str) -> bool:
        self._no_listing()

    # ------------------------------------------------------------------ hooks

    def _delete(self, key: str) -> None:
        with _errors(), self._lock:
            self.mc.delete(key, noreply=False)

    def _get(self, key: str) -> bytes:
        with _errors(), self._lock:
            value = self.mc.get(key)
        if value is None:
            raise KeyNotFoundError(key)
        return bytes(value)

    def _has_key(self, key: str) -> bool:
        # memcached answers a get with the value: there is no cheaper existence test.
        with _errors(), self._lock:
            return self.mc.get(key) is not None

    def _open(self, key: str) -> IO[bytes]:
        return io.BytesIO(self._get(key))

    def _stat(self, key: str) -> KeyInfo:
        return KeyInfo(key, len(self._get(key)))

    def _get_range(self, key: str, start: int, length: int) -> bytes:
        return self._get(key)[start : start + length]

    def _expiry(self, ttl_secs: TTL) -> int:
        if not isinstance(ttl_secs, (int, float)):  # FOREVER or NOT_SET
            return 0
        if ttl_secs == 0:
            return -1  # memcached: a negative expiry expires the item at once
        seconds = math.ceil(ttl_secs)
        if seconds > _RELATIVE_EXPIRY_LIMIT:
            return math.ceil(time.time()) + seconds
        return seconds

    def _check_size(self, key: str, size: int) -> None:
        if size + _ITEM_OVERHEAD <= _SMALLEST_ITEM_SIZE_MAX:
            return
        if self._item_size_max is None:
            with _errors(), self._lock:
                settings = self.mc.stats("settings")
            self._item_size_max = int(settings.get(b"item_size_max", _SMALLEST_ITEM_SIZE_MAX))
        if size + _ITEM_OVERHEAD > self._item_size_max:
            raise BackendError(
                errno.EFBIG,
                f"memcached: a value of {size} bytes is too large for {key!r}; this server keeps "
                f"items up to {self._item_size_max} bytes (memcached -I)",
            )

    def _put(self, key: str, data: bytes, ttl_secs: TTL = NOT_SET) -> str:
        self._check_size(key, len(data))
        with _errors(), self._lock:
            stored = self.mc.set(key, data, expire=self._expiry(ttl_secs), noreply=False)
        if not stored:
            raise BackendError(f"memcached did not store {key!r}")
        return key

    def _put_file(self, key: str, file: IO[bytes], ttl_secs: TTL = NOT_SET) -> str:
        # An item is written whole: read the file to its end first.
        return self._put(key, file.read(), ttl_secs)



def _new_client(server: tuple[str, int]) -> Any:
    """A client of *server* like the one :meth:`MemcacheStore.from_url` makes (for pickle)."""
    return PooledClient(
        server, connect_timeout=CONNECT_TIMEOUT, timeout=SOCKET_TIMEOUT, max_pool_size=MAX_POOL_SIZE, default_noreply=False
    )


__all__ = ["MAX_MEMCACHED_KEY_LENGTH", "MemcacheStore"]
