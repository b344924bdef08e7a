"""kvfs as an fsspec filesystem (:mod:`kvfs.fsspec`), read by pandas and by fsspec's own suite."""

from __future__ import annotations

import gc
import io
import os
import pickle

import fsspec
import pandas as pd
import pytest
from fsspec.spec import AbstractBufferedFile, AbstractFileSystem
from fsspec.tests import abstract

from kvfs import open_store
from kvfs.fs import FilesystemStore
from kvfs.fsspec import KvfsFileSystem
from kvfs.memory import DictStore
from kvfs.net.fsspecstore import FsspecStore

from cli_support import invoke
from mount_support import mount_store


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {"n": range(2000), "name": [f"row {i}" for i in range(2000)], "x": [i / 7 for i in range(2000)]}
    )


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path}/blobs.db"


# ---------------------------------------------------------------------- pandas


def test_pandas_reads_parquet_from_sqlite_store(sqlite_url, tmp_path):
    frame = _frame()
    local = tmp_path / "x.parquet"
    frame.to_parquet(local)
    store = fsspec.filesystem("kvfs", store=sqlite_url).store
    store.put_file("data/x.parquet", str(local))

    read = pd.read_parquet("kvfs://data/x.parquet", storage_options={"store": sqlite_url})
    pd.testing.assert_frame_equal(read, frame)
    columns = pd.read_parquet(
        "kvfs://data/x.parquet", columns=["x"], storage_options={"store": sqlite_url}
    )
    pd.testing.assert_frame_equal(columns, frame[["x"]])


def test_pandas_reads_and_writes_csv_on_sqlite_store(sqlite_url):
    frame = _frame()
    options = {"store": sqlite_url}
    frame.to_csv("kvfs://data/x.csv", index=False, storage_options=options)
    pd.testing.assert_frame_equal(pd.read_csv("kvfs://data/x.csv", storage_options=options), frame)
    store = KvfsFileSystem(store=sqlite_url, skip_instance_cache=True).store
    assert store.keys() == ["data/x.csv"]
    assert store.get("data/x.csv").startswith(b"n,name,x\n0,row 0,0.0\n")


def test_pandas_writes_parquet_through_a_store_object():
    store = DictStore()
    frame = _frame()
    frame.to_parquet("kvfs://out/x.parquet", storage_options={"store": store})
    assert store.keys() == ["out/x.parquet"]
    assert store.get("out/x.parquet").startswith(b"PAR1")
    read = pd.read_parquet("kvfs://out/x.parquet", storage_options={"store": store})
    pd.testing.assert_frame_equal(read, frame)


def test_dask_reads_csv_files_by_glob(sqlite_url):
    import dask.dataframe as dd

    options = {"store": sqlite_url}
    for part in range(3):
        frame = pd.DataFrame({"n": range(part * 10, part * 10 + 10)})
        frame.to_csv(f"kvfs://csv/part{part}.csv", index=False, storage_options=options)
    data = dd.read_csv("kvfs://csv/*.csv", storage_options=options)
    assert data.npartitions == 3
    assert int(data.n.sum().compute(scheduler="sync")) == sum(range(30))


def test_xarray_writes_and_opens_zarr(sqlite_url):
    import numpy as np
    import xarray as xr

    options = {"store": sqlite_url}
    data = xr.Dataset({"t": (("x", "y"), np.arange(12.0).reshape(3, 4))}, coords={"x": [1, 2, 3]})
    data.to_zarr("kvfs://z/data.zarr", storage_options=options, mode="w", consolidated=False)
    opened = xr.open_zarr("kvfs://z/data.zarr", storage_options=options, consolidated=False)
    xr.testing.assert_equal(opened.load(), data)


def test_missing_file_is_file_not_found():
    with pytest.raises(FileNotFoundError):
        pd.read_csv("kvfs://nothing.csv", storage_options={"store": DictStore()})


# ---------------------------------------------------------------------- the filesystem


@pytest.fixture
def fs() -> KvfsFileSystem:
    return KvfsFileSystem(store=DictStore())


def test_protocol_is_registered():
    assert fsspec.get_filesystem_class("kvfs") is KvfsFileSystem


def test_store_is_required():
    with pytest.raises(TypeError, match="needs a store"):
        KvfsFileSystem()
    with pytest.raises(TypeError, match="options are for a store URL"):
        KvfsFileSystem(store=DictStore(), readonly=True)


def test_store_url_options_reach_open_store(sqlite_url):
    fs = KvfsFileSystem(store=sqlite_url, readonly=True, skip_instance_cache=True)
    with pytest.raises(OSError):
        fs.pipe_file("a", b"x")
    with pytest.raises(OSError, match="read-only"):
        fs.open("a", "wb")


def test_two_store_objects_get_two_filesystems():
    first, second = KvfsFileSystem(store=DictStore()), KvfsFileSystem(store=DictStore())
    first.pipe_file("a", b"1")
    assert first is not second
    assert not second.exists("a")


def test_listing_info_and_ranges(fs):
    store = fs.store
    store.put("d/a", b"0123456789")
    store.put("d/e/f", b"deep")
    store.put("top", b"t")
    assert fs.ls("", detail=False) == ["d", "top"]
    assert fs.ls("kvfs://d", detail=False) == ["d/a", "d/e"]
    assert fs.ls("d/a", detail=False) == ["d/a"]
    assert fs.info("d") == {"name": "d", "size": 0, "type": "directory"}
    assert fs.info("d/a")["size"] == 10 and fs.info("d/a")["type"] == "file"
    assert fs.find("d") == ["d/a", "d/e/f"]
    assert fs.cat_file("d/a", 2, 5) == b"234"
    assert fs.cat_file("d/a", -3) == b"789"
    assert fs.cat_file("d/a", 1, -7) == b"12"
    with fs.open("d/a") as file:
        file.seek(4)
        assert file.read(3) == b"456"
    with pytest.raises(FileNotFoundError):
        fs.info("nothing")
    with pytest.raises(FileNotFoundError):
        fs.ls("nothing")
    with pytest.raises(FileNotFoundError):
        fs.cat_file("nothing")
    with pytest.raises(IsADirectoryError):
        fs.open("d")
    # A path that cannot be a key does not exist; writing it says why.
    assert not fs.exists("a b")
    with pytest.raises(ValueError):
        fs.open("a b", "wb")


def test_written_file_appears_whole_at_close(fs):
    with fs.open("w/file", "wb", block_size=5) as file:
        file.write(b"hello ")
        file.write(b"world")
        assert not fs.exists("w/file"), "a file being written is visible"
    assert fs.store.get("w/file") == b"hello world"


def test_failed_write_stores_nothing(fs):
    fs.pipe_file("w/file", b"old")
    with pytest.raises(RuntimeError):
        with fs.open("w/file", "wb", block_size=5) as file:
            file.write(b"half of a new value")
            raise RuntimeError("the writer fails")
    assert fs.store.get("w/file") == b"old"


def test_transaction_stores_at_its_end(fs):
    with fs.transaction:
        with fs.open("t/a", "wb") as file:
            file.write(b"a")
        assert not fs.exists("t/a")
    assert fs.cat_file("t/a") == b"a"


def test_append_and_exclusive(fs):
    fs.pipe_file("a", b"one")
    with fs.open("a", "ab") as file:
        file.write(b"two")
    assert fs.cat_file("a") == b"onetwo"
    with pytest.raises(FileExistsError):
        fs.open("a", "xb")


def test_staging_store_writes_through_staging_file(store_dir):
    fs = KvfsFileSystem(store=FilesystemStore(store_dir))
    with fs.open("s/x", "wb") as file:
        file.write(b"staged")
    assert fs.cat_file("s/x") == b"staged"
    assert fs.store.keys() == ["s/x"]


def test_move_copy_and_remove(fs):
    fs.pipe_file("a", b"value")
    fs.mv("a", "b")
    assert fs.store.keys() == ["b"]
    fs.cp("b", "c/d")
    assert fs.cat_file("c/d") == b"value"
    fs.rm("c", recursive=True)
    assert sorted(fs.store.keys()) == ["b"]
    fs.rm("b")
    assert fs.store.keys() == []
    with pytest.raises(FileNotFoundError):
        fs.rm("b")


def test_empty_directories_where_the_store_keeps_them(fs):
    fs.makedirs("e/f")
    assert fs.isdir("e/f")
    assert fs.ls("e", detail=False) == ["e/f"]
    fs.rmdir("e/f")
    assert not fs.exists("e/f")


def test_pickles_by_url(sqlite_url):
    fs = KvfsFileSystem(store=sqlite_url, skip_instance_cache=True)
    fs.pipe_file("p", b"pickled")
    copy = pickle.loads(pickle.dumps(fs))
    assert copy.cat_file("p") == b"pickled"
    assert copy.store_url == sqlite_url


# ---------------------------------------------------------------------- fsspec's own suite
#
# fsspec.tests.abstract checks copy, get, put, open and pipe against a filesystem. Run
# over a DictStore (empty directories kept as markers, a key and keys below it may
# coexist) and a FilesystemStore (real directories, staging files). All of it applies.


class KvfsFixtures(abstract.AbstractFixtures):
    @pytest.fixture(params=["dict", "filesystem"])
    def fs(self, request, store_dir):
        store = DictStore() if request.param == "dict" else FilesystemStore(store_dir)
        return KvfsFileSystem(store=store)

    @pytest.fixture
    def fs_join(self):
        return lambda *parts: "/".join(parts)

    @pytest.fixture
    def fs_path(self):
        return "root"

    @pytest.fixture
    def supports_empty_directories(self, fs):
        return fs.store.supports_directories


class TestFsspecCopy(abstract.AbstractCopyTests, KvfsFixtures):
    pass


class TestFsspecGet(abstract.AbstractGetTests, KvfsFixtures):
    pass


class TestFsspecPut(abstract.AbstractPutTests, KvfsFixtures):
    pass


class TestFsspecOpen(abstract.AbstractOpenTests, KvfsFixtures):
    pass


class TestFsspecPipe(abstract.AbstractPipeTests, KvfsFixtures):
    pass


# ---------------------------------------------------------------------- fsspec filesystems as stores


def test_fsspec_store_over_local_directory(tmp_path):
    store = FsspecStore("file", str(tmp_path / "root"))
    store.put("a/b", b"value")
    assert (tmp_path / "root" / "a" / "b").read_bytes() == b"value"
    assert (store.fast_stat, store.fast_ranges, store.fast_level_listing) == (True, True, True)
    flags = (store.is_remote, store.supports_directories, store.allows_key_and_prefix)
    assert flags == (False, True, False)
    assert store.get_range("a/b", 1, 3) == b"alu"
    store.move("a/b", "c")
    assert sorted(p.name for p in (tmp_path / "root").iterdir()) == ["a", "c"]


def test_fsspec_store_url_options_are_storage_options():
    store = open_store("fsspec+memory://opts?global_store=false&skip_instance_cache=true")
    other = open_store("fsspec+memory://opts?global_store=false&skip_instance_cache=true")
    store.put("k", b"v")
    assert "k" not in other, "global_store=false did not reach the memory filesystem as False"
    assert open_store("fsspec+memory://opts?readonly=1").supports_writes is False


def test_fsspec_store_errors():
    with pytest.raises(ValueError, match="Protocol not known"):
        open_store("fsspec+no-such-protocol://x")
    with pytest.raises(ValueError, match="name the filesystem"):
        open_store("fsspec+://x")
    with pytest.raises(KeyError):
        open_store("fsspec+memory://errors").get("missing")
    with pytest.raises(TypeError):
        FsspecStore(fsspec.filesystem("memory"), "", anon=True)


def test_fsspec_store_pickles():
    store = FsspecStore(fsspec.filesystem("memory"), "/pickled")
    store.put("k", b"v")
    copy = pickle.loads(pickle.dumps(store))
    assert copy.get("k") == b"v"


def test_fsspec_store_with_the_command_line(tmp_path):
    source = tmp_path / "source"
    (source / "d").mkdir(parents=True)
    (source / "d" / "f.txt").write_bytes(b"via fsspec")
    target = f"fsspec+file://{tmp_path}/target"
    result = invoke(["cp", str(source), target])
    assert result.exit_code == 0, result.output
    assert invoke(["cat", target, "d/f.txt"]).stdout_bytes == b"via fsspec"


def test_fsspec_store_mounts(tmp_path):
    store = open_store(f"fsspec+file://{tmp_path}/root")
    store.put("d/f", b"mounted")
    with mount_store(store, tmp_path / "mnt") as mountpoint:
        assert (mountpoint / "d" / "f").read_bytes() == b"mounted"
        (mountpoint / "d" / "g").write_bytes(b"written")
        assert sorted(os.listdir(mountpoint / "d")) == ["f", "g"]
    assert store.get("d/g") == b"written"


class _UploadingFile(AbstractBufferedFile):
    """A file that sends parts as it goes and stores them at its commit, as s3fs's do."""

    def _initiate_upload(self):
        self.parts = []

    def _upload_chunk(self, final=False):
        self.parts.append(self.buffer.getvalue())
        if final and self.autocommit:
            self.commit()
        return True

    def commit(self):
        self.fs.files[self.path] = b"".join(self.parts)

    def discard(self):
        self.parts = []


class _UploadingFileSystem(AbstractFileSystem):
    protocol = "kvfs-test-uploading"
    cachable = False

    def __init__(self):
        super().__init__()
        self.files = {}

    def _open(self, path, mode="rb", **kwargs):
        return _UploadingFile(self, path, mode, **kwargs)

    def info(self, path, **kwargs):
        path = self._strip_protocol(path)
        if path in self.files:
            return {"name": path, "size": len(self.files[path]), "type": "file"}
        raise FileNotFoundError(path)


class _FailingSource(io.RawIOBase):
    def __init__(self, good: int):
        self.left = good

    def readable(self):
        return True

    def read(self, size=-1):
        if self.left <= 0:
            raise OSError("the source fails")
        self.left -= size
        return b"x" * size


def test_fsspec_store_drops_a_failed_upload():
    fs = _UploadingFileSystem()
    store = FsspecStore(fs, "bucket")
    store.put_file("whole", io.BytesIO(b"y" * (7 * 1024 * 1024)))
    assert fs.files == {"bucket/whole": b"y" * (7 * 1024 * 1024)}
    with pytest.raises(OSError, match="the source fails"):
        store.put_file("broken", _FailingSource(good=7 * 1024 * 1024))
    gc.collect()  # an abandoned file must not store itself when collected
    assert list(fs.files) == ["bucket/whole"]
