"""CoordinatedStore and ``?coordinate=``: the library's changes reach a subscriber on another "host"."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest

import kvfs
from kvfs.coordination import Change, ChangeKind, CoordinatedStore, Coordinator, channel_for, open_coordinator
from kvfs.memory import DictStore
from kvfs.store import KeyValueStore
from kvfs.testing import StoreContract
from servers import redis_url, require_server

WAIT = 30.0


class Inbox:
    def __init__(self) -> None:
        self.changes: list[Change] = []
        self._arrived = threading.Condition()

    def __call__(self, change: Change) -> None:
        with self._arrived:
            self.changes.append(change)
            self._arrived.notify_all()

    def wait_for(self, count: int) -> list[tuple[ChangeKind, tuple[str, ...], bool]]:
        with self._arrived:
            self._arrived.wait_for(lambda: len(self.changes) >= count, timeout=WAIT)
            return [(c.kind, c.keys, c.directory) for c in self.changes]


@pytest.fixture(params=["redis", "postgres"])
def engine_url(request: pytest.FixtureRequest) -> str:
    url = require_server(request.param)
    assert url is not None
    return url


@pytest.fixture
def store_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("coordinated"))


@pytest.fixture
def listener(engine_url: str) -> Iterator[Coordinator]:
    """The other host: a coordinator that only listens."""
    with open_coordinator(engine_url) as coordinator:
        yield coordinator


def subscribe(listener: Coordinator, store_url: str) -> Inbox:
    inbox = Inbox()
    listener.subscribe(channel_for(store_url), inbox)
    return inbox


def test_every_write_kind_is_announced_after_it_succeeded(engine_url: str, listener: Coordinator, store_url: str) -> None:
    inbox = subscribe(listener, store_url)
    store = kvfs.open_store(store_url)
    with CoordinatedStore(store, engine_url, store_url=store_url) as coordinated:
        coordinated.put("a/one", b"1")
        coordinated.put_file("a/two", __file__)
        coordinated.copy("a/one", "a/three")
        coordinated.move("a/three", "b/four")
        coordinated.delete("a/two")
        coordinated.delete_many(["a/one", "b/four"])
        coordinated.put_directory("empty")
        coordinated.delete_directory("empty")
        coordinated.put("d/x", b"x")
        coordinated.move_directory("d", "e")
        assert coordinated.get("e/x") == b"x"
        assert inbox.wait_for(10) == [
            (ChangeKind.WRITE, ("a/one",), False),
            (ChangeKind.WRITE, ("a/two",), False),
            (ChangeKind.WRITE, ("a/three",), False),
            (ChangeKind.RENAME, ("a/three", "b/four"), False),
            (ChangeKind.DELETE, ("a/two",), False),
            (ChangeKind.DELETE, ("a/one", "b/four"), False),
            (ChangeKind.MKDIR, ("empty",), False),
            (ChangeKind.RMDIR, ("empty",), False),
            (ChangeKind.WRITE, ("d/x",), False),
            (ChangeKind.RENAME, ("d", "e"), True),
        ]


def test_a_failed_operation_announces_nothing(engine_url: str, listener: Coordinator, store_url: str) -> None:
    inbox = subscribe(listener, store_url)
    with CoordinatedStore(kvfs.open_store(store_url), engine_url, store_url=store_url) as coordinated:
        with pytest.raises(KeyError):
            coordinated.move("missing", "elsewhere")
        with pytest.raises(ValueError):
            coordinated.put("../bad", b"x")
        coordinated.put("good", b"x")
        assert inbox.wait_for(1) == [(ChangeKind.WRITE, ("good",), False)]


def test_the_url_parameter_wraps_the_store(engine_url: str, listener: Coordinator, store_url: str) -> None:
    inbox = subscribe(listener, store_url)
    url = f"file://{store_url}?coordinate={engine_url}&prefix=sub/"
    with kvfs.open_store(url) as store:
        assert isinstance(store, CoordinatedStore)
        store.put("k", b"v")
    with kvfs.open_store(f"{store_url}/sub") as plain:
        assert plain.get("k") == b"v"  # stored below the prefix
    # The channel is the store's as the URL names it (prefix included, coordinate not);
    # the plain path and the file:// URL of the same directory share it.
    inbox_with_prefix = Inbox()
    listener.subscribe(channel_for(f"file://{store_url}?prefix=sub/"), inbox_with_prefix)
    with kvfs.open_store(url) as store:
        store.put("k2", b"v")
    assert inbox_with_prefix.wait_for(1) == [(ChangeKind.WRITE, ("k2",), False)]
    assert inbox.changes == []


def test_a_shared_coordinator_is_left_open(engine_url: str, store_url: str) -> None:
    coordinator = open_coordinator(engine_url)
    try:
        with CoordinatedStore(DictStore(), coordinator, store_url=store_url) as store:
            store.put("k", b"v")
        assert coordinator.publish(channel_for(store_url), ChangeKind.WRITE, ["k"])
        assert coordinator.status().sent == 2
    finally:
        coordinator.close()


def test_writes_succeed_while_the_engine_is_unreachable(store_url: str) -> None:
    # Nothing listens on port 1: every publish fails, no write does.
    with CoordinatedStore(DictStore(), "redis://127.0.0.1:1/0", store_url=store_url) as store:
        store.put("k", b"v")
        store.delete("k")
        assert "k" not in store
        status = store.coordinator.status()
        assert status.publish_errors == 2 and not status.connected


def test_reads_and_capabilities_pass_through(store_url: str) -> None:
    inner = DictStore()
    inner.put("k", b"value")
    with CoordinatedStore(inner, "redis://127.0.0.1:1/0", store_url=store_url) as store:
        assert store.get("k") == b"value"
        assert store.keys() == ["k"]
        assert store.get_range("k", 1, 3) == b"alu"
        assert store.supports_directories == inner.supports_directories
        assert store.coordinator.status().sent == 0


def test_secrets_of_the_engine_url_stay_hidden(store_url: str) -> None:
    with CoordinatedStore(DictStore(), "redis://:hunter2@127.0.0.1:1/0", store_url=store_url) as store:
        assert "hunter2" not in repr(store)
    with pytest.raises(ValueError) as caught:
        kvfs.open_store(f"memory://?coordinate=mysql://u:hunter2@h/db")
    assert "hunter2" not in str(caught.value)


def test_an_unknown_engine_in_the_url_is_refused(store_url: str) -> None:
    with pytest.raises(ValueError, match="coordination URL"):
        kvfs.open_store(f"file://{store_url}?coordinate=ftp://host")


def test_channel_of_a_plain_path_is_its_file_url(store_url: str) -> None:
    assert channel_for(store_url) == channel_for(f"file://{store_url}")
    assert channel_for(store_url) != channel_for(f"file://{store_url}-{uuid.uuid4().hex}")


def test_a_store_is_still_a_store_and_travels_by_the_engines_url(store_url: str) -> None:
    import pickle

    with CoordinatedStore(DictStore(), "redis://127.0.0.1:1/0", store_url=store_url) as store:
        assert isinstance(store, KeyValueStore)
        copy = pickle.loads(pickle.dumps(store))
        assert type(copy) is CoordinatedStore and copy.channel == store.channel
        copy.close()
        with CoordinatedStore(DictStore(), store.coordinator, store_url=store_url) as shared:
            with pytest.raises(TypeError, match="engine's URL"):
                pickle.dumps(shared)


class TestCoordinatedStoreContract(StoreContract):
    """A coordinated store is a store like any other (publishing to a real Redis)."""

    streams_large_values = False  # the dictionary underneath holds whole values

    @pytest.fixture
    def store(self) -> Iterator[CoordinatedStore]:
        require_server("redis")
        with CoordinatedStore(DictStore(), redis_url(), store_url=f"memory://contract-{uuid.uuid4().hex}") as store:
            yield store
