"""fsync() through a real mount makes the value durable; close() does not sync.

The filesystem store's value file and its directories are synced: each ``os.fsync`` is
recorded with the path of the descriptor it was given (from ``/proc/self/fd``).
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Iterator

import pytest
from mount_support import mount_store

from kvfs.fs import FilesystemStore
from kvfs.memory import DictStore

#: Past the size staged in memory: the value is the committed staging file.
BIG = 9 * 1024 * 1024


@pytest.fixture
def synced(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The paths every ``os.fsync`` (and ``os.fdatasync``) of this process was called on."""
    paths: list[str] = []
    for name in ("fsync", "fdatasync"):
        real = getattr(os, name)

        def record(fd: int, real=real) -> None:
            paths.append(os.readlink(f"/proc/self/fd/{fd}"))
            real(fd)

        monkeypatch.setattr(os, name, record)
    yield paths


def test_fsync_syncs_the_value_file_and_its_directories(tmp_path: pathlib.Path, synced: list[str]) -> None:
    root = tmp_path / "store"
    store = FilesystemStore(root)
    with mount_store(store, tmp_path / "mnt") as mnt:
        (mnt / "d").mkdir()
        (mnt / "d" / "e").mkdir()
        for name, size in (("small", 100), ("big", BIG)):
            path = mnt / "d" / "e" / name
            synced.clear()
            fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
            try:
                os.write(fd, os.urandom(size))
                os.fsync(fd)
                value = str(root / "d" / "e" / name)
                assert synced.count(value) == 1, synced
                for directory in (root / "d" / "e", root / "d", root):
                    assert synced.count(str(directory)) == 1, synced
                # The value file was synced before its directory.
                assert synced.index(value) < synced.index(str(root / "d" / "e"))
                assert store.stat(f"d/e/{name}").size == size
            finally:
                os.close(fd)


def test_fdatasync_and_fsync_after_close_sync_too(tmp_path: pathlib.Path, synced: list[str]) -> None:
    root = tmp_path / "store"
    store = FilesystemStore(root)
    with mount_store(store, tmp_path / "mnt") as mnt:
        fd = os.open(mnt / "f", os.O_WRONLY | os.O_CREAT, 0o644)
        os.write(fd, b"data")
        os.fdatasync(fd)
        os.close(fd)
        assert str(root / "f") in synced and str(root) in synced
        synced.clear()
        # Uploaded by a close (a plain flush): a later fsync of any handle still syncs.
        (mnt / "g").write_bytes(b"written")
        assert [path for path in synced if path.startswith(str(root))] == []  # close does not sync
        fd = os.open(mnt / "g", os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        assert str(root / "g") in synced and str(root) in synced


def test_fsync_of_a_store_without_local_files_works(tmp_path: pathlib.Path) -> None:
    store = DictStore()
    with mount_store(store, tmp_path / "mnt") as mnt:
        with open(mnt / "f", "wb") as file:
            file.write(b"value")
            file.flush()
            os.fsync(file.fileno())
            assert store.get("f") == b"value"


def test_sync_fsyncs_the_value_and_its_directories(tmp_path: pathlib.Path, synced: list[str]) -> None:
    root = tmp_path / "store"
    store = FilesystemStore(root)
    store.put("a/b", b"value")
    synced.clear()
    store.sync("a/b")
    assert synced == [str(root / "a" / "b"), str(root / "a"), str(root)]
    synced.clear()
    store.delete("a/b")
    store.sync("a/b")  # the deletion is made durable: the directories are synced
    assert synced == [str(root / "a"), str(root)]
    synced.clear()
    store.sync("missing/dir/key")
    assert synced == [str(root)]
