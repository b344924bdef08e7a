"""The store contract (:class:`kvfs.testing.StoreContract`) against the local stores.

Every backend that needs no server, and decorators and stacks of decorators over them,
must pass the same suite. Server backends run it in their own test modules.
"""

from __future__ import annotations

import pytest

from kvfs.cache import CacheDecorator
from kvfs.crypt import HMACDecorator
from kvfs.decorator import PrefixDecorator, ReadOnlyDecorator, URLEncodeKeysDecorator
from kvfs.fs import FilesystemStore, WebFilesystemStore
from kvfs.idgen import HashDecorator, UUIDDecorator
from kvfs.memory import DictStore
from kvfs.testing import INVALID_KEYS, StoreContract

SECRET = b"contract-test-secret"


class TestDictStore(StoreContract):
    streams_large_values = False  # a dict holds each value whole

    @pytest.fixture
    def store(self, dict_store):
        return dict_store


class TestFilesystemStore(StoreContract):
    @pytest.fixture
    def store(self, store_dir):
        return FilesystemStore(store_dir)

    @pytest.fixture
    def unavailable_store(self, store_dir):
        return FilesystemStore(store_dir / "missing")


class TestWebFilesystemStore(StoreContract):
    @pytest.fixture
    def store(self, tmp_path):
        # Rooted at tmp_path itself: the suite's own files must not appear as keys.
        return WebFilesystemStore(tmp_path, "https://files.example/store/")


class TestPrefixDecoratorOverDict(StoreContract):
    streams_large_values = False

    @pytest.fixture
    def store(self):
        return PrefixDecorator("pre/", DictStore())


class TestPrefixDecoratorOverFilesystem(StoreContract):
    @pytest.fixture
    def store(self, store_dir):
        return PrefixDecorator("pre/", FilesystemStore(store_dir))

    @pytest.fixture
    def unavailable_store(self, store_dir):
        return PrefixDecorator("pre/", FilesystemStore(store_dir / "missing"))


class TestURLEncodeKeysDecorator(StoreContract):
    streams_large_values = False
    # Any non-empty str is a key once encoded; only empty and non-str keys are invalid.
    invalid_keys = {
        name: key for name, key in INVALID_KEYS.items() if key == "" or not isinstance(key, str)
    }

    @pytest.fixture
    def store(self):
        return URLEncodeKeysDecorator(DictStore())


class TestURLEncodeKeysDecoratorOverFilesystem(StoreContract):
    invalid_keys = TestURLEncodeKeysDecorator.invalid_keys

    @pytest.fixture
    def store(self, store_dir):
        return URLEncodeKeysDecorator(FilesystemStore(store_dir))


class TestHMACDecorator(StoreContract):
    streams_large_values = False

    @pytest.fixture
    def store(self):
        return HMACDecorator(SECRET, DictStore())


class TestCacheDecorator(StoreContract):
    @pytest.fixture
    def store(self, store_dir):
        with CacheDecorator(DictStore(), FilesystemStore(store_dir)) as store:
            yield store

    @pytest.fixture
    def unavailable_store(self, store_dir):
        # The cache answers, the store behind it is missing: the store decides.
        return CacheDecorator(DictStore(), FilesystemStore(store_dir / "missing"))


class TestReadOnlyDecorator(StoreContract):
    @pytest.fixture
    def store(self):
        return ReadOnlyDecorator(DictStore())


# put(None, ...) and put("", ...) generate a key on the id-generating decorators.
GENERATED_KEY_ALLOWED = {
    name: key for name, key in INVALID_KEYS.items() if name not in ("empty", "none")
}


class TestHashDecorator(StoreContract):
    streams_large_values = False
    invalid_keys = GENERATED_KEY_ALLOWED

    @pytest.fixture
    def store(self):
        return HashDecorator(DictStore())


class TestUUIDDecorator(StoreContract):
    streams_large_values = False
    invalid_keys = GENERATED_KEY_ALLOWED

    @pytest.fixture
    def store(self):
        return UUIDDecorator(DictStore())


class TestDecoratorStack(StoreContract):
    """Three decorators deep: a prefix over HMAC over a cache over files."""

    @pytest.fixture
    def store(self, store_dir):
        cached = CacheDecorator(DictStore(), FilesystemStore(store_dir))
        with PrefixDecorator("tenant/", HMACDecorator(SECRET, cached)) as store:
            yield store
