"""FIFOs, sockets and devices through a real mount: kept in memory for its life, never stored."""

from __future__ import annotations

import errno
import os
import pathlib
import socket
import stat
import threading

import pytest
from mount_support import mnt, mount_store, store  # noqa: F401 - fixtures


def test_a_fifo_is_made_listed_and_carries_data(mnt: pathlib.Path, store) -> None:
    os.mkfifo(mnt / "pipe", 0o640)
    info = os.stat(mnt / "pipe")
    assert stat.S_ISFIFO(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o640
    assert os.listdir(mnt) == ["pipe"]
    got = []
    reader = threading.Thread(target=lambda: got.append((mnt / "pipe").read_bytes()))
    reader.start()
    (mnt / "pipe").write_bytes(b"through the pipe")
    reader.join(timeout=60)
    assert got == [b"through the pipe"]
    assert store.keys() == []


def test_a_unix_socket_can_be_bound_in_the_mount(mnt: pathlib.Path, store) -> None:
    path = str(mnt / "sock")
    if len(path.encode()) >= 108:
        pytest.skip("mount path too long for a socket address")
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(path)
        server.listen(1)
        assert stat.S_ISSOCK(os.stat(path).st_mode)
        client = socket.socket(socket.AF_UNIX)
        client.connect(path)
        connection, _ = server.accept()
        client.sendall(b"hi")
        assert connection.recv(2) == b"hi"
        client.close()
        connection.close()
    finally:
        server.close()
    assert store.keys() == []
    os.unlink(path)
    assert os.listdir(mnt) == []


@pytest.mark.parametrize("kind", [stat.S_IFCHR, stat.S_IFBLK])
def test_devices_keep_their_numbers(mnt: pathlib.Path, store, kind: int) -> None:
    if os.geteuid() != 0:
        pytest.skip("making devices needs root")
    os.mknod(mnt / "dev", kind | 0o600, os.makedev(1, 3))
    info = os.stat(mnt / "dev")
    assert stat.S_IFMT(info.st_mode) == kind
    assert (os.major(info.st_rdev), os.minor(info.st_rdev)) == (1, 3)
    assert store.keys() == []


def test_special_files_are_renamed_chowned_and_removed_like_files(mnt: pathlib.Path, store) -> None:
    os.mkdir(mnt / "d")
    os.mkfifo(mnt / "d" / "p")
    os.rename(mnt / "d" / "p", mnt / "d" / "q")
    assert os.listdir(mnt / "d") == ["q"] and stat.S_ISFIFO(os.stat(mnt / "d" / "q").st_mode)
    os.chmod(mnt / "d" / "q", 0o600)
    assert stat.S_IMODE(os.stat(mnt / "d" / "q").st_mode) == 0o600
    if os.geteuid() == 0:
        os.chown(mnt / "d" / "q", 4321, 8765)
        assert (os.stat(mnt / "d" / "q").st_uid, os.stat(mnt / "d" / "q").st_gid) == (4321, 8765)
    with pytest.raises(OSError) as raised:
        os.rmdir(mnt / "d")
    assert raised.value.errno == errno.ENOTEMPTY
    os.rename(mnt / "d", mnt / "e")  # moves with its directory
    assert stat.S_ISFIFO(os.stat(mnt / "e" / "q").st_mode)
    (mnt / "e" / "f").write_bytes(b"x")
    os.rename(mnt / "e" / "f", mnt / "e" / "q")  # a file over a FIFO replaces it
    assert stat.S_ISREG(os.stat(mnt / "e" / "q").st_mode) and store.get("e/q") == b"x"
    os.mkfifo(mnt / "e" / "p")
    os.rename(mnt / "e" / "p", mnt / "e" / "q")  # and a FIFO over a file replaces the file
    assert stat.S_ISFIFO(os.stat(mnt / "e" / "q").st_mode) and "e/q" not in store
    os.unlink(mnt / "e" / "q")
    assert os.listdir(mnt / "e") == []
    with pytest.raises(FileExistsError):
        os.mkfifo(mnt / "e")


def test_special_files_last_for_the_mount_only(store, tmp_path: pathlib.Path) -> None:
    with mount_store(store, tmp_path / "one") as mnt:
        os.mkfifo(mnt / "pipe")
    with mount_store(store, tmp_path / "two") as mnt:
        assert os.listdir(mnt) == []


def test_mknod_of_a_regular_file_stores_it(mnt: pathlib.Path, store) -> None:
    os.mknod(mnt / "plain", stat.S_IFREG | 0o644)
    assert stat.S_ISREG(os.stat(mnt / "plain").st_mode) and store.get("plain") == b""
