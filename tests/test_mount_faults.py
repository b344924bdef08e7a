"""What a program sees through a real mount when writing fails: a full disk, a refusing store.

A write that fails poisons the open file: its flush, fsync and close fail with the same
errno and nothing is uploaded, so the store keeps the old value (or has no key). The
store's own errno reaches the program where it means something (ENOSPC, EACCES, ...),
anything else is EIO, and an outage is logged once, with its end.
"""

from __future__ import annotations

import errno
import logging
import os
import pathlib
import shutil
import subprocess
from collections.abc import Iterator

import pytest
from mount_support import mount_store

from kvfs.errors import BackendError
from kvfs.fs import FilesystemStore
from kvfs.memory import DictStore

MIB = 1024 * 1024


@pytest.fixture
def small_disk(tmp_path: pathlib.Path) -> Iterator[pathlib.Path]:
    """A 16 MiB tmpfs of the test's own: a disk that fills up. Unmounted afterwards."""
    path = tmp_path / "disk"
    path.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "kvfs-test-disk", str(path)], capture_output=True, text=True
    )
    if result.returncode != 0:
        problem = f"cannot mount a small tmpfs (root needed): {result.stderr.strip()}"
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail(f"CI=true and {problem}", pytrace=False)
        pytest.skip(problem)
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=False)


def fill(disk: pathlib.Path) -> None:
    """Fill *disk* to the last block with a file outside the store."""
    with open(disk / "filler", "wb", buffering=0) as filler:
        chunk = bytes(64 * 1024)
        try:
            while True:
                filler.write(chunk)
        except OSError as error:
            assert error.errno == errno.ENOSPC
        try:
            while True:
                filler.write(b"x")
        except OSError as error:
            assert error.errno == errno.ENOSPC


def write_until_failure(fd: int, total: int) -> OSError:
    """Write *total* bytes in 1 MiB chunks to *fd*; return the error that stopped it."""
    chunk = os.urandom(MIB)
    written = 0
    while written < total:
        try:
            written += os.write(fd, chunk)
        except OSError as error:
            return error
    raise AssertionError(f"all {total} bytes were written: the disk never filled")


def close_error(fd: int) -> int:
    with pytest.raises(OSError) as raised:
        os.close(fd)
    return raised.value.errno  # type: ignore[return-value]


def test_full_disk_on_a_big_file_gives_enospc_and_keeps_the_old_value(
    small_disk: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    # Past 8 MiB a file is staged in the store's own staging file, on the full disk.
    store = FilesystemStore(small_disk / "store")
    store.put("big", b"old big value")
    with mount_store(store, tmp_path / "mnt") as mnt:
        fd = os.open(mnt / "big", os.O_WRONLY | os.O_TRUNC)
        assert write_until_failure(fd, 32 * MIB).errno == errno.ENOSPC
        with pytest.raises(OSError) as raised:
            os.fsync(fd)
        assert raised.value.errno == errno.ENOSPC
        assert close_error(fd) == errno.ENOSPC
        assert store.get("big") == b"old big value"

        fd = os.open(mnt / "new.bin", os.O_WRONLY | os.O_CREAT, 0o644)
        assert write_until_failure(fd, 32 * MIB).errno == errno.ENOSPC
        with pytest.raises(OSError) as raised:
            os.write(fd, b"more")  # the file stays failed
        assert raised.value.errno == errno.ENOSPC
        assert close_error(fd) == errno.ENOSPC
        assert "new.bin" not in store
    # Unmounted, every handle released: the staging files are gone with their space.
    assert store.keys() == ["big"]
    assert store.get("big") == b"old big value"
    assert shutil.disk_usage(small_disk).used < MIB


def test_full_disk_on_small_files_gives_enospc_and_keeps_the_old_value(
    small_disk: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    # A small file is staged in memory: the writes succeed and the upload at close fails.
    store = FilesystemStore(small_disk / "store")
    store.put("small", b"old small value")
    fill(small_disk)
    with mount_store(store, tmp_path / "mnt") as mnt:
        for name in ("small", "new-small"):
            fd = os.open(mnt / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.write(fd, os.urandom(MIB))
            assert close_error(fd) == errno.ENOSPC
        assert store.get("small") == b"old small value"
        assert "new-small" not in store
    assert sorted(store.keys()) == ["small"]
    assert store.get("small") == b"old small value"


@pytest.mark.parametrize("memory", ["little memory", "enough memory"])
def test_a_shell_redirect_that_fails_stores_no_empty_file(
    small_disk: pathlib.Path, tmp_path: pathlib.Path, memory: str
) -> None:
    # The shell's "> file" creates the file and flushes it before the first write: an
    # empty file, which still fits on the full disk. With little memory for staging
    # each file moves to the store's staging file at once, whose first write fails;
    # with enough, the writes succeed and the upload at close fails.
    store = FilesystemStore(small_disk / "store")
    fill(small_disk)
    options = {"cache_size": 64 * 1024} if memory == "little memory" else {}
    with mount_store(store, tmp_path / "mnt", **options) as mnt:
        for number in range(5):
            result = subprocess.run(
                f"head -c 5M /dev/zero > {mnt}/s{number}.bin", shell=True, capture_output=True, text=True
            )
            assert result.returncode != 0
            assert "No space left on device" in result.stderr
        if memory == "little memory":
            fd = os.open(mnt / "direct.bin", os.O_WRONLY | os.O_CREAT, 0o644)
            with pytest.raises(OSError) as raised:
                os.write(fd, bytes(MIB))
            assert raised.value.errno == errno.ENOSPC
            assert close_error(fd) == errno.ENOSPC
    assert store.keys() == []


def test_a_failed_file_starts_anew_when_truncated_to_zero(small_disk: pathlib.Path, tmp_path: pathlib.Path) -> None:
    store = FilesystemStore(small_disk / "store")
    store.put("f", b"old")
    with mount_store(store, tmp_path / "mnt") as mnt:
        fd = os.open(mnt / "f", os.O_WRONLY | os.O_TRUNC)
        assert write_until_failure(fd, 32 * MIB).errno == errno.ENOSPC
        with pytest.raises(OSError) as raised:
            os.ftruncate(fd, 5)  # a part of a failed content is no content either
        assert raised.value.errno == errno.ENOSPC
        os.ftruncate(fd, 0)  # frees the staged space, and the content starts anew
        os.pwrite(fd, b"second try", 0)
        os.close(fd)
        assert store.get("f") == b"second try"


class RefusingStore(DictStore):
    """A DictStore whose writes (and, with ``reads_fail``, reads) raise *error* while it is set."""

    error: BaseException | None = None
    reads_fail = False
    failures = 0

    def _fail(self) -> None:
        if self.error is not None:
            self.failures += 1
            raise self.error

    def _put(self, key: str, data: bytes) -> str:
        self._fail()
        return super()._put(key, data)

    def _get_range(self, key: str, start: int, length: int) -> bytes:
        if self.reads_fail:
            self._fail()
        return super()._get_range(key, start, length)


@pytest.mark.parametrize(
    "code",
    [errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.ETIMEDOUT, errno.EFBIG],
    ids=errno.errorcode.get,
)
def test_a_meaningful_errno_of_the_store_reaches_the_program(tmp_path: pathlib.Path, code: int) -> None:
    store = RefusingStore()
    store.put("f", b"readable")
    with mount_store(store, tmp_path / "mnt") as mnt:
        store.error = BackendError(code, "refused")
        with pytest.raises(OSError) as raised:
            (mnt / "g").write_bytes(b"data")
        assert raised.value.errno == code
        store.reads_fail = True
        with pytest.raises(OSError) as raised:
            (mnt / "f").read_bytes()
        assert raised.value.errno == code
    assert "g" not in store


@pytest.mark.parametrize(
    "error",
    [
        BackendError(errno.ECONNREFUSED, "the store is down"),
        BackendError(errno.ENOENT, "the store's root is gone"),
        BackendError("S3 InternalError: no errno"),
        RuntimeError("a bug in the backend"),
    ],
    ids=["ECONNREFUSED", "ENOENT", "no errno", "not an OSError"],
)
def test_other_failures_of_the_store_are_eio(tmp_path: pathlib.Path, error: BaseException) -> None:
    store = RefusingStore()
    with mount_store(store, tmp_path / "mnt") as mnt:
        store.error = error
        with pytest.raises(OSError) as raised:
            (mnt / "g").write_bytes(b"data")
        assert raised.value.errno == errno.EIO


def test_an_outage_is_logged_once_and_its_end_too(tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture) -> None:
    store = RefusingStore()
    store.put("f", b"value")
    caplog.set_level(logging.DEBUG, logger="kvfs.mount")
    with mount_store(store, tmp_path / "mnt") as mnt:
        store.error = BackendError(errno.ECONNREFUSED, "the store is down")
        for name in ("a", "b", "c"):
            with pytest.raises(OSError):
                (mnt / name).write_bytes(b"data")
        # Each file fails its flush, then its release (which comes after close returns).
        for _ in range(1000):
            if store.failures >= 6:
                break
            os.sched_yield()
            os.stat(mnt)  # a request: gives the release a turn
        assert store.failures == 6
        store.error = None
        (mnt / "d").write_bytes(b"stored")
        assert store.get("d") == b"stored"
        # Reads are followed apart: their outage is logged even while writes work.
        store.error, store.reads_fail = BackendError(errno.ECONNREFUSED, "no reads"), True
        for _ in range(2):
            with pytest.raises(OSError):
                (mnt / "f").read_bytes()
        store.error = None
        assert (mnt / "f").read_bytes() == b"value"
    reads = [record for record in caplog.records if "store reads" in record.getMessage()]
    assert [record.levelno for record in reads if record.levelno > logging.DEBUG] == [logging.ERROR, logging.WARNING]
    assert "no reads" in reads[0].getMessage()
    assert reads[-1].getMessage() == f"store reads work again ({len(reads) - 1} failed)"
    records = [record for record in caplog.records if record.name == "kvfs.mount" and "store reads" not in record.getMessage()]
    errors = [record.getMessage() for record in records if record.levelno >= logging.ERROR]
    assert len(errors) == 1, errors
    assert "store writes failed" in errors[0] and "the store is down" in errors[0] and "flush a:" in errors[0]
    debug = [record for record in records if record.levelno == logging.DEBUG and "still failing" in record.getMessage()]
    assert len(debug) == 5
    recovered = [record.getMessage() for record in records if record.levelno == logging.WARNING]
    assert recovered == ["store writes work again (6 failed)"]
