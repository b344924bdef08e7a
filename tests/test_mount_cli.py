"""``kvfs mount`` and ``kvfs unmount`` as a user runs them: a real background daemon."""

from __future__ import annotations

import errno
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest
from mount_support import require_fuse

from kvfs.fs import FilesystemStore
from kvfs.mount import is_mounted


def kvfs(*arguments: str | os.PathLike[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kvfs.cli", *map(str, arguments)],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def _daemon_pid(mountpoint: pathlib.Path) -> int | None:
    """The process serving *mountpoint* (the one whose command line names it)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            command = pathlib.Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if b"kvfs.mount.mounter" in command and str(mountpoint).encode() in command:
            return int(entry)
    return None


@pytest.fixture
def mountpoint(tmp_path: pathlib.Path):
    require_fuse()
    path = tmp_path / "mnt"
    path.mkdir()
    yield path
    if is_mounted(str(path)):  # a failed test must not leave its mount behind
        subprocess.run(["fusermount3", "-uz", str(path)], check=False)


def test_mount_in_background_and_unmount(tmp_path: pathlib.Path, mountpoint: pathlib.Path) -> None:
    root = tmp_path / "store"
    FilesystemStore(root).put("dir/hello.txt", b"hello")
    result = kvfs("mount", "--attr-timeout", "0.2", "--listing-timeout", "0.2", root, mountpoint)
    assert result.returncode == 0, result.stderr
    assert is_mounted(str(mountpoint))  # ready when the command returned
    assert (mountpoint / "dir" / "hello.txt").read_text() == "hello"
    (mountpoint / "written by the mount").write_text("x")
    assert (root / "written%20by%20the%20mount").read_text() == "x"
    pid = _daemon_pid(mountpoint)
    assert pid is not None
    result = kvfs("unmount", mountpoint)
    assert result.returncode == 0, result.stderr
    assert not is_mounted(str(mountpoint))
    deadline = time.monotonic() + 10
    while _daemon_pid(mountpoint) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _daemon_pid(mountpoint) is None  # the daemon ended with its mount


def test_memory_store_and_options(mountpoint: pathlib.Path) -> None:
    result = kvfs("mount", "--uid", "1234", "--gid", "99", "--umask", "077", "--cache-size", "1M", "memory://", mountpoint)
    assert result.returncode == 0, result.stderr
    try:
        (mountpoint / "f").write_bytes(b"x" * 3_000_000)  # more than --cache-size
        assert (mountpoint / "f").stat().st_size == 3_000_000
        os.mkdir(mountpoint / "d")
        root = mountpoint.stat()
        assert (root.st_uid, root.st_gid, root.st_mode & 0o777) == (1234, 99, 0o700)
        info = (mountpoint / "d").stat()
        assert (info.st_uid, info.st_gid) == (os.getuid(), os.getgid())  # new: the caller's
        assert os.listdir(mountpoint) == ["d", "f"] or sorted(os.listdir(mountpoint)) == ["d", "f"]
    finally:
        assert kvfs("unmount", mountpoint).returncode == 0


def test_read_only_option(tmp_path: pathlib.Path, mountpoint: pathlib.Path) -> None:
    root = tmp_path / "store"
    FilesystemStore(root).put("f", b"data")
    assert kvfs("mount", "--read-only", root, mountpoint).returncode == 0
    try:
        with pytest.raises(OSError) as raised:
            (mountpoint / "g").write_bytes(b"")
        assert raised.value.errno == 30  # EROFS
        assert (mountpoint / "f").read_bytes() == b"data"
    finally:
        assert kvfs("unmount", mountpoint).returncode == 0


def test_unmount_after_the_daemon_died(mountpoint: pathlib.Path) -> None:
    assert kvfs("mount", "memory://", mountpoint).returncode == 0
    pid = _daemon_pid(mountpoint)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while _daemon_pid(mountpoint) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    # A dying process loses its command line before its files: a request sent before
    # the daemon's /dev/fuse is closed ends with ECONNABORTED, every later one ENOTCONN.
    while True:
        with pytest.raises(OSError) as raised:
            os.listdir(mountpoint)
        if raised.value.errno != errno.ECONNABORTED or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert raised.value.errno == errno.ENOTCONN  # Transport endpoint is not connected
    result = kvfs("unmount", mountpoint)
    assert result.returncode == 0, result.stderr
    assert not is_mounted(str(mountpoint))


def test_foreground_mount(tmp_path: pathlib.Path, mountpoint: pathlib.Path) -> None:
    root = tmp_path / "store"
    root.mkdir()
    process = subprocess.Popen(
        [sys.executable, "-m", "kvfs.cli", "mount", "--foreground", "--log-level", "info", str(root), str(mountpoint)],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not is_mounted(str(mountpoint)):
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "the foreground mount never became ready"
            time.sleep(0.05)
        (mountpoint / "f").write_bytes(b"fg")
        assert (root / "f").read_bytes() == b"fg"
        assert kvfs("unmount", mountpoint).returncode == 0
        assert process.wait(30) == 0
        assert "serving" in (process.stderr.read() if process.stderr else "")
    finally:
        if process.poll() is None:
            process.kill()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (("mount", "nosuchscheme://x", "{mnt}"), "nosuchscheme"),
        (("mount", "memory://", "{tmp}/missing"), "does not exist"),
        (("mount", "memory://", "{tmp}/full"), "not empty"),
        (("mount", "--cache-size", "lots", "memory://", "{mnt}"), "size"),
        (("mount", "--read-cache-size", "-1G", "memory://", "{mnt}"), "size"),
        (("unmount", "{mnt}"), "not mounted"),
        (("mount", "--foreground", "nosuchscheme://x", "{mnt}"), "nosuchscheme"),
    ],
)
def test_errors_are_one_line(
    arguments: tuple[str, ...], message: str, tmp_path: pathlib.Path, mountpoint: pathlib.Path
) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "something").write_text("x")
    result = kvfs(*(argument.format(mnt=mountpoint, tmp=tmp_path) for argument in arguments))
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip() and "max threads" not in line]
    assert len(lines) == 1 or lines[-1].startswith("Error:"), result.stderr
    assert message in result.stderr.lower() or message in result.stderr
    assert not is_mounted(str(mountpoint))
