"""``kvfs mount --write-back`` on the moto S3 server: real daemons, a real journal.

close() returns once the content is in the journal; uploads run in the background;
a killed daemon's changes arrive after the next mount; a stopped server's changes wait,
show in ``kvfs status`` and arrive once it is back; ``kvfs unmount`` drains.
"""

from __future__ import annotations

import errno
import json
import os
import pathlib
import signal
import subprocess
import time
import uuid

import pytest
from mount_support import require_fuse
from servers import moto_url, require_server, start_service, stop_service
from test_mount_cli import kvfs

from kvfs.mount import is_mounted
from kvfs.net.boto3store import Boto3Store, make_client

BUCKET = "kvfs-writeback"


def _client():  # type: ignore[no-untyped-def]
    return make_client(
        endpoint_url=moto_url(), region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )


def _bucket_store(prefix: str) -> Boto3Store:
    return Boto3Store(BUCKET, prefix, client=_client(), create_if_missing=True)


@pytest.fixture
def setup(tmp_path: pathlib.Path):  # type: ignore[no-untyped-def]
    """(store URL, a store on the same place, mount point, journal directory)."""
    require_fuse()
    require_server("moto")
    prefix = f"{uuid.uuid4().hex}/"
    store = _bucket_store(prefix)
    url = f"s3://testing:testing@{BUCKET}/{prefix}?endpoint_url={moto_url()}&region=us-east-1"
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    journal = tmp_path / "journal"
    yield url, store, mountpoint, journal
    if is_mounted(str(mountpoint)):
        subprocess.run(["fusermount3", "-uz", str(mountpoint)], check=False)


def _mount(url: str, mountpoint: pathlib.Path, journal: pathlib.Path, *options: str) -> None:
    result = kvfs("mount", "--write-back", "--journal-dir", journal, *options, url, mountpoint)
    assert result.returncode == 0, result.stderr


def _status(mountpoint: pathlib.Path) -> dict:  # type: ignore[type-arg]
    result = kvfs("status", "--json", mountpoint)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _files(count: int) -> dict[str, bytes]:
    return {f"d{number % 5}/f{number}.txt": os.urandom(100 + number) for number in range(count)}


def _write(mountpoint: pathlib.Path, files: dict[str, bytes]) -> None:
    for name, content in files.items():
        path = mountpoint / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(content)


def _wait_drained(mountpoint: pathlib.Path, timeout: float = 120) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout
    while True:
        status = _status(mountpoint)
        if status["write_back"]["pending"] == 0 or time.monotonic() > deadline:
            return status
        time.sleep(0.2)


def test_files_show_at_once_and_reach_the_bucket_by_unmount(setup) -> None:  # type: ignore[no-untyped-def]
    url, store, mountpoint, journal = setup
    _mount(url, mountpoint, journal)
    files = _files(60)
    _write(mountpoint, files)
    # What was written shows at once, stored or not.
    for name, content in files.items():
        assert (mountpoint / name).read_bytes() == content
    assert sorted(os.listdir(mountpoint)) == [f"d{n}" for n in range(5)]
    os.rename(mountpoint / "d0" / "f0.txt", mountpoint / "d0" / "renamed.txt")
    os.unlink(mountpoint / "d1" / "f1.txt")
    status = _status(mountpoint)
    assert status["mode"] == "write-back" and status["write_back"]["journal"] == str(journal)
    result = kvfs("unmount", mountpoint)  # waits until every change is stored
    assert result.returncode == 0, result.stderr
    assert not is_mounted(str(mountpoint))
    files["d0/renamed.txt"] = files.pop("d0/f0.txt")
    del files["d1/f1.txt"]
    assert sorted(store.keys()) == sorted(files)
    for name, content in files.items():
        assert store.get(name) == content
    assert os.listdir(journal / "changes") == []


def test_a_killed_daemons_changes_arrive_after_the_next_mount(setup) -> None:  # type: ignore[no-untyped-def]
    url, store, mountpoint, journal = setup
    _mount(url, mountpoint, journal, "--transfers", "1")
    files = _files(150)
    _write(mountpoint, files)
    pid = _status(mountpoint)["pid"]
    os.kill(pid, signal.SIGKILL)  # right after the writes returned
    for _ in range(100):
        if not os.path.exists(f"/proc/{pid}"):
            break
        time.sleep(0.05)
    subprocess.run(["fusermount3", "-uz", str(mountpoint)], check=False)
    assert len(store.keys()) < len(files), "everything was uploaded before the kill: the test proves nothing"
    _mount(url, mountpoint, journal)
    assert kvfs("unmount", mountpoint).returncode == 0
    assert sorted(store.keys()) == sorted(files)
    for name, content in files.items():
        assert store.get(name) == content


def test_a_stopped_server_holds_the_changes_and_fsync_says_eio(setup) -> None:  # type: ignore[no-untyped-def]
    url, store, mountpoint, journal = setup
    # New names are looked up in listings cached before the server stops (not by a request
    # that would fail however long stopping it takes).
    _mount(url, mountpoint, journal, "--listing-timeout", "600")
    (mountpoint / "before").write_bytes(b"before")
    assert _wait_drained(mountpoint)["write_back"]["pending"] == 0
    stop_service("moto")
    try:
        files = _files(10)
        _write(mountpoint, files)  # close() does not wait for the store
        with open(mountpoint / "synced", "wb") as file:
            file.write(b"must reach the store")
            with pytest.raises(OSError) as raised:
                os.fsync(file.fileno())
            assert raised.value.errno == errno.EIO
        deadline = time.monotonic() + 60
        while _status(mountpoint)["write_back"]["failed"] == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        status = _status(mountpoint)["write_back"]
        assert status["failed"] > 0 and status["pending"] >= 11
        text = kvfs("status", mountpoint).stdout
        assert "failed:" in text
    finally:
        start_service("moto")  # moto keeps nothing: the bucket is made again
    _bucket_store("")
    status = _wait_drained(mountpoint, timeout=180)
    assert status["write_back"]["pending"] == 0 and status["write_back"]["failed"] == 0
    assert kvfs("unmount", mountpoint).returncode == 0
    assert store.get("synced") == b"must reach the store"
    for name, content in files.items():
        assert store.get(name) == content


def test_write_back_is_refused_for_a_local_directory(tmp_path: pathlib.Path) -> None:
    require_fuse()
    (tmp_path / "store").mkdir()
    (tmp_path / "mnt").mkdir()
    result = kvfs("mount", "--write-back", tmp_path / "store", tmp_path / "mnt")
    assert result.returncode == 1
    assert "--write-back is for object stores" in result.stderr
    assert not is_mounted(str(tmp_path / "mnt"))


def test_a_negative_write_back_delay_is_refused(tmp_path: pathlib.Path) -> None:
    from kvfs.mount.options import MountOptions

    (tmp_path / "mnt").mkdir()
    result = kvfs("mount", "--write-back", "--write-back-delay", "-1", "memory://", tmp_path / "mnt")
    assert result.returncode == 2
    assert "--write-back-delay" in result.stderr
    assert not is_mounted(str(tmp_path / "mnt"))
    with pytest.raises(ValueError, match="write_back_delay"):
        MountOptions(write_back_delay=-1.0)


def test_big_files_arrive_byte_identical_also_when_written_again(setup) -> None:  # type: ignore[no-untyped-def]
    # Past 8 MiB a staged copy is a file, made in the journal, which adopts it at the close.
    url, store, mountpoint, journal = setup
    _mount(url, mountpoint, journal)
    big = os.urandom(20 * 1024 * 1024 + 123)
    with open(mountpoint / "big.bin", "wb") as file:
        for offset in range(0, len(big), 1024 * 1024):
            file.write(big[offset : offset + 1024 * 1024])
    assert (mountpoint / "big.bin").read_bytes() == big
    # Written again after its close: the journal's copy stays as it was; the new one is staged anew.
    patch = os.urandom(1024 * 1024)
    with open(mountpoint / "big.bin", "r+b") as file:
        file.seek(5 * 1024 * 1024)
        file.write(patch)
    changed = big[: 5 * 1024 * 1024] + patch + big[6 * 1024 * 1024 :]
    # Flushed half way (a dup closed), then written on: both contents are whole.
    with open(mountpoint / "halves.bin", "wb") as file:
        file.write(big[: 10 * 1024 * 1024])
        os.close(os.dup(file.fileno()))  # a FLUSH: the first half goes to the journal
        file.write(big[10 * 1024 * 1024 :])
    assert (mountpoint / "big.bin").read_bytes() == changed
    assert (mountpoint / "halves.bin").read_bytes() == big
    assert kvfs("unmount", mountpoint).returncode == 0
    assert store.get("big.bin") == changed
    assert store.get("halves.bin") == big
    assert os.listdir(journal / "changes") == []
