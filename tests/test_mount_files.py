"""Files through a real mount: staged writes, reads, handles, attributes."""

from __future__ import annotations

import errno
import os
import pathlib
import stat
import time

import pytest
from mount_support import mnt, mount_store, run_python, store  # noqa: F401 - fixtures

from kvfs.memory import DictStore


def test_write_then_read_back(mnt: pathlib.Path, store) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    (mnt / "big.bin").write_bytes(data)
    assert store.get("big.bin") == data
    assert (mnt / "big.bin").read_bytes() == data
    assert (mnt / "big.bin").stat().st_size == len(data)


def test_reads_come_from_the_store(mnt: pathlib.Path, store) -> None:
    data = os.urandom(5 * 1024 * 1024)
    store.put("value", data)
    with open(mnt / "value", "rb") as file:
        assert file.read(100) == data[:100]
        file.seek(4 * 1024 * 1024)
        assert file.read(10) == data[4 * 1024 * 1024 : 4 * 1024 * 1024 + 10]
        file.seek(0)
        assert file.read() == data


def test_written_data_reaches_the_store_on_close_only(mnt: pathlib.Path, store) -> None:
    store.put("f", b"old")
    with open(mnt / "f", "r+b") as file:
        file.write(b"NEW")
        file.flush()  # Python's buffer, not a FUSE flush
        assert store.get("f") == b"old"  # others still see the old value
    assert store.get("f") == b"NEW"


def test_fsync_uploads(mnt: pathlib.Path, store) -> None:
    fd = os.open(mnt / "f", os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        os.write(fd, b"synced")
        os.fsync(fd)
        assert store.get("f") == b"synced"
        os.write(fd, b"!")
    finally:
        os.close(fd)
    assert store.get("f") == b"synced!"


def test_write_at_offset_append_and_truncate(mnt: pathlib.Path, store) -> None:
    store.put("f", b"0123456789")
    with open(mnt / "f", "r+b") as file:
        file.seek(3)
        file.write(b"abc")
    assert store.get("f") == b"012abc6789"
    with open(mnt / "f", "ab") as file:
        file.write(b"END")
    assert store.get("f") == b"012abc6789END"
    os.truncate(mnt / "f", 4)
    assert store.get("f") == b"012a"
    os.truncate(mnt / "f", 6)
    assert store.get("f") == b"012a\0\0"
    with open(mnt / "f", "r+b") as file:
        file.seek(10)
        file.write(b"Z")  # a hole
    assert store.get("f") == b"012a\0\0\0\0\0\0Z"
    with open(mnt / "f", "wb") as file:  # O_TRUNC
        file.write(b"short")
    assert store.get("f") == b"short"


MMAP_PROGRAM = """
import mmap, os, sys
fd = os.open(sys.argv[1], os.O_CREAT | os.O_RDWR | os.O_EXCL, 0o644)
os.write(fd, b"x" * 8192)
assert os.pread(fd, 4, 0) == b"xxxx"
with mmap.mmap(fd, 8192) as mapped:
    assert mapped[:4] == b"xxxx"
    mapped[0:4] = b"mmap"
    mapped.flush()
os.close(fd)
"""


def test_created_read_write_file_serves_reads_and_mmap(mnt: pathlib.Path, store) -> None:
    run_python(MMAP_PROGRAM, str(mnt / "m"))
    assert store.get("m")[:4] == b"mmap"
    assert len(store.get("m")) == 8192


def test_exclusive_create_of_existing_file(mnt: pathlib.Path, store) -> None:
    (mnt / "f").write_bytes(b"1")
    with pytest.raises(FileExistsError):
        os.open(mnt / "f", os.O_CREAT | os.O_EXCL | os.O_WRONLY)


def test_handles_share_one_staged_copy(mnt: pathlib.Path, store) -> None:
    with open(mnt / "f", "wb") as writer, open(mnt / "f", "rb") as reader:
        writer.write(b"shared")
        writer.flush()
        assert os.pread(reader.fileno(), 6, 0) == b"shared"
        assert not store.keys() or store.get("f") == b""


def test_open_then_unlink_keeps_data(mnt: pathlib.Path, store) -> None:
    store.put("clean", b"clean data")
    with open(mnt / "clean", "rb") as clean, open(mnt / "dirty", "w+b") as dirty:
        dirty.write(b"dirty data")
        dirty.flush()
        os.unlink(mnt / "clean")
        os.unlink(mnt / "dirty")
        assert not (mnt / "clean").exists() and not (mnt / "dirty").exists()
        assert clean.read() == b"clean data"
        dirty.write(b" more")
        dirty.flush()
        dirty.seek(0)
        assert dirty.read() == b"dirty data more"
        assert os.fstat(dirty.fileno()).st_size == 15
        os.ftruncate(dirty.fileno(), 5)
        assert os.fstat(dirty.fileno()).st_size == 5
    assert store.keys() == []  # nothing uploaded under the old names
    assert os.listdir(mnt) == []


def test_rename_of_open_dirty_file_uploads_under_new_name(mnt: pathlib.Path, store) -> None:
    with open(mnt / "draft", "wb") as file:
        file.write(b"text")
        file.flush()
        os.rename(mnt / "draft", mnt / "final")
        file.write(b" more")
    assert store.keys() == ["final"]
    assert store.get("final") == b"text more"


def test_rename_replaces_existing_file(mnt: pathlib.Path, store) -> None:
    store.put("target", b"old")
    (mnt / "tmp").write_bytes(b"new")
    os.rename(mnt / "tmp", mnt / "target")
    assert store.keys() == ["target"]
    assert store.get("target") == b"new"
    assert (mnt / "target").read_bytes() == b"new"


def test_rename_noreplace(mnt: pathlib.Path) -> None:
    ctypes = pytest.importorskip("ctypes")
    libc = ctypes.CDLL(None, use_errno=True)
    (mnt / "a").write_bytes(b"a")
    (mnt / "b").write_bytes(b"b")
    at_fdcwd, noreplace = -100, 1
    result = libc.renameat2(at_fdcwd, bytes(mnt / "a"), at_fdcwd, bytes(mnt / "b"), noreplace)
    assert result == -1 and ctypes.get_errno() == errno.EEXIST
    assert (mnt / "b").read_bytes() == b"b"


def test_large_write_spills_past_cache_size(tmp_path: pathlib.Path) -> None:
    store = DictStore()
    with mount_store(store, tmp_path / "mnt", cache_size=1024 * 1024, cache_dir=str(tmp_path)) as mnt:
        data = os.urandom(4 * 1024 * 1024 + 5)
        with open(mnt / "big", "wb") as file:
            file.write(data)
            file.flush()
            assert any("kvfs-staged-" in target for target in _open_files()), "no temporary file"
        assert store.get("big") == data
        assert not list(tmp_path.glob("kvfs-staged-*"))  # never left behind


def _open_files() -> list[str]:
    targets = []
    for name in os.listdir("/proc/self/fd"):
        try:
            targets.append(os.readlink(f"/proc/self/fd/{name}"))
        except OSError:
            pass
    return targets


def test_attributes_of_new_files(mnt: pathlib.Path) -> None:
    before = time.time()
    fd = os.open(mnt / "f", os.O_CREAT | os.O_WRONLY, 0o640)
    os.close(fd)
    info = (mnt / "f").stat()
    assert stat.S_ISREG(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o640
    assert info.st_uid == os.getuid() and info.st_gid == os.getgid()
    assert info.st_size == 0
    assert info.st_mtime >= before - 2
    os.mkdir(mnt / "d", 0o700)
    assert stat.S_IMODE((mnt / "d").stat().st_mode) == 0o700


def test_chmod_chown_utimens_are_kept(mnt: pathlib.Path) -> None:
    (mnt / "f").write_bytes(b"x")
    os.chmod(mnt / "f", 0o600)
    os.chown(mnt / "f", 1234, 5678)
    os.utime(mnt / "f", ns=(1_000_000_000_123, 2_000_000_000_456))
    info = (mnt / "f").stat()
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert (info.st_uid, info.st_gid) == (1234, 5678)
    assert info.st_atime_ns == 1_000_000_000_123 and info.st_mtime_ns == 2_000_000_000_456
    os.chown(mnt / "f", -1, 42)
    assert ((mnt / "f").stat().st_uid, (mnt / "f").stat().st_gid) == (1234, 42)


def test_utime_now_and_omit(mnt: pathlib.Path) -> None:
    (mnt / "f").write_bytes(b"x")
    os.utime(mnt / "f", ns=(5_000_000_000, 7_000_000_000))
    fd = os.open(mnt / "f", os.O_RDONLY)
    try:
        ctypes = pytest.importorskip("ctypes")

        class Timespec(ctypes.Structure):
            _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]

        libc = ctypes.CDLL(None, use_errno=True)
        utime_now, utime_omit = (1 << 30) - 1, (1 << 30) - 2
        times = (Timespec * 2)(Timespec(0, utime_omit), Timespec(0, utime_now))
        assert libc.futimens(fd, times) == 0, ctypes.get_errno()
    finally:
        os.close(fd)
    info = (mnt / "f").stat()
    assert info.st_atime_ns == 5_000_000_000  # omitted: unchanged
    assert abs(info.st_mtime - time.time()) < 60  # now
    os.utime(mnt / "f")  # both now
    assert abs((mnt / "f").stat().st_atime - time.time()) < 60


def test_write_after_utime_updates_mtime(mnt: pathlib.Path) -> None:
    (mnt / "f").write_bytes(b"x")
    os.utime(mnt / "f", (1000, 1000))
    assert (mnt / "f").stat().st_mtime == 1000
    with open(mnt / "f", "ab") as file:
        file.write(b"y")
    assert (mnt / "f").stat().st_mtime > 1000


def test_hard_links_are_refused(mnt: pathlib.Path) -> None:
    (mnt / "f").write_bytes(b"x")
    with pytest.raises(PermissionError):
        os.link(mnt / "f", mnt / "g")
    assert os.listdir(mnt) == ["f"]


def test_statfs(mnt: pathlib.Path) -> None:
    info = os.statvfs(mnt)
    assert info.f_bsize > 0 and info.f_blocks > 0 and info.f_bavail == info.f_bfree > 0
    assert info.f_namemax == 255


def test_read_only_mount(tmp_path: pathlib.Path) -> None:
    store = DictStore()
    store.put("a/f", b"data")
    with mount_store(store, tmp_path / "mnt", read_only=True) as mnt:
        assert (mnt / "a" / "f").read_bytes() == b"data"
        for action in (
            lambda: (mnt / "a" / "f").write_bytes(b"x"),
            lambda: (mnt / "new").write_bytes(b"x"),
            lambda: os.unlink(mnt / "a" / "f"),
            lambda: os.mkdir(mnt / "d"),
            lambda: os.rename(mnt / "a" / "f", mnt / "g"),
            lambda: os.chmod(mnt / "a" / "f", 0o600),
        ):
            with pytest.raises(OSError) as raised:
                action()
            assert raised.value.errno == errno.EROFS
    assert store.keys() == ["a/f"] and store.get("a/f") == b"data"


def test_getattr_of_missing_and_directory_misuse(mnt: pathlib.Path, store) -> None:
    assert not (mnt / "missing").exists()
    os.mkdir(mnt / "d")
    with pytest.raises(IsADirectoryError):
        open(mnt / "d", "rb")
    (mnt / "f").write_bytes(b"x")
    with pytest.raises(NotADirectoryError):
        (mnt / "f" / "x").write_bytes(b"x")


def test_the_mount_asks_the_kernel_for_a_long_read_ahead(tmp_path: pathlib.Path) -> None:
    # As root the mount raises its read-ahead from the kernel's 128 KiB, so sequential
    # reads arrive as 1 MiB requests.
    from kvfs.mount.mounter import READ_AHEAD_KB

    with mount_store(DictStore(), tmp_path / "mnt") as mounted:
        device = os.stat(mounted).st_dev
        setting = pathlib.Path(f"/sys/class/bdi/{os.major(device)}:{os.minor(device)}/read_ahead_kb")
        if os.geteuid() != 0 and os.environ.get("CI", "").lower() not in ("true", "1", "yes"):
            pytest.skip("only root may change a mount's read-ahead")
        assert int(setting.read_text()) == READ_AHEAD_KB
