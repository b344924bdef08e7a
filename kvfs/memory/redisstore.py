"""A store in a Redis database: :class:`RedisStore` (simplekv's, with TTL and ranges)."""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, Any, cast

from .._extras import require
from ..errors import BackendError, KeyNotFoundError
from ..mixins import NOT_SET, TTL, CopyMixin, TimeToLiveMixin
from ..store import DIRECTORY_MARKER_SUFFIX, KeyInfo, KeyValueStore, Rebuild

if TYPE_CHECKING:
    import redis as redis_module

_redis = require("redis", "redis")

#: Socket timeouts of a client made by :meth:`RedisStore.from_url`, in seconds.
CONNECT_TIMEOUT = 5.0
SOCKET_TIMEOUT = 30.0

# Keys listed per SCAN call, and keys whose sizes are asked for per round trip.
_SCAN_COUNT = 1000
_BATCH = 500

_GLOB_SPECIAL = "\\*?[]"


def glob_escape(text: str) -> str:
    """Escape *text* for a Redis ``MATCH`` pattern, so it matches only itself.

    Keys may contain ``* ? [ ]`` and ``\\``, which are glob syntax to Redis.
    """
    return "".join("\\" + char if char in _GLOB_SPECIAL else char for char in text)


# The connection settings of a client that travel in a pickle (the rest of a pool's
# settings are the library's own objects, rebuilt with the new client).
_PORTABLE_SETTINGS = (
    "host",
    "port",
    "path",
    "db",
    "username",
    "password",
    "socket_timeout",
    "socket_connect_timeout",
    "socket_keepalive",
    "client_name",
    "health_check_interval",
    "protocol",
)


def _connection_settings(pool: Any) -> dict[str, Any]:
    """What makes a client like the one of *pool*: address, database, credentials, timeouts, TLS."""
    options = pool.connection_kwargs
    if options.get("credential_provider") is not None:
        raise TypeError("cannot pickle a Redis store whose client has a credential_provider")
    settings = {name: options[name] for name in _PORTABLE_SETTINGS if name in options}
    settings["connection_class"] = pool.connection_class
    settings.update(
        (name, value)
        for name, value in options.items()
        if name.startswith("ssl_") and isinstance(value, (str, int, float, bool, type(None)))
    )
    return settings


def _client_from_settings(settings: dict[str, Any]) -> Any:
    """A new client from :func:`_connection_settings` (in the process that unpickles)."""
    pool = _redis.ConnectionPool(**settings)
    return _redis.Redis(connection_pool=pool)


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except _redis.RedisError as error:
        raise BackendError(f"Redis: {error}") from error


class RedisStore(TimeToLiveMixin, CopyMixin, KeyValueStore):
    """Keeps values as Redis strings, one key each, in the client's database.

    *redis* is a :class:`redis.Redis` client made without ``decode_responses`` (values
    are bytes). The store owns every key of that database that looks like a kvfs key:
    use a database of its own, or a :class:`~kvfs.decorator.PrefixDecorator`.

    ``put(key, value, ttl_secs=...)`` sets an expiry (``SET ... EX/PX``); :data:`FOREVER`
    and :data:`NOT_SET` store without one, clearing any earlier expiry. Sub-second TTLs
    are rounded up to whole milliseconds, the resolution of Redis. Listing uses ``SCAN``,
    never ``KEYS``, so a large database is not blocked. ``stat`` knows the size
    (``STRLEN``) but no modification time. Server-side :meth:`copy` needs Redis 6.2
    (``COPY``); :meth:`move` is an atomic ``RENAME``. Every Redis failure (connection,
    timeout, a key holding a non-string) raises :class:`~kvfs.errors.BackendError`.
    """

    is_remote = True
    fast_stat = True
    fast_ranges = True
    listing_has_sizes = True
    supports_directories = True

    def __init__(self, redis: redis_module.Redis, default_ttl_secs: TTL = NOT_SET) -> None:
        pool_options = getattr(getattr(redis, "connection_pool", None), "connection_kwargs", {})
        if pool_options.get("decode_responses"):
            raise ValueError("RedisStore needs a client made with decode_responses=False")
        self.redis = redis
        self.default_ttl_secs = default_ttl_secs
        self._owns_client = False

    @classmethod
    def from_url(cls, url: str, **client_options: Any) -> RedisStore:
        """Connect to *url* (``redis://[:password@]host:port/db``) with bounded timeouts.

        The store owns the client and closes it in :meth:`close`.
        """
        client_options.setdefault("socket_connect_timeout", CONNECT_TIMEOUT)
        client_options.setdefault("socket_timeout", SOCKET_TIMEOUT)
        store = cls(_redis.Redis.from_url(url, **client_options))
        store._owns_client = True
        store._rebuilt_by(cls.from_url, url, **client_options)
        return store

    def _travelling_arguments(self, arguments: dict[str, Any]) -> dict[str, Any]:
        # The client is rebuilt from its connection settings in the other process.
        pool = getattr(self.redis, "connection_pool", None)
        if pool is None or not hasattr(pool, "connection_kwargs"):
            raise TypeError(f"cannot pickle {self!r}: its client has no connection pool settings")
        return {**arguments, "redis": Rebuild(_client_from_settings, _connection_settings(pool))}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.redis!r})"

    def close(self) -> None:
        if self._owns_client:
            self.redis.close()

    # ------------------------------------------------------------------ hooks

    def _check(self) -> None:
        with _errors():
            self.redis.ping()

    def _delete(self, key: str) -> None:
        with _errors():
            self.redis.delete(key)

    def _iter_keys(self, prefix: str) -> Iterator[str]:
        with _errors():
            for name in self.redis.scan_iter(match=glob_escape(prefix) + "*", count=_SCAN_COUNT):
                yield name.decode("utf-8", "surrogateescape")

    def _has_key(self, key: str) -> bool:
        with _errors():
            return bool(self.redis.exists(key))

    def _get(self, key: str) -> bytes:
        with _errors():
            value = self.redis.get(key)
        if value is None:
            raise KeyNotFoundError(key)
        return cast(bytes, value)  # the client does not decode (checked at construction)

    def _open(self, key: str) -> IO[bytes]:
        return io.BytesIO(self._get(key))

    def _put(self, key: str, data: bytes, ttl_secs: TTL = NOT_SET) -> str:
        with _errors():
            if not isinstance(ttl_secs, (int, float)):  # FOREVER or NOT_SET
                self.redis.set(key, data)  # a plain SET also clears an earlier expiry
            elif float(ttl_secs).is_integer() and ttl_secs >= 1:
                self.redis.set(key, data, ex=int(ttl_secs))
            else:
                self.redis.set(key, data, px=max(1, math.ceil(ttl_secs * 1000)))
        return key

    def _put_file(self, key: str, file: IO[bytes], ttl_secs: TTL = NOT_SET) -> str:
        # A Redis string is written whole: read the file to its end first.
        return self._put(key, file.read(), ttl_secs)

    def _stat(self, key: str) -> KeyInfo:
        with _errors():
            pipe = self.redis.pipeline()
            pipe.exists(key)
            pipe.strlen(key)
            exists, size = pipe.execute()
        if not exists:
            raise KeyNotFoundError(key)
        return KeyInfo(key, size)

    def _get_range(self, key: str, start: int, length: int) -> bytes:
        with _errors():
            pipe = self.redis.pipeline()
            pipe.exists(key)
            pipe.getrange(key, start, start + length - 1)
            exists, data = pipe.execute()
        if not exists:
            raise KeyNotFoundError(key)
        return data

    def _iter_level(self, prefix: str, delimiter: str) -> Iterator[KeyInfo]:
        batch: list[KeyInfo] = []
        for entry in super()._iter_level(prefix, delimiter):
            if entry.is_prefix:
                yield entry
                continue
            batch.append(entry)
            if len(batch) >= _BATCH:
                yield from self._with_sizes(batch)
                batch = []
        yield from self._with_sizes(batch)

    def _with_sizes(self, entries: list[KeyInfo]) -> Iterator[KeyInfo]:
        """Fill in sizes with one round trip; keys deleted meanwhile are dropped."""
        if not entries:
            return
        with _errors():
            pipe = self.redis.pipeline(transaction=False)
            for entry in entries:
                pipe.exists(entry.key)
                pipe.strlen(entry.key)
            answers = pipe.execute()
        for index, entry in enumerate(entries):
            if answers[2 * index]:
                yield KeyInfo(entry.key, answers[2 * index + 1])

    def _copy(self, source: str, dest: str) -> str:
        with _errors():
            copied = self.redis.copy(source, dest, replace=True)
        if not copied:
            raise KeyNotFoundError(source)
        return dest

    def _move(self, source: str, dest: str) -> str:
        try:
            self.redis.rename(source, dest)
        except _redis.ResponseError as error:
            if "no such key" in str(error).lower():
                raise KeyNotFoundError(source) from None
            raise BackendError(f"Redis: {error}") from error
        except _redis.RedisError as error:
            raise BackendError(f"Redis: {error}") from error
        return dest

    def _has_directory(self, key: str) -> bool:
        with _errors():
            if self.redis.exists(key + DIRECTORY_MARKER_SUFFIX):
                return True
        return super()._has_directory(key)


__all__ = ["RedisStore", "glob_escape"]
