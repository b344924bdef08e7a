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
from collections.abc import Iterator

import pytest
from mount_support import make_store, mount_store

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
