"""The store contract (:class:`kvfs.testing.StoreContract`) against FsspecStore.

Over fsspec's in-memory filesystem, opened by URL as users do (``fsspec+memory://``),
over a local directory (``fsspec+file://``), the two fsspec filesystems that need no
server, and over a filesystem with no special case in the store (a ``dir`` filesystem).
"""

from __future__ import annotations

import uuid

import fsspec
import pytest

from kvfs import open_store
from kvfs.net.fsspecstore import FsspecStore
from kvfs.testing import StoreContract


class TestFsspecMemoryStore(StoreContract):
    streams_large_values = False  # fsspec's memory filesystem holds each value whole

    @pytest.fixture
    def store(self):
        # The memory filesystem is one per process: each test gets its own directory.
        root = f"contract-{uuid.uuid4().hex}"
        with open_store(f"fsspec+memory://{root}") as store:
            yield store
        memory = fsspec.filesystem("memory")
        if memory.exists(f"/{root}"):
            memory.rm(f"/{root}", recursive=True)


class TestFsspecIndependentMemoryStore(StoreContract):
    streams_large_values = False

    @pytest.fixture
    def store(self):
        return FsspecStore(fsspec.filesystem("memory", global_store=False, skip_instance_cache=True))


class TestFsspecLocalStore(StoreContract):
    @pytest.fixture
    def store(self, store_dir):
        with open_store(f"fsspec+file://{store_dir}") as store:
            yield store


class TestFsspecGenericStore(StoreContract):
    """A filesystem kvfs has no special case for: fsspec's DirFileSystem over memory."""

    streams_large_values = False

    @pytest.fixture
    def store(self):
        memory = fsspec.filesystem("memory", global_store=False, skip_instance_cache=True)
        memory.mkdir("/base")
        return FsspecStore(fsspec.filesystem("dir", path="/base", fs=memory))
