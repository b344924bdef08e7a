"""Helpers for the mount tests: real FUSE mounts of each kind of store.

Every mount made here is unmounted when its test ends, also when the test fails
(``mounted`` unmounts in its ``finally``, lazily if something still holds a file).
A machine without FUSE fails the tests under ``CI=true`` and skips them elsewhere.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from kvfs.memory import DictStore
from kvfs.store import KeyValueStore

#: Store kinds every mount behaviour is tested on.
STORE_KINDS = ["dict", "fs", "sql"]
#: Store kinds on test servers, for the tests of whole programs and of interplay.
SERVER_KINDS = ["s3", "gcs", "azure"]


def require_fuse() -> None:
    """Fail (under CI=true) or skip the test unless real FUSE mounts work here."""
    problem = None
    if not os.path.exists("/dev/fuse"):
        problem = "/dev/fuse does not exist"
    elif shutil.which("fusermount3") is None:
        problem = "fusermount3 is missing (apt-get install fuse3)"
    else:
        try:
            from kvfs.mount.mounter import check_fuse

            check_fuse()
        except (OSError, ImportError) as error:
            problem = str(error)
    if problem is None:
        return
    if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
        pytest.fail(f"CI=true and FUSE is not usable: {problem}", pytrace=False)
    pytest.skip(f"FUSE is not usable: {problem}")


def make_store(kind: str, root: pathlib.Path) -> KeyValueStore:
    """A new empty store of *kind* keeping its data below *root* (where it keeps any)."""
    if kind == "dict":
        return DictStore()
    if kind == "fs":
        from kvfs.fs import FilesystemStore

        return FilesystemStore(root / "fs")
    if kind == "sql":
        pytest.importorskip("sqlalchemy")
        from kvfs.db.sql import SQLAlchemyStore

        return SQLAlchemyStore.from_url(f"sqlite:///{root / 'store.sqlite'}")
    if kind == "s3":
        pytest.importorskip("boto3")
        import uuid

        from servers import moto_url, require_server

        from kvfs.net.boto3store import Boto3Store, make_client

        require_server("moto")
        client = make_client(
            endpoint_url=moto_url(), region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
        )
        return Boto3Store("kvfs-mount-tests", f"{uuid.uuid4().hex}/", client=client, create_if_missing=True)
    if kind == "gcs":
        storage = pytest.importorskip("google.cloud.storage")
        import uuid

        from google.auth.credentials import AnonymousCredentials
        from servers import gcs_url, require_server

        from kvfs.net.gcstore import GoogleCloudStore

        require_server("gcs")
        # The emulator named as the client's endpoint: no process-wide STORAGE_EMULATOR_HOST.
        client = storage.Client(
            project="test", credentials=AnonymousCredentials(), client_options={"api_endpoint": gcs_url()}
        )
        return GoogleCloudStore(
            AnonymousCredentials(), "kvfs-mount-tests", project="test", prefix=f"{uuid.uuid4().hex}/", client=client
        )
    if kind == "azure":
        pytest.importorskip("azure.storage.blob")
        import uuid

        from servers import azure_connection_string, require_server

        from kvfs.net.azurestore import AzureBlockBlobStore

        require_server("azurite")
        return AzureBlockBlobStore(azure_connection_string(), "kvfs-mount-tests", prefix=f"{uuid.uuid4().hex}/")
    raise ValueError(kind)


@contextmanager
def mount_store(store: KeyValueStore, mountpoint: pathlib.Path, **options: Any) -> Iterator[pathlib.Path]:
    """Mount *store* at *mountpoint* (made if missing) with test-friendly cache lifetimes."""
    require_fuse()
    from kvfs.mount import mounted

    mountpoint.mkdir(parents=True, exist_ok=True)
    options.setdefault("attr_timeout", 0.2)
    options.setdefault("listing_timeout", 0.2)
    with mounted(store, str(mountpoint), **options) as path:
        yield pathlib.Path(path)


def wait_until_stored(mountpoint: pathlib.Path, timeout: float = 60) -> None:
    """Return once the write-back mount at *mountpoint* has nothing pending; fail after *timeout*."""
    from kvfs.mount.control import query

    deadline = time.monotonic() + timeout
    while query(str(mountpoint))["write_back"]["pending"]:
        assert time.monotonic() < deadline, "the write-back mount did not store its changes"
        time.sleep(0.01)


MountFactory = Callable[..., Any]


@pytest.fixture(params=STORE_KINDS + SERVER_KINDS)
def any_store(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Iterator[KeyValueStore]:
    """An empty store of each kind in turn, those on test servers included."""
    made = make_store(request.param, tmp_path)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture(params=STORE_KINDS)
def store(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Iterator[KeyValueStore]:
    """An empty store of each kind in turn."""
    made = make_store(request.param, tmp_path)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def mnt(store: KeyValueStore, tmp_path: pathlib.Path) -> Iterator[pathlib.Path]:
    """``store`` mounted at a fresh directory for the length of the test."""
    with mount_store(store, tmp_path / "mnt") as path:
        yield path


def run_python(code: str, *args: str) -> str:
    """Run *code* in a new Python process and return its output.

    Needed for mmap: a page fault happens with the GIL held, so a mount served by a
    thread of the faulting process could never answer it.
    """
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout
