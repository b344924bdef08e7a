"""``kvfs status MNT``: a running mount answers through its control socket."""

from __future__ import annotations

import json
import os
import pathlib
import stat
import subprocess

import pytest
from mount_support import require_fuse
from test_mount_cli import kvfs

from kvfs.fs import FilesystemStore
from kvfs.mount import is_mounted
from kvfs.mount.control import query, socket_path


@pytest.fixture
def mountpoint(tmp_path: pathlib.Path):
    require_fuse()
    path = tmp_path / "mnt"
    path.mkdir()
    yield path
    if is_mounted(str(path)):
        subprocess.run(["fusermount3", "-uz", str(path)], check=False)


def test_status_of_a_running_mount(tmp_path: pathlib.Path, mountpoint: pathlib.Path) -> None:
    root = tmp_path / "store"
    FilesystemStore(root).put("a", b"x")
    assert kvfs("mount", root, mountpoint).returncode == 0
    try:
        control = socket_path(str(mountpoint))
        info = os.stat(control)
        assert stat.S_ISSOCK(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600
        with open(mountpoint / "open-file", "wb", buffering=0) as file:
            file.write(b"unsaved")
            # Asked from this process: a child would close its copy of the descriptor
            # when it runs another program, which flushes (uploads) the file.
            status = query(str(mountpoint))
            assert status["mountpoint"] == str(mountpoint)
            assert status["mode"] == "synchronous"
            assert status["open_files"] == 1 and status["unsaved_files"] == 1
            assert status["store_failing"] == {}
        text = kvfs("status", mountpoint)
        assert text.returncode == 0
        assert "open files:   0" in text.stdout and "store:        answering" in text.stdout
        assert json.loads(kvfs("status", "--json", mountpoint).stdout)["open_files"] == 0
    finally:
        assert kvfs("unmount", mountpoint).returncode == 0
    assert not os.path.exists(control), "the control socket outlived the mount"


def test_status_of_something_else_says_so(tmp_path: pathlib.Path) -> None:
    result = kvfs("status", tmp_path)
    assert result.returncode == 1
    assert "not a running kvfs mount" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
