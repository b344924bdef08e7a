"""The cache decorator (:mod:`kvfs.cache`): the contract, filling, invalidation and races."""

from __future__ import annotations

import io
import pathlib
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from kvfs.cache import CacheDecorator
from kvfs.errors import BackendError
from kvfs.fs import FilesystemStore
from kvfs.memory import DictStore
from kvfs.testing import StoreContract


class FailingStore(DictStore):
    """A cache whose reads, or writes, fail like a broken disk or a lost connection."""

    def __init__(self, fail_reads: bool = False, fail_writes: bool = False) -> None:
        super().__init__()
        self.fail_reads = fail_reads
        self.fail_writes = fail_writes

    def _get(self, key):  # type: ignore[no-untyped-def]
        if self.fail_reads:
            raise BackendError("cache read failed")
        return super()._get(key)

    def _open(self, key):  # type: ignore[no-untyped-def]
        if self.fail_reads:
            raise BackendError("cache read failed")
        return super()._open(key)

    def _get_range(self, key, start, length):  # type: ignore[no-untyped-def]
        if self.fail_reads:
            raise BackendError("cache read failed")
        return super()._get_range(key, start, length)

    def _put(self, key, data):  # type: ignore[no-untyped-def]
        if self.fail_writes:
            raise BackendError("cache write failed")
        return super()._put(key, data)


class HookedStore(DictStore):
    """A backing store that runs *during_read* in the middle of a read of a key."""

    def __init__(self) -> None:
        super().__init__()
        self.during_read: Callable[[], object] | None = None

    def _read_hook(self) -> None:
        hook, self.during_read = self.during_read, None
        if hook is not None:
            hook()

    def _get(self, key):  # type: ignore[no-untyped-def]
        value = super()._get(key)
        self._read_hook()  # the value is read: a write now makes it old
        return value

    def _open(self, key):  # type: ignore[no-untyped-def]
        file = super()._open(key)
        self._read_hook()
        return file


# ---------------------------------------------------------------------- contract


class TestCacheDecoratorContract(StoreContract):
    streams_large_values = False  # a DictStore holds each value whole

    @pytest.fixture
    def store(self) -> Iterator[CacheDecorator]:
        with CacheDecorator(DictStore(), DictStore()) as store:
            yield store


class TestFilesystemCacheOverDictContract(StoreContract):
    """A filesystem cache in front of a memory store: different key limits on each side."""

    streams_large_values = False

    @pytest.fixture
    def store(self, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CacheDecorator]:
        cache = FilesystemStore(tmp_path_factory.mktemp("cache"))
        with CacheDecorator(cache, DictStore()) as store:
            yield store


class TestDictCacheOverFilesystemContract(StoreContract):
    @pytest.fixture
    def store(self, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CacheDecorator]:
        backing = FilesystemStore(tmp_path_factory.mktemp("store"))
        with CacheDecorator(DictStore(), backing) as store:
            yield store


# ---------------------------------------------------------------------- filling


@pytest.fixture
def stores() -> tuple[DictStore, DictStore, CacheDecorator]:
    cache, backing = DictStore(), DictStore()
    return cache, backing, CacheDecorator(cache, backing)


def test_get_fills_the_cache_and_is_then_served_from_it(stores) -> None:  # type: ignore[no-untyped-def]
    cache, backing, store = stores
    backing.put("k", b"value")
    assert cache.keys() == []
    assert store.get("k") == b"value"
    assert cache.get("k") == b"value"
    backing.put("k", b"changed behind the cache's back")
    assert store.get("k") == b"value", "the second read did not come from the cache"


@pytest.mark.parametrize("read", ["open", "get_file(file)", "get_file(name)", "get_range"])
def test_other_reads_fill_the_cache(stores, read: str, tmp_path: pathlib.Path) -> None:  # type: ignore[no-untyped-def]
    cache, backing, store = stores
    backing.put("k", b"0123456789")
    calls: dict[str, Callable[[], bytes]] = {
        "open": lambda: store.open("k").read(),
        "get_file(file)": lambda: _get_file(store, "k"),
        "get_file(name)": lambda: _get_filename(store, "k", tmp_path / "target"),
        "get_range": lambda: store.get_range("k", 2, 3),
    }
    expected = b"234" if read == "get_range" else b"0123456789"
    assert calls[read]() == expected
    assert cache.get("k") == b"0123456789"
    backing.put("k", b"9876543210")
    assert calls[read]() == expected, "the second read did not come from the cache"


def _get_file(store: CacheDecorator, key: str) -> bytes:
    buffer = io.BytesIO()
    store.get_file(key, buffer)
    return buffer.getvalue()


def _get_filename(store: CacheDecorator, key: str, target: pathlib.Path) -> bytes:
    store.get_file(key, str(target))
    return target.read_bytes()


def test_missing_key_raises_and_caches_nothing(stores, tmp_path: pathlib.Path) -> None:  # type: ignore[no-untyped-def]
    cache, _, store = stores
    for read in (
        lambda: store.get("missing"),
        lambda: store.open("missing"),
        lambda: store.get_file("missing", io.BytesIO()),
        lambda: store.get_file("missing", str(tmp_path / "t")),
        lambda: store.get_range("missing", 0, 1),
    ):
        with pytest.raises(KeyError):
            read()
    assert cache.keys() == []
    assert list(tmp_path.iterdir()) == []


def test_listing_stat_and_contains_ask_the_backing_store(stores) -> None:  # type: ignore[no-untyped-def]
    cache, backing, store = stores
    cache.put("only-in-cache", b"stale")
    backing.put("d/k", b"12345")
    assert "only-in-cache" not in store
    assert store.keys() == ["d/k"]
    assert store.stat("d/k").size == 5
    assert [entry.key for entry in store.iter_level()] == ["d/"]
    store.put_directory("e")
    assert backing.has_directory("e") and not cache.has_directory("e")


# ---------------------------------------------------------------------- invalidation


def test_writes_go_to_the_store_and_invalidate_the_cache(stores, tmp_path: pathlib.Path) -> None:  # type: ignore[no-untyped-def]
    cache, backing, store = stores
    source = tmp_path / "source"
    source.write_bytes(b"from a file")
    writes = [
        ("put", lambda: store.put("k", b"put")),
        ("put_file(file)", lambda: store.put_file("k", io.BytesIO(b"put_file"))),
        ("put_file(name)", lambda: store.put_file("k", str(source))),
    ]
    for name, write in writes:
        cache.put("k", b"old cached value")
        write()
        assert "k" not in cache, name
        assert store.get("k") == backing.get("k"), name
    cache.put("k", b"old cached value")
    store.delete("k")
    assert "k" not in cache and "k" not in backing


def test_copy_and_move_invalidate_their_keys(stores) -> None:  # type: ignore[no-untyped-def]
    cache, _, store = stores
    store.put("a", b"a")
    store.put("b", b"b")
    assert store.get("b") == b"b"
    assert store.copy("a", "b") == "b"
    assert "b" not in cache
    assert store.get("b") == b"a"
    store.get("a")
    assert store.move("a", "c") == "c"
    assert "a" not in cache and "c" not in cache
    with pytest.raises(KeyError):
        store.get("a")
    assert store.get("c") == b"a"


def test_failed_write_still_invalidates(stores) -> None:  # type: ignore[no-untyped-def]
    cache, _, store = stores
    cache.put("k", b"cached")

    class Unreadable(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
            raise OSError("the source broke")

    with pytest.raises(OSError):
        store.put_file("k", Unreadable())
    assert "k" not in cache


# ---------------------------------------------------------------------- a broken cache


def test_failing_cache_reads_fall_back_to_the_store(tmp_path: pathlib.Path) -> None:
    backing = DictStore()
    backing.put("k", b"value")
    store = CacheDecorator(FailingStore(fail_reads=True), backing)
    assert store.get("k") == b"value"
    assert store.open("k").read() == b"value"
    assert store.get_range("k", 1, 2) == b"al"
    store.get_file("k", str(tmp_path / "t"))
    assert (tmp_path / "t").read_bytes() == b"value"


def test_failing_cache_writes_are_not_errors() -> None:
    backing = DictStore()
    backing.put("k", b"value")
    cache = FailingStore(fail_writes=True)
    store = CacheDecorator(cache, backing)
    assert store.get("k") == b"value"
    assert store.open("k").read() == b"value"
    assert cache.keys() == []


def test_key_the_cache_cannot_hold_is_served_by_the_store(tmp_path: pathlib.Path) -> None:
    backing = DictStore()
    long_name = "k" * 300  # valid in memory, too long for one file name
    backing.put(long_name, b"value")
    cache = FilesystemStore(tmp_path)
    store = CacheDecorator(cache, backing)
    assert store.get(long_name) == b"value"
    assert store.open(long_name).read() == b"value"
    assert _get_file(store, long_name) == b"value"
    store.put(long_name, b"new")
    assert store.get(long_name) == b"new"
    assert cache.keys() == []


# ---------------------------------------------------------------------- races


@pytest.mark.parametrize("read", ["get", "open"])
def test_write_during_a_fill_leaves_no_old_value_in_the_cache(read: str) -> None:
    """A fill reads the old value; a write lands before the fill stores it in the cache."""
    cache, backing = DictStore(), HookedStore()
    store = CacheDecorator(cache, backing)
    backing.put("k", b"old")
    backing.during_read = lambda: store.put("k", b"new")
    first = store.get("k") if read == "get" else store.open("k").read()
    assert first in (b"old", b"new")  # either is right for a read that raced a write
    assert "k" not in cache, "the old value was cached after a newer write"
    assert store.get("k") == b"new"


def test_concurrent_readers_and_writers_end_with_the_last_value() -> None:
    cache, backing = DictStore(), DictStore()
    store = CacheDecorator(cache, backing)
    keys = [f"k{i}" for i in range(8)]
    for key in keys:
        store.put(key, b"0")
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            for key in keys:
                store.get(key)

    def writer(round_: int) -> None:
        for key in keys:
            store.put(key, str(round_).encode())

    with ThreadPoolExecutor(6) as pool:
        readers = [pool.submit(reader) for _ in range(4)]
        for round_ in range(1, 200):
            writer(round_)
        stop.set()
        for future in readers:
            future.result()
    for key in keys:
        assert store.get(key) == b"199"
        assert cache.get(key) == b"199"


# ---------------------------------------------------------------------- flags and lifetime


def test_flags_come_from_the_store_and_ranges_from_the_cache(tmp_path: pathlib.Path) -> None:
    class NoRanges(DictStore):
        fast_ranges = False

    store = CacheDecorator(NoRanges(), FilesystemStore(tmp_path))
    assert store.fast_ranges is False
    assert store.allows_key_and_prefix is False
    assert store.max_component_length == 255
    assert CacheDecorator(DictStore(), NoRanges()).fast_ranges is True


def test_close_closes_both_stores() -> None:
    closed = []

    class Closing(DictStore):
        def __init__(self, name: str) -> None:
            super().__init__()
            self.name = name

        def close(self) -> None:
            closed.append(self.name)

    with CacheDecorator(Closing("cache"), Closing("store")):
        pass
    assert sorted(closed) == ["cache", "store"]
