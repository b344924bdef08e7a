"""The mount's names (kvfs.mount.namespace): what a rename carries over, and what an unlink drops."""

from __future__ import annotations

import os
import pathlib
import time

from mount_support import any_store, mount_store  # noqa: F401 - fixtures

from kvfs.memory import DictStore
from kvfs.mount.handles import MemoryBudget
from kvfs.mount.metadata import Entry
from kvfs.mount.namespace import Namespace
from kvfs.mount.openfiles import OpenFiles
from kvfs.mount.options import MountOptions


def _namespace() -> Namespace:
    store = DictStore()
    return Namespace(store, MountOptions(), OpenFiles(store, MemoryBudget(1 << 20), None), store.keeps_metadata)


def test_a_directory_rename_keeps_the_times_shown(any_store, tmp_path: pathlib.Path) -> None:
    with mount_store(any_store, tmp_path / "mnt") as mnt:
        os.makedirs(mnt / "d" / "sub")
        (mnt / "d" / "written").write_bytes(b"w")
        (mnt / "d" / "sub" / "old").write_bytes(b"o")
        os.utime(mnt / "d" / "sub" / "old", (1_000_000_000, 1_000_000_000))
        before = {name: os.stat(mnt / "d" / name).st_mtime_ns for name in ("written", "sub/old")}
        os.rename(mnt / "d", mnt / "e")
        after = {name: os.stat(mnt / "e" / name).st_mtime_ns for name in ("written", "sub/old")}
        assert after == before
        assert after["sub/old"] == 1_000_000_000 * 10**9


def test_a_created_but_unstored_name_moves_with_its_directory() -> None:
    names = _namespace()
    names.not_stored("d/new", remember=True)
    names.move_tree("d", "e", time.time())
    assert names.unstored("e/new") and not names.unstored("d/new")


def test_a_created_but_unstored_name_moves_with_a_file_rename_and_goes_with_an_unlink() -> None:
    names = _namespace()
    names.not_stored("a", remember=True)
    names.move("a", "b", Entry(False, 0), 0, stored=False, started=time.time())
    assert names.unstored("b") and not names.unstored("a")
    names.forget("b")
    assert not names.unstored("b")


def test_a_directory_rename_carries_the_versions_shown_of_the_files_below() -> None:
    names = _namespace()
    started = time.time()
    names.stored("d/f", 3, started, mtime=1000.5)
    names.move_tree("d", "e", time.time())
    # The store gives the moved value a new time (a copy on S3): the one shown stays.
    names.store.put("e/f", b"abc")
    assert names.query("e/f").mtime == 1000.5  # type: ignore[union-attr]
    assert names.query("d/f") is None
