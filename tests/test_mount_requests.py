"""How many S3 requests each file operation through a mount costs (the real moto server).

The floors: 1 PUT to create, write and close a small file; 1 LIST and no HEAD for
``ls -l``; 1 GET to read a small file; nothing for a ``stat`` after a listing; 1 COPY
and 1 DELETE to rename a file. Cache lifetimes are long here so that the counts do
not depend on how fast the machine is (with the default 1 s, a directory being
filled costs one more LIST per second).
"""

from __future__ import annotations

import collections
import os
import pathlib
import time
from collections.abc import Iterator

import pytest
from mount_support import make_store, mount_store, wait_until_stored

from kvfs.net.boto3store import Boto3Store

LONG = 60.0


@pytest.fixture
def s3(tmp_path: pathlib.Path) -> Iterator[tuple[Boto3Store, collections.Counter]]:
    """An empty store on the moto server and a counter of the requests it sends, by operation."""
    store = make_store("s3", tmp_path)
    assert isinstance(store, Boto3Store)
    requests: collections.Counter = collections.Counter()

    def count(event_name: str, **_: object) -> None:
        requests[event_name.rsplit(".", 1)[-1]] += 1

    store.client.meta.events.register("before-send.s3", count)
    try:
        yield store, requests
    finally:
        store.client.meta.events.unregister("before-send.s3", count)
        store.close()


def test_creating_small_files_costs_one_put_each(s3, tmp_path: pathlib.Path) -> None:
    store, requests = s3
    with mount_store(store, tmp_path / "mnt", attr_timeout=LONG, listing_timeout=LONG) as mnt:
        (mnt / "d").mkdir()
        requests.clear()
        for number in range(20):
            (mnt / "d" / f"f{number}").write_bytes(b"x" * 4096)
        assert dict(requests) == {"PutObject": 20}
        # The mount's own writes are visible at once, without asking the store.
        assert sorted(os.listdir(mnt / "d")) == sorted(f"f{number}" for number in range(20))
        assert (mnt / "d" / "f3").stat().st_size == 4096
        assert dict(requests) == {"PutObject": 20}
    assert store.get("d/f19") == b"x" * 4096


def test_a_new_name_in_an_unlisted_directory_costs_one_list(s3, tmp_path: pathlib.Path) -> None:
    store, requests = s3
    store.put("d/old", b"old")
    with mount_store(store, tmp_path / "mnt", attr_timeout=LONG, listing_timeout=LONG) as mnt:
        os.stat(mnt / "d")
        requests.clear()
        for number in range(5):
            (mnt / "d" / f"new{number}").write_bytes(b"new")
        # One listing of d answers every lookup of a new name: no HEAD per file.
        assert dict(requests) == {"ListObjectsV2": 1, "PutObject": 5}


def test_ls_l_costs_one_list_and_a_small_read_one_get(s3, tmp_path: pathlib.Path) -> None:
    store, requests = s3
    for number in range(50):
        store.put(f"d/f{number}", b"%d" % number)
    with mount_store(store, tmp_path / "mnt", attr_timeout=LONG, listing_timeout=LONG) as mnt:
        os.stat(mnt / "d")
        requests.clear()
        sizes = {entry.name: entry.stat().st_size for entry in os.scandir(mnt / "d")}
        assert len(sizes) == 50 and sizes["f10"] == 2
        assert dict(requests) == {"ListObjectsV2": 1}
        requests.clear()
        assert (mnt / "d" / "f7").read_bytes() == b"7"
        assert dict(requests) == {"GetObject": 1}


def test_renaming_a_file_costs_one_copy_and_one_delete(s3, tmp_path: pathlib.Path) -> None:
    store, requests = s3
    store.put("d/a", b"content")
    with mount_store(store, tmp_path / "mnt", attr_timeout=LONG, listing_timeout=LONG) as mnt:
        os.listdir(mnt / "d")
        before = (mnt / "d" / "a").stat().st_mtime_ns
        requests.clear()
        os.rename(mnt / "d" / "a", mnt / "d" / "b")
        assert dict(requests) == {"CopyObject": 1, "DeleteObject": 1}
        # A rename keeps the time the file showed, as on a disk.
        assert (mnt / "d" / "b").stat().st_mtime_ns == before
    assert store.get("d/b") == b"content" and "d/a" not in store


def test_an_append_costs_one_get_and_one_put(s3, tmp_path: pathlib.Path) -> None:
    store, requests = s3
    store.put("log", b"one\n")
    with mount_store(store, tmp_path / "mnt", attr_timeout=LONG, listing_timeout=LONG) as mnt:
        os.listdir(mnt)
        requests.clear()
        with open(mnt / "log", "ab") as log:
            log.write(b"two\n")
        assert dict(requests) == {"GetObject": 1, "PutObject": 1}
    assert store.get("log") == b"one\ntwo\n"


def drop_kernel_pages(path: pathlib.Path) -> None:
    """Make the kernel forget its cached pages of *path*: the next read reaches the mount."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def test_files_written_through_the_mount_are_read_again_without_a_download(s3, tmp_path: pathlib.Path) -> None:
    store, requests = s3
    small, big = os.urandom(10_000), os.urandom(3 * 1024 * 1024)  # in memory / in a temporary file
    with mount_store(store, tmp_path / "mnt", attr_timeout=LONG, listing_timeout=LONG) as mnt:
        (mnt / "small").write_bytes(small)
        (mnt / "big").write_bytes(big)
        for name in ("small", "big"):
            drop_kernel_pages(mnt / name)
        requests.clear()
        assert (mnt / "small").read_bytes() == small
        assert (mnt / "big").read_bytes() == big
        assert "GetObject" not in requests
        # Changed through the mount: the copy goes, the new value is read.
        with open(mnt / "small", "r+b") as file:
            file.write(b"NEW")
        drop_kernel_pages(mnt / "small")
        assert (mnt / "small").read_bytes() == b"NEW" + small[3:]
        # Renamed: the copy follows the name.
        os.rename(mnt / "big", mnt / "moved")
        drop_kernel_pages(mnt / "moved")
        requests.clear()
        assert (mnt / "moved").read_bytes() == big
        assert "GetObject" not in requests


def test_a_copy_is_not_served_once_the_store_changed(s3, tmp_path: pathlib.Path) -> None:
    store, requests = s3
    with mount_store(store, tmp_path / "mnt", attr_timeout=0.1, listing_timeout=0.1) as mnt:
        (mnt / "f").write_bytes(b"written by the mount")
        store.put("f", b"changed elsewhere")  # another size
        for _ in range(100):  # until the mount's caches expire
            drop_kernel_pages(mnt / "f")
            if (mnt / "f").read_bytes() == b"changed elsewhere":
                break
            time.sleep(0.05)
        assert (mnt / "f").read_bytes() == b"changed elsewhere"


def test_a_small_file_read_whole_is_kept(s3, tmp_path: pathlib.Path) -> None:
    store, requests = s3
    store.put("f", b"stored by the library")
    with mount_store(store, tmp_path / "mnt", attr_timeout=LONG, listing_timeout=LONG) as mnt:
        os.listdir(mnt)
        # S3 times are whole seconds: a copy is only trusted for a time two seconds old.
        time.sleep(2.1)
        requests.clear()
        assert (mnt / "f").read_bytes() == b"stored by the library"
        drop_kernel_pages(mnt / "f")
        assert (mnt / "f").read_bytes() == b"stored by the library"
        assert dict(requests) == {"GetObject": 1}


def test_without_a_read_cache_every_read_downloads(s3, tmp_path: pathlib.Path) -> None:
    store, requests = s3
    with mount_store(store, tmp_path / "mnt", attr_timeout=LONG, listing_timeout=LONG, read_cache_size=0) as mnt:
        (mnt / "f").write_bytes(b"data")
        drop_kernel_pages(mnt / "f")
        requests.clear()
        assert (mnt / "f").read_bytes() == b"data"
        assert dict(requests) == {"GetObject": 1}


def test_appending_to_a_file_the_mount_wrote_costs_one_put(s3, tmp_path: pathlib.Path) -> None:
    store, requests = s3
    with mount_store(store, tmp_path / "mnt", attr_timeout=LONG, listing_timeout=LONG) as mnt:
        (mnt / "log").write_bytes(b"one\n")
        (mnt / "big.log").write_bytes(b"x" * (3 * 1024 * 1024))  # its copy is a temporary file
        requests.clear()
        for name in ("log", "big.log"):
            with open(mnt / name, "ab") as log:
                log.write(b"two\n")
        # The old values come from the read cache, not from the server.
        assert dict(requests) == {"PutObject": 2}
    assert store.get("log") == b"one\ntwo\n"
    assert store.get("big.log") == b"x" * (3 * 1024 * 1024) + b"two\n"


def test_renaming_a_directory_costs_a_copy_per_file_and_one_batched_delete(s3, tmp_path: pathlib.Path) -> None:
    store, requests = s3
    for number in range(30):
        store.put(f"d/f{number}", b"x")
    with mount_store(store, tmp_path / "mnt", attr_timeout=LONG, listing_timeout=LONG) as mnt:
        os.listdir(mnt)
        os.listdir(mnt / "d")
        requests.clear()
        os.rename(mnt / "d", mnt / "e")
        # The copies run in parallel; the 30 deletes are one DeleteObjects request.
        assert requests["CopyObject"] == 30
        assert requests["DeleteObjects"] == 1
        # One listing finds the values; the new directory's marker is one PUT, and the old
        # one goes in the same DeleteObjects: no HEAD or GET per file, nothing one by one.
        assert dict(requests) == {"ListObjectsV2": 1, "CopyObject": 30, "PutObject": 1, "DeleteObjects": 1}
        assert sorted(os.listdir(mnt / "e")) == sorted(f"f{number}" for number in range(30))
    assert store.keys(prefix="d/") == []
    assert len(store.keys(prefix="e/")) == 30


def test_a_write_back_directory_rename_lists_once(s3, tmp_path: pathlib.Path) -> None:
    store, requests = s3
    options = {"write_back": True, "journal_dir": str(tmp_path / "journal")}
    with mount_store(store, tmp_path / "mnt", attr_timeout=LONG, listing_timeout=LONG, **options) as mnt:
        (mnt / "d").mkdir()
        for number in range(30):
            (mnt / "d" / f"f{number}").write_bytes(b"x")
        wait_until_stored(mnt)
        requests.clear()
        os.rename(mnt / "d", mnt / "e")
        wait_until_stored(mnt)
        # One listing of the flat directory; the copies, then one DeleteObjects; the
        # markers: one PUT of the new one, one DELETE of the old one once it is empty.
        assert dict(requests) == {
            "ListObjectsV2": 1, "CopyObject": 30, "DeleteObjects": 1, "PutObject": 1, "DeleteObject": 1
        }  # fmt: skip
    assert store.keys(prefix="d/") == [] and not store.has_directory("d")
    assert len(store.keys(prefix="e/")) == 30


def test_renaming_a_tree_moves_its_markers_with_the_values(s3, tmp_path: pathlib.Path) -> None:
    store, requests = s3
    with mount_store(store, tmp_path / "mnt", attr_timeout=LONG, listing_timeout=LONG) as mnt:
        (mnt / "d" / "sub" / "deep").mkdir(parents=True)
        (mnt / "d" / "empty").mkdir()
        for name in ("top", "sub/one", "sub/deep/two"):
            (mnt / "d" / name).write_bytes(name.encode())
        requests.clear()
        os.rename(mnt / "d", mnt / "e")
        # Values and markers come from one listing; 3 copies and 4 new markers (e and
        # every directory below it) in parallel, then the 3 values and 4 old markers in
        # one DeleteObjects.
        assert dict(requests) == {"ListObjectsV2": 1, "CopyObject": 3, "PutObject": 4, "DeleteObjects": 1}
        assert sorted(os.listdir(mnt / "e")) == ["empty", "sub", "top"]
        assert (mnt / "e" / "sub" / "deep" / "two").read_bytes() == b"sub/deep/two"
        assert not (mnt / "d").exists()
    answer = store.client.list_objects_v2(Bucket=store.bucket_name, Prefix=store.prefix)
    objects = sorted(item["Key"][len(store.prefix) :] for item in answer.get("Contents", []))
    assert objects == ["e/", "e/empty/", "e/sub/", "e/sub/deep/", "e/sub/deep/two", "e/sub/one", "e/top"]
    assert store.get("e/sub/one") == b"sub/one"


def test_a_truncate_by_name_fetches_only_the_part_it_keeps(s3, tmp_path: pathlib.Path) -> None:
    store, requests = s3
    store.put("big", bytes(range(256)) * 4096)  # 1 MiB
    ranges: list[bytes | None] = []

    def note(request, **_: object) -> None:
        if request.method == "GET" and "list-type" not in request.url:
            ranges.append(request.headers.get("Range"))

    store.client.meta.events.register("before-send.s3", note)
    try:
        with mount_store(store, tmp_path / "mnt", attr_timeout=LONG, listing_timeout=LONG) as mnt:
            os.stat(mnt / "big")
            requests.clear()
            os.truncate(mnt / "big", 1000)
            assert requests["GetObject"] == 1 and requests["PutObject"] == 1
    finally:
        store.client.meta.events.unregister("before-send.s3", note)
    assert ranges == [b"bytes=0-999"]  # not the whole value
    assert store.get("big") == (bytes(range(256)) * 4)[:1000]
