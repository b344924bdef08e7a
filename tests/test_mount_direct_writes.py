"""Writes through write-only handles, seen by the file's other handles and mappings.

The kernel keeps one page cache per file, shared by all its handles. A write through a
handle that bypasses it (``FOPEN_DIRECT_IO``, a candidate for handles opened
``O_WRONLY``) leaves pages cached by readers stale unless the kernel drops them around
the write, which it does only from Linux 6.6 (before the write) and 6.19 (after it too,
backported to 6.18.3, 6.12.y and 6.6.120). These tests state what readers must see
whatever the mount does with write-only handles: each write at once, and the new value
after each close, by ``pread``, ``mmap``, appends and reopens alike.
"""

from __future__ import annotations

import os
import pathlib
import threading

import pytest
from mount_support import mnt, run_python, store  # noqa: F401 - fixtures

SIZE = 3 * 4096 + 100  # a partial last page


def _pattern(round_: int, size: int = SIZE) -> bytes:
    return bytes([65 + round_ % 26]) * size


def test_open_reader_sees_each_write_only_rewrite(mnt: pathlib.Path, store) -> None:
    store.put("f", _pattern(0))
    reader = os.open(mnt / "f", os.O_RDONLY)
    try:
        for round_ in range(1, 4):
            writer = os.open(mnt / "f", os.O_WRONLY)
            try:
                # Read after the writer's open, so these pages are cached while it writes.
                assert os.pread(reader, SIZE, 0) == _pattern(round_ - 1)
                os.pwrite(writer, _pattern(round_)[:4096], 0)
                assert os.pread(reader, SIZE, 0) == _pattern(round_)[:4096] + _pattern(round_ - 1)[4096:]
                os.pwrite(writer, _pattern(round_)[4096:], 4096)
                assert os.pread(reader, SIZE, 0) == _pattern(round_)
            finally:
                os.close(writer)
            assert os.pread(reader, SIZE, 0) == _pattern(round_)
            assert os.fstat(reader).st_size == SIZE
            assert store.get("f") == _pattern(round_)
    finally:
        os.close(reader)


@pytest.mark.parametrize("flags", [os.O_WRONLY, os.O_WRONLY | os.O_TRUNC], ids=["keep", "trunc"])
def test_cached_pages_do_not_outlive_a_same_size_rewrite(mnt: pathlib.Path, store, flags: int) -> None:
    store.put("f", _pattern(0))
    assert (mnt / "f").read_bytes() == _pattern(0)  # cached by a closed handle
    with open(mnt / "f", "rb") as kept:
        assert kept.read() == _pattern(0)  # and by one still open
        for round_ in range(1, 3):
            fd = os.open(mnt / "f", flags)
            try:
                os.write(fd, _pattern(round_))
            finally:
                os.close(fd)
            assert os.pread(kept.fileno(), SIZE + 1, 0) == _pattern(round_)
            assert (mnt / "f").read_bytes() == _pattern(round_)
            assert (mnt / "f").stat().st_size == SIZE


def test_write_only_appends(mnt: pathlib.Path, store) -> None:
    store.put("log", b"start\n")
    expected = b"start\n"
    with open(mnt / "log", "rb") as reader, open(mnt / "log", "r+b") as other:
        assert reader.read() == expected  # cached
        for round_ in range(3):
            fd = os.open(mnt / "log", os.O_WRONLY | os.O_APPEND)
            try:
                os.write(fd, b"line %d\n" % round_)
                expected += b"line %d\n" % round_
                assert os.fstat(fd).st_size == len(expected)
                assert os.pread(reader.fileno(), 4096, 0) == expected
                # Another handle extends the file: the next append goes after its bytes.
                other.seek(0, os.SEEK_END)
                other.write(b"other %d\n" % round_)
                other.flush()
                expected += b"other %d\n" % round_
                os.write(fd, b"after %d\n" % round_)
                expected += b"after %d\n" % round_
            finally:
                os.close(fd)
            assert os.pread(reader.fileno(), 4096, 0) == expected
    assert store.get("log") == expected
    assert (mnt / "log").stat().st_size == len(expected)


MMAP_READER = """
import mmap, os, sys
path, size = sys.argv[1], int(sys.argv[2])
pattern = lambda n: bytes([65 + n]) * size
reader = os.open(path, os.O_RDONLY)
with mmap.mmap(reader, size, mmap.MAP_SHARED, mmap.PROT_READ) as mapped:
    for n in range(1, 4):
        writer = os.open(path, os.O_WRONLY)
        assert mapped[:] == pattern(n - 1), ("mapped before the write", n)  # pages faulted in
        os.pwrite(writer, pattern(n), 0)
        assert mapped[:] == pattern(n), ("mapped after the write", n)
        os.close(writer)
        assert mapped[:] == pattern(n), ("mapped after the close", n)
os.close(reader)
print("ok")
"""


def test_shared_mapping_sees_write_only_writes(mnt: pathlib.Path, store) -> None:
    store.put("m", _pattern(0))
    # In a child process: a page fault holds its GIL, which this process's mount needs.
    assert run_python(MMAP_READER, str(mnt / "m"), str(SIZE)).strip() == "ok"
    assert store.get("m") == _pattern(3)


def test_reader_racing_write_only_rewrites_ends_on_the_last(mnt: pathlib.Path, store) -> None:
    """Reads concurrent with each write must not leave pages of the value before it."""
    size, rounds = 256 * 1024, 40
    store.put("f", _pattern(0, size))
    done = threading.Event()
    errors: list[BaseException] = []

    def read_all_the_time() -> None:
        try:
            with open(mnt / "f", "rb", buffering=0) as file:
                while not done.is_set():
                    os.pread(file.fileno(), size, 0)
        except BaseException as error:  # reported by the test thread
            errors.append(error)

    with open(mnt / "f", "rb", buffering=0) as reader:
        thread = threading.Thread(target=read_all_the_time)
        thread.start()
        try:
            for round_ in range(1, rounds + 1):
                fd = os.open(mnt / "f", os.O_WRONLY)
                try:
                    for offset in range(0, size, 64 * 1024):
                        os.pwrite(fd, _pattern(round_, 64 * 1024), offset)
                finally:
                    os.close(fd)
                assert os.pread(reader.fileno(), size, 0) == _pattern(round_, size), round_
        finally:
            done.set()
            thread.join()
    assert not errors
    assert store.get("f") == _pattern(rounds, size)


def test_sendfile_into_a_write_only_handle(mnt: pathlib.Path, store, tmp_path: pathlib.Path) -> None:
    data = os.urandom(1024 * 1024 + 3)
    (tmp_path / "source").write_bytes(data)
    store.put("copy", b"old")
    with open(mnt / "copy", "rb") as reader:
        assert reader.read() == b"old"
        with open(tmp_path / "source", "rb") as source:
            fd = os.open(mnt / "copy", os.O_WRONLY | os.O_TRUNC)
            try:
                sent = 0
                while sent < len(data):
                    sent += os.sendfile(fd, source.fileno(), sent, len(data) - sent)
            finally:
                os.close(fd)
        assert os.pread(reader.fileno(), len(data) + 1, 0) == data
    assert store.get("copy") == data


@pytest.mark.parametrize(
    ("release", "safe"),
    [
        ("6.18.44-fc-v782", True),
        ("6.19.0", True),
        ("7.1.0-rc2", True),
        ("6.18.2", False),
        ("6.6.120-1-lts", True),
        ("6.6.119", False),
        ("6.7.5", False),
        ("5.10.0-28-amd64", False),
        ("not a version", False),
    ],
)
def test_direct_writes_only_on_kernels_that_drop_stale_pages(release: str, safe: bool) -> None:
    from kvfs.mount.binding import kernel_drops_pages_around_direct_writes

    assert kernel_drops_pages_around_direct_writes(release) is safe
