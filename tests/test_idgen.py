"""Key-generating decorators (:mod:`kvfs.idgen`): the contract, and keys made on ``put(None)``."""

from __future__ import annotations

import hashlib
import io
import pathlib
import re
import uuid
from collections.abc import Iterator
from typing import ClassVar

import pytest

from kvfs.fs import FilesystemStore
from kvfs.idgen import HashDecorator, UUIDDecorator
from kvfs.memory import DictStore
from kvfs.store import KeyValueStore
from kvfs.testing import (
    INVALID_KEYS,
    CountingReader,
    ShortReadFile,
    StoreContract,
    random_bytes,
)

UUID_RE = re.compile(r"\A[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")


# ---------------------------------------------------------------------- contract

#: ``None`` and ``""`` ask ``put`` for a new key; every other invalid key stays invalid.
_GENERATING = {"none", "empty"}
_STILL_INVALID = {name: key for name, key in INVALID_KEYS.items() if name not in _GENERATING}


class IdgenContract(StoreContract):
    streams_large_values = False  # a DictStore holds each value whole

    invalid_keys: ClassVar[dict[str, object]] = _STILL_INVALID

    @pytest.mark.parametrize("key", [None, ""], ids=["none", "empty"])
    def test_no_key_is_rejected_by_every_method_but_put(
        self, store: KeyValueStore, key: object
    ) -> None:
        for call in (store.get, store.open, store.stat, store.delete, store.has_directory):
            with pytest.raises(ValueError):
                call(key)
        with pytest.raises(ValueError):
            key in store  # noqa: B015
        assert store.keys() == []
        generated = store.put(key, b"value")  # type: ignore[arg-type]
        assert store.keys() == [generated]


class TestHashDecoratorContract(IdgenContract):
    @pytest.fixture
    def store(self) -> Iterator[HashDecorator]:
        with HashDecorator(DictStore()) as store:
            yield store


class TestUUIDDecoratorContract(IdgenContract):
    @pytest.fixture
    def store(self) -> Iterator[UUIDDecorator]:
        with UUIDDecorator(DictStore()) as store:
            yield store


class TestHashDecoratorOverFilesystemContract(IdgenContract):
    streams_large_values = True

    @pytest.fixture
    def store(self, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HashDecorator]:
        with HashDecorator(FilesystemStore(tmp_path_factory.mktemp("store"))) as store:
            yield store


# ---------------------------------------------------------------------- HashDecorator


def test_hash_key_is_the_sha1_of_the_value() -> None:
    inner = DictStore()
    store = HashDecorator(inner)
    key = store.put(None, b"my_data")
    assert key == "ab0c15b6029fdffce16b393f2d27ca839a76249e"  # simplekv's documented example
    assert inner.get(key) == b"my_data"
    assert store.put("", b"my_data") == key, "an empty key is generated, as in simplekv"
    assert inner.keys() == [key]


def test_hash_given_key_is_used_unchanged() -> None:
    store = HashDecorator(DictStore(), template="blobs/{}")
    assert store.put("mine", b"data") == "mine"
    assert store.put_file("file", io.BytesIO(b"data")) == "file"
    assert sorted(store.keys()) == ["file", "mine"]


def test_hash_function_and_template() -> None:
    store = HashDecorator(DictStore(), hashfunc=hashlib.sha256, template="blobs/{}.bin")
    key = store.put(None, b"data")
    assert key == f"blobs/{hashlib.sha256(b'data').hexdigest()}.bin"
    assert store.get(key) == b"data"


def test_hash_put_file_from_file_object_streams() -> None:
    inner = DictStore()
    store = HashDecorator(inner)
    value = random_bytes(3 * 1024 * 1024 + 5, seed=7)
    reader = CountingReader(value)
    key = store.put_file(None, reader)
    assert key == hashlib.sha1(value).hexdigest()
    assert inner.get(key) == value
    assert reader.unbounded_reads == 0, "the whole file was read into memory at once"
    assert reader.largest_read <= 1024 * 1024


def test_hash_put_file_from_short_reads() -> None:
    value = random_bytes(100_000, seed=3)
    store = HashDecorator(DictStore())
    key = store.put_file(None, ShortReadFile(value, max_read=999))
    assert key == hashlib.sha1(value).hexdigest()
    assert store.get(key) == value


@pytest.mark.parametrize("kind", [str, pathlib.Path], ids=["str", "pathlib"])
def test_hash_put_file_from_filename(tmp_path: pathlib.Path, kind: type) -> None:
    source = tmp_path / "source"
    source.write_bytes(b"file data")
    store = HashDecorator(DictStore())
    key = store.put_file(None, kind(source))
    assert key == hashlib.sha1(b"file data").hexdigest()
    assert store.get(key) == b"file data"
    assert source.read_bytes() == b"file data"


def test_hash_put_file_missing_file_stores_nothing(tmp_path: pathlib.Path) -> None:
    store = HashDecorator(DictStore())
    with pytest.raises(OSError):
        store.put_file(None, str(tmp_path / "missing"))
    assert store.keys() == []


def test_hash_rejects_values_that_are_not_bytes() -> None:
    store = HashDecorator(DictStore())
    with pytest.raises(IOError):
        store.put(None, "text")  # type: ignore[arg-type]
    assert store.keys() == []


def test_hash_template_must_give_a_valid_key() -> None:
    store = HashDecorator(DictStore(), template="../{}")
    with pytest.raises(ValueError):
        store.put(None, b"data")
    assert store.keys() == []


# ---------------------------------------------------------------------- UUIDDecorator


def test_uuid_keys_are_new_uuids() -> None:
    inner = DictStore()
    store = UUIDDecorator(inner)
    first = store.put(None, b"one")
    second = store.put_file(None, io.BytesIO(b"two"))
    third = store.put("", b"three")
    assert len({first, second, third}) == 3
    for key in (first, second, third):
        assert UUID_RE.match(key), key
    assert uuid.UUID(first).version == 1, "simplekv's default uuid1"
    assert inner.get(second) == b"two"


def test_uuid_template_applies_to_every_key() -> None:
    inner = DictStore()
    store = UUIDDecorator(inner, template="img/{}.png")
    key = store.put(None, b"png")
    assert key.startswith("img/") and key.endswith(".png")
    assert UUID_RE.match(key[4:-4])
    assert store.put("cat", b"png") == "img/cat.png", "as in simplekv, given keys are templated"
    assert store.put_file("dog", io.BytesIO(b"png")) == "img/dog.png"
    assert sorted(inner.keys()) == sorted([key, "img/cat.png", "img/dog.png"])


@pytest.mark.parametrize("key", [42, b"key"])
def test_uuid_rejects_keys_that_are_not_strings(key: object) -> None:
    store = UUIDDecorator(DictStore())
    with pytest.raises(ValueError):
        store.put(key, b"data")  # type: ignore[arg-type]
    assert store.keys() == []


def test_uuid_function_can_be_changed() -> None:
    store = UUIDDecorator(DictStore())
    store.uuidfunc = "uuid4"
    assert uuid.UUID(store.put(None, b"x")).version == 4


@pytest.mark.parametrize("kind", [str, pathlib.Path], ids=["str", "pathlib"])
def test_uuid_put_file_from_filename(tmp_path: pathlib.Path, kind: type) -> None:
    source = tmp_path / "source"
    source.write_bytes(b"file data")
    store = UUIDDecorator(DictStore())
    key = store.put_file(None, kind(source))
    assert store.get(key) == b"file data"


def test_id_decorators_stack_outermost() -> None:
    from kvfs.decorator import PrefixDecorator

    inner = DictStore()
    store = HashDecorator(PrefixDecorator("blobs/", inner))
    key = store.put(None, b"data")
    assert inner.keys() == ["blobs/" + key]
    assert store.keys() == [key]
