"""Several coordinated mounts of one S3 bucket: each sees the others' changes at once.

Two ``kvfs mount --coordinate URL`` processes stand in for two hosts, on one moto bucket,
with Redis and with PostgreSQL as the engine. Their caches live 60 s, so whatever shows
sooner was told by the engine. Waits are "eventually, within a generous limit" loops.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from cli_support import fresh_bucket, kvfs_command, moto_store_url, remove_bucket, s3_client
from kvfs.mount import is_mounted
from mount_support import require_fuse
from servers import moto_url, postgres_url, redis_url, require_server, start_service, stop_service

WAIT = 30.0
LONG = ("--attr-timeout", "60", "--listing-timeout", "60")


def eventually(check: Callable[[], Any], limit: float = WAIT) -> Any:
    """Poll *check* until it returns something true; fail after *limit* seconds."""
    deadline = time.monotonic() + limit
    while True:
        try:
            result = check()
        except OSError:
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {limit} s: {check}")
        time.sleep(0.05)


def _read(path: pathlib.Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


@pytest.fixture(params=["redis", "postgresql"])
def engine(request: pytest.FixtureRequest) -> str:
    require_fuse()
    if request.param == "redis":
        require_server("redis")
        return redis_url()
    require_server("postgresql")
    return postgres_url()


@pytest.fixture
def bucket() -> Iterator[str]:
    with fresh_bucket("kvfs-hosts") as name:
        yield name


@pytest.fixture
def store_url(bucket: str) -> str:
    return moto_store_url(bucket, "tree/")


def _status(mountpoint: pathlib.Path) -> dict[str, Any]:
    result = subprocess.run(
        [*kvfs_command(), "status", "--json", str(mountpoint)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


class Hosts:
    """Starts coordinated mounts of one store; unmounts them all at the end."""

    def __init__(self, root: pathlib.Path, store_url: str, engine: str) -> None:
        self.root, self.store_url, self.engine = root, store_url, engine
        self.mounts: list[pathlib.Path] = []

    def mount(self, *extra: str) -> pathlib.Path:
        path = self.root / f"host{len(self.mounts)}"
        path.mkdir()
        log = self.root / f"host{len(self.mounts)}.log"
        command = [*kvfs_command(), "mount", *LONG, "--coordinate", self.engine, "--log-file", str(log), *extra]
        result = subprocess.run(
            [*command, self.store_url, str(path)], capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
        )
        assert result.returncode == 0, result.stderr
        self.mounts.append(path)
        return path

    def close(self) -> None:
        for path in self.mounts:
            if is_mounted(str(path)):
                subprocess.run([*kvfs_command(), "unmount", str(path)], capture_output=True, timeout=120)
            if is_mounted(str(path)):
                subprocess.run(["fusermount3", "-uz", str(path)], check=False)


@pytest.fixture
def hosts(tmp_path: pathlib.Path, store_url: str, engine: str) -> Iterator[Hosts]:
    started = Hosts(tmp_path, store_url, engine)
    try:
        yield started
    finally:
        started.close()


def test_changes_on_one_mount_show_on_the_other_at_once(hosts: Hosts) -> None:
    a, b = hosts.mount(), hosts.mount()
    (a / "docs").mkdir()
    (a / "docs" / "note.txt").write_bytes(b"first")
    assert eventually(lambda: _read(b / "docs" / "note.txt")) == b"first"
    assert sorted(os.listdir(b / "docs")) == ["note.txt"]

    # A same-size rewrite within the same second: B's kernel must not keep its pages.
    (a / "docs" / "note.txt").write_bytes(b"again")
    assert eventually(lambda: _read(b / "docs" / "note.txt") == b"again")

    # A new file, a rename and a delete.
    (a / "docs" / "new.txt").write_bytes(b"new")
    assert eventually(lambda: "new.txt" in os.listdir(b / "docs"))
    os.rename(a / "docs" / "new.txt", a / "docs" / "renamed.txt")
    assert eventually(lambda: sorted(os.listdir(b / "docs")) == ["note.txt", "renamed.txt"])
    assert eventually(lambda: _read(b / "docs" / "renamed.txt")) == b"new"
    assert not (b / "docs" / "new.txt").exists()
    os.unlink(a / "docs" / "note.txt")
    assert eventually(lambda: not (b / "docs" / "note.txt").exists())
    assert sorted(os.listdir(b / "docs")) == ["renamed.txt"]

    # A directory rename.
    os.rename(a / "docs", a / "papers")
    assert eventually(lambda: sorted(os.listdir(b)) == ["papers"])
    assert _read(b / "papers" / "renamed.txt") == b"new"


def test_a_library_put_shows_on_the_mount_at_once(hosts: Hosts) -> None:
    from kvfs import open_store

    b = hosts.mount()
    (b / "seen.txt").write_bytes(b"old")
    assert os.listdir(b) == ["seen.txt"]  # cached for 60 s
    assert (b / "seen.txt").read_bytes() == b"old"
    with open_store(f"{hosts.store_url}&coordinate={hosts.engine}") as store:
        store.put("seen.txt", b"new")
        store.put("added.txt", b"added")
    assert eventually(lambda: _read(b / "seen.txt") == b"new")
    assert eventually(lambda: sorted(os.listdir(b)) == ["added.txt", "seen.txt"])


def test_status_shows_the_coordination(hosts: Hosts) -> None:
    a = hosts.mount()
    result = subprocess.run([*kvfs_command(), "status", "--json", str(a)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert '"coordination"' in result.stdout
    assert '"connected": true' in result.stdout


def test_a_write_back_mount_announces_a_change_once_the_store_has_it(
    hosts: Hosts, bucket: str, tmp_path: pathlib.Path
) -> None:
    a = hosts.mount("--write-back", "--journal-dir", str(tmp_path / "journal"))
    b = hosts.mount()
    (a / "f.txt").write_bytes(b"old")
    assert eventually(lambda: _read(b / "f.txt")) == b"old"
    assert eventually(lambda: _status(a)["write_back"]["pending"] == 0)
    sent = _status(a)["coordination"]["sent"]
    applied = _status(b)["coordination"]["changes_applied"]
    remove_bucket(bucket)  # every upload fails until the bucket is back
    try:
        (a / "f.txt").write_bytes(b"new")  # journaled: close() returns
        (a / "added.txt").write_bytes(b"added")
        assert (a / "f.txt").read_bytes() == b"new"  # A shows its own changes at once
        assert eventually(lambda: _status(a)["write_back"]["failed"] > 0)
        status = _status(a)
        assert status["write_back"]["pending"] >= 2
        # Nothing was announced that the store does not have: B was told nothing.
        assert status["coordination"]["sent"] == sent
        assert _status(b)["coordination"]["changes_applied"] == applied
    finally:
        s3_client(moto_url()).create_bucket(Bucket=bucket)
    assert eventually(lambda: _status(a)["write_back"]["pending"] == 0, limit=120)
    # Uploaded: announced, and B shows it with its 60 s caches.
    assert _status(a)["coordination"]["sent"] >= sent + 2
    assert eventually(lambda: _read(b / "f.txt") == b"new")
    assert eventually(lambda: sorted(os.listdir(b)) == ["added.txt", "f.txt"])


def test_changes_a_killed_write_back_mount_left_are_announced_by_the_next(
    hosts: Hosts, bucket: str, tmp_path: pathlib.Path
) -> None:
    journal = str(tmp_path / "journal")
    a = hosts.mount("--write-back", "--journal-dir", journal)
    b = hosts.mount()
    (a / "f.txt").write_bytes(b"old")
    assert eventually(lambda: _read(b / "f.txt")) == b"old"
    assert os.listdir(b) == ["f.txt"]  # cached for 60 s
    assert eventually(lambda: _status(a)["write_back"]["pending"] == 0)
    remove_bucket(bucket)
    try:
        (a / "f.txt").write_bytes(b"new")
        (a / "added.txt").write_bytes(b"added")
        assert eventually(lambda: _status(a)["write_back"]["failed"] > 0)
        pid = _status(a)["pid"]
        os.kill(pid, signal.SIGKILL)  # "new" stays in the journal, unannounced
        eventually(lambda: not os.path.exists(f"/proc/{pid}"))
        subprocess.run(["fusermount3", "-uz", str(a)], check=False)
    finally:
        s3_client(moto_url()).create_bucket(Bucket=bucket)
    hosts.mount("--write-back", "--journal-dir", journal)  # replays, then announces
    assert eventually(lambda: sorted(os.listdir(b)) == ["added.txt", "f.txt"])
    assert eventually(lambda: _read(b / "f.txt") == b"new")


def test_engine_outage_degrades_to_timeouts_and_recovers(tmp_path: pathlib.Path, store_url: str) -> None:
    require_fuse()
    require_server("redis")
    hosts = Hosts(tmp_path, store_url, redis_url())
    try:
        a = hosts.mount()
        b = hosts.mount("--attr-timeout", "1", "--listing-timeout", "1")  # later options win
        (a / "f.txt").write_bytes(b"one")
        assert eventually(lambda: _read(b / "f.txt")) == b"one"
        stop_service("redis")
        try:
            (a / "f.txt").write_bytes(b"two, longer")  # the mount goes on without the engine
            assert eventually(lambda: _read(b / "f.txt") == b"two, longer")  # by B's timeouts
        finally:
            start_service("redis")
        # Reconnected: changes show again at once.
        (a / "g.txt").write_bytes(b"three")
        assert eventually(lambda: _read(b / "g.txt"), limit=60) == b"three"
    finally:
        hosts.close()
