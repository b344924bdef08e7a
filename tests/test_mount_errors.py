"""Failures through a real mount: what the program sees when the store fails.

An upload that fails returns EIO from close() and fsync(), keeps the old value in the
store and the staged data in the mount, and a later flush retries. The S3 test stops the
real moto server while a file is open for writing.
"""

from __future__ import annotations

import errno
import os
import pathlib
import subprocess
import sys
import time
import uuid

import pytest
from mount_support import mount_store

from kvfs.errors import BackendError
from kvfs.memory import DictStore
from kvfs.mount import is_mounted


class BreakableStore(DictStore):
    """A DictStore whose writes (and, with ``reads_fail``, reads) fail while ``broken``."""

    broken = False
    reads_fail = False

    failures = 0

    def _fail(self) -> None:
        if self.broken:
            self.failures += 1
            raise BackendError(errno.ECONNREFUSED, "the store is down")

    def _put(self, key: str, data: bytes) -> str:
        self._fail()
        return super()._put(key, data)

    def _get_range(self, key: str, start: int, length: int) -> bytes:
        if self.reads_fail:
            self._fail()
        return super()._get_range(key, start, length)

    def _iter_level(self, prefix, delimiter):
        if self.reads_fail:
            self._fail()
        return super()._iter_level(prefix, delimiter)


def test_failed_upload_gives_eio_and_keeps_old_value(tmp_path: pathlib.Path, caplog) -> None:
    store = BreakableStore()
    store.put("f", b"old value")
    with mount_store(store, tmp_path / "mnt") as mnt:
        keeper = os.open(mnt / "f", os.O_RDONLY)  # keeps the staged copy alive
        try:
            fd = os.open(mnt / "f", os.O_WRONLY | os.O_TRUNC)
            os.write(fd, b"new value")
            store.broken = True
            with pytest.raises(OSError) as raised:
                os.fsync(fd)
            assert raised.value.errno == errno.EIO
            with pytest.raises(OSError) as raised:
                os.close(fd)
            assert raised.value.errno == errno.EIO
            assert store.get("f") == b"old value"
            assert any("f" in record.getMessage() and "failed" in record.getMessage() for record in caplog.records)
            # The mount keeps serving, and the staged data is still there.
            assert os.pread(keeper, 100, 0) == b"new value"
            assert sorted(os.listdir(mnt)) == ["f"]
            store.broken = False
            # A later flush (any close of a handle on the file) uploads it.
            os.close(os.open(mnt / "f", os.O_RDONLY))
            assert store.get("f") == b"new value"
        finally:
            os.close(keeper)
        # A retry of the whole write after a failure works too.
        store.broken = True
        with pytest.raises(OSError) as raised:
            (mnt / "g").write_bytes(b"first try")
        assert raised.value.errno == errno.EIO
        store.broken = False
        (mnt / "g").write_bytes(b"second try")
        assert store.get("g") == b"second try"


def test_a_new_file_whose_upload_failed_can_be_created_again(tmp_path: pathlib.Path) -> None:
    # Long cache lifetimes: the kernel keeps the name it was told about at create time
    # and sends the second open(O_CREAT) as a plain open, after the release dropped the file.
    store = BreakableStore()
    with mount_store(store, tmp_path / "mnt", attr_timeout=30, listing_timeout=30) as mnt:
        store.broken = True
        with pytest.raises(OSError) as raised:
            (mnt / "g").write_bytes(b"first try")
        assert raised.value.errno == errno.EIO
        # The flush failed once; the release (sent after close returns) tries once more.
        for _ in range(500):
            if store.failures >= 2:
                break
            time.sleep(0.01)
        assert store.failures == 2
        store.broken = False
        with pytest.raises(FileNotFoundError):
            os.open(mnt / "g", os.O_RDONLY)
        (mnt / "g").write_bytes(b"second try")
        assert store.get("g") == b"second try"
        assert (mnt / "g").read_bytes() == b"second try"


def test_failed_reads_and_listings_give_eio(tmp_path: pathlib.Path) -> None:
    store = BreakableStore()
    store.put("d/f", b"data")
    with mount_store(store, tmp_path / "mnt", attr_timeout=0, listing_timeout=0) as mnt:
        store.broken = store.reads_fail = True
        with pytest.raises(OSError) as raised:
            (mnt / "d" / "f").read_bytes()
        assert raised.value.errno == errno.EIO
        with pytest.raises(OSError) as raised:
            os.listdir(mnt / "d")
        assert raised.value.errno == errno.EIO
        store.broken = store.reads_fail = False
        assert (mnt / "d" / "f").read_bytes() == b"data"


WRITER = """
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_TRUNC)
os.write(fd, b"new object")
print("written", flush=True)
sys.stdin.readline()
try:
    os.close(fd)
    print("close ok", flush=True)
except OSError as error:
    print("close errno", error.errno, flush=True)
"""


def test_s3_server_stopped_while_writing(tmp_path: pathlib.Path) -> None:
    pytest.importorskip("boto3")
    from servers import moto_url, require_server, start_service, stop_service

    from kvfs.net.boto3store import Boto3Store, make_client

    require_server("moto")
    client = make_client(
        endpoint_url=moto_url(),
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        connect_timeout=2,
        read_timeout=5,
        max_attempts=1,
    )
    bucket = f"kvfs-mount-{uuid.uuid4().hex[:12]}"
    store = Boto3Store(bucket, "m/", client=client, create_if_missing=True)
    store.put("doc", b"old object")
    with mount_store(store, tmp_path / "mnt") as mnt:
        # The writer is another process: stopping the server forks this one, and the
        # fork's copy of an open descriptor would flush the file when it is closed.
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(mnt / "doc")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert writer.stdout is not None and writer.stdin is not None
        assert writer.stdout.readline().strip() == "written"
        stop_service("moto")
        try:
            writer.stdin.write("close\n")
            writer.stdin.flush()
            assert writer.stdout.readline().strip() == f"close errno {errno.EIO}"
            writer.wait(30)
            # The mount is still there (listings fail with EIO until the server is back).
            assert is_mounted(str(mnt))
            assert os.statvfs(mnt).f_namemax > 0
        finally:
            start_service("moto")
        # moto keeps its data in memory: a restart forgets it, so the bucket is made anew.
        store = Boto3Store(bucket, "m/", client=client, create_if_missing=True)
        if "doc" in store:
            assert store.get("doc") == b"old object"  # never a partial new object
        assert os.listdir(mnt) == (["doc"] if "doc" in store else [])
        (mnt / "doc").write_bytes(b"retried")
        assert store.get("doc") == b"retried"
