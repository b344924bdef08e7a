"""MemcacheStore against a real memcached: TTL, the size limit, no listing, no mount."""

from __future__ import annotations

import errno
import io
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest

pytest.importorskip("pymemcache")
from pymemcache.client.base import Client  # noqa: E402

from cli_support import kvfs_command  # noqa: E402
from servers import memcached_url, require_server, start_service, stop_service  # noqa: E402

from kvfs import FOREVER, NOT_SET, BackendError, open_store  # noqa: E402
from kvfs.decorator import PrefixDecorator  # noqa: E402
from kvfs.errors import ListingUnsupportedError  # noqa: E402
from kvfs.memory.memcachestore import MemcacheStore  # noqa: E402
from kvfs.mount.errors import MountError  # noqa: E402
from kvfs.mount.mounter import serve  # noqa: E402


def _address() -> tuple[str, int]:
    parts = urlsplit(memcached_url())
    assert parts.hostname and parts.port
    return parts.hostname, parts.port


@pytest.fixture
def client() -> Iterator[Client]:
    """A plain (one-connection) client of the test server, emptied first."""
    require_server("memcached")
    client = Client(_address(), connect_timeout=5, timeout=30, default_noreply=False)
    client.flush_all()
    yield client
    client.close()


@pytest.fixture
def store(client: Client) -> MemcacheStore:
    return MemcacheStore(client)


def _ttl(client: Client, key: str) -> int | None:
    """The seconds *key* has left (-1: no expiry), None if it is gone: memcached's meta get."""
    answer = client.raw_command(f"mg {key} t".encode(), b"\r\n")
    if answer == b"EN":
        return None
    assert answer.startswith(b"HD t"), answer
    return int(answer[4:])


# ---------------------------------------------------------------------- time to live


def test_ttl_is_set_in_whole_seconds_rounded_up(store: MemcacheStore, client: Client) -> None:
    store.put("seconds", b"v", ttl_secs=100)
    assert 99 <= _ttl(client, "seconds") <= 100
    store.put("fraction", b"v", ttl_secs=0.2)
    assert _ttl(client, "fraction") == 1
    store.put_file("file", io.BytesIO(b"v"), ttl_secs=50)
    assert 0 < _ttl(client, "file") <= 50


def test_ttl_zero_expires_at_once(store: MemcacheStore) -> None:
    store.put("gone", b"value", ttl_secs=0)
    assert "gone" not in store
    with pytest.raises(KeyError):
        store.get("gone")


def test_ttl_over_30_days_is_not_taken_for_a_date(store: MemcacheStore, client: Client) -> None:
    # memcached reads expiries above 30 days as Unix times: the store converts them.
    forty_days = 40 * 24 * 3600
    store.put("long", b"v", ttl_secs=forty_days)
    # Loose: memcached keeps its clock in whole seconds of its own.
    assert forty_days - 3600 <= _ttl(client, "long") <= forty_days + 60
    assert store.get("long") == b"v"


def test_forever_and_not_set_clear_an_expiry(store: MemcacheStore, client: Client) -> None:
    for plain in (FOREVER, NOT_SET, None):
        store.put("key", b"v", ttl_secs=100)
        assert _ttl(client, "key") > 0
        store.put("key", b"w", ttl_secs=plain)
        assert _ttl(client, "key") == -1, f"ttl_secs={plain!r} left an expiry"
        assert store.get("key") == b"w"


def test_default_ttl_applies_when_none_given(client: Client) -> None:
    store = MemcacheStore(client, default_ttl_secs=60)
    store.put("key", b"v")
    assert 0 < _ttl(client, "key") <= 60


def test_ttl_expires_the_key(store: MemcacheStore) -> None:
    store.put("brief", b"value", ttl_secs=1)
    deadline = time.monotonic() + 30
    while "brief" in store and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "brief" not in store


# ---------------------------------------------------------------------- limits


def test_a_value_over_the_item_size_is_refused_and_the_old_one_kept(store: MemcacheStore) -> None:
    # scripts/services starts memcached with -I 32m.
    store.put("big", b"old" * 1000)
    with pytest.raises(BackendError) as caught:
        store.put("big", b"x" * (33 * 1024 * 1024))
    assert caught.value.errno == errno.EFBIG
    assert "33554432" in str(caught.value)
    assert store.get("big") == b"old" * 1000
    value = b"y" * (20 * 1024 * 1024)
    store.put("big", value)
    assert store.get("big") == value


def test_keys_longer_than_250_bytes_are_invalid(store: MemcacheStore) -> None:
    store.put("k" * 250, b"v")
    with pytest.raises(ValueError, match="250"):
        store.put("k" * 251, b"v")


def test_listing_raises_a_clear_error_also_through_decorators(store: MemcacheStore) -> None:
    store.put("a/b", b"v")
    for subject in (store, PrefixDecorator("p/", store)):
        assert subject.supports_listing is False
        with pytest.raises(ListingUnsupportedError, match="cannot list"):
            subject.keys()
        with pytest.raises(NotImplementedError):
            list(subject.iter_level(""))
    with pytest.raises(OSError):
        list(store)
    assert store.get("a/b") == b"v"


def test_the_mount_refuses_it(store: MemcacheStore, tmp_path) -> None:
    with pytest.raises(MountError, match="cannot list its keys"):
        serve(store, str(tmp_path))


@pytest.mark.parametrize("mode", [[], ["--foreground"]], ids=["daemon", "foreground"])
def test_the_cli_refuses_to_mount_it(tmp_path, mode: list[str]) -> None:
    require_server("memcached")
    result = subprocess.run(
        [*kvfs_command(), "mount", *mode, memcached_url(), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot list its keys" in lines[0], result.stderr
    assert "Errno" not in lines[0]


# ---------------------------------------------------------------------- clients and URLs


def test_one_connection_client_is_shared_by_threads(store: MemcacheStore) -> None:
    def work(worker: int) -> None:
        for index in range(50):
            key = f"t{worker}/k{index}"
            store.put(key, key.encode() * 100)
            assert store.get(key) == key.encode() * 100

    with ThreadPoolExecutor(8) as pool:
        for result in [pool.submit(work, worker) for worker in range(8)]:
            result.result()


def test_open_store_url(client: Client) -> None:
    host, port = _address()
    with open_store(f"memcached://{host}:{port}?default_ttl_secs=30&prefix=app/") as store:
        store.put("k", b"v")
        assert client.get("app/k") == b"v"
        assert 0 < _ttl(client, "app/k") <= 30
    for bad in (f"memcached://{host}:{port}/db", f"memcached://{host}:{port}?ttl=1"):
        with pytest.raises(ValueError):
            open_store(bad)


def test_constructor_arguments_are_kept(client: Client) -> None:
    store = MemcacheStore(client, default_ttl_secs=5)
    assert store.mc is client and store.default_ttl_secs == 5
    store._check()
    assert MemcacheStore.from_url(memcached_url()).url == memcached_url()


@pytest.mark.timeout(180)
def test_stopped_server_gives_backend_error_then_recovers() -> None:
    require_server("memcached")
    store = MemcacheStore.from_url(memcached_url())
    store.put("k", b"value")
    stop_service("memcached")
    try:
        for call in (lambda: store.get("k"), store._check):
            with pytest.raises(BackendError, match="memcached"):
                call()
    finally:
        start_service("memcached")
    store.put("after", b"restart")  # the pool reconnects by itself
    assert store.get("after") == b"restart"
    store.close()
