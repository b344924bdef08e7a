"""A coordinator on Redis: pub/sub for changes, hashes with an expiry for lock leases.

Changes go to the Redis channel ``kvfs:changes:<channel>``. A lock is the hash
``kvfs:lock:<name>`` mapping each holder to its mode and expiry (``x:<ms>`` or
``s:<ms>``, on the server's clock); a Lua script takes, renews or converts a lease
atomically, drops holders whose lease ran out, and keeps a ``PEXPIRE`` on the hash so
that the locks of dead holders vanish from the database too.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .._extras import require
from .base import Coordinator, Listener

_redis = require("redis", "redis")
from redis.backoff import NoBackoff  # noqa: E402 - after the check that redis is installed
from redis.retry import Retry  # noqa: E402

#: Seconds to wait for a TCP connection, and for an answer.
CONNECT_TIMEOUT = 2.0
SOCKET_TIMEOUT = 5.0

CHANNEL_PREFIX = "kvfs:changes:"
LOCK_PREFIX = "kvfs:lock:"

# The server's clock in milliseconds (TIME is allowed in scripts: effects are replicated).
_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

_ACQUIRE = _NOW + """
local lifetime = tonumber(ARGV[3])
local latest = now + lifetime
local holders = redis.call('HGETALL', KEYS[1])
for i = 1, #holders, 2 do
  local owner, value = holders[i], holders[i + 1]
  local mode, expires = string.match(value, '^(%a):(%d+)$')
  expires = tonumber(expires)
  if expires == nil or expires <= now then
    redis.call('HDEL', KEYS[1], owner)
  elseif owner ~= ARGV[1] then
    if mode == 'x' or ARGV[2] == 'x' then return 0 end
    if expires > latest then latest = expires end
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ':' .. (now + lifetime))
redis.call('PEXPIRE', KEYS[1], latest - now)
return 1
"""

_RENEW = _NOW + """
local lifetime = tonumber(ARGV[2])
local value = redis.call('HGET', KEYS[1], ARGV[1])
if not value then return 0 end
local mode, expires = string.match(value, '^(%a):(%d+)$')
expires = tonumber(expires)
if expires == nil or expires <= now then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], mode .. ':' .. (now + lifetime))
if redis.call('PTTL', KEYS[1]) < lifetime then redis.call('PEXPIRE', KEYS[1], lifetime) end
return 1
"""


_HOLDERS = _NOW + """
local found = {}
local holders = redis.call('HGETALL', KEYS[1])
for i = 1, #holders, 2 do
  local mode, expires = string.match(holders[i + 1], '^(%a):(%d+)$')
  if tonumber(expires) ~= nil and tonumber(expires) > now then
    table.insert(found, holders[i])
    table.insert(found, mode)
  end
end
return found
"""


def _client(url: str, retries: int) -> Any:
    return _redis.Redis.from_url(
        url,
        socket_connect_timeout=CONNECT_TIMEOUT,
        socket_timeout=SOCKET_TIMEOUT,
        socket_keepalive=True,
        health_check_interval=30,
        retry=Retry(NoBackoff(), retries),
    )


class _RedisListener(Listener):
    def __init__(self, url: str) -> None:
        # Its own client without retries: a broken connection must surface here, so the
        # coordinator knows messages may have been missed (redis-py would resubscribe silently).
        self._client = _client(url, 0)
        self._pubsub = self._client.pubsub()
        self._pending: list[tuple[str, str]] = []
        self._client.ping()

    def listen(self, names: Iterable[str]) -> None:
        waiting = set(names)
        self._pubsub.subscribe(*waiting)
        while waiting:  # until the server confirmed: messages published afterwards reach us
            message = self._pubsub.get_message(timeout=SOCKET_TIMEOUT)
            if message is None:
                raise TimeoutError("Redis did not confirm SUBSCRIBE")
            self._take(message, waiting)

    def unlisten(self, names: Iterable[str]) -> None:
        self._pubsub.unsubscribe(*names)

    def poll(self, timeout: float) -> list[tuple[str, str]]:
        received, self._pending = self._pending, []
        message = self._pubsub.get_message(timeout=timeout)
        while message is not None:
            self._take(message, None, received)
            message = self._pubsub.get_message(timeout=0)
        return received

    def _take(self, message: dict[str, Any], waiting: set[str] | None, into: list[tuple[str, str]] | None = None) -> None:
        channel = message["channel"]
        channel = channel.decode() if isinstance(channel, bytes) else str(channel)
        if message["type"] == "subscribe":
            if waiting is not None:
                waiting.discard(channel)
        elif message["type"] == "message":
            data = message["data"]
            (self._pending if into is None else into).append(
                (channel, data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data))
            )

    def close(self) -> None:
        for closer in (self._pubsub.close, self._client.close):
            try:
                closer()
            except Exception:
                pass


class RedisCoordinator(Coordinator):
    """A :class:`~kvfs.coordination.base.Coordinator` on the Redis server at *url*.

    *url* is a redis-py URL (``redis://[:password@]host:6379/0``, ``rediss://`` for TLS);
    the database number does not matter for pub/sub, it holds the lock hashes. Raises
    :class:`~kvfs.errors.MissingExtraError` without ``kvfs[redis]``; nothing connects
    until the coordinator is used.
    """

    engine = "redis"

    def __init__(self, url: str, *, sender: str | None = None) -> None:
        super().__init__(url, sender=sender)
        # One retry: a pooled connection that died with a server restart is replaced.
        self._client = _client(url, 1)
        self._acquire_script = self._client.register_script(_ACQUIRE)
        self._renew_script = self._client.register_script(_RENEW)
        self._holders_script = self._client.register_script(_HOLDERS)

    def _engine_channel(self, channel: str) -> str:
        return CHANNEL_PREFIX + channel

    def _publish(self, name: str, payload: str) -> None:
        self._client.publish(name, payload.encode("utf-8"))

    def _connect_listener(self) -> Listener:
        return _RedisListener(self.url)

    def _try_acquire(self, name: str, owner: str, shared: bool, lifetime: float) -> bool:
        mode = "s" if shared else "x"
        return bool(self._acquire_script(keys=[LOCK_PREFIX + name], args=[owner, mode, _millis(lifetime)]))

    def _renew(self, name: str, owner: str, shared: bool, lifetime: float) -> bool:
        return bool(self._renew_script(keys=[LOCK_PREFIX + name], args=[owner, _millis(lifetime)]))

    def _release(self, name: str, owner: str) -> None:
        self._client.hdel(LOCK_PREFIX + name, owner)

    def _holders(self, name: str) -> dict[str, bool]:
        found = [_text(item) for item in self._holders_script(keys=[LOCK_PREFIX + name])]
        return {owner: mode == "s" for owner, mode in zip(found[::2], found[1::2])}

    def _close_engine(self) -> None:
        self._client.close()


def _text(value: Any) -> str:
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else str(value)


def _millis(seconds: float) -> int:
    return max(1, int(round(seconds * 1000)))


__all__ = ["RedisCoordinator"]
