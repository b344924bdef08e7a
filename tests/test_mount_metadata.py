"""Modes, owners and times that last on S3 (moto) and GCS (fake-gcs-server), through a mount.

They are the objects' user metadata (``mode``, ``uid``, ``gid``, ``mtime``, as s3fs and
rclone name them), written with each upload at no extra request; a remount shows them
(on S3 with ``metadata_heads``: its listings carry no metadata).
"""

from __future__ import annotations

import collections
import os
import pathlib
import shutil
import stat
import subprocess
from collections.abc import Iterator

import pytest
from mount_support import make_store, mount_store, wait_until_stored
from test_mount_cli import kvfs

from kvfs.store import KeyValueStore, Metadata

LONG = 60.0
#: A time with nanoseconds just below the next second: must not show as the next second.
MTIME_NS = 1_600_000_000 * 1_000_000_000 + 999_999_999


@pytest.fixture(params=["s3", "gcs"])
def store(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Iterator[KeyValueStore]:
    made = make_store(request.param, tmp_path)
    try:
        yield made
    finally:
        made.close()


def _remount_options(store: KeyValueStore) -> dict[str, object]:
    """What a remount needs to show the kept metadata right away (S3: a HEAD per listed file)."""
    return {} if store.listing_has_metadata else {"metadata_heads": True}


def test_chmod_chown_and_touch_survive_a_remount(store: KeyValueStore, tmp_path: pathlib.Path) -> None:
    with mount_store(store, tmp_path / "mnt") as mnt:
        (mnt / "d").mkdir()
        (mnt / "d" / "f").write_bytes(b"content")
        os.chmod(mnt / "d" / "f", 0o640)
        os.chown(mnt / "d" / "f", 1234, 5678)
        os.utime(mnt / "d" / "f", ns=(MTIME_NS, MTIME_NS))
    info = store.stat("d/f")
    assert (info.mode, info.uid, info.gid) == (0o640, 1234, 5678)
    assert int(info.last_modified) == MTIME_NS // 1_000_000_000  # type: ignore[arg-type]
    with mount_store(store, tmp_path / "mnt", **_remount_options(store)) as mnt:
        shown = (mnt / "d" / "f").stat()
        assert stat.S_IMODE(shown.st_mode) == 0o640 and stat.S_ISREG(shown.st_mode)
        assert (shown.st_uid, shown.st_gid) == (1234, 5678)
        assert shown.st_mtime_ns // 1_000_000_000 == MTIME_NS // 1_000_000_000
        assert abs(shown.st_mtime_ns - MTIME_NS) < 1_000_000  # as near as a float of seconds keeps it
        assert (mnt / "d" / "f").read_bytes() == b"content"


def test_a_new_file_gets_its_creators_mode_and_owner(store: KeyValueStore, tmp_path: pathlib.Path) -> None:
    with mount_store(store, tmp_path / "mnt", umask=0) as mnt:
        descriptor = os.open(mnt / "new", os.O_CREAT | os.O_WRONLY, 0o604)
        os.write(descriptor, b"x")
        os.close(descriptor)
        assert stat.S_IMODE((mnt / "new").stat().st_mode) == 0o604
    info = store.stat("new")
    assert (info.mode, info.uid, info.gid) == (0o604, os.getuid(), os.getgid())
    with mount_store(store, tmp_path / "mnt", **_remount_options(store)) as mnt:
        assert stat.S_IMODE((mnt / "new").stat().st_mode) == 0o604


def test_mknod_of_a_file_keeps_its_mode(store: KeyValueStore, tmp_path: pathlib.Path) -> None:
    umask = os.umask(0)
    os.umask(umask)
    with mount_store(store, tmp_path / "mnt", umask=0) as mnt:
        os.mknod(mnt / "node", stat.S_IFREG | 0o612)
    assert store.stat("node").mode == 0o612 & ~umask  # the kernel applies the caller's umask


def test_writing_a_file_again_keeps_its_mode(store: KeyValueStore, tmp_path: pathlib.Path) -> None:
    with mount_store(store, tmp_path / "mnt") as mnt:
        (mnt / "f").write_bytes(b"one")
        os.chmod(mnt / "f", 0o600)
        (mnt / "f").write_bytes(b"two")
        with open(mnt / "f", "ab") as file:
            file.write(b"!")
    assert store.get("f") == b"two!"
    assert store.stat("f").mode == 0o600


def test_metadata_uses_the_names_s3fs_and_rclone_use(tmp_path: pathlib.Path) -> None:
    store = make_store("s3", tmp_path)
    try:
        with mount_store(store, tmp_path / "mnt") as mnt:
            (mnt / "f").write_bytes(b"x")
            os.chmod(mnt / "f", 0o640)
            os.utime(mnt / "f", (1_700_000_000.5, 1_700_000_000.5))
        head = store.client.head_object(Bucket=store.bucket_name, Key=store.prefix + "f")  # type: ignore[attr-defined]
        metadata = head["Metadata"]
        assert metadata["mode"] == str(stat.S_IFREG | 0o640)  # st_mode in decimal, as s3fs writes it
        assert float(metadata["mtime"]) == 1_700_000_000.5  # seconds, as s3fs and rclone read it
        assert {"uid", "gid"} <= set(metadata)
    finally:
        store.close()


def test_fake_gcs_server_lists_metadata(tmp_path: pathlib.Path) -> None:
    store = make_store("gcs", tmp_path)
    try:
        store.put("d/f", b"x")
        store.set_metadata("d/f", mode=0o611)
        (entry,) = [info for info in store.iter_level("d/") if info.key == "d/f"]
        assert entry.mode == 0o611
    finally:
        store.close()


# ---------------------------------------------------------------------- S3 request counts


@pytest.fixture
def s3(tmp_path: pathlib.Path) -> Iterator[tuple[KeyValueStore, collections.Counter]]:
    store = make_store("s3", tmp_path)
    requests: collections.Counter = collections.Counter()

    def count(event_name: str, **_: object) -> None:
        requests[event_name.rsplit(".", 1)[-1]] += 1

    store.client.meta.events.register("before-send.s3", count)  # type: ignore[attr-defined]
    try:
        yield store, requests
    finally:
        store.client.meta.events.unregister("before-send.s3", count)  # type: ignore[attr-defined]
        store.close()


def test_the_upload_carries_the_metadata_at_no_extra_request(s3, tmp_path: pathlib.Path) -> None:
    store, requests = s3
    with mount_store(store, tmp_path / "mnt", attr_timeout=LONG, listing_timeout=LONG, umask=0) as mnt:
        (mnt / "d").mkdir()
        requests.clear()
        for number in range(5):
            descriptor = os.open(mnt / "d" / f"f{number}", os.O_CREAT | os.O_WRONLY, 0o640)
            os.write(descriptor, b"x" * 100)
            os.close(descriptor)
        assert dict(requests) == {"PutObject": 5}
    assert store.stat("d/f4").mode == 0o640


def test_an_append_keeps_the_mode_the_download_told_at_no_extra_request(s3, tmp_path: pathlib.Path) -> None:
    store, requests = s3
    store.put("log", b"one\n", metadata=Metadata(mode=0o600, uid=1234, gid=5678, mtime=1_000_000_000))
    with mount_store(store, tmp_path / "mnt", attr_timeout=LONG, listing_timeout=LONG) as mnt:
        os.listdir(mnt)  # S3 listings carry no metadata: the defaults show
        requests.clear()
        with open(mnt / "log", "ab") as log:
            log.write(b"two\n")
        assert dict(requests) == {"GetObject": 1, "PutObject": 1}
    info = store.stat("log")
    assert (info.mode, info.uid, info.gid) == (0o600, 1234, 5678)  # kept; the mtime is the write's
    assert store.get("log") == b"one\ntwo\n"


def test_metadata_heads_cost_one_head_per_listed_file(s3, tmp_path: pathlib.Path) -> None:
    store, requests = s3
    for number in range(4):
        store.put(f"d/f{number}", b"x")
        store.set_metadata(f"d/f{number}", mode=0o600 + number)
    requests.clear()
    with mount_store(store, tmp_path / "mnt", attr_timeout=LONG, listing_timeout=LONG) as mnt:
        modes = {entry.name: stat.S_IMODE(entry.stat().st_mode) for entry in os.scandir(mnt / "d")}
    assert modes == {f"f{number}": 0o644 for number in range(4)}  # the defaults: listings carry no modes
    assert "HeadObject" not in requests
    requests.clear()
    with mount_store(store, tmp_path / "mnt", attr_timeout=LONG, listing_timeout=LONG, metadata_heads=True) as mnt:
        modes = {entry.name: stat.S_IMODE(entry.stat().st_mode) for entry in os.scandir(mnt / "d")}
    assert modes == {f"f{number}": 0o600 + number for number in range(4)}
    assert requests["HeadObject"] == 4 and requests["ListObjectsV2"] >= 1


# ---------------------------------------------------------------------- rsync


def _tree(root: pathlib.Path) -> None:
    (root / "sub" / "deeper").mkdir(parents=True)
    files = {
        "a.txt": (b"alpha\n", 0o644),
        "private": (b"secret\n", 0o600),
        "run.sh": (b"#!/bin/sh\necho hi\n", 0o755),
        "sub/b.bin": (bytes(range(256)) * 40, 0o640),
        "sub/deeper/c": (b"", 0o444),
    }
    for number, (name, (content, mode)) in enumerate(files.items()):
        path = root / name
        path.write_bytes(content)
        os.chmod(path, mode)
        when = MTIME_NS - number * 86_400 * 1_000_000_000 - number * 123_456_789
        os.utime(path, ns=(when, when))


@pytest.mark.skipif(shutil.which("rsync") is None, reason="rsync is not installed")
@pytest.mark.parametrize("write_back", [False, True], ids=["synchronous", "write-back"])
def test_rsync_a_again_onto_a_remounted_s3_mount_copies_nothing(tmp_path: pathlib.Path, write_back: bool) -> None:
    source = tmp_path / "source"
    _tree(source)
    store = make_store("s3", tmp_path)
    first_mount = {"write_back": True, "journal_dir": str(tmp_path / "journal")} if write_back else {}
    try:
        with mount_store(store, tmp_path / "mnt", **first_mount) as mnt:
            first = subprocess.run(
                ["rsync", "-a", "--stats", f"{source}/", f"{mnt}/"], capture_output=True, text=True, check=True
            )
            assert "Number of regular files transferred: 5" in first.stdout, first.stdout
            if write_back:  # the journal carries modes, owners and times to the uploads
                wait_until_stored(mnt)
        # The remount shows the kept modes and times at once with one HEAD per listed file.
        with mount_store(store, tmp_path / "mnt", metadata_heads=True) as mnt:
            second = subprocess.run(
                ["rsync", "-a", "--itemize-changes", "--stats", f"{source}/", f"{mnt}/"],
                capture_output=True,
                text=True,
                check=True,
            )
            assert "Number of regular files transferred: 0" in second.stdout, second.stdout
            # No file's content, size, time, mode or owner differs (directories' times are kept in memory).
            changed = [line for line in second.stdout.splitlines() if line[:2] in (">f", "<f", ".f", "cf")]
            assert changed == [], second.stdout
            for name in ("a.txt", "private", "run.sh", "sub/b.bin", "sub/deeper/c"):
                there, here = (mnt / name).stat(), (source / name).stat()
                assert stat.S_IMODE(there.st_mode) == stat.S_IMODE(here.st_mode), name
                assert there.st_mtime_ns // 10**9 == here.st_mtime_ns // 10**9, name  # whole seconds, as rsync compares
    finally:
        store.close()


# ---------------------------------------------------------------------- the command line


@pytest.mark.parametrize("heads", [False, True], ids=["listing", "metadata-heads"])
def test_kvfs_mount_metadata_heads(tmp_path: pathlib.Path, heads: bool) -> None:
    from cli_support import moto_store_url

    store = make_store("s3", tmp_path)  # makes the bucket
    try:
        store.put("f", b"x", metadata=Metadata(mode=0o600))
        mountpoint = tmp_path / "mnt"
        mountpoint.mkdir()
        url = moto_store_url(store.bucket_name, store.prefix)  # type: ignore[attr-defined]
        result = kvfs("mount", "--allow-other", *(["--metadata-heads"] if heads else []), url, mountpoint)
        assert result.returncode == 0, result.stderr
        try:
            shown = stat.S_IMODE((mountpoint / "f").stat().st_mode)
            if heads:
                assert "Warning" not in result.stderr and shown == 0o600
            else:
                assert "shows no file modes without --metadata-heads" in result.stderr and shown == 0o644
        finally:
            assert kvfs("unmount", mountpoint).returncode == 0
    finally:
        store.close()
