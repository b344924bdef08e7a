"""kvfs cp and kvfs sync through the command: local stores, SQLite and the moto S3 server."""

from __future__ import annotations

import fcntl
import hashlib
import os
import pty
import random
import signal
import struct
import subprocess
import termios
import time
import uuid

import pytest
from cli_support import (
    MOTO_SECRET,
    fresh_bucket,
    invoke,
    kvfs_command,
    moto_store_url,
    run_kvfs,
    s3_client,
    s3_environment,
)
from servers import moto_url, require_server
from test_transfer import FailingPuts

import kvfs.cli.stores
from kvfs.db.sql import SQLAlchemyStore
from kvfs.errors import BackendError
from kvfs.fs import FilesystemStore


@pytest.fixture
def bucket():
    """A bucket of this test's own on moto (moto forgets every bucket when restarted)."""
    with fresh_bucket() as name:
        yield name


def fill_directory(root, count, seed=0, sizes=(0, 1, 100, 4000, 70000)):
    """*count* keys with random sizes and content below *root*; returns {key: value}."""
    rng = random.Random(seed)
    store = FilesystemStore(root)
    values = {}
    for i in range(count):
        key = f"d{i % 7}/e{i % 3}/k{i:04d}"
        values[key] = rng.randbytes(rng.choice(sizes))
        store.put(key, values[key])
    return values


def contents(store):
    return {key: store.get(key) for key in store.keys()}


# ---------------------------------------------------------------------- cp


def test_cp_copies_a_whole_store_then_skips_what_arrived(tmp_path):
    values = fill_directory(tmp_path / "src", 40)
    src, dst = str(tmp_path / "src"), str(tmp_path / "dst")
    first = invoke(["cp", src, dst])
    assert first.exit_code == 0, first.stderr
    assert "copied 40 key(s)" in first.stderr
    assert contents(FilesystemStore(dst)) == values
    second = invoke(["cp", src, dst])
    assert second.exit_code == 0 and "copied 0 key(s)" in second.stderr and "skipped 40" in second.stderr
    forced = invoke(["cp", "--force", src, dst])
    assert "copied 40 key(s)" in forced.stderr


def test_cp_of_a_prefix_and_of_named_keys(tmp_path):
    values = fill_directory(tmp_path / "src", 30)
    src = str(tmp_path / "src")
    assert invoke(["cp", src, str(tmp_path / "p"), "--prefix", "d1/"]).exit_code == 0
    assert contents(FilesystemStore(tmp_path / "p")) == {
        k: v for k, v in values.items() if k.startswith("d1/")
    }
    named = invoke(["cp", src, str(tmp_path / "n"), "d0/e0/k0000", "d2/e2/k0002"])
    assert named.exit_code == 0
    assert sorted(FilesystemStore(tmp_path / "n").keys()) == ["d0/e0/k0000", "d2/e2/k0002"]
    both = invoke(["cp", src, str(tmp_path / "n"), "d0/e0/k0000", "--prefix", "d1/"])
    assert both.exit_code == 2


def test_cp_of_a_missing_named_key_copies_the_others_and_exits_3(tmp_path):
    fill_directory(tmp_path / "src", 5)
    result = invoke(["cp", str(tmp_path / "src"), str(tmp_path / "dst"), "d0/e0/k0000", "no/such/key"])
    assert result.exit_code == 3
    assert "no/such/key" in result.stderr
    assert FilesystemStore(tmp_path / "dst").keys() == ["d0/e0/k0000"]


def test_cp_with_checksum_replaces_same_size_different_content(tmp_path):
    src, dst = FilesystemStore(tmp_path / "src"), FilesystemStore(tmp_path / "dst")
    src.put("k", b"new!")
    dst.put("k", b"old!")
    assert "skipped 1" in invoke(["cp", src.root, dst.root]).stderr
    assert dst.get("k") == b"old!"
    assert invoke(["cp", "--checksum", src.root, dst.root]).exit_code == 0
    assert dst.get("k") == b"new!"


# ---------------------------------------------------------------------- sync


def test_sync_delete_dry_run_changes_nothing_and_prints_the_plan(tmp_path):
    values = fill_directory(tmp_path / "src", 12)
    dst = FilesystemStore(tmp_path / "dst")
    dst.put("extra/one", b"1")
    dst.put("d0/e0/k0000", b"different size")
    before = contents(dst)
    result = invoke(["sync", "--delete", "--dry-run", str(tmp_path / "src"), dst.root])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert sum(line.startswith("copy ") for line in lines) == 12
    assert "delete  extra/one" in lines
    assert "would copy 12 key(s)" in lines[-1] and "delete 1" in lines[-1]
    assert contents(dst) == before

    done = invoke(["sync", "--delete", str(tmp_path / "src"), dst.root])
    assert done.exit_code == 0 and "deleted 1" in done.stderr
    assert contents(dst) == values


def test_sync_with_a_failed_copy_deletes_nothing(tmp_path):
    # SQLite can hold both 'a' and 'a/b'; a directory cannot, so one copy fails.
    source = SQLAlchemyStore.from_url(f"sqlite:///{tmp_path}/src.db")
    source.put("a", b"file")
    source.put("a/b", b"below")
    source.put("c", b"fine")
    dst = FilesystemStore(tmp_path / "dst")
    dst.put("extra", b"keep")
    result = invoke(["sync", "--delete", f"sqlite:///{tmp_path}/src.db", dst.root])
    assert result.exit_code == 1
    assert "failed:" in result.stderr and "1 of 4 key(s) failed" in result.stderr
    assert "were not deleted" in result.stderr
    assert dst.get("c") == b"fine" and dst.get("extra") == b"keep"


def test_sync_refuses_an_empty_source(tmp_path):
    dst = FilesystemStore(tmp_path / "dst")
    dst.put("precious", b"!")
    result = invoke(["sync", "--delete", str(tmp_path / "typo"), dst.root])
    assert result.exit_code == 3 and "no keys" in result.stderr
    assert dst.keys() == ["precious"]


def test_sync_stopped_by_failing_writes_completes_when_rerun(tmp_path, monkeypatch):
    values = fill_directory(tmp_path / "src", 50)
    dst_url = str(tmp_path / "dst")
    opened = kvfs.cli.stores.open_store

    def open_failing(url, **options):
        store = opened(url, **options)
        return FailingPuts(store, limit=20) if url == dst_url else store

    monkeypatch.setattr(kvfs.cli.stores, "open_store", open_failing)
    broken = invoke(["sync", "--jobs", "3", str(tmp_path / "src"), dst_url])
    assert broken.exit_code == 1 and "30 of 50 key(s) failed" in broken.stderr
    monkeypatch.setattr(kvfs.cli.stores, "open_store", opened)
    rerun = invoke(["sync", str(tmp_path / "src"), dst_url])
    assert rerun.exit_code == 0
    assert "copied 30 key(s)" in rerun.stderr and "skipped 20" in rerun.stderr
    assert contents(FilesystemStore(dst_url)) == values


def test_a_killed_sync_leaves_only_whole_keys_and_a_rerun_finishes(tmp_path):
    values = fill_directory(tmp_path / "src", 48, sizes=(1 << 20, 3 << 20))
    dst = tmp_path / "dst"
    process = subprocess.Popen(
        [*kvfs_command(), "sync", "--jobs", "1", str(tmp_path / "src"), str(dst)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=os.path.dirname(os.path.dirname(__file__)),
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            if dst.exists() and sum(len(files) for _, _, files in os.walk(dst)) >= 3:
                break
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(30)
    store = FilesystemStore(dst)
    arrived = store.keys()
    for key in arrived:
        assert store.get(key) == values[key]  # whole, never partial
    rerun = invoke(["sync", str(tmp_path / "src"), str(dst)])
    assert rerun.exit_code == 0
    assert f"skipped {len(arrived)}" in rerun.stderr
    assert contents(store) == values


# ---------------------------------------------------------------------- progress


def test_progress_bar_on_a_terminal_and_not_on_a_pipe_or_with_quiet(tmp_path):
    fill_directory(tmp_path / "src", 20)
    command = [*kvfs_command(), "cp", str(tmp_path / "src")]
    cwd = os.path.dirname(os.path.dirname(__file__))

    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # a real terminal's size
    try:
        process = subprocess.Popen(
            [*command, str(tmp_path / "tty")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=terminal,
            cwd=cwd,
        )
        os.close(terminal)
        output = b""
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # EIO: the process closed the terminal
                break
            if not chunk:
                break
            output += chunk
        assert process.wait(60) == 0
    finally:
        os.close(controller)
    text = output.decode(errors="replace")
    assert "20/20 keys" in text and "B/s" in text and "100%" in text

    piped = subprocess.run(
        [*command, str(tmp_path / "pipe")], capture_output=True, cwd=cwd, timeout=60, check=False
    )
    assert piped.returncode == 0
    assert b"keys]" not in piped.stderr and b"%|" not in piped.stderr
    assert b"copied 20 key(s)" in piped.stderr

    quiet = subprocess.run(
        [
            *command[: len(kvfs_command())],
            "--quiet",
            "--progress",
            *command[len(kvfs_command()) :],
            str(tmp_path / "quiet"),
        ],
        capture_output=True,
        cwd=cwd,
        timeout=60,
        check=False,
    )
    assert quiet.returncode == 0 and quiet.stderr == b""

    forced = invoke(["--progress", "cp", str(tmp_path / "src"), str(tmp_path / "forced")])
    assert "20/20 keys" in forced.stderr


# ---------------------------------------------------------------------- S3


def digests(store):
    return {key: hashlib.sha256(store.get(key)).hexdigest() for key in store.keys()}


def test_migrate_1000_keys_local_to_s3_to_sqlite(tmp_path, bucket):
    rng = random.Random(1000)
    local = FilesystemStore(tmp_path / "local")
    large = {0: 1 << 20, 333: 3 << 20, 666: 5 << 20, 999: 8 << 20}  # 8 MiB: a multipart upload
    for i in range(1000):
        # Mostly small values (a third of them empty), and a few large ones.
        size = large.get(i, rng.choice([0, rng.randrange(1, 4096), rng.randrange(1, 4096)]))
        local.put(f"set{i % 10}/group{i % 7}/blob{i:04d}.bin", rng.randbytes(size))
    s3 = moto_store_url(bucket, "migrated")  # endpoint and credentials in the URL
    sqlite = f"sqlite:///{tmp_path}/back.db"

    up = run_kvfs(["sync", str(tmp_path / "local"), s3])
    assert up.returncode == 0, up.stderr.decode()
    assert b"copied 1000 key(s)" in up.stderr

    down = run_kvfs(["cp", s3, sqlite])
    assert down.returncode == 0, down.stderr.decode()
    assert b"copied 1000 key(s)" in down.stderr
    assert MOTO_SECRET.encode() not in up.stderr + down.stderr

    back = SQLAlchemyStore.from_url(sqlite)
    try:
        assert digests(back) == digests(local)
        assert len(back.keys()) == 1000
    finally:
        back.close()


def test_a_killed_upload_to_s3_resumes(tmp_path, bucket):
    env = s3_environment(moto_url())  # endpoint and credentials from boto3's variables
    values = fill_directory(tmp_path / "src", 60, sizes=(200_000, 400_000))
    s3 = f"s3://{bucket}/resume"
    process = subprocess.Popen(
        [*kvfs_command(), "sync", "--jobs", "1", str(tmp_path / "src"), s3],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **env},
        cwd=os.path.dirname(os.path.dirname(__file__)),
    )
    client = s3_client(moto_url())
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            if client.list_objects_v2(Bucket=bucket, Prefix="resume/").get("KeyCount", 0) >= 10:
                break
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(30)
    arrived = client.list_objects_v2(Bucket=bucket, Prefix="resume/").get("KeyCount", 0)
    client.close()
    rerun = run_kvfs(["sync", str(tmp_path / "src"), s3], env=env)
    assert rerun.returncode == 0, rerun.stderr.decode()
    assert f"copied {60 - arrived} key(s)".encode() in rerun.stderr
    assert f"skipped {arrived}".encode() in rerun.stderr
    listing = run_kvfs(["ls", "-r", s3], env=env)
    assert sorted(listing.stdout.decode().split()) == sorted(values)


def test_unreachable_s3_server_is_one_line_naming_the_url_without_its_secret(tmp_path):
    fill_directory(tmp_path / "src", 2)
    # The discard port: nothing listens. One attempt, so the failure comes quickly.
    dest = "s3://kvfs-test:TOPSECRET@nowhere/x?endpoint_url=http://127.0.0.1:9&max_attempts=1"
    result = run_kvfs(["cp", str(tmp_path / "src"), dest])
    assert result.returncode == 1
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "s3://kvfs-test:***@nowhere/x" in lines[0]
    assert b"TOPSECRET" not in result.stderr and b"Traceback" not in result.stderr


def test_wrong_s3_credentials_are_one_line():
    require_server("seaweed")
    from servers import seaweed_url

    env = {**s3_environment(seaweed_url()), "AWS_SECRET_ACCESS_KEY": "wrong-secret"}
    url = f"s3://kvfs-cli-denied-{uuid.uuid4().hex[:12]}/x"
    result = run_kvfs(["ls", url], env=env)
    assert result.returncode == 1
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and url in lines[0]
    assert b"wrong-secret" not in result.stderr and b"Traceback" not in result.stderr


def test_store_errors_are_backend_errors_in_the_engine():
    assert issubclass(BackendError, OSError)
