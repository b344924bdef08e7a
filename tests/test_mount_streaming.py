"""Streamed writes through a mount of moto S3: parts go while the file is written.

A file written in order past the mount's stream threshold goes to the store as a
multipart upload while the program still writes (parts listed before the close), holds
no staging file on local disk, and appears only at the close; a write out of order, a
read back, a failure fall back or fail as docs/mount.rst says.
"""

from __future__ import annotations

import errno
import os
import pathlib
import stat
from collections.abc import Iterator
from typing import Any

import pytest
from mount_support import make_store, mount_store

from kvfs.net.boto3store import Boto3Store

MiB = 1024 * 1024
#: S3's smallest part: many parts from a file of a few tens of MiB.
PART = 5 * MiB
SIZE = 40 * MiB


@pytest.fixture
def s3(tmp_path: pathlib.Path) -> Iterator[Boto3Store]:
    store = make_store("s3", tmp_path)
    assert isinstance(store, Boto3Store)
    store.part_size = PART
    store.stream_concurrency = 2  # parts in flight: the others are in the bucket
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def cache_dir(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "cache"
    path.mkdir()
    return path


@pytest.fixture
def mnt(s3: Boto3Store, cache_dir: pathlib.Path, tmp_path: pathlib.Path) -> Iterator[pathlib.Path]:
    with mount_store(s3, tmp_path / "mnt", cache_dir=str(cache_dir), cache_size=64 * MiB, read_cache_size=0) as path:
        yield path


def uploads(store: Boto3Store, key: str) -> list[dict[str, Any]]:
    """The multipart uploads in progress for *key*."""
    answer = store.client.list_multipart_uploads(Bucket=store.bucket_name, Prefix=store.prefix + key)
    return [upload for upload in answer.get("Uploads", []) if upload["Key"] == store.prefix + key]


def uploaded_parts(store: Boto3Store, key: str) -> int:
    (upload,) = uploads(store, key)
    answer = store.client.list_parts(Bucket=store.bucket_name, Key=upload["Key"], UploadId=upload["UploadId"])
    return len(answer.get("Parts", []))


def local_bytes_in(directory: pathlib.Path) -> int:
    """Disk bytes of the files this process holds open in *directory* (staging files are unlinked at once)."""
    total = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
            info = os.stat(f"/proc/self/fd/{name}")
        except OSError:
            continue
        if target.startswith(str(directory) + "/") and stat.S_ISREG(info.st_mode):
            total += info.st_blocks * 512
    return total


def chunks(data: bytes, size: int = MiB) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def test_sequential_write_sends_parts_before_the_close(mnt: pathlib.Path, s3: Boto3Store, cache_dir: pathlib.Path) -> None:
    data = os.urandom(SIZE)
    with open(mnt / "big.bin", "wb") as out:
        for chunk in chunks(data):
            out.write(chunk)
        out.flush()
        # 8 parts were handed over with at most 2 in flight: the others are in the bucket.
        assert uploaded_parts(s3, "big.bin") >= 6
        assert "big.bin" not in s3, "the object appeared before the close"
        assert local_bytes_in(cache_dir) == 0, "a streamed file was staged on local disk"
        assert os.fstat(out.fileno()).st_size == SIZE
    assert s3.get("big.bin") == data
    assert uploads(s3, "big.bin") == []
    assert (mnt / "big.bin").read_bytes() == data


def test_a_staged_write_uses_local_disk(mnt: pathlib.Path, s3: Boto3Store, cache_dir: pathlib.Path) -> None:
    """The measure of the test above sees a staging file (written out of order from the start)."""
    data = os.urandom(SIZE)
    fd = os.open(mnt / "staged.bin", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        os.pwrite(fd, data[MiB:], MiB)  # the end first: never streamed
        os.pwrite(fd, data[:MiB], 0)
        assert local_bytes_in(cache_dir) >= SIZE - MiB
        assert uploads(s3, "staged.bin") == []
    finally:
        os.close(fd)
    assert s3.get("staged.bin") == data


def test_write_before_the_end_falls_back_and_is_right(mnt: pathlib.Path, s3: Boto3Store) -> None:
    data = bytearray(os.urandom(SIZE))
    fd = os.open(mnt / "patched.bin", os.O_RDWR | os.O_CREAT | os.O_TRUNC)
    try:
        for start in range(0, SIZE, MiB):
            os.pwrite(fd, data[start : start + MiB], start)
        assert uploads(s3, "patched.bin"), "not streamed"
        os.pwrite(fd, b"HEADER", 0)  # a header patched at the end, as zip and mp4 writers do
        data[:6] = b"HEADER"
        os.pwrite(fd, b"tail", SIZE)
        data += b"tail"
        assert os.pread(fd, 10, 0) == bytes(data[:10])
        assert os.fstat(fd).st_size == len(data)
    finally:
        os.close(fd)
    assert s3.get("patched.bin") == bytes(data)
    assert uploads(s3, "patched.bin") == []


def test_gap_and_truncate_past_the_end_keep_streaming(mnt: pathlib.Path, s3: Boto3Store) -> None:
    head = os.urandom(12 * MiB)
    fd = os.open(mnt / "sparse.bin", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        os.write(fd, head)
        os.pwrite(fd, b"x", 20 * MiB)  # a hole of zeros, as cp --sparse makes
        os.ftruncate(fd, 30 * MiB)
        assert uploads(s3, "sparse.bin")
    finally:
        os.close(fd)
    stored = s3.get("sparse.bin")
    assert stored == head + bytes(20 * MiB - len(head)) + b"x" + bytes(10 * MiB - 1)


def test_rename_of_a_streamed_file_while_open(mnt: pathlib.Path, s3: Boto3Store) -> None:
    data = os.urandom(SIZE // 2)
    with open(mnt / "before.bin", "wb") as out:
        out.write(data)
        os.rename(mnt / "before.bin", mnt / "after.bin")
        out.write(b"more")
    assert s3.get("after.bin") == data + b"more"
    assert "before.bin" not in s3


def test_failed_part_fails_the_close_and_stores_nothing(mnt: pathlib.Path, s3: Boto3Store) -> None:
    s3.put("doomed.bin", b"old value")
    fd = os.open(mnt / "doomed.bin", os.O_WRONLY | os.O_TRUNC)
    try:
        os.write(fd, os.urandom(12 * MiB))
        (upload,) = uploads(s3, "doomed.bin")
        # The server forgets the upload: every later part and the completion fail.
        s3.client.abort_multipart_upload(Bucket=s3.bucket_name, Key=upload["Key"], UploadId=upload["UploadId"])
        with pytest.raises(OSError) as raised:
            for _ in range(8):
                os.write(fd, os.urandom(MiB))
            os.fsync(fd)
        assert raised.value.errno == errno.EIO
    finally:
        with pytest.raises(OSError):
            os.close(fd)
    assert s3.get("doomed.bin") == b"old value"
    assert uploads(s3, "doomed.bin") == []


def test_fsync_stores_what_was_streamed_and_later_writes_follow(mnt: pathlib.Path, s3: Boto3Store) -> None:
    first, second = os.urandom(12 * MiB), os.urandom(3 * MiB)
    fd = os.open(mnt / "synced.bin", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        os.write(fd, first)
        os.fsync(fd)
        assert s3.get("synced.bin") == first
        assert uploads(s3, "synced.bin") == []
        os.write(fd, second)
    finally:
        os.close(fd)
    assert s3.get("synced.bin") == first + second


def test_unlinked_while_streamed_stores_nothing(mnt: pathlib.Path, s3: Boto3Store) -> None:
    fd = os.open(mnt / "gone.bin", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        os.write(fd, os.urandom(12 * MiB))
        assert uploads(s3, "gone.bin")
        os.unlink(mnt / "gone.bin")
        assert uploads(s3, "gone.bin") == []
        with pytest.raises(OSError) as raised:
            os.write(fd, b"more")
        assert raised.value.errno == errno.EIO
    finally:
        os.close(fd)
    assert "gone.bin" not in s3
    assert not (mnt / "gone.bin").exists()


def test_write_back_mount_does_not_stream(s3: Boto3Store, tmp_path: pathlib.Path) -> None:
    data = os.urandom(SIZE // 2)
    options = {"write_back": True, "journal_dir": str(tmp_path / "journal")}
    with mount_store(s3, tmp_path / "wb", **options) as mnt:
        with open(mnt / "journaled.bin", "wb") as out:
            out.write(data)
            out.flush()
            assert uploads(s3, "journaled.bin") == []  # the journal has it, at close
        assert (mnt / "journaled.bin").read_bytes() == data
    assert s3.get("journaled.bin") == data


def test_gcs_streams_through_a_resumable_upload(tmp_path: pathlib.Path, cache_dir: pathlib.Path) -> None:
    store = make_store("gcs", tmp_path)
    data = os.urandom(SIZE // 2)
    with mount_store(store, tmp_path / "gcs", cache_dir=str(cache_dir), read_cache_size=0) as mnt:
        with open(mnt / "big.bin", "wb") as out:
            for chunk in chunks(data):
                out.write(chunk)
            out.flush()
            assert local_bytes_in(cache_dir) == 0, "a streamed file was staged on local disk"
            assert "big.bin" not in store, "the object appeared before the close"
        assert store.get("big.bin") == data
        with open(mnt / "big.bin", "r+b") as out:  # not truncated: staged as before
            out.seek(5)
            out.write(b"patched")
        assert store.get("big.bin") == data[:5] + b"patched" + data[12:]


def test_a_streamed_file_keeps_its_creators_mode_and_owner(s3: Boto3Store, mnt: pathlib.Path) -> None:
    old_umask = os.umask(0)
    try:
        fd = os.open(mnt / "private.bin", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    finally:
        os.umask(old_umask)
    try:
        for chunk in chunks(b"p" * (3 * PART)):
            os.write(fd, chunk)
        assert uploads(s3, "private.bin"), "the file was not streamed"
    finally:
        os.close(fd)
    head = s3.client.head_object(Bucket=s3.bucket_name, Key=s3.prefix + "private.bin")
    assert head["ETag"].strip('"').endswith("-3")
    assert int(head["Metadata"]["mode"]) == stat.S_IFREG | 0o600
    assert int(head["Metadata"]["uid"]) == os.getuid()


def test_a_mode_and_time_set_while_streaming_are_kept(s3: Boto3Store, mnt: pathlib.Path) -> None:
    # As `cp -p` does: the content, then fchmod and futimens, then close.
    with open(mnt / "copied.bin", "wb") as out:
        for chunk in chunks(b"c" * (3 * PART)):
            out.write(chunk)
        out.flush()
        assert uploads(s3, "copied.bin"), "the file was not streamed"
        os.fchmod(out.fileno(), 0o640)
        os.utime(out.fileno(), ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    head = s3.client.head_object(Bucket=s3.bucket_name, Key=s3.prefix + "copied.bin")
    assert int(head["Metadata"]["mode"]) == stat.S_IFREG | 0o640
    assert float(head["Metadata"]["mtime"]) == 1_600_000_000
    assert s3.get("copied.bin") == b"c" * (3 * PART)
    assert os.stat(mnt / "copied.bin").st_mtime == 1_600_000_000
