"""Big files written through a mount of a FilesystemStore: staged in the store's own
staging files and committed by a rename on close (``supports_staging``)."""

from __future__ import annotations

import errno
import os
import pathlib
from collections.abc import Iterator

import pytest
from mount_support import mount_store

from kvfs.fs import FilesystemStore
from kvfs.mount.handles import MEMORY_FILE_LIMIT

MiB = 1024 * 1024
#: Past the in-memory limit: such a file is staged in a staging file of the store.
BIG = MEMORY_FILE_LIMIT + 3 * MiB


@pytest.fixture
def root(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / "store"


@pytest.fixture
def store(root: pathlib.Path) -> FilesystemStore:
    return FilesystemStore(root)


@pytest.fixture
def mnt(store: FilesystemStore, tmp_path: pathlib.Path) -> Iterator[pathlib.Path]:
    with mount_store(store, tmp_path / "mnt", cache_dir=str(tmp_path / "cache")) as path:
        yield path


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: pathlib.Path) -> pathlib.Path:
    (tmp_path / "cache").mkdir()
    return tmp_path / "cache"


def names(root: pathlib.Path) -> list[str]:
    """Every name below *root*, hidden and temporary ones too."""
    return sorted(str(path.relative_to(root)) for path in root.rglob("*"))


def write_chunks(fd: int, data: bytes, chunk: int = MiB) -> None:
    for start in range(0, len(data), chunk):
        os.write(fd, data[start : start + chunk])


def test_reader_of_the_store_never_sees_a_partial_value(mnt: pathlib.Path, store, root: pathlib.Path) -> None:
    old, new = os.urandom(BIG // 2), os.urandom(BIG)
    store.put("d/big", old)
    fd = os.open(mnt / "d" / "big", os.O_WRONLY | os.O_TRUNC)
    try:
        for start in range(0, len(new), MiB):
            os.write(fd, new[start : start + MiB])
            assert store.get("d/big") == old
            assert names(root) == ["d", "d/big"], "a staging file shows in the store"
    finally:
        os.close(fd)
    assert store.get("d/big") == new
    assert names(root) == ["d", "d/big"]


def test_commit_leaves_no_copy_in_the_cache_dir(mnt: pathlib.Path, store, cache_dir: pathlib.Path) -> None:
    data = os.urandom(BIG)
    fd = os.open(mnt / "big", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        write_chunks(fd, data)
        # The staged copy is the store's own (unnamed) file: nothing in the cache dir,
        # where a copy would sit, if only unlinked.
        assert not [name for name in os.listdir("/proc/self/fd") if _points_into(name, cache_dir)]
    finally:
        os.close(fd)
    assert store.get("big") == data


def _points_into(fd: str, directory: pathlib.Path) -> bool:
    try:
        return os.readlink(f"/proc/self/fd/{fd}").startswith(str(directory))
    except OSError:
        return False


def test_writes_after_a_commit_never_change_the_stored_value_in_place(mnt: pathlib.Path, store) -> None:
    data = os.urandom(BIG)
    fd = os.open(mnt / "f", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        write_chunks(fd, data)
        os.fsync(fd)  # committed: the staged file is the stored value now
        assert store.get("f") == data
        with store.open("f") as committed:
            os.pwrite(fd, b"CHANGED", 5)
            os.write(fd, b"+tail")
            assert committed.read() == data, "a write after the commit changed the stored file"
        assert store.get("f") == data
        assert os.pread(fd, 7, 5) == b"CHANGED"
    finally:
        os.close(fd)
    assert store.get("f") == data[:5] + b"CHANGED" + data[12:] + b"+tail"


def test_reader_opened_before_a_commit_reads_the_new_value(mnt: pathlib.Path, store) -> None:
    old, new = os.urandom(BIG), os.urandom(BIG)
    store.put("f", old)
    reader = os.open(mnt / "f", os.O_RDONLY)
    try:
        assert os.pread(reader, 100, 0) == old[:100]
        fd = os.open(mnt / "f", os.O_WRONLY)
        try:
            write_chunks(fd, new)
        finally:
            os.close(fd)
        # Drop the kernel's pages, so the read reaches the mount's reader of the old value.
        os.posix_fadvise(reader, 0, 0, os.POSIX_FADV_DONTNEED)
        assert os.pread(reader, MiB, BIG - MiB) == new[-MiB:]
    finally:
        os.close(reader)


def test_rename_of_an_open_dirty_big_file(mnt: pathlib.Path, store, root: pathlib.Path) -> None:
    data = os.urandom(BIG)
    (mnt / "sub").mkdir()
    fd = os.open(mnt / "big", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        write_chunks(fd, data[: BIG // 2])
        os.rename(mnt / "big", mnt / "sub" / "moved")
        write_chunks(fd, data[BIG // 2 :])
    finally:
        os.close(fd)
    assert store.get("sub/moved") == data
    assert "big" not in store
    assert names(root) == ["sub", "sub/moved"]


def test_unlink_of_an_open_dirty_big_file(mnt: pathlib.Path, store, root: pathlib.Path) -> None:
    data = os.urandom(BIG)
    store.put("keep", b"keep")
    fd = os.open(mnt / "big", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        write_chunks(fd, data)
        os.unlink(mnt / "big")
        os.write(fd, b"more")
        assert os.pread(fd, 4, BIG) == b"more"
    finally:
        os.close(fd)
    assert "big" not in store
    assert names(root) == ["keep"]


def test_failed_commit_keeps_the_old_state_and_leaves_nothing(store, root: pathlib.Path, tmp_path: pathlib.Path) -> None:
    data = os.urandom(BIG)
    with mount_store(store, tmp_path / "mnt2") as mnt:
        fd = os.open(mnt / "clash", os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            write_chunks(fd, data)
            # Behind the mount's back the name becomes a directory: the commit must fail.
            store.put("clash/inside", b"x")
            with pytest.raises(OSError) as failure:
                os.fsync(fd)
            assert failure.value.errno == errno.EIO
            assert names(root) == ["clash", "clash/inside"]
        finally:
            with pytest.raises(OSError):
                os.close(fd)  # the flush fails the same way
    # Unmounted: the release (which tries once more) is over too.
    assert store.get("clash/inside") == b"x"
    assert names(root) == ["clash", "clash/inside"]


def test_no_staging_file_outlives_the_mount(store, root: pathlib.Path, tmp_path: pathlib.Path) -> None:
    store.put("deleted", b"deleted")
    with mount_store(store, tmp_path / "mnt2") as mnt:
        fd = os.open(mnt / "written", os.O_WRONLY | os.O_CREAT, 0o644)
        write_chunks(fd, os.urandom(BIG))
        os.close(fd)
        fd = os.open(mnt / "deleted", os.O_WRONLY)
        write_chunks(fd, os.urandom(BIG))
        os.unlink(mnt / "deleted")
        os.close(fd)
    assert names(root) == ["written"]
