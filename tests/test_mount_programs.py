"""Ordinary programs on a real mount: cp, tar, grep, rsync, sed, find, du, zipfile."""

from __future__ import annotations

import filecmp
import os
import pathlib
import shutil
import subprocess
import zipfile

import pytest
from mount_support import any_store, mount_store  # noqa: F401 - fixture


@pytest.fixture
def store(any_store):
    return any_store


@pytest.fixture
def mnt(store, tmp_path: pathlib.Path):
    with mount_store(store, tmp_path / "mnt") as path:
        yield path


def run(*command: str | os.PathLike[str], cwd: pathlib.Path | None = None) -> str:
    if shutil.which(str(command[0])) is None:
        pytest.fail(f"{command[0]} is not installed (the mount tests need it)")
    result = subprocess.run([str(part) for part in command], capture_output=True, text=True, cwd=cwd, timeout=120)
    assert result.returncode == 0, f"{command} failed: {result.stderr}"
    return result.stdout


@pytest.fixture
def tree(tmp_path: pathlib.Path) -> pathlib.Path:
    """A small local tree: nested directories, an empty one, odd names, sizes from 0 to 300 KiB."""
    root = tmp_path / "tree"
    (root / "docs" / "deep" / "deeper").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / "docs" / "readme.txt").write_text("hello needle\nsecond line\n")
    (root / "docs" / "deep" / "notes with space.txt").write_text("no match here\n")
    (root / "docs" / "deep" / "deeper" / "needle:colon").write_text("needle again\n")
    (root / "zero").write_bytes(b"")
    (root / "binary.bin").write_bytes(os.urandom(300 * 1024))
    for index in range(30):
        (root / "docs" / f"small{index:02d}").write_bytes(os.urandom(index * 37))
    return root


def assert_same_tree(left: pathlib.Path, right: pathlib.Path) -> None:
    comparison = filecmp.dircmp(left, right)
    assert not comparison.left_only and not comparison.right_only, (comparison.left_only, comparison.right_only)
    _, mismatch, errors = filecmp.cmpfiles(left, right, comparison.common_files, shallow=False)
    assert not mismatch and not errors
    for name in comparison.common_dirs:
        assert_same_tree(left / name, right / name)


def test_cp_recursive_both_ways(mnt: pathlib.Path, tree: pathlib.Path, tmp_path: pathlib.Path, store) -> None:
    run("cp", "-r", tree, mnt / "copy")
    assert_same_tree(tree, mnt / "copy")
    assert store.get("copy/docs/deep/deeper/needle%3Acolon") == b"needle again\n"
    run("cp", "-r", mnt / "copy", tmp_path / "back")
    assert_same_tree(tree, tmp_path / "back")


def test_tar_create_and_extract(mnt: pathlib.Path, tree: pathlib.Path, tmp_path: pathlib.Path) -> None:
    run("tar", "-C", tree, "-cf", mnt / "archive.tar", ".")
    (mnt / "out").mkdir()
    run("tar", "-C", mnt / "out", "-xf", mnt / "archive.tar")
    assert_same_tree(tree, mnt / "out")
    # And an archive of the mount itself, extracted locally.
    run("tar", "-C", mnt / "out", "-cf", tmp_path / "again.tar", ".")
    (tmp_path / "again").mkdir()
    run("tar", "-C", tmp_path / "again", "-xf", tmp_path / "again.tar")
    assert_same_tree(tree, tmp_path / "again")


def test_grep_find_du(mnt: pathlib.Path, tree: pathlib.Path) -> None:
    run("cp", "-r", tree, mnt / "t")
    found = run("grep", "-rl", "needle", mnt / "t").split("\n")
    assert sorted(pathlib.Path(line).name for line in found if line) == ["needle:colon", "readme.txt"]
    names = run("find", mnt / "t", "-name", "*.txt").split("\n")
    assert sorted(pathlib.Path(line).name for line in names if line) == ["notes with space.txt", "readme.txt"]
    directories = run("find", mnt / "t", "-type", "d").split("\n")
    assert len([line for line in directories if line]) == 5  # t, docs, deep, deeper, empty
    kilobytes = int(run("du", "-sk", mnt / "t").split()[0])
    assert kilobytes >= 300


def test_rsync_archive_mode(mnt: pathlib.Path, tree: pathlib.Path) -> None:
    os.utime(tree / "docs" / "readme.txt", (1_600_000_000, 1_600_000_000))
    run("rsync", "-a", f"{tree}/", mnt / "r")
    assert_same_tree(tree, mnt / "r")
    assert (mnt / "r" / "docs" / "readme.txt").stat().st_mtime == 1_600_000_000
    # A second run finds nothing to do; a changed file is sent again.
    (tree / "zero").write_bytes(b"now something")
    output = run("rsync", "-a", "--itemize-changes", f"{tree}/", mnt / "r")
    assert [line.split(" ", 1)[1] for line in output.splitlines() if line.startswith(">f")] == ["zero"]
    assert_same_tree(tree, mnt / "r")


def test_sed_in_place(mnt: pathlib.Path, store) -> None:
    (mnt / "d").mkdir()
    (mnt / "d" / "config").write_text("color=red\nsize=1\n")
    run("sed", "-i", "s/red/blue/", mnt / "d" / "config")
    assert (mnt / "d" / "config").read_text() == "color=blue\nsize=1\n"
    assert store.get("d/config") == b"color=blue\nsize=1\n"
    assert sorted(os.listdir(mnt / "d")) == ["config"]  # sed's temporary file is gone


def test_zipfile_written_and_read_in_place(mnt: pathlib.Path, store) -> None:
    contents = {f"member{index}.txt": os.urandom(1000 * index) for index in range(10)}
    with zipfile.ZipFile(mnt / "archive.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in contents.items():
            archive.writestr(name, data)
    with zipfile.ZipFile(mnt / "archive.zip", "a") as archive:  # append in place
        archive.writestr("late.txt", b"appended")
    with zipfile.ZipFile(mnt / "archive.zip") as archive:
        assert archive.testzip() is None
        assert archive.read("late.txt") == b"appended"
        for name, data in contents.items():
            assert archive.read(name) == data
    assert store.get("archive.zip") == (mnt / "archive.zip").read_bytes()
