"""The library and the mount see each other's changes (after the cache lifetime)."""

from __future__ import annotations

import os
import pathlib
import time

import pytest
from mount_support import any_store, mount_store  # noqa: F401 - fixture

LIFETIME = 0.3


def eventually(check, timeout: float = 10.0) -> None:
    """Wait until *check()* is true: changes outside the mount show after the lifetime."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail("the change never showed through the mount")
        time.sleep(0.05)


@pytest.fixture
def store(any_store):
    return any_store


@pytest.fixture
def mnt(store, tmp_path: pathlib.Path):
    with mount_store(store, tmp_path / "mnt", attr_timeout=LIFETIME, listing_timeout=LIFETIME) as path:
        yield path


def test_library_sees_what_the_mount_wrote(mnt: pathlib.Path, store) -> None:
    (mnt / "dir").mkdir()
    (mnt / "dir" / "file").write_bytes(b"from the mount")
    assert store.get("dir/file") == b"from the mount"
    os.rename(mnt / "dir" / "file", mnt / "dir" / "moved")
    assert store.keys() == ["dir/moved"]
    os.unlink(mnt / "dir" / "moved")
    assert store.keys() == []
    assert store.has_directory("dir")


def test_mount_sees_what_the_library_wrote(mnt: pathlib.Path, store) -> None:
    assert os.listdir(mnt) == []
    store.put("new/key", b"first")
    eventually(lambda: os.listdir(mnt) == ["new"])
    assert (mnt / "new" / "key").read_bytes() == b"first"
    # A changed value (another size) shows after the lifetime, also in a warm page cache.
    store.put("new/key", b"second value")
    eventually(lambda: (mnt / "new" / "key").read_bytes() == b"second value")
    assert (mnt / "new" / "key").stat().st_size == len(b"second value")
    store.delete("new/key")
    eventually(lambda: not (mnt / "new" / "key").exists())


def test_warm_reads_stay_correct_after_same_size_change(mnt: pathlib.Path, store) -> None:
    store.put("f", b"A" * 100_000)
    assert (mnt / "f").read_bytes() == b"A" * 100_000
    assert (mnt / "f").read_bytes() == b"A" * 100_000  # from the kernel's page cache
    time.sleep(0.05)  # a later mtime, whatever the store's clock resolution
    store.put("f", b"B" * 100_000)
    eventually(lambda: (mnt / "f").read_bytes() == b"B" * 100_000)


def test_two_mounts_of_one_store(store, tmp_path: pathlib.Path) -> None:
    with mount_store(store, tmp_path / "one", attr_timeout=LIFETIME, listing_timeout=LIFETIME) as one, mount_store(
        store, tmp_path / "two", attr_timeout=LIFETIME, listing_timeout=LIFETIME
    ) as two:
        (one / "shared").write_bytes(b"written in one")
        eventually(lambda: (two / "shared").exists())
        assert (two / "shared").read_bytes() == b"written in one"
        (two / "shared").write_bytes(b"rewritten in two")
        eventually(lambda: (one / "shared").read_bytes() == b"rewritten in two")
