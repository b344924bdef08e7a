"""RedisStore against a real Redis server: the contract, TTL, SCAN listing, server commands."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest

redis = pytest.importorskip("redis")

from servers import closed_port, redis_url, require_server, start_service, stop_service  # noqa: E402

from kvfs import FOREVER, NOT_SET, BackendError  # noqa: E402
from kvfs.memory.redisstore import RedisStore, glob_escape  # noqa: E402
from kvfs.testing import StoreContract  # noqa: E402

# A database number of its own, emptied before each test: other test files use others.
DATABASE = 11


def _url(database: int = DATABASE) -> str:
    return urlunsplit(urlsplit(redis_url())._replace(path=f"/{database}"))


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    require_server("redis")
    client = redis.Redis.from_url(_url(), socket_connect_timeout=5, socket_timeout=30)
    client.flushdb()
    yield client
    try:
        client.flushdb()
    finally:
        client.close()


@pytest.fixture
def store(client: redis.Redis) -> RedisStore:
    return RedisStore(client)


def _calls(client: redis.Redis, command: str) -> int:
    """How often the server has run *command* (from INFO commandstats)."""
    stats = client.info("commandstats").get(f"cmdstat_{command}")
    return int(stats["calls"]) if stats else 0


class TestRedisContract(StoreContract):
    streams_large_values = False  # a Redis string is written whole

    @pytest.fixture
    def store(self, client: redis.Redis) -> RedisStore:
        return RedisStore(client)

    @pytest.fixture
    def unavailable_store(self) -> Iterator[RedisStore]:
        with RedisStore.from_url(f"redis://127.0.0.1:{closed_port()}/0") as store:
            yield store


# ---------------------------------------------------------------------- time to live


def test_ttl_expires_the_key(store: RedisStore, client: redis.Redis) -> None:
    store.put("brief", b"value", ttl_secs=0.2)
    assert 0 < client.pttl("brief") <= 200
    deadline = time.monotonic() + 10
    while "brief" in store and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "brief" not in store
    with pytest.raises(KeyError):
        store.get("brief")


def test_whole_seconds_use_ex_and_fractions_px(store: RedisStore, client: redis.Redis) -> None:
    store.put("seconds", b"v", ttl_secs=100)
    assert 99 <= client.ttl("seconds") <= 100
    store.put("fraction", b"v", ttl_secs=1.5)
    assert 1000 < client.pttl("fraction") <= 1500
    store.put_file("file", io.BytesIO(b"v"), ttl_secs=50)
    assert 0 < client.ttl("file") <= 50


def test_forever_and_not_set_clear_an_expiry(store: RedisStore, client: redis.Redis) -> None:
    for plain in (FOREVER, NOT_SET, None):
        store.put("key", b"v", ttl_secs=100)
        assert client.ttl("key") > 0
        store.put("key", b"w", ttl_secs=plain)
        assert client.ttl("key") == -1, f"ttl_secs={plain!r} left an expiry"
        assert store.get("key") == b"w"


def test_default_ttl_applies_when_none_given(client: redis.Redis) -> None:
    store = RedisStore(client, default_ttl_secs=60)
    store.put("key", b"v")
    assert 0 < client.ttl("key") <= 60


# ---------------------------------------------------------------------- server commands


def test_listing_uses_scan_never_keys(store: RedisStore, client: redis.Redis) -> None:
    for index in range(30):
        store.put(f"dir/k{index}", b"v")
    keys_before, scans_before = _calls(client, "keys"), _calls(client, "scan")
    assert len(store.keys("dir/")) == 30
    assert len(list(store.iter_level(""))) == 1
    assert _calls(client, "keys") == keys_before
    assert _calls(client, "scan") > scans_before


@pytest.mark.parametrize("special", ["?", "[", "]", "\\", "[ab]", "a?]"])
def test_glob_characters_in_a_prefix_match_only_themselves(store: RedisStore, special: str) -> None:
    literal = f"x{special}y"
    decoys = ["xy", "xay", "xby", "xaby", "xzzy", "x\\y", "x?y", "x[y", "x]y"]
    for key in {literal, *decoys}:
        store.put(key, key.encode())
    assert store.keys(literal) == [literal]
    assert sorted(store.keys(f"x{special}")) == sorted(
        key for key in {literal, *decoys} if key.startswith(f"x{special}")
    )
    assert store.keys("x*") == []  # '*' is no key character, and no wildcard either


def test_glob_escape() -> None:
    assert glob_escape("a*b?c[d]e\\f") == "a\\*b\\?c\\[d\\]e\\\\f"
    assert glob_escape("plain/key") == "plain/key"


def test_stat_and_ranges_do_not_fetch_the_value(store: RedisStore, client: redis.Redis) -> None:
    store.put("big", bytes(range(256)) * 4096)
    gets_before = _calls(client, "get")
    assert store.stat("big").size == 256 * 4096
    assert store.stat("big").last_modified is None  # not kept: documented
    assert store.get_range("big", 256 * 4096 - 3, 10) == bytes([253, 254, 255])
    assert store.get_range("big", 10**9, 10) == b""
    assert [info.size for info in store.iter_level("")] == [256 * 4096]
    assert _calls(client, "get") == gets_before
    assert _calls(client, "strlen") > 0 and _calls(client, "getrange") > 0


def test_copy_runs_on_the_server_and_move_renames(store: RedisStore, client: redis.Redis) -> None:
    store.put("source", b"value", ttl_secs=100)
    copies = _calls(client, "copy")
    store.copy("source", "copied")
    assert _calls(client, "copy") == copies + 1
    assert store.get("copied") == b"value"
    renames = _calls(client, "rename")
    store.move("copied", "moved")
    assert _calls(client, "rename") == renames + 1
    assert "copied" not in store and store.get("moved") == b"value"
    assert client.ttl("moved") > 0, "move keeps the expiry, as RENAME does"


def test_a_key_holding_another_type_is_a_backend_error(
    store: RedisStore, client: redis.Redis
) -> None:
    client.hset("hash", "field", "value")
    with pytest.raises(BackendError, match="WRONGTYPE"):
        store.get("hash")
    with pytest.raises(BackendError):
        store.stat("hash")


def test_a_decoding_client_is_refused() -> None:
    require_server("redis")
    with pytest.raises(ValueError, match="decode_responses"):
        RedisStore(redis.Redis.from_url(_url(), decode_responses=True))


# ---------------------------------------------------------------------- a dead server


@pytest.mark.timeout(180)
def test_stopped_server_gives_backend_error_then_recovers() -> None:
    require_server("redis")
    store = RedisStore.from_url(_url(), socket_connect_timeout=2, socket_timeout=5)
    store.put("survivor", b"value")
    stop_service("redis")
    try:
        with pytest.raises(BackendError) as caught:
            store.get("survivor")
        assert isinstance(caught.value, OSError)
        assert "Redis" in str(caught.value)
    finally:
        start_service("redis")
    store.put("after", b"restart")  # the pool reconnects by itself
    assert store.get("after") == b"restart"
    store.close()
