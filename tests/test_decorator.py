"""Store decorators (:mod:`kvfs.decorator`): the contract over each, and what each changes."""

from __future__ import annotations

import errno
import io
import pathlib
from collections.abc import Iterator
from typing import ClassVar
from urllib.parse import quote_plus

import pytest

from kvfs.decorator import (
    KeyTransformingDecorator,
    PrefixDecorator,
    ReadOnlyDecorator,
    StoreDecorator,
    URLEncodeKeysDecorator,
)
from kvfs.errors import InvalidKeyError, ReadOnlyError
from kvfs.fs import FilesystemStore
from kvfs.memory import DictStore
from kvfs.mixins import NOT_SET, TimeToLiveMixin, UrlMixin
from kvfs.store import CAPABILITY_FLAGS, HOOKS, KeyInfo
from kvfs.testing import INVALID_KEYS, KEY_CHARACTERS, StoreContract


class RecordingStore(DictStore):
    """A DictStore that records which hooks run, to prove decorators keep fast paths."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def _open(self, key):  # type: ignore[no-untyped-def]
        self.calls.append("_open")
        return super()._open(key)

    def _get_range(self, key, start, length):  # type: ignore[no-untyped-def]
        self.calls.append("_get_range")
        return super()._get_range(key, start, length)

    def _stat(self, key):  # type: ignore[no-untyped-def]
        self.calls.append("_stat")
        return super()._stat(key)

    def _iter_level(self, prefix, delimiter):  # type: ignore[no-untyped-def]
        self.calls.append("_iter_level")
        return super()._iter_level(prefix, delimiter)

    def _copy(self, source, dest):  # type: ignore[no-untyped-def]
        self.calls.append("_copy")
        return super()._copy(source, dest)

    def _move(self, source, dest):  # type: ignore[no-untyped-def]
        self.calls.append("_move")
        return super()._move(source, dest)


class UrlDictStore(UrlMixin, DictStore):
    def _url_for(self, key: str) -> str:
        return "memory:///" + key


class TTLDictStore(TimeToLiveMixin, DictStore):
    """A DictStore that accepts ``ttl_secs`` and records the value each write received."""

    def __init__(self) -> None:
        super().__init__()
        self.ttls: dict[str, object] = {}

    def _put(self, key, data, ttl_secs=NOT_SET):  # type: ignore[no-untyped-def]
        self.ttls[key] = ttl_secs
        return DictStore._put(self, key, data)

    def _put_file(self, key, file, ttl_secs=NOT_SET):  # type: ignore[no-untyped-def]
        self.ttls[key] = ttl_secs
        return DictStore._put(self, key, file.read())


# ---------------------------------------------------------------------- contract


class TestStoreDecoratorContract(StoreContract):
    streams_large_values = False  # a DictStore holds each value whole

    @pytest.fixture
    def store(self) -> Iterator[StoreDecorator]:
        with StoreDecorator(DictStore()) as store:
            yield store


class TestPrefixDecoratorContract(StoreContract):
    """A sub-directory view; keys outside it must stay invisible through every test."""

    streams_large_values = False

    @pytest.fixture
    def store(self) -> Iterator[PrefixDecorator]:
        inner = DictStore()
        for outside in ("other", "subway", "sub", "su/b", "x/sub/y"):
            inner.put(outside, b"outside")
        with PrefixDecorator("sub/", inner) as store:
            yield store


class TestPrefixWithoutSlashContract(StoreContract):
    streams_large_values = False

    @pytest.fixture
    def store(self) -> Iterator[PrefixDecorator]:
        inner = DictStore()
        inner.put("other", b"outside")
        with PrefixDecorator("pre_", inner) as store:
            yield store


class TestPrefixOverFilesystemContract(StoreContract):
    @pytest.fixture
    def store(self, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefixDecorator]:
        inner = FilesystemStore(tmp_path_factory.mktemp("store"))
        inner.put("outside", b"outside")
        with PrefixDecorator("deep/sub/", inner) as store:
            yield store


#: Keys the contract calls invalid that are ordinary keys once URL-encoded.
_ENCODABLE = {name for name, key in INVALID_KEYS.items() if isinstance(key, str) and key}


class TestURLEncodeKeysDecoratorContract(StoreContract):
    streams_large_values = False

    @pytest.fixture
    def store(self) -> Iterator[URLEncodeKeysDecorator]:
        with URLEncodeKeysDecorator(DictStore()) as store:
            yield store

    # Any non-empty str is a key here; only the rest of the contract's invalid keys remain.
    invalid_keys: ClassVar[dict[str, object]] = {
        name: key for name, key in INVALID_KEYS.items() if name not in _ENCODABLE
    }


class TestURLEncodeOverFilesystemContract(TestURLEncodeKeysDecoratorContract):
    """Every key is one file name here, so keys are limited to 255 // 3 = 85 bytes."""

    streams_large_values = True

    @pytest.fixture
    def store(self, tmp_path_factory: pytest.TempPathFactory) -> Iterator[URLEncodeKeysDecorator]:
        with URLEncodeKeysDecorator(FilesystemStore(tmp_path_factory.mktemp("store"))) as store:
            yield store

    def test_every_key_character_round_trips(self, store: URLEncodeKeysDecorator) -> None:
        # The contract's one-key alphabet (89 bytes) is longer than this store's limit.
        half = len(KEY_CHARACTERS) // 2
        for key in (KEY_CHARACTERS[:half], KEY_CHARACTERS[half:], "...", ".hidden", "dir/..x/y."):
            store.put(key, key.encode())
            assert store.get(key) == key.encode()
        assert len(store.keys()) == 5


class TestReadOnlyDecoratorContract(StoreContract):
    @pytest.fixture
    def store(self) -> Iterator[ReadOnlyDecorator]:
        with ReadOnlyDecorator(DictStore()) as store:
            yield store


# ---------------------------------------------------------------------- StoreDecorator


def test_store_decorator_forwards_unknown_attributes() -> None:
    inner = DictStore()
    store = StoreDecorator(inner)
    store.put("k", b"v")
    assert store.d is inner.d
    assert inner.d == {"k": b"v"}
    with pytest.raises(AttributeError):
        store.no_such_attribute  # noqa: B018


def test_store_decorator_forwards_capability_flags(tmp_path: pathlib.Path) -> None:
    for inner in (DictStore(), FilesystemStore(tmp_path), TTLDictStore()):
        store = StoreDecorator(inner)
        for flag in (
            "supports_writes",
            "fast_stat",
            "fast_ranges",
            "fast_level_listing",
            "listing_has_sizes",
            "supports_server_copy",
            "supports_directories",
            "allows_key_and_prefix",
            "ttl_support",
            "max_key_length",
            "max_component_length",
        ):
            assert getattr(store, flag) == getattr(inner, flag), (type(inner), flag)
    assert StoreDecorator(FilesystemStore(tmp_path)).allows_key_and_prefix is False
    assert StoreDecorator(TTLDictStore()).ttl_support is True


def test_decorators_use_the_inner_fast_paths() -> None:
    inner = RecordingStore()
    for store in (StoreDecorator(inner), PrefixDecorator("p/", inner)):
        store.put("a/b", b"0123456789")
        inner.calls.clear()
        assert store.get_range("a/b", 2, 3) == b"234"
        assert store.stat("a/b").size == 10
        assert [e.key for e in store.iter_level("a/")] == ["a/b"]
        assert store.copy("a/b", "c") == "c"
        assert store.move("c", "d") == "d"
        # DictStore's own move is a copy and a delete: the last '_copy' is inside it.
        assert inner.calls == ["_get_range", "_stat", "_iter_level", "_copy", "_move", "_copy"]


def test_store_decorator_keeps_the_inner_key_rule(tmp_path: pathlib.Path) -> None:
    store = StoreDecorator(FilesystemStore(tmp_path))
    with pytest.raises(ValueError, match="255"):
        store.get("k" * 256)
    encoded = StoreDecorator(URLEncodeKeysDecorator(DictStore()))
    assert encoded.put("any key/..", b"v") == "any key/.."
    assert encoded.get("any key/..") == b"v"


def test_ttl_secs_passes_through_to_a_ttl_store() -> None:
    inner = TTLDictStore()
    store = PrefixDecorator("p/", inner)
    assert store.put("k", b"v", ttl_secs=60) == "k"
    assert store.put_file("f", io.BytesIO(b"v"), ttl_secs=30) == "f"
    store.put("forever", b"v")
    assert inner.ttls == {"p/k": 60, "p/f": 30, "p/forever": NOT_SET}
    with pytest.raises(ValueError):
        store.put("bad", b"v", ttl_secs=-1)
    assert "bad" not in store


def test_ttl_secs_on_a_store_without_ttl_raises_type_error() -> None:
    store = StoreDecorator(DictStore())
    assert store.ttl_support is False
    with pytest.raises(TypeError, match="ttl_secs"):
        store.put("k", b"v", ttl_secs=60)
    with pytest.raises(TypeError, match="ttl_secs"):
        store.put_file("k", io.BytesIO(b"v"), ttl_secs=60)
    assert "k" not in store


def test_close_closes_the_wrapped_store() -> None:
    closed = []

    class Closing(DictStore):
        def close(self) -> None:
            closed.append(True)

    with PrefixDecorator("p/", Closing()):
        pass
    assert closed == [True]


def test_key_transforming_decorator_is_identity_by_default() -> None:
    inner = DictStore()
    store = KeyTransformingDecorator(inner)
    store.put("a/b", b"v")
    assert inner.d == {"a/b": b"v"}
    assert store.keys() == ["a/b"]


# ---------------------------------------------------------------------- PrefixDecorator


def test_prefix_isolates_keys() -> None:
    inner = DictStore()
    inner.put("outside", b"o")
    inner.put("sub", b"o")
    store = PrefixDecorator("sub/", inner)
    assert store.put("a/b", b"1") == "a/b"
    store.put("c", b"2")
    assert sorted(inner.keys()) == ["outside", "sub", "sub/a/b", "sub/c"]
    assert sorted(store.keys()) == ["a/b", "c"]
    assert sorted(store) == ["a/b", "c"]
    assert "outside" not in store
    with pytest.raises(KeyError):
        store.get("outside")
    assert store.get("c") == b"2"
    store.delete("outside")
    assert inner.get("outside") == b"o"


def test_prefix_rejects_keys_that_would_leave_it() -> None:
    inner = DictStore()
    store = PrefixDecorator("sub/", inner)
    for key in ("../x", "/x", "a/../../x", ".."):
        with pytest.raises(ValueError):
            store.put(key, b"evil")
    assert inner.keys() == []


def test_prefix_iter_level_strips_the_prefix() -> None:
    inner = DictStore()
    store = PrefixDecorator("a/b/", inner)
    store.put("x", b"12")
    store.put("d/y", b"123")
    inner.put("a/other", b"outside")
    top = {entry.key: entry for entry in store.iter_level()}
    assert top == {
        "x": KeyInfo("x", 2, top["x"].last_modified),
        "d/": KeyInfo("d/", is_prefix=True),
    }
    assert [entry.key for entry in store.iter_level("d/")] == ["d/y"]
    assert sorted(store.iter_prefixes("/")) == ["d/", "x"]
    assert store.stat("d/y").key == "d/y"


def test_prefix_without_slash_is_a_string_prefix() -> None:
    inner = DictStore()
    inner.put("pre_a", b"1")
    inner.put("prefix", b"2")
    inner.put("pre_d/x", b"3")
    store = PrefixDecorator("pre_", inner)
    assert sorted(store.keys()) == ["a", "d/x"]
    assert sorted(entry.key for entry in store.iter_level()) == ["a", "d/"]


def test_prefix_copy_move_and_directories_are_mapped() -> None:
    inner = DictStore()
    store = PrefixDecorator("sub/", inner)
    store.put("a", b"v")
    assert store.copy("a", "b") == "b"
    assert store.move("b", "c/d") == "c/d"
    assert sorted(inner.keys()) == ["sub/a", "sub/c/d"]
    store.put_directory("empty")
    assert store.has_directory("empty")
    assert inner.has_directory("sub/empty")
    assert sorted(entry.key for entry in store.iter_level()) == ["a", "c/", "empty/"]
    store.delete_directory("empty")
    assert not inner.has_directory("sub/empty")


def test_prefix_url_for_maps_the_key() -> None:
    store = PrefixDecorator("sub/", UrlDictStore())
    assert store.url_for("a/b") == "memory:///sub/a/b"
    with pytest.raises(ValueError):
        store.url_for("../x")
    assert not hasattr(PrefixDecorator("sub/", DictStore()), "url_for")


def test_prefix_max_key_length_leaves_room_for_the_prefix() -> None:
    store = PrefixDecorator("sub/", DictStore())
    assert store.max_key_length == 1020
    store.put("k" * 1020, b"v")
    with pytest.raises(ValueError, match="1020"):
        store.put("k" * 1021, b"v")


@pytest.mark.parametrize("prefix", ["/a", "a//", "../", "a/./", "ä/", None])
def test_prefix_that_cannot_start_a_key_is_rejected(prefix: object) -> None:
    with pytest.raises(InvalidKeyError):
        PrefixDecorator(prefix, DictStore())  # type: ignore[arg-type]


def test_nested_prefixes() -> None:
    inner = DictStore()
    store = PrefixDecorator("b/", PrefixDecorator("a/", inner))
    store.put("k", b"v")
    assert inner.keys() == ["a/b/k"]
    assert store.keys() == ["k"]
    assert [entry.key for entry in store.iter_level()] == ["k"]


# ---------------------------------------------------------------------- URLEncodeKeysDecorator


@pytest.mark.parametrize(
    "key", ["a b", "a/b", "/", "a//b/", "ä", "日本", "100%", "a+b", "\n", "*?", ".", "..", "../x"]
)
def test_url_encode_round_trips_any_string(key: str) -> None:
    inner = DictStore()
    store = URLEncodeKeysDecorator(inner)
    assert store.put(key, b"value") == key
    assert store.get(key) == b"value"
    assert store.keys() == [key]
    assert key in store
    (stored,) = inner.keys()
    assert "/" not in stored
    if key not in (".", ".."):
        assert stored == quote_plus(key), "stored differently from simplekv"
    store.delete(key)
    assert inner.keys() == []


def test_url_encode_reads_what_simplekv_wrote() -> None:
    inner = DictStore()
    inner.put(quote_plus("a b/c"), b"from simplekv")
    store = URLEncodeKeysDecorator(inner)
    assert store.keys() == ["a b/c"]
    assert store.get("a b/c") == b"from simplekv"


def test_url_encode_prefix_listing_and_levels() -> None:
    store = URLEncodeKeysDecorator(DictStore())
    for key in ("a/b/c", "a/b d", "a+", "x y/z", "q%"):
        store.put(key, key.encode())
    assert sorted(store.keys("a")) == ["a+", "a/b d", "a/b/c"]
    assert sorted(store.keys("a/")) == ["a/b d", "a/b/c"]
    assert store.keys("q%") == ["q%"]
    top = {entry.key: entry for entry in store.iter_level()}
    assert set(top) == {"a/", "a+", "x y/", "q%"}
    assert top["a/"].is_prefix
    assert top["a+"].size == 2, "sizes of the wrapped listing are kept"
    assert {entry.key for entry in store.iter_level("a/")} == {"a/b/", "a/b d"}
    assert store.has_directory("a/b")
    assert not store.has_directory("x")


def test_url_encode_keys_ending_in_slash_are_listed() -> None:
    store = URLEncodeKeysDecorator(DictStore())
    store.put("dir/", b"a key, not a marker")
    assert store.keys() == ["dir/"]
    assert store.get("dir/") == b"a key, not a marker"


@pytest.mark.parametrize("key", ["", None, 1, b"bytes"])
def test_url_encode_rejects_non_strings_and_empty(key: object) -> None:
    store = URLEncodeKeysDecorator(DictStore())
    with pytest.raises(InvalidKeyError):
        store.put(key, b"v")  # type: ignore[arg-type]


def test_url_encode_length_limit_is_in_utf8_bytes(tmp_path: pathlib.Path) -> None:
    store = URLEncodeKeysDecorator(DictStore())
    assert store.max_key_length == 1024 // 3
    store.put("/" * 341, b"every byte encoded still fits")
    with pytest.raises(ValueError, match="341"):
        store.put("ä" * 171, b"342 bytes")
    assert URLEncodeKeysDecorator(FilesystemStore(tmp_path)).max_key_length == 255 // 3


def test_url_encode_has_no_directories() -> None:
    store = URLEncodeKeysDecorator(DictStore())
    assert store.supports_directories is False
    with pytest.raises(NotImplementedError):
        store.put_directory("d")


# ---------------------------------------------------------------------- ReadOnlyDecorator


def _writes(store: ReadOnlyDecorator, tmp_path: pathlib.Path) -> dict[str, object]:
    source = tmp_path / "source"
    source.write_bytes(b"new")
    return {
        "put": lambda: store.put("k", b"new"),
        "put ttl": lambda: store.put("k", b"new", ttl_secs=5),
        "put_file(file)": lambda: store.put_file("k", io.BytesIO(b"new")),
        "put_file(name)": lambda: store.put_file("k", str(source)),
        "delete": lambda: store.delete("k"),
        "copy": lambda: store.copy("k", "k2"),
        "move": lambda: store.move("k", "k2"),
        "put_directory": lambda: store.put_directory("d"),
        "delete_directory": lambda: store.delete_directory("d"),
        "invalid key": lambda: store.put("../x", b"new"),
        "not bytes": lambda: store.put("k", "text"),
    }


def test_read_only_refuses_every_write(tmp_path: pathlib.Path) -> None:
    inner = DictStore()
    inner.put("k", b"old")
    inner.put_directory("d")
    store = ReadOnlyDecorator(inner)
    for name, write in _writes(store, tmp_path).items():
        with pytest.raises(ReadOnlyError) as raised:
            write()  # type: ignore[operator]
        assert isinstance(raised.value, AttributeError), name  # what simplekv raised
        assert raised.value.errno == errno.EROFS, name
    assert inner.d == {"k": b"old", "d/": b""}


def test_read_only_reads_pass_through(tmp_path: pathlib.Path) -> None:
    inner = RecordingStore()
    inner.put("a/k", b"value")
    store = ReadOnlyDecorator(inner)
    assert store.supports_writes is False
    assert store.fast_ranges is True
    assert store.get("a/k") == b"value"
    assert store.open("a/k").read() == b"value"
    target = tmp_path / "t"
    store.get_file("a/k", str(target))
    assert target.read_bytes() == b"value"
    assert "a/k" in store
    assert store.keys() == ["a/k"]
    inner.calls.clear()
    assert store.get_range("a/k", 1, 2) == b"al"
    assert store.stat("a/k").size == 5
    assert [entry.key for entry in store.iter_level()] == ["a/"]
    assert inner.calls == ["_get_range", "_stat", "_iter_level"]
    assert store.has_directory("a")


def test_read_only_hides_other_attributes_but_url_for() -> None:
    store = ReadOnlyDecorator(UrlDictStore())
    assert store.url_for("k") == "memory:///k"
    with pytest.raises(AttributeError):
        store.d  # noqa: B018 - the dict would allow writes
    assert not hasattr(ReadOnlyDecorator(DictStore()), "url_for")


# ---------------------------------------------------------------------- forwarding of every hook


class Spy:
    """A wrapped store that records each public method called on it, and answers in kind."""

    max_key_length = 1024
    max_component_length = None
    ttl_support = True

    def __init__(self, result: str) -> None:
        self.calls: list[tuple[str, tuple[object, ...]]] = []
        self.result = result

    def __getattr__(self, name: str) -> object:
        def method(*args: object) -> object:
            self.calls.append((name, args))
            answers = {
                "key": "p/k",
                "keys": iter(["p/k", "other"]),
                "info": KeyInfo("p/k", 1),
                "infos": iter([KeyInfo("p/k", 1), KeyInfo("other")]),
            }
            return answers.get(self.result, "answer")

        return method


_ARGUMENTS = {"key": "k", "prefix": "k", "delimiter": "/", "": "x"}


@pytest.mark.parametrize("name", sorted(name for name, hook in HOOKS.items() if hook.forwarded))
def test_store_decorator_forwards_every_hook_of_the_core(name: str) -> None:
    hook = HOOKS[name]
    spy = Spy(hook.result)
    args = [_ARGUMENTS[kind] for kind in hook.arguments]
    result = getattr(StoreDecorator(spy), name)(*args)  # type: ignore[arg-type]
    if hook.result in ("keys", "infos"):
        result = list(result)
    assert spy.calls == [(hook.method, tuple(args))]
    assert result is not None


@pytest.mark.parametrize(
    "name", sorted(name for name, hook in HOOKS.items() if hook.forwarded and name != "_describe_root")
)
def test_key_transforming_decorator_maps_every_hook_of_the_core(name: str) -> None:
    hook = HOOKS[name]
    spy = Spy(hook.result)
    args = [_ARGUMENTS[kind] for kind in hook.arguments]
    result = getattr(PrefixDecorator("p/", spy), name)(*args)  # type: ignore[arg-type]
    mapped = tuple("p/k" if kind in ("key", "prefix") else _ARGUMENTS[kind] for kind in hook.arguments)
    assert spy.calls == [(hook.method, mapped)]
    if hook.result == "key":
        assert result == "k"
    elif hook.result == "info":
        assert result.key == "k"
    elif hook.result == "keys":
        assert list(result) == ["k"]  # "other" is outside the prefix
    elif hook.result == "infos":
        assert [entry.key for entry in result] == ["k"]


def test_bulk_hooks_run_through_the_decorators_own_hooks() -> None:
    # A cache must drop its copy of every key delete_many deletes: the bulk hooks are
    # built from the decorator's per-key hooks, not passed to the wrapped store.
    from kvfs.cache import CacheDecorator

    backing = DictStore()
    cached = CacheDecorator(DictStore(), backing)
    for key in ("d/a", "d/b"):
        cached.put(key, b"x")
        cached.get(key)
    cached.delete_many(["d/a", "d/b"])
    assert cached.keys() == [] and backing.keys() == []
    for key in ("d/a", "d/b"):
        with pytest.raises(KeyError):
            cached.get(key)


def test_key_transforming_decorator_maps_bulk_deletes_and_hides_the_root() -> None:
    inner = DictStore()
    view = PrefixDecorator("p/", inner)
    view.put("a", b"1")
    inner.put("other", b"2")
    view.delete_many(["a"])
    assert inner.keys() == ["other"]
    assert view.describe_root() is None


@pytest.mark.parametrize("name", sorted(name for name, hook in HOOKS.items() if hook.writes))
def test_read_only_decorator_refuses_every_writing_hook(name: str) -> None:
    spy = Spy("")
    args = [_ARGUMENTS[kind] for kind in HOOKS[name].arguments]
    with pytest.raises(ReadOnlyError):
        getattr(ReadOnlyDecorator(spy), name)(*args)  # type: ignore[arg-type]
    assert spy.calls == []


@pytest.mark.parametrize("flag", [flag for flag in CAPABILITY_FLAGS if flag not in ("supports_staging", "streams_writes")])
def test_store_decorator_reports_every_flag_of_the_wrapped_store(flag: str) -> None:
    store = DictStore()
    value = 77 if flag.startswith("max_") else not getattr(store, flag)
    setattr(store, flag, value)
    assert getattr(StoreDecorator(store), flag) == value


def test_decorators_write_through_themselves_and_key_mappers_stream() -> None:
    # A streaming writer would reach the wrapped store without passing through the
    # decorator (a cache keeping its copy, a MAC added): decorators use the core's
    # writer, which stores through their own put_file; a key mapping changes no value.
    store = DictStore()
    store.streams_writes = True  # type: ignore[misc]
    assert not StoreDecorator(store).streams_writes
    assert not ReadOnlyDecorator(store).streams_writes
    assert PrefixDecorator("p/", store).streams_writes
    with StoreDecorator(store).open_writer("k") as writer:
        writer.write(b"value")
    assert store.get("k") == b"value"
    prefixed = PrefixDecorator("p/", store)
    with prefixed.open_writer("k") as writer:
        writer.write(b"mapped")
    assert store.get("p/k") == b"mapped"
    assert writer.closed
    with pytest.raises(ReadOnlyError):
        ReadOnlyDecorator(store).open_writer("k")


def test_decorators_never_offer_staging() -> None:
    # A staged file would reach the wrapped store without passing through the decorator.
    assert FilesystemStore("/nonexistent").supports_staging
    assert not StoreDecorator(FilesystemStore("/nonexistent")).supports_staging
