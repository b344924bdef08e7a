"""Whole trees through a real mount: a tar with links and a FIFO, and a Python venv."""

from __future__ import annotations

import os
import pathlib
import stat
import subprocess
import sys

import pytest
from mount_support import any_store, make_store, mount_store  # noqa: F401 - fixtures

TIME = 1_500_000_000  # 2017: what the archive's entries say


def _make_tree(root: pathlib.Path) -> None:
    (root / "src" / "pkg" / "deep").mkdir(parents=True)
    (root / "src" / "pkg" / "__init__.py").write_text("x = 1\n")
    (root / "src" / "pkg" / "deep" / "data.bin").write_bytes(bytes(range(256)) * 40)
    (root / "src" / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (root / "src" / "run.sh").chmod(0o755)
    (root / "src" / "private").write_text("secret")
    (root / "src" / "private").chmod(0o600)
    (root / "src" / "empty").mkdir()
    os.symlink("pkg/deep/data.bin", root / "src" / "data")
    os.symlink("../src", root / "src" / "pkg" / "up")
    os.symlink("/nowhere/at/all", root / "src" / "dangling")
    os.mkfifo(root / "src" / "pipe", 0o640)
    for path in sorted(root.rglob("*"), reverse=True):
        os.utime(path, (TIME, TIME), follow_symlinks=False)


def _snapshot(
    root: pathlib.Path, *, metadata: bool, fifos: bool = True, directory_metadata: bool = True
) -> dict[str, tuple]:
    """What each name below *root* is: type and content or target (and mode and mtime,
    of directories too with *directory_metadata*)."""
    seen = {}
    for directory, names, files in os.walk(root):
        for name in names + files:
            path = pathlib.Path(directory, name)
            info = os.lstat(path)
            kind = stat.S_IFMT(info.st_mode)
            if kind == stat.S_IFIFO and not fifos:
                continue
            if stat.S_ISLNK(info.st_mode):
                what: object = os.readlink(path)
            elif stat.S_ISREG(info.st_mode):
                what = path.read_bytes()
            else:
                what = None
            entry: tuple = (kind, what)
            if metadata and not stat.S_ISLNK(info.st_mode) and (directory_metadata or not stat.S_ISDIR(info.st_mode)):
                entry += (stat.S_IMODE(info.st_mode), int(info.st_mtime))
            seen[str(path.relative_to(root))] = entry
    return seen


@pytest.fixture
def archive(tmp_path: pathlib.Path) -> pathlib.Path:
    made = tmp_path / "made"
    made.mkdir()
    _make_tree(made)
    path = tmp_path / "tree.tar"
    subprocess.run(["tar", "-cf", str(path), "-C", str(made), "src"], check=True)
    return path


def test_a_tar_with_links_and_a_fifo_extracts_as_on_a_disk(any_store, tmp_path: pathlib.Path, archive) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    subprocess.run(["tar", "-xpf", str(archive), "-C", str(plain)], check=True)
    expected = _snapshot(plain, metadata=True)
    with mount_store(any_store, tmp_path / "one") as mnt:
        subprocess.run(["tar", "-xpf", str(archive), "-C", str(mnt)], check=True)
        assert _snapshot(mnt, metadata=True) == expected
        compared = subprocess.run(["tar", "--compare", "-f", str(archive), "-C", str(mnt)], capture_output=True, text=True)
        assert compared.returncode == 0, compared.stdout + compared.stderr
    # A remount keeps links and contents everywhere; modes and times where the store keeps
    # them: of files and directories on a filesystem store, of files on object stores (S3
    # shows them with a HEAD per listed file).
    keeps = any_store.keeps_metadata
    options = {"metadata_heads": True} if keeps and not any_store.listing_has_metadata else {}
    directories = not any_store.is_remote
    with mount_store(any_store, tmp_path / "two", **options) as mnt:
        shown = _snapshot(mnt, metadata=keeps, fifos=False, directory_metadata=directories)
        assert shown == _snapshot(plain, metadata=keeps, fifos=False, directory_metadata=directories)
        assert not (mnt / "src" / "pipe").exists()  # a FIFO lasts for the life of its mount


def test_a_python_venv_works_on_a_filesystem_store_mount(tmp_path: pathlib.Path) -> None:
    store = make_store("fs", tmp_path)
    with mount_store(store, tmp_path / "mnt") as mnt:
        made = subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(mnt / "env")], capture_output=True, text=True)
        assert made.returncode == 0, made.stderr
        assert os.path.islink(mnt / "env" / "lib64") or not os.path.lexists(mnt / "env" / "lib64")
        ran = subprocess.run([str(mnt / "env" / "bin" / "python"), "-c", "import sys; print(sys.prefix)"], capture_output=True, text=True)
        assert ran.returncode == 0, ran.stderr
        assert ran.stdout.strip() == str(mnt / "env")
    assert store.is_link("env/bin/python")
