"""The transfer engine (kvfs.transfer): planning, streaming copies, failures, deletions."""

from __future__ import annotations

import os
import threading
import tracemalloc
from typing import IO

import pytest

from kvfs.decorator import StoreDecorator
from kvfs.errors import BackendError, KeyNotFoundError
from kvfs.fs import FilesystemStore
from kvfs.memory import DictStore
from kvfs.store import KeyInfo
from kvfs.transfer import (
    checksum,
    copy_value,
    parallel_map,
    plan_transfer,
    run_transfer,
    stat_keys,
    transfer,
    walk,
)


class FailingPuts(StoreDecorator):
    """Writes fail for the keys in *bad*, or for every write after the first *limit*."""

    def __init__(self, store, bad=(), limit=None):
        super().__init__(store)
        self.bad = set(bad)
        self.limit = limit
        self.puts = 0
        self._lock = threading.Lock()

    def _put_file(self, key, file, ttl_secs=None):
        with self._lock:
            self.puts += 1
            over = self.limit is not None and self.puts > self.limit
        if key in self.bad or over:
            raise BackendError(f"refusing to store {key}")
        return super()._put_file(key, file, ttl_secs)


class StreamOnly(StoreDecorator):
    """Refuses the whole-value calls, so only streaming can move values."""

    def _get(self, key):
        raise AssertionError("a transfer must not read a whole value with get()")

    def _put(self, key, data, ttl_secs=None):
        raise AssertionError("a transfer must not write a whole value with put()")


class NoListingSizes(DictStore):
    listing_has_sizes = False


def filled(store, values):
    for key, value in values.items():
        store.put(key, value)
    return store


VALUES = {
    "a": b"",
    "b/one": b"1" * 10,
    "b/two": b"2" * 20,
    "b/c/three": b"3" * 300,
    "d": os.urandom(5000),
}


# ---------------------------------------------------------------------- listing


@pytest.mark.parametrize("make", [DictStore, NoListingSizes], ids=["dict", "no-listing-sizes"])
def test_walk_gives_every_key_with_its_size(make):
    store = filled(make(), VALUES)
    store.put_directory("empty")
    infos = walk(store)
    assert {info.key: info.size for info in infos} == {key: len(value) for key, value in VALUES.items()}


def test_walk_of_a_filesystem_store_walks_levels_and_skips_empty_directories(store_dir):
    store = filled(FilesystemStore(store_dir), VALUES)
    store.put_directory("e/f")
    assert {info.key: info.size for info in walk(store)} == {k: len(v) for k, v in VALUES.items()}
    assert {info.key for info in walk(store, "b/")} == {"b/one", "b/two", "b/c/three"}
    assert {info.key for info in walk(store, "b/t")} == {"b/two"}


def test_stat_keys_separates_missing_keys_and_keeps_order():
    store = filled(DictStore(), VALUES)
    infos, missing = stat_keys(store, ["d", "nope", "a", "gone"])
    assert [info.key for info in infos] == ["d", "a"]
    assert [info.size for info in infos] == [5000, 0]
    assert missing == ["nope", "gone"]


# ---------------------------------------------------------------------- planning


def test_plan_copies_missing_and_different_sizes_and_skips_the_rest():
    source = filled(DictStore(), VALUES)
    dest = filled(DictStore(), {"a": b"", "b/one": b"x" * 10, "b/two": b"short", "extra": b"!"})
    plan = plan_transfer(source, dest)
    assert sorted(info.key for info in plan.copy) == ["b/c/three", "b/two", "d"]
    assert sorted(info.key for info in plan.skip) == ["a", "b/one"]  # same size: skipped
    assert plan.delete == []
    assert plan.bytes_to_copy == 300 + 20 + 5000


def test_plan_with_checksum_copies_same_size_but_different_content():
    source = filled(DictStore(), VALUES)
    dest = filled(DictStore(), {"a": b"", "b/one": b"x" * 10})
    plan = plan_transfer(source, dest, compare="checksum")
    assert "b/one" in {info.key for info in plan.copy}
    assert [info.key for info in plan.skip] == ["a"]


def test_plan_never_copies_everything_and_delete_lists_extra_keys_under_the_prefix():
    source = filled(DictStore(), VALUES)
    dest = filled(DictStore(), {**VALUES, "b/extra": b"e", "outside": b"o"})
    assert len(plan_transfer(source, dest, compare="never").copy) == len(VALUES)
    plan = plan_transfer(source, dest, prefix="b/", delete=True)
    assert plan.copy == [] and plan.delete == ["b/extra"]


def test_plan_of_named_keys_reports_missing_ones_and_refuses_delete():
    source = filled(DictStore(), VALUES)
    plan = plan_transfer(source, DictStore(), keys=["d", "nope"])
    assert [info.key for info in plan.copy] == ["d"] and plan.missing == ["nope"]
    with pytest.raises(ValueError):
        plan_transfer(source, DictStore(), keys=["d"], delete=True)
    with pytest.raises(ValueError):
        plan_transfer(source, DictStore(), compare="mtime")  # type: ignore[arg-type]


# ---------------------------------------------------------------------- running


def test_transfer_copies_every_value_exactly_by_streaming():
    values = {**VALUES, "large": os.urandom(3 << 20)}
    source = StreamOnly(filled(DictStore(), values))
    dest = DictStore()
    report = transfer(source, StreamOnly(dest), jobs=3)
    assert report.ok and sorted(report.copied) == sorted(values)
    assert report.bytes_copied == sum(len(value) for value in values.values())
    assert dict(dest.d) == values


def test_a_large_value_never_sits_whole_in_memory(tmp_path):
    size = 48 * 1024 * 1024
    source = FilesystemStore(tmp_path / "source")
    with open(tmp_path / "big", "wb") as file:
        for _ in range(size // (1 << 20)):
            file.write(os.urandom(1 << 20))
    source.put_file("big", str(tmp_path / "big"))
    dest = FilesystemStore(tmp_path / "dest")
    tracemalloc.start()
    try:
        copy_value(source, dest, "big", on_bytes=lambda count: None)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < size // 8
    assert checksum(source, "big") == checksum(dest, "big")


def test_progress_listener_sees_every_byte_and_every_key():
    class Listener:
        def __init__(self):
            self.bytes = 0
            self.keys = []
            self.lock = threading.Lock()

        def bytes_moved(self, count):
            with self.lock:
                self.bytes += count

        def key_finished(self, key, error):
            with self.lock:
                self.keys.append((key, error))

    listener = Listener()
    source = filled(DictStore(), VALUES)
    report = transfer(source, DictStore(), progress=listener)
    assert listener.bytes == report.bytes_copied == sum(len(v) for v in VALUES.values())
    assert sorted(key for key, error in listener.keys) == sorted(VALUES)
    assert all(error is None for _, error in listener.keys)


def test_a_failed_key_does_not_stop_the_others_and_holds_back_deletions():
    source = filled(DictStore(), VALUES)
    inner = filled(DictStore(), {"extra": b"keep me until every copy succeeded"})
    dest = FailingPuts(inner, bad={"b/two"})
    plan = plan_transfer(source, dest, delete=True)
    assert plan.delete == ["extra"]
    report = run_transfer(source, dest, plan)
    assert list(report.failed) == ["b/two"] and isinstance(report.failed["b/two"], BackendError)
    assert sorted(report.copied) == sorted(set(VALUES) - {"b/two"})
    assert report.deleted == [] and report.deletions_held_back == 1
    assert "extra" in inner

    dest.bad.clear()  # the problem is fixed: a rerun finishes, then deletes
    report = transfer(source, dest, delete=True)
    assert report.ok and report.copied == ["b/two"] and report.deleted == ["extra"]
    assert report.skipped == len(VALUES) - 1
    assert dict(inner.d) == VALUES


def test_an_interrupted_transfer_rerun_copies_only_what_is_missing(tmp_path):
    values = {f"k/{i:03d}": os.urandom(i * 37) for i in range(60)}
    source = filled(DictStore(), values)
    dest_store = FilesystemStore(tmp_path / "dest")
    failing = FailingPuts(dest_store, limit=25)
    first = transfer(source, failing, jobs=4)
    assert len(first.copied) == 25 and len(first.failed) == 35
    # Every key that arrived is whole; no key is partial.
    for key in dest_store.keys():
        assert dest_store.get(key) == values[key]
    second = transfer(source, dest_store, jobs=4)
    assert second.ok and second.skipped == 25 and len(second.copied) == 35
    assert {key: dest_store.get(key) for key in dest_store.keys()} == values


def test_missing_named_keys_are_failures_of_the_report():
    source = filled(DictStore(), VALUES)
    report = transfer(source, DictStore(), keys=["a", "ghost"])
    assert report.copied == ["a"]
    assert isinstance(report.failed["ghost"], KeyNotFoundError)


def test_a_filesystem_destination_never_keeps_a_partial_value(tmp_path):
    class BrokenReader(StoreDecorator):
        """A source whose values break off after their first megabyte."""

        def _open(self, key) -> IO[bytes]:
            inner = super()._open(key)

            class Half:
                sent = 0

                def read(self, size=-1):
                    if self.sent >= 1 << 20:
                        raise BackendError("connection reset")
                    data = inner.read(min(size if size > 0 else 1 << 16, 1 << 16))
                    self.sent += len(data)
                    return data

                def seekable(self):
                    return False

                def close(self):
                    inner.close()

                def __enter__(self):
                    return self

                def __exit__(self, *exc):
                    self.close()

            return Half()  # type: ignore[return-value]

    source = BrokenReader(filled(DictStore(), {"big": os.urandom(3 << 20)}))
    dest = FilesystemStore(tmp_path / "dest")
    dest.put("big", b"old value")
    report = transfer(source, dest)
    assert list(report.failed) == ["big"]
    assert dest.get("big") == b"old value"
    assert dest.keys() == ["big"]
    assert not any(":" in name for name in os.listdir(tmp_path / "dest"))  # no temporary left


# ---------------------------------------------------------------------- parallel_map


def test_parallel_map_yields_every_result_and_error_whatever_the_order():
    def work(n):
        if n % 7 == 0:
            raise ValueError(n)
        return n * n

    results = {item: (result, error) for item, result, error in parallel_map(work, list(range(100)), 5)}
    assert set(results) == set(range(100))
    for n, (result, error) in results.items():
        if n % 7 == 0:
            assert isinstance(error, ValueError) and result is None
        else:
            assert result == n * n and error is None


def test_parallel_map_runs_calls_at_once_and_checks_jobs():
    barrier = threading.Barrier(4, timeout=30)
    results = list(parallel_map(lambda n: barrier.wait() >= 0, list(range(4)), 4))
    assert [error for _, _, error in results] == [None] * 4  # all four met at the barrier
    with pytest.raises(ValueError):
        list(parallel_map(str, [1], 0))
    assert list(parallel_map(str, [], 3)) == []


def test_keyinfo_sizes_from_listing_are_used_without_stat():
    class CountingStats(DictStore):
        stats = 0

        def _stat(self, key):
            CountingStats.stats += 1
            return super()._stat(key)

    store = filled(CountingStats(), VALUES)
    assert all(isinstance(info, KeyInfo) and info.size is not None for info in walk(store))
    assert CountingStats.stats == 0
