"""The store contract as a reusable pytest suite: :class:`StoreContract`.

Every kvfs backend and decorator is tested with this class, and a third-party backend
can be too. Subclass it under a name pytest collects and override the ``store`` fixture
to return a fresh, empty store::

    import pytest
    from kvfs.testing import StoreContract

    class TestMyStore(StoreContract):
        @pytest.fixture
        def store(self, tmp_path):
            with MyStore(tmp_path) as store:
                yield store

The tests read the store's capability flags (``supports_writes``,
``supports_directories``, ``supports_staging``, ``supports_listing``, ``allows_key_and_prefix``,
``ttl_support``, ``keeps_metadata``, ``listing_has_metadata``, ``listing_has_sizes``, ``max_key_length``, ``max_component_length``) and whether it is a
:class:`~kvfs.mixins.UrlMixin`, and skip what a store does not claim to do rather than
fail. Class attributes of the test class tune the rest (:attr:`StoreContract.streams_large_values`);
overriding the ``unavailable_store`` fixture (a missing bucket, a closed port) tests that
:meth:`~kvfs.store.KeyValueStore.check` fails where it should.

This module needs ``pytest`` and ``hypothesis`` (``pip install 'kvfs[test]'``); importing
:mod:`kvfs` itself never imports it.
"""

from __future__ import annotations

import io
import os
import pathlib
import pickle
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .errors import BackendError, ReadOnlyError
from .keys import KEY_CHARACTERS, MAX_KEY_LENGTH, SEPARATOR
from .mixins import FOREVER, NOT_SET, UrlMixin
from .store import KeyInfo, KeyValueStore, Metadata

#: Keys that every store must reject with ``ValueError``, by test id. Too-long keys are
#: built per store (see :func:`key_of_length`), since the limit is the store's.
INVALID_KEYS: dict[str, object] = {
    "empty": "",
    "slash": "/",
    "leading-slash": "/a",
    "trailing-slash": "a/",
    "double-slash": "a//b",
    "dot": ".",
    "dotdot": "..",
    "parent": "../x",
    "inner-parent": "a/../b",
    "inner-dot": "a/./b",
    "non-ascii": "ä",
    "nul": "\x00",
    "star": "*",
    "space": "a b",
    "newline-at-end": "abc\n",
    "tab": "a\tb",
    "none": None,
    "int": 42,
    "bytes": b"abc",
}

MiB = 1024 * 1024


# ---------------------------------------------------------------------- helpers


def valid_keys(
    max_length: int = MAX_KEY_LENGTH,
    max_component_length: int | None = None,
    max_components: int = 4,
) -> st.SearchStrategy[str]:
    """A Hypothesis strategy for valid keys: 1 to *max_components* ``/``-joined components.

    Components use the whole key alphabet, are never ``.`` or ``..``, and are at most
    *max_component_length* (default 64) characters; keys are at most *max_length*.
    """
    component_size = min(max_component_length or 64, 64, max_length)
    component = st.text(KEY_CHARACTERS, min_size=1, max_size=component_size).filter(
        lambda name: name not in (".", "..")
    )
    keys = st.lists(component, min_size=1, max_size=max_components).map(SEPARATOR.join)
    return keys.filter(lambda key: len(key) <= max_length)


def key_of_length(length: int, max_component_length: int | None = None) -> str:
    """Return a valid-looking key of exactly *length* bytes.

    Split into ``/``-separated components of at most *max_component_length* bytes, so it
    is only as long as the test needs and no component breaks a file-name limit.
    """
    unit = max(2, min(max_component_length or length, length))
    key = (("k" * unit) + SEPARATOR) * (length // (unit + 1) + 1)
    key = key[:length]
    if key.endswith(SEPARATOR):
        key = key[1:] + "k"  # shorten the first component instead of ending on '/'
    return key


def random_bytes(size: int, seed: int = 0) -> bytes:
    """Return *size* reproducible pseudo-random bytes (incompressible, unlike zeros)."""
    return random.Random(seed).randbytes(size)


class ShortReadFile(io.RawIOBase):
    """A pipe-like, unseekable reader that returns at most *max_read* bytes per call.

    Like a pipe or socket, ``read(n)`` may return fewer than ``n`` bytes before the end;
    only an empty result means end of file. ``read()`` without a size reads to the end,
    as a raw pipe's does.
    """

    def __init__(self, data: bytes, max_read: int = 1000) -> None:
        super().__init__()
        self._data = memoryview(data)
        self._position = 0
        self.max_read = max_read

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        size = min(len(buffer), self.max_read, len(self._data) - self._position)
        buffer[:size] = self._data[self._position : self._position + size]
        self._position += size
        return size


class CountingReader(io.RawIOBase):
    """An unseekable reader that records how it is read, to prove a value is streamed.

    ``calls`` counts reads, ``largest_read`` is the largest size asked for, and
    ``unbounded_reads`` counts reads without a size (which pull the whole value into memory).
    """

    def __init__(self, data: bytes) -> None:
        super().__init__()
        self._data = memoryview(data)
        self._position = 0
        self.calls = 0
        self.largest_read = 0
        self.unbounded_reads = 0

    def readable(self) -> bool:
        return True

    def _take(self, size: int) -> bytes:
        chunk = self._data[self._position : self._position + size]
        self._position += len(chunk)
        return bytes(chunk)

    def read(self, size: int | None = -1) -> bytes:
        self.calls += 1
        if size is None or size < 0:
            self.unbounded_reads += 1
            return self._take(len(self._data))
        self.largest_read = max(self.largest_read, size)
        return self._take(size)

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, buffer: Any) -> int:
        self.calls += 1
        self.largest_read = max(self.largest_read, len(buffer))
        chunk = self._take(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)


def _require_writes(store: KeyValueStore) -> None:
    if not store.supports_writes:
        pytest.skip(f"{type(store).__name__} is read-only")


def _require_directories(store: KeyValueStore) -> None:
    _require_writes(store)
    if not store.supports_directories:
        pytest.skip(f"{type(store).__name__} does not keep empty directories")


def _require_metadata(store: KeyValueStore) -> None:
    _require_writes(store)
    if not store.keeps_metadata:
        pytest.skip(f"{type(store).__name__} does not keep modes, owners or times")


def _require_listing(store: KeyValueStore) -> None:
    if not store.supports_listing:
        pytest.skip(f"{type(store).__name__} cannot list its keys")


def _lists(store: KeyValueStore) -> bool:
    """Whether the store can list: tests check their listings only then."""
    return store.supports_listing


def _require_staging(store: KeyValueStore) -> None:
    _require_writes(store)
    if not store.supports_staging:
        pytest.skip(f"{type(store).__name__} does not stage values in local files")


def _level(store: KeyValueStore, prefix: str = "") -> dict[str, KeyInfo]:
    """One level of listing as a dict, failing on duplicate entries."""
    entries: dict[str, KeyInfo] = {}
    for entry in store.iter_level(prefix):
        assert isinstance(entry, KeyInfo), entry
        assert entry.key not in entries, f"iter_level({prefix!r}) listed {entry.key!r} twice"
        entries[entry.key] = entry
    return entries


def _named(info: KeyInfo | None) -> tuple[str, bool] | None:
    """What *info* names (key and whether a directory); times and metadata may vary."""
    return None if info is None else (info.key, info.is_prefix)


def _key_calls(
    store: KeyValueStore, scratch: pathlib.Path
) -> dict[str, Callable[[Any], object]]:
    """Every public method that takes a key, as one-argument calls, by name."""
    source = scratch / "source"
    source.write_bytes(b"value")
    target = scratch / "target"
    calls: dict[str, Callable[[Any], object]] = {
        "get": lambda key: store.get(key),
        "open": lambda key: store.open(key),
        "open_with_info": lambda key: store.open_with_info(key),
        "get_file(file)": lambda key: store.get_file(key, io.BytesIO()),
        "get_file(name)": lambda key: store.get_file(key, str(target)),
        "__contains__": lambda key: key in store,
        "stat": lambda key: store.stat(key),
        "get_range": lambda key: store.get_range(key, 0, 1),
        "has_directory": lambda key: store.has_directory(key),
        "describe": lambda key: store.describe(key),
        "sync": lambda key: store.sync(key),
    }
    if store.supports_writes:
        calls.update(
            {
                "put": lambda key: store.put(key, b"value"),
                "put_file(file)": lambda key: store.put_file(key, io.BytesIO(b"value")),
                "put_file(name)": lambda key: store.put_file(key, str(source)),
                "delete": lambda key: store.delete(key),
                "copy(source)": lambda key: store.copy(key, "copy-dest"),
                "copy(dest)": lambda key: store.copy("copy-source", key),
                "move(source)": lambda key: store.move(key, "move-dest"),
                "move(dest)": lambda key: store.move("move-source", key),
                "set_metadata": lambda key: store.set_metadata(key, mode=0o644),
            }
        )
        if store.supports_directories:
            calls["put_directory"] = lambda key: store.put_directory(key)
            calls["delete_directory"] = lambda key: store.delete_directory(key)
    if isinstance(store, UrlMixin):
        calls["url_for"] = lambda key: store.url_for(key)
    return calls


def _bind(call: Callable[[Any], object], argument: object) -> Callable[[], object]:
    return lambda: call(argument)


def _assert_all_raise(
    expected: type[BaseException], calls: dict[str, Callable[[], object]]
) -> None:
    """Assert every call raises *expected*, naming all the calls that did not."""
    failures = []
    for name, call in calls.items():
        try:
            call()
        except expected:
            continue
        except Exception as error:  # noqa: BLE001 - report what was raised instead
            failures.append(f"{name} raised {type(error).__name__}: {error}")
        else:
            failures.append(f"{name} raised nothing")
    assert not failures, f"expected {expected.__name__}: " + "; ".join(failures)


def _assert_all_reject(store: KeyValueStore, key: object, scratch: pathlib.Path) -> None:
    """Assert every key-taking method raises ``ValueError`` for *key*."""
    calls = _key_calls(store, scratch)
    try:
        _assert_all_raise(ValueError, {name: _bind(call, key) for name, call in calls.items()})
    except AssertionError as error:
        raise AssertionError(f"key {key!r}: {error}") from None
    assert not (scratch / "target").exists(), "get_file created a file for an invalid key"


_hypothesis_settings = settings(
    max_examples=50,
    deadline=None,
    # Each subclass runs the same test on its own store, from its own test class.
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.differing_executors,
    ],
)


# ---------------------------------------------------------------------- the contract


class StoreContract:
    """The behaviour every kvfs store shares (simplekv's semantics plus kvfs extensions).

    Subclass it as ``Test...`` and override the ``store`` fixture to return a fresh,
    empty store; close it after the test if it holds connections.
    """

    #: ``put_file`` reads a large value in bounded chunks instead of all at once. Set it
    #: to False for backends that must hold a whole value in memory (a dict, a Redis string).
    streams_large_values: ClassVar[bool] = True
    #: The largest single read ``put_file`` may ask for when it streams.
    max_streaming_read: ClassVar[int] = 8 * MiB
    #: The size of the one large value the suite writes.
    large_value_size: ClassVar[int] = 10 * MiB
    #: The keys the store must reject, by test id: a subset of :data:`INVALID_KEYS`, for a
    #: store with a wider key rule of its own (such as one that encodes any ``str``).
    invalid_keys: ClassVar[dict[str, object]] = INVALID_KEYS

    @pytest.fixture
    def store(self) -> Iterator[KeyValueStore]:
        """A fresh, empty store. Subclasses must override this fixture."""
        pytest.fail(f"{type(self).__name__} must override the 'store' fixture")
        yield  # pragma: no cover

    @pytest.fixture
    def unavailable_store(self) -> Iterator[KeyValueStore | None]:
        """A store of the same backend that cannot be used: a missing bucket or directory,
        a server that does not answer. ``None`` (the default) skips the test of
        :meth:`~kvfs.store.KeyValueStore.check` failing; backends that can be missing
        override it.
        """
        yield None

    @pytest.fixture
    def scratch(self, tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
        """An empty directory for the tests' own files, apart from ``tmp_path``.

        A store fixture may keep its data in ``tmp_path``; files the tests write must
        not show up as its keys.
        """
        return tmp_path_factory.mktemp("contract-files")

    # ------------------------------------------------------------------ keys

    @pytest.mark.parametrize("name", list(INVALID_KEYS))
    def test_invalid_key_is_rejected_by_every_method(
        self, store: KeyValueStore, name: str, scratch: pathlib.Path
    ) -> None:
        if name not in self.invalid_keys:
            pytest.skip(f"the store accepts the key {INVALID_KEYS[name]!r}")
        _assert_all_reject(store, self.invalid_keys[name], scratch)
        if store.supports_writes and _lists(store):
            assert store.keys() == [], "a call with an invalid key stored something"

    def test_key_longer_than_1024_bytes_is_rejected(
        self, store: KeyValueStore, scratch: pathlib.Path
    ) -> None:
        _assert_all_reject(store, key_of_length(1025, store.max_component_length), scratch)

    def test_longest_key_round_trips(self, store: KeyValueStore) -> None:
        _require_writes(store)
        assert store.max_key_length <= MAX_KEY_LENGTH
        key = key_of_length(store.max_key_length, store.max_component_length)
        assert store.put(key, b"long") == key
        assert store.get(key) == b"long"
        if _lists(store):
            assert store.keys() == [key]

    def test_too_long_key_error_names_the_limit(self, store: KeyValueStore) -> None:
        limit = store.max_key_length
        for length in {limit + 1, MAX_KEY_LENGTH}:
            if length <= limit:
                continue  # a 1024-byte key is valid where the store allows it
            key = key_of_length(length, store.max_component_length)
            with pytest.raises(ValueError, match=str(limit)):
                store.get(key)

    def test_component_longer_than_limit_is_rejected(self, store: KeyValueStore) -> None:
        limit = store.max_component_length
        if limit is None or limit >= store.max_key_length:
            pytest.skip("the store has no per-component limit")
        with pytest.raises(ValueError, match=str(limit)):
            store.get("a/" + "k" * (limit + 1))
        if store.supports_writes:
            key = "a/" + "k" * limit
            store.put(key, b"x")
            assert store.get(key) == b"x"

    def test_every_key_character_round_trips(self, store: KeyValueStore) -> None:
        _require_writes(store)
        # All characters in as few keys as the store's limits allow.
        size = min(store.max_component_length or MAX_KEY_LENGTH, store.max_key_length)
        starts = range(0, len(KEY_CHARACTERS), size)
        keys = [KEY_CHARACTERS[start : start + size] for start in starts]
        keys += ["...", ".hidden", "dir/..x/y.", "~/-/_"]
        for key in keys:
            store.put(key, key.encode())
        if _lists(store):
            assert sorted(store.keys()) == sorted(keys)
        for key in keys:
            assert store.get(key) == key.encode()

    # ------------------------------------------------------------------ get / put

    def test_empty_store_has_no_keys(self, store: KeyValueStore) -> None:
        assert "k" not in store
        if _lists(store):
            assert store.keys() == []
            assert list(store) == []

    def test_put_returns_key_and_get_returns_bytes(self, store: KeyValueStore) -> None:
        _require_writes(store)
        assert store.put("key", b"value") == "key"
        value = store.get("key")
        assert type(value) is bytes
        assert value == b"value"

    def test_get_missing_key_raises_key_error(self, store: KeyValueStore) -> None:
        with pytest.raises(KeyError):
            store.get("missing")

    def test_every_read_of_a_missing_key_raises_key_error(
        self, store: KeyValueStore, scratch: pathlib.Path
    ) -> None:
        calls: dict[str, Callable[[], object]] = {
            "get": lambda: store.get("missing"),
            "open": lambda: store.open("missing"),
            "get_file": lambda: store.get_file("missing", io.BytesIO()),
            "stat": lambda: store.stat("missing"),
            "get_range": lambda: store.get_range("missing", 0, 10),
            "get_range(length 0)": lambda: store.get_range("missing", 0, 0),
        }
        if store.supports_writes:
            calls["copy"] = lambda: store.copy("missing", "dest")
            calls["move"] = lambda: store.move("missing", "dest")
        _assert_all_raise(KeyError, calls)
        if store.supports_writes and _lists(store):
            assert store.keys() == []

    @pytest.mark.parametrize("data", ["text", 42, None, 1.5, ["b"]], ids=repr)
    def test_value_that_is_not_bytes_raises_ioerror(
        self, store: KeyValueStore, data: object
    ) -> None:
        _require_writes(store)
        try:
            store.put("key", data)  # type: ignore[arg-type]
        except IOError:
            pass
        else:
            pytest.fail(f"put accepted {data!r}")
        assert "key" not in store

    def test_bytes_like_values_are_stored_as_bytes(self, store: KeyValueStore) -> None:
        _require_writes(store)
        store.put("array", bytearray(b"array"))  # type: ignore[arg-type]
        store.put("view", memoryview(b"view"))  # type: ignore[arg-type]
        assert store.get("array") == b"array"
        assert store.get("view") == b"view"
        assert type(store.get("view")) is bytes

    def test_empty_value_is_not_a_missing_key(self, store: KeyValueStore) -> None:
        _require_writes(store)
        store.put("empty", b"")
        assert "empty" in store
        assert store.get("empty") == b""
        if _lists(store):
            assert store.keys() == ["empty"]
        assert store.stat("empty").size == 0

    @pytest.mark.parametrize("size", [0, 1, 1000, 65536 + 1])
    def test_value_sizes_round_trip(self, store: KeyValueStore, size: int) -> None:
        _require_writes(store)
        value = random_bytes(size, seed=size)
        store.put("key", value)
        assert store.get("key") == value

    def test_all_byte_values_round_trip(self, store: KeyValueStore) -> None:
        _require_writes(store)
        value = bytes(range(256)) * 4 + bytes(range(255, -1, -1))
        store.put("bytes", value)
        assert store.get("bytes") == value
        buffer = io.BytesIO()
        store.get_file("bytes", buffer)
        assert buffer.getvalue() == value

    def test_overwrite_replaces_value(self, store: KeyValueStore) -> None:
        _require_writes(store)
        store.put("key", b"a long first value" * 100)
        store.put("key", b"short")
        assert store.get("key") == b"short"
        if _lists(store):
            assert store.keys() == ["key"]

    def test_large_value_round_trips(self, store: KeyValueStore) -> None:
        """The one large value of the suite: streamed in, then read whole and in part."""
        _require_writes(store)
        size = self.large_value_size
        value = random_bytes(size, seed=1)
        if self.streams_large_values:
            reader = CountingReader(value)
            assert store.put_file("large", reader) == "large"  # type: ignore[arg-type]
            assert reader.unbounded_reads == 0, "put_file read the whole value at once"
            assert reader.largest_read <= self.max_streaming_read
            assert reader.calls >= 2
        else:
            store.put("large", value)
        assert store.stat("large").size == size
        assert store.get_range("large", size - 10, 100) == value[-10:]
        assert store.get("large") == value

    # ------------------------------------------------------------------ files

    def test_put_file_from_file_object(self, store: KeyValueStore) -> None:
        _require_writes(store)
        source = io.BytesIO(b"from a file object")
        assert store.put_file("key", source) == "key"
        assert not source.closed, "put_file closed the caller's file"
        assert store.get("key") == b"from a file object"

    @pytest.mark.parametrize("kind", [str, pathlib.Path], ids=["str", "pathlib"])
    def test_put_file_from_filename(
        self, store: KeyValueStore, scratch: pathlib.Path, kind: type
    ) -> None:
        _require_writes(store)
        source = scratch / "source"
        source.write_bytes(b"from a file name")
        assert store.put_file("key", kind(source)) == "key"
        assert store.get("key") == b"from a file name"
        assert source.read_bytes() == b"from a file name", "put_file changed the source"

    def test_put_file_from_missing_filename_raises_oserror(
        self, store: KeyValueStore, scratch: pathlib.Path
    ) -> None:
        _require_writes(store)
        with pytest.raises(OSError):
            store.put_file("key", str(scratch / "no-such-file"))
        assert "key" not in store

    def test_put_file_from_short_reads_stores_everything(self, store: KeyValueStore) -> None:
        _require_writes(store)
        value = random_bytes(200_000, seed=2)
        store.put_file("key", ShortReadFile(value, max_read=4096))  # type: ignore[arg-type]
        assert store.get("key") == value

    def test_get_file_to_file_object(self, store: KeyValueStore) -> None:
        _require_writes(store)
        store.put("key", b"to a file object")
        target = io.BytesIO()
        store.get_file("key", target)
        assert not target.closed, "get_file closed the caller's file"
        assert target.getvalue() == b"to a file object"

    @pytest.mark.parametrize("kind", [str, pathlib.Path], ids=["str", "pathlib"])
    def test_get_file_to_filename(
        self, store: KeyValueStore, scratch: pathlib.Path, kind: type
    ) -> None:
        _require_writes(store)
        store.put("key", b"to a file name")
        target = scratch / "target"
        store.get_file("key", kind(target))
        assert target.read_bytes() == b"to a file name"
        store.put("key", b"new")
        store.get_file("key", kind(target))
        assert target.read_bytes() == b"new", "get_file did not replace the file"

    @pytest.mark.parametrize("kind", [str, pathlib.Path], ids=["str", "pathlib"])
    def test_get_file_of_missing_key_leaves_no_file(
        self, store: KeyValueStore, scratch: pathlib.Path, kind: type
    ) -> None:
        target = scratch / "target"
        with pytest.raises(KeyError):
            store.get_file("missing", kind(target))
        assert not target.exists(), "get_file left an empty file behind"
        assert os.listdir(scratch) == [], "get_file left a temporary file behind"
        target.write_bytes(b"keep me")
        with pytest.raises(KeyError):
            store.get_file("missing", kind(target))
        assert target.read_bytes() == b"keep me", "get_file of a missing key lost a file"

    # ------------------------------------------------------------------ open

    def test_open_returns_readable_seekable_file(self, store: KeyValueStore) -> None:
        _require_writes(store)
        value = bytes(range(100))
        store.put("key", value)
        with store.open("key") as file:
            assert file.readable()
            assert file.seekable()
            assert file.read(3) == value[:3]
            assert file.tell() == 3
            assert file.seek(50) == 50
            assert file.read(10) == value[50:60]
            assert file.seek(-5, io.SEEK_END) == 95
            assert file.read() == value[95:]
            assert file.read() == b""
            file.seek(0)
            assert file.read() == value

    def test_open_missing_key_raises_at_open_time(self, store: KeyValueStore) -> None:
        with pytest.raises(KeyError):
            store.open("missing")

    # ------------------------------------------------------------------ delete

    def test_delete_removes_key(self, store: KeyValueStore) -> None:
        _require_writes(store)
        store.put("key", b"value")
        store.put("other", b"other")
        store.delete("key")
        assert "key" not in store
        with pytest.raises(KeyError):
            store.get("key")
        if _lists(store):
            assert store.keys() == ["other"]

    def test_delete_missing_key_is_not_an_error(self, store: KeyValueStore) -> None:
        _require_writes(store)
        store.delete("missing")
        store.delete("missing/deeper")
        if _lists(store):
            assert store.keys() == []

    def test_prefix_is_not_a_key(self, store: KeyValueStore) -> None:
        """``a`` is not a key just because ``a/b`` is (a directory, on a filesystem)."""
        _require_writes(store)
        store.put("a/b", b"value")
        assert "a" not in store
        for call in (store.get, store.open, store.stat):
            with pytest.raises(KeyError):
                call("a")
        store.delete("a")
        assert store.get("a/b") == b"value", "deleting a prefix deleted keys below it"

    # ------------------------------------------------------------------ listing

    def _put_tree(self, store: KeyValueStore) -> dict[str, bytes]:
        tree = {
            "a/b/c": b"abc",
            "a/b/d": b"abd!",
            "a/e": b"ae",
            "f": b"f-value",
            "ab": b"",
        }
        for key, value in tree.items():
            store.put(key, value)
        return tree

    def test_keys_and_iteration(self, store: KeyValueStore) -> None:
        _require_writes(store)
        _require_listing(store)
        tree = self._put_tree(store)
        keys = store.keys()
        assert isinstance(keys, list)
        assert sorted(keys) == sorted(tree)
        iterator = store.iter_keys()
        assert iter(iterator) is iterator, "iter_keys must return an iterator"
        assert sorted(iterator) == sorted(tree)
        assert sorted(store) == sorted(tree)
        for key in tree:
            assert key in store
        assert "a/b" not in store

    @pytest.mark.parametrize(
        ("prefix", "expected"),
        [
            ("", ["a/b/c", "a/b/d", "a/e", "ab", "f"]),
            ("a", ["a/b/c", "a/b/d", "a/e", "ab"]),
            ("a/", ["a/b/c", "a/b/d", "a/e"]),
            ("a/b", ["a/b/c", "a/b/d"]),
            ("a/b/", ["a/b/c", "a/b/d"]),
            ("a/b/c", ["a/b/c"]),
            ("f", ["f"]),
            ("x", []),
            ("a/x/", []),
        ],
    )
    def test_keys_with_prefix(
        self, store: KeyValueStore, prefix: str, expected: list[str]
    ) -> None:
        _require_writes(store)
        _require_listing(store)
        self._put_tree(store)
        assert sorted(store.keys(prefix)) == expected
        assert sorted(store.iter_keys(prefix)) == expected

    def test_iter_level(self, store: KeyValueStore) -> None:
        _require_writes(store)
        _require_listing(store)
        tree = self._put_tree(store)
        top = _level(store)
        assert set(top) == {"a/", "ab", "f"}
        assert top["a/"].is_prefix and top["a/"].size is None
        assert not top["f"].is_prefix
        assert set(_level(store, "a/")) == {"a/b/", "a/e"}
        assert set(_level(store, "a/b/")) == {"a/b/c", "a/b/d"}
        assert _level(store, "x/") == {}
        assert sorted(store.iter_prefixes("/")) == ["a/", "ab", "f"]
        assert sorted(store.iter_prefixes("/", prefix="a/")) == ["a/b/", "a/e"]
        if store.listing_has_sizes:
            for prefix in ("", "a/", "a/b/"):
                for entry in _level(store, prefix).values():
                    if not entry.is_prefix:
                        assert entry.size == len(tree[entry.key]), entry

    def test_iter_level_rejects_empty_delimiter(self, store: KeyValueStore) -> None:
        with pytest.raises(ValueError):
            list(store.iter_level("", ""))

    def test_listing_unsupported(self, store: KeyValueStore) -> None:
        """A store that cannot list says so with one error, an ``OSError`` and a ``NotImplementedError``."""
        if store.supports_listing:
            pytest.skip("the store lists its keys")
        calls: dict[str, Callable[[], object]] = {
            "keys": lambda: store.keys(),
            "iter_keys": lambda: list(store.iter_keys("a")),
            "__iter__": lambda: list(store),
            "iter_level": lambda: list(store.iter_level("")),
            "has_directory": lambda: store.has_directory("a"),
            "describe": lambda: store.describe("a"),
        }
        _assert_all_raise(NotImplementedError, calls)
        _assert_all_raise(OSError, calls)

    def test_key_and_prefix(self, store: KeyValueStore) -> None:
        """``a`` and ``a/b`` both exist where the store allows it; else nothing is lost."""
        _require_writes(store)
        store.put("a", b"file")
        if store.allows_key_and_prefix:
            store.put("a/b", b"below")
            assert store.get("a") == b"file"
            assert store.get("a/b") == b"below"
            if not _lists(store):
                return
            assert sorted(store.keys()) == ["a", "a/b"]
            assert set(_level(store)) == {"a", "a/"}
            store.delete("a")
            assert store.keys() == ["a/b"]
            return
        with pytest.raises(OSError):
            store.put("a/b", b"below")
        assert store.get("a") == b"file"
        assert store.keys() == ["a"]
        store.put("c/d", b"below")
        with pytest.raises(OSError):
            store.put("c", b"file")
        assert store.get("c/d") == b"below"
        assert sorted(store.keys()) == ["a", "c/d"]

    # ------------------------------------------------------------------ stat / ranges

    def test_stat(self, store: KeyValueStore) -> None:
        _require_writes(store)
        store.put("key", b"12345")
        info = store.stat("key")
        assert isinstance(info, KeyInfo)
        assert info.key == "key"
        assert info.size == 5
        assert not info.is_prefix
        if info.last_modified is not None:
            assert isinstance(info.last_modified, float)
            # Loose on purpose: a server's clock may differ from ours.
            assert abs(info.last_modified - time.time()) < 24 * 3600

    @pytest.mark.parametrize(
        ("start", "length"),
        [(0, 100), (10, 20), (0, 1), (99, 1), (90, 20), (100, 5), (150, 5), (5, 0), (0, 1000)],
    )
    def test_get_range(self, store: KeyValueStore, start: int, length: int) -> None:
        _require_writes(store)
        value = bytes(range(100))
        store.put("key", value)
        assert store.get_range("key", start, length) == value[start : start + length]

    def test_get_range_rejects_negative_arguments(self, store: KeyValueStore) -> None:
        _require_writes(store)
        store.put("key", b"value")
        for start, length in ((-1, 1), (0, -1)):
            with pytest.raises(ValueError):
                store.get_range("key", start, length)

    # ------------------------------------------------------------------ copy / move

    def test_copy(self, store: KeyValueStore) -> None:
        _require_writes(store)
        store.put("source", b"value")
        store.put("dest", b"old value, longer")
        assert store.copy("source", "dest") == "dest"
        assert store.copy("source", "new/dest") == "new/dest"
        assert store.get("dest") == b"value"
        assert store.get("new/dest") == b"value"
        assert store.get("source") == b"value"

    def test_copy_and_move_onto_itself_keep_the_value(self, store: KeyValueStore) -> None:
        _require_writes(store)
        store.put("key", b"value")
        assert store.copy("key", "key") == "key"
        assert store.get("key") == b"value"
        assert store.move("key", "key") == "key"
        assert store.get("key") == b"value"

    def test_move(self, store: KeyValueStore) -> None:
        _require_writes(store)
        store.put("source", b"value")
        store.put("dest", b"old value, longer")
        assert store.move("source", "dest") == "dest"
        assert store.get("dest") == b"value"
        assert "source" not in store
        if _lists(store):
            assert store.keys() == ["dest"]

    def test_copy_and_move_missing_source_leave_dest(self, store: KeyValueStore) -> None:
        _require_writes(store)
        store.put("dest", b"keep")
        for call in (store.copy, store.move):
            with pytest.raises(KeyError):
                call("missing", "dest")
        assert store.get("dest") == b"keep"

    def test_delete_many(self, store: KeyValueStore) -> None:
        _require_writes(store)
        for index in range(5):
            store.put(f"d/{index}", b"x")
        store.put("kept", b"y")
        store.delete_many(["d/0", "d/1", "d/2", "d/3", "d/4", "missing"])
        assert not any(f"d/{index}" in store for index in range(5))
        assert "kept" in store
        store.delete_many([])
        with pytest.raises(ValueError):
            store.delete_many(["kept", ""])
        assert "kept" in store, "a bad key deleted something before it was checked"

    def test_move_directory(self, store: KeyValueStore) -> None:
        _require_writes(store)
        _require_listing(store)
        store.put("src/a", b"1")
        store.put("src/sub/b", b"22")
        store.put("dst/b", b"old")
        store.put("srcother", b"not below src/")
        if store.supports_directories:
            store.put_directory("src/empty")
        assert store.move_directory("src", "dst/moved") == "dst/moved"
        assert store.get("dst/moved/a") == b"1"
        assert store.get("dst/moved/sub/b") == b"22"
        assert store.get("dst/b") == b"old"
        assert store.get("srcother") == b"not below src/"
        assert store.keys(prefix="src/") == []
        assert not store.has_directory("src")
        if store.supports_directories:
            assert store.has_directory("dst/moved/empty")

    def test_move_directory_merges_into_a_directory_with_keys(self, store: KeyValueStore) -> None:
        _require_writes(store)
        _require_listing(store)
        store.put("src/a", b"new")
        store.put("dst/a", b"old")
        store.put("dst/c", b"kept")
        store.move_directory("src", "dst")
        assert store.get("dst/a") == b"new"
        assert store.get("dst/c") == b"kept"
        assert not store.has_directory("src")

    def test_move_directory_refuses_missing_source_and_itself(self, store: KeyValueStore) -> None:
        _require_writes(store)
        _require_listing(store)
        store.put("src/a", b"1")
        with pytest.raises(KeyError):
            store.move_directory("missing", "dst")
        with pytest.raises(ValueError):
            store.move_directory("src", "src/inner")
        assert store.get("src/a") == b"1"

    def test_symlink_is_a_small_value_rclone_reads(self, store: KeyValueStore) -> None:
        _require_writes(store)
        assert store.symlink("d/link", "../target/file") == "d/link"
        assert store.readlink("d/link") == "../target/file"
        assert store.is_link("d/link")
        assert store.get("d/link.rclonelink") == b"../target/file"
        assert "d/link" not in store
        assert not store.is_link("d/other")
        with pytest.raises(KeyError):
            store.readlink("d/other")
        for bad in ("", "a\0b"):
            with pytest.raises(ValueError):
                store.symlink("d/bad", bad)
        if _lists(store):
            assert store.keys() == ["d/link.rclonelink"]

    # ------------------------------------------------------------------ directories

    def test_directory_markers(self, store: KeyValueStore) -> None:
        _require_directories(store)
        store.put_directory("d")
        assert store.has_directory("d")
        assert "d" not in store
        assert store.keys() == [], "a directory marker is listed as a key"
        assert list(store) == []
        top = _level(store)
        assert set(top) == {"d/"} and top["d/"].is_prefix
        assert _level(store, "d/") == {}
        store.delete_directory("d")
        assert not store.has_directory("d")
        assert _level(store) == {}

    def test_nested_directory_and_keys_below(self, store: KeyValueStore) -> None:
        _require_directories(store)
        store.put_directory("d/e")
        assert store.has_directory("d")
        assert set(_level(store)) == {"d/"}
        assert set(_level(store, "d/")) == {"d/e/"}
        store.put("d/e/x", b"x")
        store.delete_directory("d/e")
        assert store.get("d/e/x") == b"x", "delete_directory removed a key below"
        assert store.has_directory("d/e")
        assert store.keys() == ["d/e/x"]
        store.delete_directory("nothing")  # a missing directory is not an error

    def test_has_directory_follows_keys(self, store: KeyValueStore) -> None:
        _require_writes(store)
        _require_listing(store)
        assert not store.has_directory("a")
        store.put("a/b/c", b"value")
        assert store.has_directory("a")
        assert store.has_directory("a/b")
        assert not store.has_directory("a/b/c")
        assert not store.has_directory("b")

    def test_describe_tells_a_value_a_directory_or_nothing(self, store: KeyValueStore) -> None:
        _require_writes(store)
        _require_listing(store)
        assert store.describe("a") is None
        store.put("a", b"abc")
        # Names sharing the prefix, before and after "a/" in name order.
        for sibling in ("a-1", "a.txt", "a0", "ab/c"):
            store.put(sibling, b"x")
        info = store.describe("a")
        assert info is not None and (info.key, info.size, info.is_prefix) == ("a", 3, False)
        assert store.describe("a.tx") is None
        store.put("d/e/f", b"deep")
        info = store.describe("d")
        assert info is not None and (info.key, info.is_prefix) == ("d/", True)
        assert _named(store.describe("d/e")) == ("d/e/", True)
        info = store.describe("d/e/f")
        assert info is not None and (info.size, info.is_prefix) == (4, False)
        assert store.describe("d/e/f/g") is None
        if store.allows_key_and_prefix:
            store.put("a/b", b"below")
            assert _named(store.describe("a")) == ("a/", True), "a directory wins over a value"

    def test_describe_sees_directory_markers(self, store: KeyValueStore) -> None:
        _require_directories(store)
        store.put_directory("m")
        assert _named(store.describe("m")) == ("m/", True)
        store.delete_directory("m")
        assert store.describe("m") is None

    def test_directories_unsupported(self, store: KeyValueStore) -> None:
        if store.supports_directories or not store.supports_writes:
            pytest.skip("the store keeps directories (or is read-only)")
        with pytest.raises(NotImplementedError):
            store.put_directory("d")
        if _lists(store):
            assert store.keys() == []

    # ------------------------------------------------------------------ POSIX metadata

    def test_set_metadata_unsupported(self, store: KeyValueStore) -> None:
        _require_writes(store)
        if store.keeps_metadata:
            pytest.skip(f"{type(store).__name__} keeps metadata")
        store.put("k", b"x")
        with pytest.raises(NotImplementedError):
            store.set_metadata("k", mode=0o600)
        info = store.stat("k")
        assert (info.mode, info.uid, info.gid) == (None, None, None)

    def test_set_metadata_shows_in_stat_describe_and_listing(self, store: KeyValueStore) -> None:
        _require_metadata(store)
        store.put("d/k", b"value")
        store.set_metadata("d/k", mode=0o640, mtime=1_000_000_000.5)
        # Listings (and a describe, which is one on object stores) only where they carry it.
        shown = [store.stat("d/k")]
        if store.listing_has_metadata:
            shown += [store.describe("d/k"), _level(store, "d/")["d/k"]]
        for info in shown:
            assert info is not None and info.mode == 0o640, info
            assert info.last_modified is not None and abs(info.last_modified - 1_000_000_000.5) < 1e-3, info
        store.set_metadata("d/k", mode=0o604)  # what is not given stays as it was
        info = store.stat("d/k")
        assert info.mode == 0o604 and abs(info.last_modified - 1_000_000_000.5) < 1e-3  # type: ignore[operator]
        assert store.get("d/k") == b"value"

    def test_set_metadata_keeps_the_mtime(self, store: KeyValueStore) -> None:
        _require_metadata(store)
        store.put("k", b"x")
        before = store.stat("k").last_modified
        time.sleep(1.1)  # object stores' times are whole seconds: a change would show
        store.set_metadata("k", mode=0o600)
        assert store.stat("k").last_modified == before

    def test_set_metadata_owner(self, store: KeyValueStore) -> None:
        _require_metadata(store)
        store.put("k", b"x")
        # Our own ids are always allowed; other ids only where the process may give files away.
        uid, gid = (65534, 65534) if os.geteuid() == 0 else (os.geteuid(), os.getegid())
        store.set_metadata("k", uid=uid, gid=gid)
        info = store.stat("k")
        assert (info.uid, info.gid) == (uid, gid)

    def test_set_metadata_of_a_directory(self, store: KeyValueStore) -> None:
        _require_metadata(store)
        _require_directories(store)
        store.put_directory("d")
        store.set_metadata("d", mode=0o750)
        info = store.describe("d")
        assert info is not None and info.is_prefix
        shown = {info.mode, _level(store)["d/"].mode} - {None}
        # Shown by the describe or the listing (one of them may not carry it), never another
        # mode; object stores keep it on the marker, which their listings may not show (S3
        # never does, GCS where the server lists markers).
        assert shown == {0o750} or (shown == set() and store.is_remote), shown

    def test_metadata_written_with_the_value(self, store: KeyValueStore, tmp_path: pathlib.Path) -> None:
        _require_metadata(store)
        uid, gid = (65534, 65534) if os.geteuid() == 0 else (os.geteuid(), os.getegid())
        metadata = Metadata(mode=0o640, uid=uid, gid=gid, mtime=1_500_000_000.25)
        source = tmp_path / "source"
        source.write_bytes(b"from a file")
        writes = {
            "put": lambda key: store.put(key, b"value", metadata=metadata),
            "put_file(file)": lambda key: store.put_file(key, io.BytesIO(b"value"), metadata=metadata),
            "put_file(name)": lambda key: store.put_file(key, str(source), metadata=metadata),
        }
        if store.supports_staging:

            def commit(key: str) -> str:
                staged = store.new_staging_file(key)
                staged.write(b"staged")
                return store.commit_staging_file(key, staged, metadata=metadata)

            writes["commit_staging_file"] = commit

        def write_in_order(key: str) -> str:
            with store.open_writer(key, metadata=metadata) as writer:
                writer.write(b"writ")
                writer.write(b"ten")
            return key

        writes["open_writer"] = write_in_order
        for number, (name, write) in enumerate(writes.items()):
            key = f"d/m{number}"
            assert write(key) == key, name
            shown = [store.stat(key)]
            if store.listing_has_metadata:
                shown += [store.describe(key), _level(store, "d/")[key]]
            for info in shown:
                assert info is not None, name
                assert (info.mode, info.uid, info.gid) == (0o640, uid, gid), (name, info)
                assert info.last_modified is not None and abs(info.last_modified - 1_500_000_000.25) < 1e-3, (name, info)

    def test_metadata_of_a_rewrite_is_what_it_was_given(self, store: KeyValueStore) -> None:
        _require_metadata(store)
        store.put("k", b"one", metadata=Metadata(mode=0o600))
        store.put("k", b"two", metadata=Metadata(mode=0o644, mtime=1_600_000_000))
        info = store.stat("k")
        assert info.mode == 0o644 and info.last_modified == 1_600_000_000
        assert store.get("k") == b"two"

    def test_open_with_info(self, store: KeyValueStore) -> None:
        _require_writes(store)
        store.put("k", b"value")
        file, info = store.open_with_info("k")
        with file:
            assert file.read() == b"value"
        assert info is None or (info.key, info.size, info.is_prefix) == ("k", 5, False), info
        if info is not None and store.keeps_metadata:
            assert (info.mode, info.uid, info.gid) == (lambda s: (s.mode, s.uid, s.gid))(store.stat("k"))
        with pytest.raises(KeyError):
            store.open_with_info("missing")

    def test_metadata_ignored_where_not_kept(self, store: KeyValueStore) -> None:
        _require_writes(store)
        if store.keeps_metadata:
            pytest.skip(f"{type(store).__name__} keeps metadata")
        assert store.put("k", b"x", metadata=Metadata(mode=0o600)) == "k"
        assert store.put_file("f", io.BytesIO(b"y"), metadata=Metadata(uid=1)) == "f"
        assert store.get("k") == b"x" and store.get("f") == b"y"
        assert store.stat("k").mode is None

    def test_metadata_must_be_metadata(self, store: KeyValueStore) -> None:
        _require_writes(store)
        with pytest.raises(TypeError):
            store.put("k", b"x", metadata={"mode": 0o600})  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            store.open_writer("k", metadata={"mode": 0o600})  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            Metadata(mode=0o10000)

    @pytest.mark.parametrize(
        "fields",
        [
            {"mode": 0o10000},
            {"mode": -1},
            {"mode": "644"},
            {"mode": True},
            {"uid": -1},
            {"gid": 1.5},
            {"mtime": float("nan")},
            {"atime": "now"},
        ],
        ids=repr,
    )
    def test_set_metadata_rejects_bad_values(self, store: KeyValueStore, fields: dict[str, Any]) -> None:
        _require_metadata(store)
        store.put("k", b"x")
        before = store.stat("k")
        with pytest.raises(ValueError):
            store.set_metadata("k", **fields)
        assert store.stat("k") == before

    def test_describe_root(self, store: KeyValueStore) -> None:
        _require_writes(store)
        store.put("k", b"x")
        info = store.describe_root()
        assert info is None or (info.key, info.is_prefix, info.size) == ("", True, None), info
        if not store.keeps_metadata:
            assert info is None

    def test_set_metadata_of_a_missing_key(self, store: KeyValueStore) -> None:
        _require_metadata(store)
        with pytest.raises(KeyError):
            store.set_metadata("missing", mode=0o600)
        with pytest.raises(KeyError):
            store.set_metadata("no/such/key", mode=0o600)
    def test_sync_keeps_what_is_stored(self, store: KeyValueStore) -> None:
        _require_writes(store)
        store.put("d/k", b"value")
        assert store.sync("d/k") is None
        assert store.get("d/k") == b"value"
        store.delete("d/k")
        store.sync("d/k")  # a missing key is not an error: its absence is made durable
        store.sync("never/stored")
        assert "d/k" not in store

    # ------------------------------------------------------------------ writers

    def test_writer_stores_at_close_only(self, store: KeyValueStore) -> None:
        _require_writes(store)
        store.put("d/k", b"old")
        writer = store.open_writer("d/k")
        assert writer.key == "d/k" and not writer.closed
        assert writer.write(b"new ") == 4
        assert writer.write(bytearray(b"value, ")) == 7
        assert writer.write(memoryview(b"in parts")) == 8
        assert writer.write(b"") == 0
        assert store.get("d/k") == b"old", "a writer changed the value before its close"
        if _lists(store):
            assert store.keys() == ["d/k"], "a writer's value is listed before its close"
        writer.close()
        assert writer.closed and writer.written == 19
        assert store.get("d/k") == b"new value, in parts"
        writer.close()  # closing again does nothing
        with pytest.raises(ValueError):
            writer.write(b"more")
        with store.open_writer("empty") as empty:
            pass
        assert empty.closed and store.get("empty") == b""

    def test_writer_aborted_stores_nothing(self, store: KeyValueStore) -> None:
        _require_writes(store)
        store.put("k", b"old")
        writer = store.open_writer("k")
        writer.write(b"discarded")
        writer.abort()
        writer.abort()  # again: nothing
        assert store.get("k") == b"old"
        with pytest.raises(ValueError):
            writer.write(b"more")
        with pytest.raises(ValueError):
            writer.close()
        with pytest.raises(RuntimeError), store.open_writer("new") as failing:
            failing.write(b"half")
            raise RuntimeError("the producer failed")
        assert failing.closed and "new" not in store
        if _lists(store):
            assert store.keys() == ["k"]

    def test_writer_validates_key_and_data(self, store: KeyValueStore) -> None:
        _require_writes(store)
        for key in self.invalid_keys.values():
            with pytest.raises(ValueError):
                store.open_writer(key)  # type: ignore[arg-type]
        with store.open_writer("k") as writer, pytest.raises(TypeError):
            writer.write("text")  # type: ignore[arg-type]

    def test_writer_streams_a_large_value(self, store: KeyValueStore) -> None:
        """The suite's large value, written in 1 MiB pieces (S3: a multipart upload)."""
        _require_writes(store)
        value = random_bytes(self.large_value_size, seed=2)
        with store.open_writer("large") as writer:
            for start in range(0, len(value), MiB):
                writer.write(value[start : start + MiB])
            assert "large" not in store
        if store.streams_writes:
            assert writer.memory > 0, "a streaming writer gives no bound of its buffers"
        assert store.stat("large").size == len(value)
        assert store.get("large") == value

    # ------------------------------------------------------------------ staging

    def test_staging_file_is_stored_by_commit_only(self, store: KeyValueStore) -> None:
        _require_staging(store)
        store.put("d/k", b"old")
        file = store.new_staging_file("d/k")
        file.write(b"new value")
        os.pwrite(file.fileno(), b"N", 0)  # written in place, at any offset
        assert store.get("d/k") == b"old", "a staging file changed the value before its commit"
        assert store.keys() == ["d/k"], "a staging file is listed"
        assert set(_level(store, "d/")) == {"d/k"}
        assert store.commit_staging_file("d/k", file) == "d/k"
        assert file.closed, "a committed staging file stays open"
        assert store.get("d/k") == b"New value"
        assert store.keys() == ["d/k"]

    def test_staging_file_may_be_committed_under_another_key(self, store: KeyValueStore) -> None:
        _require_staging(store)
        file = store.new_staging_file("a")
        file.write(b"moved")
        store.commit_staging_file("b/c", file)
        assert store.get("b/c") == b"moved"
        assert "a" not in store
        empty = store.new_staging_file("e")
        store.commit_staging_file("e", empty)
        assert store.get("e") == b""

    def test_staging_file_closed_uncommitted_is_discarded(self, store: KeyValueStore) -> None:
        _require_staging(store)
        store.put("k", b"kept")
        file = store.new_staging_file("k")
        file.write(b"dropped")
        file.close()
        assert store.get("k") == b"kept"
        assert store.keys() == ["k"]
        with pytest.raises(ValueError):
            store.commit_staging_file("k", file)  # closed: no longer a staging file
        with pytest.raises(ValueError):
            store.commit_staging_file("k", io.BytesIO(b"not staged"))  # type: ignore[arg-type]
        assert store.get("k") == b"kept"

    def test_staging_unsupported(self, store: KeyValueStore) -> None:
        if store.supports_staging:
            pytest.skip("the store stages values")
        with pytest.raises(NotImplementedError):
            store.new_staging_file("k")
        with pytest.raises(NotImplementedError):
            store.commit_staging_file("k", io.BytesIO(b""))  # type: ignore[arg-type]

    # ------------------------------------------------------------------ mixins

    def test_ttl_secs_validation(self, store: KeyValueStore) -> None:
        if not store.ttl_support:
            pytest.skip("the store has no time-to-live")
        _require_writes(store)
        for bad in (-1, -0.5, "soon", object(), True):
            with pytest.raises(ValueError):
                store.put("key", b"value", ttl_secs=bad)  # type: ignore[call-arg]
            with pytest.raises(ValueError):
                store.put_file("key", io.BytesIO(b"value"), ttl_secs=bad)  # type: ignore[call-arg]
        assert "key" not in store
        for good in (FOREVER, NOT_SET, None, 3600, 3600.5):
            key = store.put("key", b"value", ttl_secs=good)  # type: ignore[call-arg]
            assert key == "key"
            assert store.get("key") == b"value"
            store.put_file("file", io.BytesIO(b"file"), ttl_secs=good)  # type: ignore[call-arg]
            assert store.get("file") == b"file"

    def test_url_for(self, store: KeyValueStore) -> None:
        if not isinstance(store, UrlMixin):
            pytest.skip("the store gives no URLs")
        if store.supports_writes:
            store.put("some/key", b"value")
        url = store.url_for("some/key")
        assert isinstance(url, str) and url
        with pytest.raises(ValueError):
            store.url_for("../x")

    def test_read_only_store_rejects_writes(self, store: KeyValueStore) -> None:
        if store.supports_writes:
            pytest.skip("the store accepts writes")
        for call in (
            lambda: store.put("key", b"value"),
            lambda: store.put_file("key", io.BytesIO(b"value")),
            lambda: store.delete("key"),
            lambda: store.open_writer("key"),
        ):
            with pytest.raises(ReadOnlyError):
                call()

    # ------------------------------------------------------------------ check

    def test_check_passes_on_a_working_store(self, store: KeyValueStore) -> None:
        # After a write, as some stores come into being with their first value (the
        # root of a filesystem store): until then check() may fail.
        if store.supports_writes:
            store.put("k", b"v")
        assert store.check() is None
        if _lists(store):
            assert store.keys() == (["k"] if store.supports_writes else [])  # and it changed nothing

    def test_check_fails_on_a_store_that_is_not_there(
        self, unavailable_store: KeyValueStore | None
    ) -> None:
        if unavailable_store is None:
            pytest.skip("the test class gives no unavailable store")
        with pytest.raises(BackendError) as raised:
            unavailable_store.check()
        message = str(raised.value)
        assert message and "\n" not in message.strip()

    # ------------------------------------------------------------------ pickle

    def test_pickles_to_a_working_store(self, store: KeyValueStore) -> None:
        if store.supports_writes:
            store.put("pickled/before", b"value")
        copy = pickle.loads(pickle.dumps(store))
        try:
            assert type(copy) is type(store)
            if _lists(store):
                assert sorted(copy.iter_keys("pickled/")) == sorted(store.iter_keys("pickled/"))
            if store.supports_writes:
                assert copy.get("pickled/before") == b"value"
                copy.put("pickled/after", b"copied")
                assert copy.get("pickled/after") == b"copied"
        finally:
            if copy is not store:
                copy.close()

    # ------------------------------------------------------------------ threads

    def test_threads_write_and_read_distinct_keys(self, store: KeyValueStore) -> None:
        _require_writes(store)

        def work(worker: int) -> None:
            keys = [f"t{worker}/k{i}" for i in range(50)]
            for key in keys:
                store.put(key, key.encode() * 3)
            for key in keys:
                assert store.get(key) == key.encode() * 3

        with ThreadPoolExecutor(8) as pool:
            for result in [pool.submit(work, worker) for worker in range(8)]:
                result.result()
        if _lists(store):
            assert len(store.keys()) == 8 * 50

    def test_concurrent_overwrites_are_never_torn(self, store: KeyValueStore) -> None:
        _require_writes(store)
        values = [bytes([worker]) * 65536 for worker in range(8)]
        store.put("shared", values[0])
        torn: list[bytes] = []
        lock = threading.Lock()

        def work(worker: int) -> None:
            for _ in range(10):
                store.put("shared", values[worker])
                seen = store.get("shared")
                if seen not in values:
                    with lock:
                        torn.append(seen[:16] + b"..." + seen[-16:])

        with ThreadPoolExecutor(8) as pool:
            for result in [pool.submit(work, worker) for worker in range(8)]:
                result.result()
        assert torn == []
        assert store.get("shared") in values

    # ------------------------------------------------------------------ properties

    @_hypothesis_settings
    @given(data=st.data())
    def test_any_valid_key_round_trips(self, store: KeyValueStore, data: st.DataObject) -> None:
        _require_writes(store)
        # A fresh directory per example: keys of earlier examples cannot conflict.
        prefix = f"h{uuid.uuid4().hex[:8]}/"
        key = prefix + data.draw(
            valid_keys(store.max_key_length - len(prefix), store.max_component_length),
            label="key",
        )
        assert store.put(key, key.encode()) == key
        assert key in store
        assert store.get(key) == key.encode()
        if _lists(store):
            assert store.keys(prefix) == [key]
        store.delete(key)
        assert key not in store

    @_hypothesis_settings
    @given(value=st.binary(max_size=4096), start=st.integers(0, 5000), length=st.integers(0, 5000))
    def test_any_value_round_trips(
        self, store: KeyValueStore, value: bytes, start: int, length: int
    ) -> None:
        _require_writes(store)
        store.put("value", value)
        assert store.get("value") == value
        assert store.stat("value").size == len(value)
        assert store.get_range("value", start, length) == value[start : start + length]


__all__ = [
    "StoreContract",
    "valid_keys",
    "key_of_length",
    "random_bytes",
    "ShortReadFile",
    "CountingReader",
    "KEY_CHARACTERS",
    "INVALID_KEYS",
]
