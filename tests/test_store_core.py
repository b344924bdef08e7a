"""The store template itself (:mod:`kvfs.store`): what a backend gets for free.

A third-party backend written simplekv style, with only ``_delete``, ``iter_keys``,
``_open`` and ``_put_file``, must pass the whole contract on the core's slow defaults.
Variants of it exercise the contract's branches for flags no local backend sets
(per-component limits, no key-and-prefix, TTL, URLs, read-only).
"""

from __future__ import annotations

import errno
import io
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

import kvfs
from kvfs import _extras
from kvfs.errors import (
    BackendError,
    InvalidKeyError,
    InvalidValueError,
    KeyNotFoundError,
    KvfsError,
    MissingExtraError,
    NotADirectoryKeyError,
    ReadOnlyError,
)
from kvfs.memory import DictStore
from kvfs.mixins import NOT_SET, TimeToLiveMixin, UrlMixin
from kvfs.store import KeyInfo, KeyValueStore, chained_pages
from kvfs.testing import StoreContract

REPO = Path(__file__).resolve().parent.parent

#: Modules that must import with the standard library alone (backends with a client
#: library, and kvfs.testing with pytest, are not among them).
STDLIB_ONLY_MODULES = [
    "kvfs",
    "kvfs.store",
    "kvfs.keys",
    "kvfs.errors",
    "kvfs.mixins",
    "kvfs.memory",
    "kvfs.fs",
    "kvfs.decorator",
    "kvfs.crypt",
    "kvfs.cache",
    "kvfs.idgen",
]


class MinimalStore(KeyValueStore):
    """A backend as a simplekv user would write it: four methods, nothing else."""

    def __init__(self) -> None:
        self._values: dict[str, bytes] = {}

    def _travelling_state(self) -> dict[str, object]:
        # The content lives in this process: a pickle carries it (see docs/core.rst).
        return {"_values": dict(self._values)}

    def _delete(self, key: str) -> None:
        self._values.pop(key, None)

    def iter_keys(self, prefix: str = "") -> Iterator[str]:
        return iter([key for key in list(self._values) if key.startswith(prefix)])

    def _open(self, key: str) -> IO[bytes]:
        try:
            return io.BytesIO(self._values[key])
        except KeyError:
            raise KeyError(key) from None  # a plain KeyError, as simplekv backends raise

    def _put_file(self, key: str, file: IO[bytes]) -> str:
        self._values[key] = file.read()
        return key


class RestrictedStore(MinimalStore):
    """Short keys and components, and no key that is also a prefix (like a filesystem)."""

    max_key_length = 200
    max_component_length = 30
    allows_key_and_prefix = False

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()

    def _put_file(self, key: str, file: IO[bytes]) -> str:
        data = file.read()
        with self._lock:
            for existing in self._values:
                if existing.startswith(key + "/") or key.startswith(existing + "/"):
                    message = f"{key!r} conflicts with {existing!r}"
                    raise NotADirectoryKeyError(errno.ENOTDIR, message)
            self._values[key] = data
        return key


class TtlUrlStore(UrlMixin, TimeToLiveMixin, MinimalStore):
    """The minimal backend with simplekv's URL and time-to-live mixins."""

    def __init__(self) -> None:
        super().__init__()
        self.ttls: dict[str, object] = {}

    def _put_file(self, key: str, file: IO[bytes], ttl_secs: object = NOT_SET) -> str:
        self.ttls[key] = ttl_secs
        return MinimalStore._put_file(self, key, file)  # past the mixin's abstract hook

    def _url_for(self, key: str) -> str:
        return f"memory:///{key}"


class ReadOnlyStore(MinimalStore):
    supports_writes = False

    def _put_file(self, key: str, file: IO[bytes]) -> str:
        raise ReadOnlyError()

    def _delete(self, key: str) -> None:
        raise ReadOnlyError()


class TestMinimalStore(StoreContract):
    streams_large_values = False  # it keeps values whole in a dict

    @pytest.fixture
    def store(self):
        return MinimalStore()


class TestRestrictedStore(StoreContract):
    streams_large_values = False

    @pytest.fixture
    def store(self):
        return RestrictedStore()


class TestTtlUrlStore(StoreContract):
    streams_large_values = False

    @pytest.fixture
    def store(self):
        return TtlUrlStore()


class TestReadOnlyStore(StoreContract):
    @pytest.fixture
    def store(self):
        return ReadOnlyStore()


# ---------------------------------------------------------------------- the template


def test_backend_without_hooks_says_what_is_missing():
    store = KeyValueStore()
    with pytest.raises(NotImplementedError, match="KeyValueStore must implement iter_keys"):
        store.keys()
    for call in (lambda: store.get("k"), lambda: store.put("k", b"v"), lambda: store.delete("k")):
        with pytest.raises(NotImplementedError):
            call()


def test_ttl_is_passed_to_the_backend_hook():
    store = TtlUrlStore()
    store.put("a", b"v", ttl_secs=5)
    store.put("b", b"v")
    store.default_ttl_secs = 60
    store.put("c", b"v")
    assert store.ttls == {"a": 5, "b": NOT_SET, "c": 60}


def test_listing_hides_directory_markers():
    store = DictStore()
    store.put_directory("d")
    store.put("d/x", b"x")
    assert store.keys() == ["d/x"]
    assert set(store.d) == {"d/", "d/x"}


def test_listing_prefix_must_be_a_str():
    store = DictStore()
    prefixes = lambda prefix: store.iter_prefixes("/", prefix)  # noqa: E731
    for listing in (store.keys, store.iter_keys, store.iter_level, prefixes):
        with pytest.raises(ValueError):
            list(listing(1))


def test_two_dict_stores_share_nothing():
    first, second = DictStore(), DictStore()
    first.put("k", b"v")
    assert "k" not in second


def test_key_info_is_frozen_with_unknown_defaults():
    info = KeyInfo("k")
    assert (info.size, info.last_modified, info.is_prefix) == (None, None, False)
    with pytest.raises(AttributeError):
        info.size = 1  # type: ignore[misc]


def test_invalid_value_is_rejected_before_the_backend_is_called():
    store = MinimalStore()
    with pytest.raises(InvalidValueError, match="must be bytes, not str"):
        store.put("k", "text")  # type: ignore[arg-type]
    assert store._values == {}


class FailingReadStore(MinimalStore):
    """Values break after the first chunk, as a network read might."""

    def _open(self, key: str) -> IO[bytes]:
        super()._open(key)
        return _BrokenReader()


class _BrokenReader(io.RawIOBase):
    def __init__(self) -> None:
        super().__init__()
        self._calls = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        self._calls += 1
        if self._calls > 1:
            raise BackendError(errno.EIO, "connection lost")
        buffer[:4] = b"part"
        return 4


def test_get_file_failure_leaves_no_partial_file(tmp_path):
    store = FailingReadStore()
    store.put("k", b"whole value")
    target = tmp_path / "target"
    target.write_bytes(b"previous")
    with pytest.raises(BackendError):
        store.get_file("k", str(target))
    assert target.read_bytes() == b"previous", "a failed get_file replaced the file"
    assert os.listdir(tmp_path) == ["target"], "a temporary file was left behind"


def test_get_file_writes_special_files_in_place():
    store = DictStore()
    store.put("k", b"value")
    store.get_file("k", os.devnull)  # a rename over /dev/null would need root and break it
    assert os.path.exists(os.devnull) and not os.path.isfile(os.devnull)


# ---------------------------------------------------------------------- imports


def test_core_imports_only_the_standard_library():
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        f"import {', '.join(STDLIB_ONLY_MODULES)}\n"
        "new = {name.split('.')[0] for name in set(sys.modules) - before}\n"
        "print(sorted(new - set(sys.stdlib_module_names) - {'kvfs'}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


# ---------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("error", "bases"),
    [
        (KeyNotFoundError, (KeyError,)),
        (InvalidKeyError, (ValueError,)),
        (InvalidValueError, (IOError, OSError, TypeError)),
        (BackendError, (OSError,)),
        (ReadOnlyError, (AttributeError,)),
        (NotADirectoryKeyError, (BackendError, OSError)),
        (MissingExtraError, (ImportError,)),
    ],
)
def test_error_hierarchy(error, bases):
    assert issubclass(error, KvfsError)
    for base in bases:
        assert issubclass(error, base)
    assert getattr(kvfs, error.__name__, error) is error


def test_key_not_found_message_is_not_quoted():
    assert str(KeyNotFoundError("a/b")) == "a/b"
    assert str(KeyNotFoundError()) == "key not found"


def test_read_only_error_is_erofs():
    error = ReadOnlyError()
    assert error.errno == errno.EROFS
    assert "read-only" in str(error)


def test_missing_extra_error_names_the_install_command():
    error = MissingExtraError("redis", "redis")
    assert "pip install 'kvfs[redis]'" in str(error)
    assert "'redis' package" in str(error)
    assert (error.package, error.extra) == ("redis", "redis")


def test_require_imports_or_names_the_extra():
    assert _extras.require("json", "unused").dumps([]) == "[]"
    with pytest.raises(MissingExtraError, match=r"kvfs\[gcs\]") as caught:
        _extras.require("kvfs_no_such_client.storage", "gcs")
    assert caught.value.package == "kvfs_no_such_client"


def test_a_remembered_key_is_still_checked_against_a_lower_limit_set_per_store():
    # The core remembers keys that passed the rule; a store whose limit is lower, set on
    # the instance, must still refuse them.
    roomy = DictStore()
    roomy.put("remembered-key", b"x")
    tight = DictStore()
    tight.max_key_length = 5
    with pytest.raises(ValueError, match="limit of this store is 5"):
        tight.put("remembered-key", b"x")
    with pytest.raises(ValueError, match="limit of this store is 5"):
        tight.get("remembered-key")


def test_a_store_with_its_own_key_check_is_always_asked():
    class NoTildes(DictStore):
        def _check_valid_key(self, key):
            super()._check_valid_key(key)
            if "~" in key:
                raise ValueError("no tildes here")

    DictStore().put("a~b", b"x")  # now remembered as valid by the core
    with pytest.raises(ValueError, match="no tildes"):
        NoTildes().put("a~b", b"x")
    with pytest.raises(ValueError, match="no tildes"):
        NoTildes().get("a~b")


def test_get_file_to_an_unwritable_name_names_that_file(tmp_path: Path) -> None:
    store = DictStore()
    store.put("k", b"v")
    target = tmp_path / "no" / "such" / "dir" / "file"
    with pytest.raises(FileNotFoundError, match=f"Error opening {target} for writing") as raised:
        store.get_file("k", str(target))
    assert ".kvfs-" not in str(raised.value)  # not the temporary file's name
    assert not (tmp_path / "no").exists()


def test_get_file_to_a_name_of_the_longest_length(tmp_path: Path) -> None:
    # The temporary file beside it must fit the filesystem's name limit too.
    store = DictStore()
    store.put("k", b"v")
    target = tmp_path / ("n" * 255)
    store.get_file("k", str(target))
    assert target.read_bytes() == b"v"
    assert os.listdir(tmp_path) == ["n" * 255]


def test_chained_pages_fetch_the_next_page_while_the_caller_reads() -> None:
    pages = {None: ("one", 1), 1: ("two", 2), 2: ("three", None)}
    asked: list[object] = []
    second_asked = threading.Event()

    def fetch(token: object) -> tuple[str, object]:
        asked.append(token)
        if token == 1:
            second_asked.set()
        return pages[token]  # type: ignore[index]

    listing = chained_pages(fetch, lambda page: page[1])
    assert next(listing)[0] == "one"
    assert second_asked.wait(30)  # asked for while the caller holds the first page
    assert [page[0] for page in listing] == ["two", "three"]
    assert asked == [None, 1, 2]


def test_chained_pages_raise_what_a_fetch_raises_and_fetch_on_demand_without_prefetch() -> None:
    def failing(token: object) -> tuple[str, object]:
        if token is None:
            return ("first", "next")
        raise BackendError("the server went away")

    listing = chained_pages(failing, lambda page: page[1])
    assert next(listing)[0] == "first"
    with pytest.raises(BackendError, match="went away"):
        next(listing)
    asked: list[object] = []

    def counting(token: object) -> tuple[str, object]:
        asked.append(token)
        return ("page", None if token else "more")

    lazy = chained_pages(counting, lambda page: page[1], prefetch=False)
    next(lazy)
    assert asked == [None]  # nothing asked for until the caller reads on
    assert len(list(lazy)) == 1 and asked == [None, "more"]


class _FailingAt(DictStore):
    """A dictionary store on a "remote" server that refuses to write one key."""

    is_remote = True  # the steps of a directory's move run in parallel

    def __init__(self, refused: str) -> None:
        super().__init__()
        self.refused = refused

    def _put(self, key: str, data: bytes, *args: object, **kwargs: object) -> str:
        if key == self.refused:
            raise BackendError(errno.EIO, f"cannot write {key}")
        return super()._put(key, data, *args, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("refused", ["dst/sub/b", "dst/empty/"], ids=["a copy", "a marker"])
def test_a_directory_move_that_fails_leaves_every_source(refused: str) -> None:
    store = _FailingAt(refused)
    for name in ("a", "sub/b", "sub/c"):
        store.put(f"src/{name}", name.encode())
    store.put_directory("src/empty")
    before = dict(store.d)
    with pytest.raises(BackendError, match="cannot write"):
        store.move_directory("src", "dst")
    # Every value and marker below src is still there, unchanged.
    assert {key: value for key, value in store.d.items() if key.startswith("src/")} == before
    store.refused = ""
    assert store.move_directory("src", "dst") == "dst"
    assert sorted(store.d) == ["dst/", "dst/a", "dst/empty/", "dst/sub/b", "dst/sub/c"]
