"""What ``kvfs mount`` and ``kvfs unmount`` refuse, and what they never expose.

Real daemons, real mounts and the real test servers: a store that is not there (a
missing bucket or directory, a server that does not answer, wrong credentials) is not
mounted; a mount point inside the store is refused; ``kvfs unmount`` leaves other
filesystems alone; no password reaches a command line; Ctrl-C ends a foreground mount
cleanly.
"""

from __future__ import annotations

import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest
from mount_support import require_fuse
from servers import closed_port, gcs_url, moto_url, require_server, seaweed_url

from kvfs.cli.errors import EXIT_FAILED, EXIT_MISSING_EXTRA, EXIT_USAGE
from kvfs.mount import is_mounted
from kvfs.mount.logs import log_to, mask_secrets, syslog_handler

SECRET = "pw-" + uuid.uuid4().hex  # a password no message may show


def kvfs(*arguments: object, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kvfs.cli", *map(str, arguments)],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


def daemon_pids(mountpoint: pathlib.Path) -> list[int]:
    """The kvfs daemons serving *mountpoint* (their command line names it)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                command = pathlib.Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if b"kvfs.mount.mounter" in command and str(mountpoint).encode() in command:
                found.append(int(entry))
    return found


@pytest.fixture
def mountpoint(tmp_path: pathlib.Path) -> Iterator[pathlib.Path]:
    require_fuse()
    path = tmp_path / "mnt"
    path.mkdir()
    yield path
    if is_mounted(str(path)):  # a failed test must not leave its mount behind
        subprocess.run(["fusermount3", "-uz", str(path)], check=False)


# ---------------------------------------------------------------------- unmount


def test_unmount_leaves_a_tmpfs_mounted(tmp_path: pathlib.Path) -> None:
    require_fuse()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    target = tmp_path / "tmpfs"
    target.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "kvfs-test-tmpfs", str(target)], check=True)
    try:
        (target / "kept").write_text("data")
        result = kvfs("unmount", target)
        assert result.returncode == EXIT_FAILED
        assert error_lines(result) == [f"kvfs unmount: {target} is not a kvfs mount (it is tmpfs); left mounted"]
        assert is_mounted(str(target))
        assert (target / "kept").read_text() == "data"
        assert kvfs("unmount", "--lazy", target).returncode == EXIT_FAILED
        assert is_mounted(str(target))
    finally:
        subprocess.run(["umount", str(target)], check=True)


def test_unmount_of_a_plain_directory_says_it_is_not_mounted(mountpoint: pathlib.Path) -> None:
    result = kvfs("unmount", mountpoint)
    assert result.returncode == EXIT_FAILED
    assert error_lines(result) == [f"kvfs unmount: {mountpoint} is not mounted"]


# ---------------------------------------------------------------------- stores that are not there


def _unusable_stores(tmp_path: pathlib.Path) -> dict[str, tuple[str, dict[str, str], str]]:
    """By name: a URL (with a password where it can hold one), its environment, the words expected."""
    return {
        "missing-directory": (str(tmp_path / "no" / "such" / "dir"), {}, "does not exist"),
        "missing-s3-bucket": (
            f"s3://kvfs-test:{SECRET}@kvfs-missing-{uuid.uuid4().hex[:12]}?endpoint_url={moto_url()}",
            {},
            "does not exist",
        ),
        "missing-gcs-bucket": (
            f"gs://kvfs-missing-{uuid.uuid4().hex[:12]}?project=test",
            {"STORAGE_EMULATOR_HOST": gcs_url()},
            "does not exist",
        ),
        "unreachable-redis": (f"redis://:{SECRET}@127.0.0.1:{closed_port()}/0", {}, "refused"),
        "unreachable-s3": (
            f"s3://kvfs-test:{SECRET}@bucket?endpoint_url=http://127.0.0.1:{closed_port()}&max_attempts=1",
            {},
            "could not connect",
        ),
        "s3-wrong-credentials": (
            f"s3://nobody:{SECRET}@kvfs-test?endpoint_url={seaweed_url()}",
            {},
            "denied",
        ),
    }


_SERVERS = {"missing-s3-bucket": "moto", "missing-gcs-bucket": "gcs", "s3-wrong-credentials": "seaweed"}


@pytest.mark.parametrize("mode", ["background", "foreground"])
@pytest.mark.parametrize(
    "case",
    ["missing-directory", "missing-s3-bucket", "missing-gcs-bucket", "unreachable-redis", "unreachable-s3", "s3-wrong-credentials"],
)
def test_a_store_that_cannot_be_served_is_not_mounted(
    case: str, mode: str, tmp_path: pathlib.Path, mountpoint: pathlib.Path
) -> None:
    if case in _SERVERS:
        require_server(_SERVERS[case])
    url, env, expected = _unusable_stores(tmp_path)[case]
    options = ["--foreground"] if mode == "foreground" else []
    result = kvfs("mount", *options, url, mountpoint, env=env)
    assert result.returncode == EXIT_FAILED, result.stderr
    lines = error_lines(result)
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("kvfs mount: ") and expected in lines[0].lower(), lines
    assert SECRET not in result.stderr
    assert not is_mounted(str(mountpoint))
    assert os.listdir(mountpoint) == []
    assert not (tmp_path / "no").exists()  # a missing directory is not made either
    assert daemon_pids(mountpoint) == []


def test_no_check_mounts_anyway(tmp_path: pathlib.Path, mountpoint: pathlib.Path) -> None:
    missing = tmp_path / "later"
    result = kvfs("mount", "--no-check", missing, mountpoint)
    assert result.returncode == 0, result.stderr
    try:
        (mountpoint / "f").write_text("x")  # the first write makes the directory
        assert (missing / "f").read_text() == "x"
    finally:
        assert kvfs("unmount", mountpoint).returncode == 0


def test_create_1_makes_the_missing_directory(tmp_path: pathlib.Path, mountpoint: pathlib.Path) -> None:
    missing = tmp_path / "new" / "store"
    result = kvfs("mount", f"file://{missing}?create=1", mountpoint)
    assert result.returncode == 0, result.stderr
    try:
        assert missing.is_dir()
        (mountpoint / "f").write_text("x")
        assert (missing / "f").read_text() == "x"
    finally:
        assert kvfs("unmount", mountpoint).returncode == 0


@pytest.mark.parametrize("mode", ["background", "foreground"])
def test_a_mount_point_inside_the_store_is_refused(mode: str, tmp_path: pathlib.Path) -> None:
    require_fuse()
    root = tmp_path / "store"
    inside = root / "sub" / "mnt"
    inside.mkdir(parents=True)
    options = ["--foreground"] if mode == "foreground" else []
    for store, target in ((root, inside), (root / "sub" / "mnt", inside)):
        result = kvfs("mount", *options, store, target)
        assert result.returncode == EXIT_FAILED, result.stderr
        lines = error_lines(result)
        assert len(lines) == 1 and "inside the store's directory" in lines[0], result.stderr
        assert not is_mounted(str(target))


# ---------------------------------------------------------------------- exit codes


@pytest.mark.parametrize("mode", ["background", "foreground"])
def test_a_bad_url_exits_2(mode: str, mountpoint: pathlib.Path) -> None:
    options = ["--foreground"] if mode == "foreground" else []
    for url in ("nosuchscheme://x", "s3://bucket?no_such_parameter=1", f"redis://:{SECRET}@host:notaport/0"):
        result = kvfs("mount", *options, url, mountpoint)
        assert result.returncode == EXIT_USAGE, result.stderr
        assert len(error_lines(result)) == 1 and "bad store URL" in result.stderr, result.stderr
        assert SECRET not in result.stderr
        assert not is_mounted(str(mountpoint))


@pytest.mark.parametrize("mode", ["background", "foreground"])
def test_a_missing_package_exits_4(mode: str, tmp_path: pathlib.Path, mountpoint: pathlib.Path) -> None:
    # As if boto3 were not installed: a package of that name that cannot be imported
    # comes first on the path of both the command and its daemon.
    shadow = tmp_path / "shadow" / "boto3"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('No module named boto3', name='boto3')\n")
    path = os.pathsep.join([str(tmp_path / "shadow"), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    options = ["--foreground"] if mode == "foreground" else []
    result = kvfs("mount", *options, "s3://bucket/prefix", mountpoint, env={"PYTHONPATH": path})
    assert result.returncode == EXIT_MISSING_EXTRA, result.stderr
    lines = error_lines(result)
    assert len(lines) == 1 and "pip install 'kvfs[s3]'" in lines[0], result.stderr
    assert not is_mounted(str(mountpoint))


# ---------------------------------------------------------------------- secrets


def test_no_password_on_the_daemon_command_line(mountpoint: pathlib.Path) -> None:
    require_server("moto")
    from cli_support import fresh_bucket

    with fresh_bucket("kvfs-argv") as bucket:
        url = f"s3://kvfs-test:{SECRET}@{bucket}/data?endpoint_url={moto_url()}"
        result = kvfs("mount", url, mountpoint)
        assert result.returncode == 0, result.stderr
        try:
            (mountpoint / "f").write_text("through the mount")
            pids = daemon_pids(mountpoint)
            assert len(pids) == 1
            command = pathlib.Path(f"/proc/{pids[0]}/cmdline").read_bytes()
            assert SECRET.encode() not in command and b"kvfs-test:" not in command
            assert b"s3://" not in command  # no URL at all
            # Every process's command line, as `ps` shows them to every user.
            for entry in os.listdir("/proc"):
                if entry.isdigit():
                    try:
                        assert SECRET.encode() not in pathlib.Path(f"/proc/{entry}/cmdline").read_bytes()
                    except FileNotFoundError:
                        pass
            mounts = pathlib.Path("/proc/self/mountinfo").read_text()
            assert f"kvfs:s3://{bucket}/data" in mounts and SECRET not in mounts
        finally:
            assert kvfs("unmount", mountpoint).returncode == 0


def test_foreground_logs_mask_the_password(mountpoint: pathlib.Path) -> None:
    require_server("moto")
    from cli_support import fresh_bucket

    with fresh_bucket("kvfs-log") as bucket:
        url = f"s3://kvfs-test:{SECRET}@{bucket}?endpoint_url={moto_url()}"
        process = subprocess.Popen(
            [sys.executable, "-m", "kvfs.cli", "mount", "--foreground", "--log-level", "info", url, str(mountpoint)],
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            _wait_mounted(process, mountpoint)
            assert kvfs("unmount", mountpoint).returncode == 0
            assert process.wait(60) == 0
        finally:
            if process.poll() is None:
                process.kill()
        stderr = process.stderr.read() if process.stderr else ""
        assert f"serving s3://kvfs-test:***@{bucket}" in stderr
        assert SECRET not in stderr


def test_syslog_gets_masked_messages(tmp_path: pathlib.Path) -> None:
    import logging

    address = str(tmp_path / "log")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(address)
        server.settimeout(30)
        handler = syslog_handler(address)
        assert handler is not None
        log_to(handler, "INFO")
        try:
            logging.getLogger("kvfs.mount").error("store redis://:%s@host:6379/0 failed", SECRET)
            message = server.recv(65536).decode()
        finally:
            log_to(None, "WARNING")
    assert message.startswith("<27>kvfs[")  # facility daemon (3) * 8 + error (3)
    assert "redis://:***@host:6379/0 failed" in message and SECRET not in message
    assert syslog_handler(str(tmp_path / "nothing-listens")) is None


def test_mask_secrets_masks_every_url_in_a_line() -> None:
    line = f"copy s3://key:{SECRET}@b/p?endpoint_url=http://h:1 to postgresql://u:{SECRET}@db/x?sslpassword={SECRET}"
    masked = mask_secrets(line)
    assert SECRET not in masked
    assert "s3://key:***@b/p" in masked and "postgresql://u:***@db/x" in masked


# ---------------------------------------------------------------------- Ctrl-C


def _wait_mounted(process: subprocess.Popen[str], mountpoint: pathlib.Path) -> None:
    deadline = time.monotonic() + 60
    while not is_mounted(str(mountpoint)):
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        assert time.monotonic() < deadline, "the foreground mount never became ready"
        time.sleep(0.05)


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_ends_a_foreground_mount_cleanly(stop: signal.Signals, tmp_path: pathlib.Path, mountpoint: pathlib.Path) -> None:
    root = tmp_path / "store"
    root.mkdir()
    process = subprocess.Popen(
        [sys.executable, "-m", "kvfs.cli", "mount", "--foreground", str(root), str(mountpoint)],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_mounted(process, mountpoint)
        (mountpoint / "f").write_text("kept")
        process.send_signal(stop)  # what Ctrl-C sends
        assert process.wait(60) in (0, 130)
    finally:
        if process.poll() is None:
            process.kill()
    stderr = process.stderr.read() if process.stderr else ""
    assert stderr == ""  # no libfuse noise (its thread-limit warning included)
    assert not is_mounted(str(mountpoint))
    assert (root / "f").read_text() == "kept"


@pytest.mark.parametrize("mode", ["background", "foreground"])
@pytest.mark.parametrize("kind", ["sqlite", "directory"])
def test_a_store_inside_the_mount_point_is_refused(kind: str, mode: str, mountpoint: pathlib.Path) -> None:
    pytest.importorskip("sqlalchemy")
    url = f"sqlite:///{mountpoint}/store.db" if kind == "sqlite" else f"file://{mountpoint}/store?create=1"
    options = ["--foreground"] if mode == "foreground" else []
    result = kvfs("mount", *options, url, mountpoint)
    assert result.returncode == EXIT_FAILED, result.stderr
    lines = error_lines(result)
    assert len(lines) == 1 and "inside the mount point" in lines[0], result.stderr
    assert not is_mounted(str(mountpoint))
    assert os.listdir(mountpoint) == []  # refused before the store was opened (and made)


def test_a_store_object_inside_the_mount_point_is_refused(tmp_path: pathlib.Path) -> None:
    require_fuse()
    from kvfs.fs import FilesystemStore
    from kvfs.mount import MountError, mounted

    root = tmp_path / "store"
    root.mkdir()
    with pytest.raises(MountError, match="inside the store's directory"), mounted(FilesystemStore(root), str(root)):
        pass
    assert not is_mounted(str(root))
