"""HMAC signing (:mod:`kvfs.crypt`): the contract, simplekv's format, and tampering detected."""

from __future__ import annotations

import hashlib
import hmac
import io
import pathlib
from collections.abc import Iterator

import pytest

import kvfs.crypt
from kvfs.crypt import HMACDecorator, VerificationException
from kvfs.decorator import PrefixDecorator
from kvfs.errors import KvfsError
from kvfs.fs import FilesystemStore
from kvfs.memory import DictStore
from kvfs.testing import CountingReader, StoreContract, random_bytes

SECRET = b"correct horse battery staple"


def signed(key: str, value: bytes, secret: bytes = SECRET) -> bytes:
    """A value as simplekv's HMACDecorator stores it: the value, then its HMAC."""
    return value + hmac.new(key.encode() + secret, value, hashlib.sha256).digest()


# ---------------------------------------------------------------------- contract


class TestHMACDecoratorContract(StoreContract):
    streams_large_values = False  # a DictStore holds each value whole

    @pytest.fixture
    def store(self) -> Iterator[HMACDecorator]:
        with HMACDecorator(SECRET, DictStore()) as store:
            yield store


class TestHMACOverFilesystemContract(StoreContract):
    @pytest.fixture
    def store(self, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HMACDecorator]:
        with HMACDecorator(SECRET, FilesystemStore(tmp_path_factory.mktemp("store"))) as store:
            yield store


# ---------------------------------------------------------------------- format


def test_values_are_stored_as_simplekv_stores_them() -> None:
    inner = DictStore()
    store = HMACDecorator(SECRET, inner)
    store.put("key", b"value")
    assert inner.get("key") == signed("key", b"value")
    store.put_file("file", io.BytesIO(b"from a file"))
    assert inner.get("file") == signed("file", b"from a file")
    assert store.hmac_digestsize == 32


def test_reads_what_simplekv_wrote() -> None:
    inner = DictStore()
    inner.put("key", signed("key", b"written by simplekv"))
    store = HMACDecorator(SECRET, inner)
    assert store.get("key") == b"written by simplekv"
    assert store.open("key").read() == b"written by simplekv"


def test_other_hash_function() -> None:
    inner = DictStore()
    store = HMACDecorator(SECRET, inner, hashfunc=hashlib.sha1)
    store.put("key", b"value")
    assert len(inner.get("key")) == 5 + 20
    assert store.hmac_digestsize == 20
    assert store.get("key") == b"value"


def test_secret_key_types() -> None:
    inner = DictStore()
    HMACDecorator("text secret", inner).put("k", b"v")
    assert HMACDecorator(b"text secret", inner).get("k") == b"v"
    assert HMACDecorator(bytearray(b"text secret"), inner).get("k") == b"v"
    with pytest.raises(TypeError):
        HMACDecorator(16, inner)  # type: ignore[arg-type]  # bytes(16) would be zeros


def test_secret_does_not_show_in_repr() -> None:
    assert "horse" not in repr(HMACDecorator(SECRET, DictStore()))


def test_stat_and_listing_report_the_plain_size() -> None:
    store = HMACDecorator(SECRET, DictStore())
    store.put("d/key", b"12345")
    assert store.stat("d/key").size == 5
    (entry,) = store.iter_level("d/")
    assert entry.key == "d/key" and entry.size == 5
    assert store.fast_ranges is False
    assert store.supports_server_copy is False
    assert store.fast_stat is True


# ---------------------------------------------------------------------- tampering


@pytest.fixture
def tampered() -> HMACDecorator:
    """A store where ``good`` verifies and the others were changed behind its back."""
    inner = DictStore()
    store = HMACDecorator(SECRET, inner)
    value = random_bytes(300_000, seed=5)
    store.put("good", value)
    raw = inner.get("good")
    inner.put("flipped", raw[:1000] + bytes([raw[1000] ^ 1]) + raw[1001:])
    inner.put("bad-digest", raw[:-1] + bytes([raw[-1] ^ 1]))
    inner.put("truncated", raw[:-1])
    inner.put("too-short", b"tiny")
    inner.put("empty", b"")
    inner.put("unsigned", value)
    inner.put("other-key", signed("good", value))  # valid, but for another key
    inner.put("other-secret", signed("other-secret", value, secret=b"guess"))
    return store


BAD = [
    "flipped",
    "bad-digest",
    "truncated",
    "too-short",
    "empty",
    "unsigned",
    "other-key",
    "other-secret",
]


@pytest.mark.parametrize("key", BAD)
def test_tampering_is_detected_by_every_read(
    tampered: HMACDecorator, key: str, tmp_path: pathlib.Path
) -> None:
    with pytest.raises(VerificationException):
        tampered.get(key)
    with pytest.raises(VerificationException):
        tampered.open(key)
    with pytest.raises(VerificationException):
        tampered.get_file(key, io.BytesIO())
    target = tmp_path / "target"
    target.write_bytes(b"keep me")
    with pytest.raises(VerificationException):
        tampered.get_file(key, str(target))
    assert target.read_bytes() == b"keep me", "a value that failed verification replaced a file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["target"], "a temporary file was left"
    with pytest.raises(VerificationException):
        tampered.get_range(key, 0, 10)
    with pytest.raises(VerificationException):
        tampered.copy(key, "copy")
    with pytest.raises(VerificationException):
        tampered.move(key, "moved")
    assert "copy" not in tampered and "moved" not in tampered
    assert key in tampered, "a failed move deleted its source"


def test_good_value_reads_in_every_way(tampered: HMACDecorator, tmp_path: pathlib.Path) -> None:
    value = random_bytes(300_000, seed=5)
    assert tampered.get("good") == value
    with tampered.open("good") as file:
        assert file.read() == value
    buffer = io.BytesIO()
    tampered.get_file("good", buffer)
    assert buffer.getvalue() == value
    assert tampered.get_range("good", 299_990, 100) == value[-10:]


def test_verification_exception_is_a_kvfs_error() -> None:
    assert issubclass(VerificationException, KvfsError)
    assert issubclass(VerificationException, Exception)


def test_digests_are_compared_in_constant_time(
    tampered: HMACDecorator, monkeypatch: pytest.MonkeyPatch
) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def recording(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(kvfs.crypt.hmac, "compare_digest", recording)
    tampered.get("good")
    assert len(compared) == 1
    with pytest.raises(VerificationException):
        tampered.get("bad-digest")
    with pytest.raises(VerificationException):
        tampered.open("flipped")
    assert len(compared) == 3


# ---------------------------------------------------------------------- copy, files, stacking


def test_copy_and_move_sign_for_the_new_key() -> None:
    inner = DictStore()
    store = HMACDecorator(SECRET, inner)
    store.put("a", b"value")
    assert store.copy("a", "b") == "b"
    assert inner.get("b") == signed("b", b"value")
    assert store.move("b", "c") == "c"
    assert store.get("c") == b"value"
    assert sorted(store.keys()) == ["a", "c"]


def test_put_file_from_filename_leaves_the_file_alone(tmp_path: pathlib.Path) -> None:
    """simplekv appended the HMAC to the caller's file; kvfs must not."""
    source = tmp_path / "source"
    source.write_bytes(b"caller's data")
    store = HMACDecorator(SECRET, DictStore())
    store.put_file("key", str(source))
    assert source.read_bytes() == b"caller's data"
    assert store.get("key") == b"caller's data"


def test_put_file_streams() -> None:
    inner = DictStore()
    store = HMACDecorator(SECRET, inner)
    value = random_bytes(3 * 1024 * 1024, seed=9)
    reader = CountingReader(value)
    store.put_file("key", reader)
    assert reader.unbounded_reads == 0
    assert reader.largest_read <= 1024 * 1024
    assert inner.get("key") == signed("key", value)


def test_open_returns_a_verified_seekable_file() -> None:
    store = HMACDecorator(SECRET, DictStore())
    value = bytes(range(256)) * 10_000
    store.put("key", value)
    with store.open("key") as file:
        assert file.seekable()
        file.seek(-10, io.SEEK_END)
        assert file.read() == value[-10:]


def test_over_a_prefix_the_outer_key_signs() -> None:
    inner = DictStore()
    store = HMACDecorator(SECRET, PrefixDecorator("p/", inner))
    store.put("k", b"v")
    assert inner.get("p/k") == signed("k", b"v")
    assert store.get("k") == b"v"


def test_file_reader_streams_and_verifies_at_the_end() -> None:
    value = random_bytes(100_000, seed=4)
    hm = hmac.new(b"k" + SECRET, digestmod=hashlib.sha256)
    reader = kvfs.crypt._HMACFileReader(hm, io.BytesIO(signed("k", value)), "k")
    parts = []
    while chunk := reader.read(7_000):
        parts.append(chunk)
    assert b"".join(parts) == value
    broken = signed("k", value)[:-1] + b"\x00"
    hm = hmac.new(b"k" + SECRET, digestmod=hashlib.sha256)
    reader = kvfs.crypt._HMACFileReader(hm, io.BytesIO(broken), "k")
    assert len(reader.read(50_000)) == 50_000, "data is streamed before the end is reached"
    with pytest.raises(VerificationException):
        reader.read()
    with pytest.raises(VerificationException):
        reader.read(1)  # and it stays failed


def test_a_reader_that_stops_at_the_first_short_read_has_had_the_check() -> None:
    # The usual "read until a read comes back short" loop never asks past the end.
    inner = DictStore()
    signed = HMACDecorator(b"secret", inner)
    signed.put("k", b"x" * 250)
    inner.d["k"] = b"y" + inner.d["k"][1:]
    with signed._reader("k") as reader, pytest.raises(VerificationException):  # what open and get read
        while len(reader.read(100)) == 100:
            pass
