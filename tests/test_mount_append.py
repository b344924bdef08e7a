"""O_APPEND through real mounts: an append goes to the end of the content, never past it.

The kernel places an ``O_APPEND`` write at its cached idea of the file's size, which
another mount (or the library) may have changed; the mount writes at the end of the
content it staged instead, so no hole of zeros is ever stored. Two mounts appending to
one file keep the last upload (some lines of one side are lost); one mount keeps all.
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import pytest
from mount_support import mount_store, require_fuse

from kvfs.fs import FilesystemStore
from kvfs.mount import is_mounted

APPENDER = """
import os, sys
path, tag = sys.argv[1], sys.argv[2]
for number in range(200):
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, f"{tag}{number:03d} appended by one writer\\n".encode())
    os.close(fd)
"""

LINE = re.compile(rb"([AB])(\d{3}) appended by one writer")


def append_concurrently(first: pathlib.Path, second: pathlib.Path) -> None:
    """Two processes append 200 lines each, one to *first*, one to *second*, at once."""
    writers = [
        subprocess.Popen([sys.executable, "-c", APPENDER, str(path), tag], stderr=subprocess.PIPE, text=True)
        for path, tag in ((first, "A"), (second, "B"))
    ]
    for writer in writers:
        _, errors = writer.communicate(timeout=300)
        assert writer.returncode == 0, errors


def check_lines(data: bytes) -> dict[bytes, list[int]]:
    """Assert *data* holds only whole lines the writers wrote, each writer's in order."""
    assert b"\0" not in data, "bytes no one wrote"
    assert data.endswith(b"\n")
    numbers: dict[bytes, list[int]] = {b"A": [], b"B": []}
    for line in data.splitlines():
        match = LINE.fullmatch(line)
        assert match is not None, line
        numbers[match.group(1)].append(int(match.group(2)))
    for sequence in numbers.values():
        assert sequence == sorted(set(sequence))
    return numbers


def kvfs(*arguments: str | os.PathLike[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kvfs.cli", *map(str, arguments)],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def test_two_mounts_appending_leave_no_hole(tmp_path: pathlib.Path) -> None:
    require_fuse()
    root = tmp_path / "store"
    store = FilesystemStore(root)
    store.put("log", b"")
    mountpoints = [tmp_path / "mnt1", tmp_path / "mnt2"]
    try:
        for mountpoint in mountpoints:
            mountpoint.mkdir()
            result = kvfs("mount", "--attr-timeout", "1", "--listing-timeout", "1", root, mountpoint)
            assert result.returncode == 0, result.stderr
        append_concurrently(mountpoints[0] / "log", mountpoints[1] / "log")
    finally:
        for mountpoint in mountpoints:
            if is_mounted(str(mountpoint)):
                result = kvfs("unmount", mountpoint)
                assert result.returncode == 0, result.stderr
    numbers = check_lines(store.get("log"))
    # Each side's last line was appended to what the store held then: it survives
    # unless the other side's last upload replaced it.
    assert numbers[b"A"][-1:] == [199] or numbers[b"B"][-1:] == [199]


def test_one_mount_appending_from_two_processes_keeps_every_line(tmp_path: pathlib.Path) -> None:
    store = FilesystemStore(tmp_path / "store")
    with mount_store(store, tmp_path / "mnt") as mnt:
        append_concurrently(mnt / "log", mnt / "log")
    numbers = check_lines(store.get("log"))
    assert numbers == {b"A": list(range(200)), b"B": list(range(200))}


@pytest.mark.parametrize("direct", [False, True], ids=["O_RDWR", "O_WRONLY"])
def test_append_goes_to_the_end_of_the_stored_content(tmp_path: pathlib.Path, direct: bool) -> None:
    store = FilesystemStore(tmp_path / "store")
    store.put("log", b"one\ntwo\nthree\n")
    # Long cache lifetimes: the kernel keeps the size it was told, 14 bytes.
    with mount_store(store, tmp_path / "mnt", attr_timeout=60, listing_timeout=60) as mnt:
        assert (mnt / "log").stat().st_size == 14
        store.put("log", b"one\n")  # shortened behind the mount's back
        flags = (os.O_WRONLY if direct else os.O_RDWR) | os.O_APPEND
        fd = os.open(mnt / "log", flags)
        try:
            os.write(fd, b"four\n")
        finally:
            os.close(fd)
        assert store.get("log") == b"one\nfour\n"
