"""Symbolic links through a real mount, kept as rclone keeps them (``NAME.rclonelink``)."""

from __future__ import annotations

import errno
import os
import pathlib
import stat

import pytest
from mount_support import any_store, mnt, mount_store, store  # noqa: F401 - fixtures


def test_a_link_is_made_read_and_listed_under_its_name(mnt: pathlib.Path, store) -> None:
    os.mkdir(mnt / "d")
    (mnt / "d" / "target").write_bytes(b"data")
    os.symlink("target", mnt / "d" / "link")
    assert os.readlink(mnt / "d" / "link") == "target"
    assert (mnt / "d" / "link").read_bytes() == b"data"  # followed by the kernel
    info = os.lstat(mnt / "d" / "link")
    assert stat.S_ISLNK(info.st_mode) and info.st_size == len("target")
    assert sorted(os.listdir(mnt / "d")) == ["link", "target"]
    assert store.readlink("d/link") == "target" and store.get("d/link.rclonelink") == b"target"
    entries = {entry.name: entry for entry in os.scandir(mnt / "d")}
    assert entries["link"].is_symlink() and not entries["target"].is_symlink()


def test_links_last_across_remounts(any_store, tmp_path: pathlib.Path) -> None:
    with mount_store(any_store, tmp_path / "one") as mnt:
        os.symlink("/an/absolute/target", mnt / "abs")
        os.makedirs(mnt / "a" / "b")
        os.symlink("../b", mnt / "a" / "b" / "up")
    with mount_store(any_store, tmp_path / "two") as mnt:
        assert os.readlink(mnt / "abs") == "/an/absolute/target"
        assert os.readlink(mnt / "a" / "b" / "up") == "../b"
        assert sorted(os.listdir(mnt)) == ["a", "abs"]
        assert os.path.islink(mnt / "a" / "b" / "up")


def test_links_made_by_the_library_show_in_the_mount(store, tmp_path: pathlib.Path) -> None:
    store.put("file", b"x")
    store.symlink("link", "file")
    with mount_store(store, tmp_path / "mnt") as mnt:
        assert os.readlink(mnt / "link") == "file"
        assert (mnt / "link").read_bytes() == b"x"
        assert os.lstat(mnt / "link").st_size == 4


def test_a_value_and_a_link_of_one_name_show_the_value_and_the_links_key(store, tmp_path: pathlib.Path) -> None:
    store.put("x", b"value")
    store.put("x.rclonelink", b"elsewhere")
    with mount_store(store, tmp_path / "mnt") as mnt:
        assert sorted(os.listdir(mnt)) == ["x", "x.rclonelink"]
        assert (mnt / "x").read_bytes() == b"value" and not os.path.islink(mnt / "x")
        assert (mnt / "x.rclonelink").read_bytes() == b"elsewhere"


def test_unlink_and_rename_of_a_link(mnt: pathlib.Path, store) -> None:
    os.symlink("t", mnt / "one")
    os.rename(mnt / "one", mnt / "two")
    assert os.readlink(mnt / "two") == "t" and not os.path.lexists(mnt / "one")
    assert store.keys() == ["two.rclonelink"]
    (mnt / "file").write_bytes(b"f")
    os.rename(mnt / "two", mnt / "file")  # a link over a file replaces the file
    assert os.readlink(mnt / "file") == "t" and store.keys() == ["file.rclonelink"]
    (mnt / "other").write_bytes(b"o")
    os.rename(mnt / "other", mnt / "file")  # and a file over a link replaces the link
    assert not os.path.islink(mnt / "file") and store.keys() == ["file"]
    os.symlink("t", mnt / "gone")
    os.unlink(mnt / "gone")
    assert not os.path.lexists(mnt / "gone") and store.keys() == ["file"]


def test_a_link_moves_with_its_directory(mnt: pathlib.Path, store) -> None:
    os.mkdir(mnt / "d")
    os.symlink("t", mnt / "d" / "l")
    os.rename(mnt / "d", mnt / "e")
    assert os.readlink(mnt / "e" / "l") == "t"
    assert store.keys() == ["e/l.rclonelink"]
    with pytest.raises(OSError) as raised:
        os.rmdir(mnt / "e")
    assert raised.value.errno == errno.ENOTEMPTY


def test_lchown_changes_the_link_not_its_target(mnt: pathlib.Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("giving files away needs root")
    (mnt / "t").write_bytes(b"")
    os.symlink("t", mnt / "l")
    os.lchown(mnt / "l", 1234, 5678)
    assert (os.lstat(mnt / "l").st_uid, os.lstat(mnt / "l").st_gid) == (1234, 5678)
    assert os.stat(mnt / "t").st_uid != 1234


def test_an_existing_name_and_a_dangling_link(mnt: pathlib.Path) -> None:
    (mnt / "f").write_bytes(b"")
    with pytest.raises(FileExistsError):
        os.symlink("x", mnt / "f")
    os.symlink("nowhere", mnt / "dangling")
    assert os.path.islink(mnt / "dangling") and not os.path.exists(mnt / "dangling")
    with pytest.raises(OSError) as raised:
        os.readlink(mnt / "f")
    assert raised.value.errno == errno.EINVAL


def test_a_link_loop_gives_eloop(mnt: pathlib.Path) -> None:
    os.symlink("b", mnt / "a")
    os.symlink("a", mnt / "b")
    with pytest.raises(OSError) as raised:
        (mnt / "a").read_bytes()
    assert raised.value.errno == errno.ELOOP


def test_a_link_target_longer_than_path_max_is_refused(mnt: pathlib.Path) -> None:
    with pytest.raises(OSError) as raised:
        os.symlink("x" * 4096, mnt / "long")
    assert raised.value.errno == errno.ENAMETOOLONG
