"""Directories through a real mount: markers, rmdir, rename of trees, key/prefix clashes."""

from __future__ import annotations

import errno
import os
import pathlib

import pytest
from mount_support import mnt, mount_store, store  # noqa: F401 - fixtures

from kvfs.memory import DictStore


def test_keys_imply_directories(mnt: pathlib.Path, store) -> None:
    store.put("a/b/c.txt", b"c")
    store.put("a/d.txt", b"d")
    assert sorted(os.listdir(mnt)) == ["a"]
    assert sorted(os.listdir(mnt / "a")) == ["b", "d.txt"]
    assert (mnt / "a" / "b").is_dir() and (mnt / "a" / "d.txt").is_file()
    assert (mnt / "a" / "b" / "c.txt").read_bytes() == b"c"


def test_empty_directories_survive_a_remount(store, tmp_path: pathlib.Path) -> None:
    with mount_store(store, tmp_path / "one") as mnt:
        os.makedirs(mnt / "x" / "y" / "z")
        os.mkdir(mnt / "empty")
    assert store.has_directory("x/y/z") and store.has_directory("empty")
    with mount_store(store, tmp_path / "two") as mnt:
        assert sorted(os.listdir(mnt)) == ["empty", "x"]
        assert os.listdir(mnt / "x" / "y") == ["z"]
        assert os.listdir(mnt / "x" / "y" / "z") == []


def test_mkdir_existing_gives_eexist(mnt: pathlib.Path) -> None:
    os.mkdir(mnt / "d")
    with pytest.raises(FileExistsError):
        os.mkdir(mnt / "d")
    (mnt / "f").write_bytes(b"")
    with pytest.raises(FileExistsError):
        os.mkdir(mnt / "f")


def test_rmdir(mnt: pathlib.Path, store) -> None:
    os.makedirs(mnt / "d" / "sub")
    (mnt / "d" / "f").write_bytes(b"x")
    with pytest.raises(OSError) as raised:
        os.rmdir(mnt / "d")
    assert raised.value.errno == errno.ENOTEMPTY
    with pytest.raises(NotADirectoryError):
        os.rmdir(mnt / "d" / "f")
    os.unlink(mnt / "d" / "f")
    os.rmdir(mnt / "d" / "sub")
    assert os.listdir(mnt / "d") == []  # kept after its last entry went, like a disk
    os.rmdir(mnt / "d")
    assert os.listdir(mnt) == []
    assert store.keys() == [] and not store.has_directory("d")


def test_rename_directory_moves_every_key(mnt: pathlib.Path, store) -> None:
    store.put("src/a", b"a")
    store.put("src/deep/b", b"b")
    os.makedirs(mnt / "src" / "empty")
    os.rename(mnt / "src", mnt / "dst")
    assert sorted(store.keys()) == ["dst/a", "dst/deep/b"]
    assert store.has_directory("dst/empty") and not store.has_directory("src")
    assert sorted(os.listdir(mnt / "dst")) == ["a", "deep", "empty"]
    assert (mnt / "dst" / "deep" / "b").read_bytes() == b"b"
    assert not (mnt / "src").exists()


def test_rename_directory_with_open_new_file(mnt: pathlib.Path, store) -> None:
    os.mkdir(mnt / "d")
    with open(mnt / "d" / "new", "wb") as file:
        file.write(b"staged")
        file.flush()
        os.rename(mnt / "d", mnt / "e")
    assert store.get("e/new") == b"staged"
    assert "d/new" not in store


def test_rename_directory_errors(mnt: pathlib.Path) -> None:
    os.makedirs(mnt / "a" / "inner")
    os.makedirs(mnt / "full" / "x")
    (mnt / "file").write_bytes(b"")
    with pytest.raises(OSError) as raised:
        os.rename(mnt / "a", mnt / "full")
    assert raised.value.errno == errno.ENOTEMPTY
    with pytest.raises(NotADirectoryError):
        os.rename(mnt / "a", mnt / "file")
    with pytest.raises(IsADirectoryError):
        os.rename(mnt / "file", mnt / "a")
    with pytest.raises(OSError) as raised:
        os.rename(mnt / "a", mnt / "a" / "inner" / "deeper")
    assert raised.value.errno == errno.EINVAL
    os.mkdir(mnt / "empty")
    os.rename(mnt / "a", mnt / "empty")  # over an empty directory: replaces it
    assert os.listdir(mnt / "empty") == ["inner"]


def test_key_and_prefix_together_directory_wins(tmp_path: pathlib.Path) -> None:
    store = DictStore()
    store.put("a", b"file a")
    store.put("a/b", b"below")
    with mount_store(store, tmp_path / "mnt") as mnt:
        assert os.listdir(mnt) == ["a"]
        assert (mnt / "a").is_dir()
        assert (mnt / "a" / "b").read_bytes() == b"below"
        with pytest.raises(IsADirectoryError):
            (mnt / "a").read_bytes()
    assert store.get("a") == b"file a"  # hidden, not lost


class NoDirectoriesStore(DictStore):
    """A store that cannot keep empty directories."""

    supports_directories = False


def test_store_without_directory_markers_keeps_them_in_memory(tmp_path: pathlib.Path) -> None:
    store = NoDirectoriesStore()
    with mount_store(store, tmp_path / "one") as mnt:
        os.makedirs(mnt / "d" / "e")
        assert os.listdir(mnt / "d") == ["e"]
        (mnt / "d" / "e" / "f").write_bytes(b"x")
        os.rename(mnt / "d", mnt / "g")
        assert store.keys() == ["g/e/f"]
        os.mkdir(mnt / "g" / "empty")
        assert sorted(os.listdir(mnt / "g")) == ["e", "empty"]
    with mount_store(store, tmp_path / "two") as mnt:
        assert os.listdir(mnt / "g") == ["e"]  # the empty one lived as long as the mount


def test_large_directory_listing(mnt: pathlib.Path, store) -> None:
    for index in range(2000):
        store.put(f"big/{index:05d}", b"x" * (index % 7))
    names = os.listdir(mnt / "big")
    assert len(names) == 2000
    sizes = {entry.name: entry.stat().st_size for entry in os.scandir(mnt / "big")}
    assert sizes["00006"] == 6 and sizes["01999"] == 1999 % 7


def test_rename_directory_on_a_filesystem_store_is_one_rename(tmp_path: pathlib.Path) -> None:
    from kvfs.fs import FilesystemStore

    root = tmp_path / "root"
    store = FilesystemStore(str(root))
    for number in range(50):
        store.put(f"src/deep/f{number}", b"x")
    inode = os.stat(root / "src").st_ino
    with mount_store(store, tmp_path / "mnt") as mnt:
        os.rename(mnt / "src", mnt / "dst")
        assert len(os.listdir(mnt / "dst" / "deep")) == 50
    # The real directory was renamed, not rebuilt key by key.
    assert os.stat(root / "dst").st_ino == inode
    assert not (root / "src").exists()
