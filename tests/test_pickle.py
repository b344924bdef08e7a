"""Stores travel to other processes: pickle, and a ``multiprocessing`` pool using each store.

The contract suite (:mod:`kvfs.testing`) checks that every store round-trips through
pickle in this process; here each store is sent to a pool of 4 fresh (spawned) worker
processes that put and read 1,000 keys, against the real servers.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from servers import azure_connection_string, gcs_url, memcached_url, moto_url, postgres_url, redis_url, require_server

import kvfs
from kvfs.cache import CacheDecorator
from kvfs.crypt import HMACDecorator
from kvfs.decorator import PrefixDecorator, ReadOnlyDecorator, URLEncodeKeysDecorator
from kvfs.errors import ReadOnlyError
from kvfs.fs import FilesystemStore
from kvfs.idgen import HashDecorator, UUIDDecorator
from kvfs.memory import DictStore
from kvfs.store import KeyValueStore

KEYS = 1000
WORKERS = 4
MOTO_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
BUCKET = f"kvfs-pickle-{uuid.uuid4().hex[:12]}"


def _work(task: tuple[KeyValueStore, list[str]]) -> list[str]:
    """In a worker: put each key, read it back, and return what was read (as text)."""
    store, keys = task
    try:
        for key in keys:
            store.put(key, key.encode())
        return [store.get(key).decode() for key in keys]
    finally:
        store.close()


def _read(task: tuple[KeyValueStore, list[str]]) -> list[bytes]:
    store, keys = task
    return [store.get(key) for key in keys]


@pytest.fixture(scope="module")
def pool() -> Iterator[Any]:
    # Spawned, not forked: each worker starts from nothing, as on another machine, and
    # gets the store only from its pickle. The emulator's address reaches the GCS client
    # made in a worker through the environment, as it would in production.
    context = multiprocessing.get_context("spawn")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STORAGE_EMULATOR_HOST", gcs_url())
        workers = context.Pool(WORKERS)  # the workers start now, with this environment
    with workers:
        yield workers


def _s3(**options: Any) -> KeyValueStore:
    from kvfs.net.boto3store import Boto3Store, make_client

    require_server("moto")
    client = make_client(endpoint_url=moto_url(), region_name="us-east-1", **MOTO_CREDENTIALS)
    return Boto3Store(BUCKET, f"{uuid.uuid4().hex}/", client=client, create_if_missing=True)


def _s3_made_client() -> KeyValueStore:
    from kvfs.net.boto3store import Boto3Store

    require_server("moto")
    return Boto3Store(
        BUCKET, f"{uuid.uuid4().hex}/", endpoint_url=moto_url(), region_name="us-east-1",
        create_if_missing=True, **MOTO_CREDENTIALS,
    )


def _gcs() -> KeyValueStore:
    from google.auth.credentials import AnonymousCredentials

    from kvfs.net.gcstore import GoogleCloudStore

    require_server("gcs")
    return GoogleCloudStore(AnonymousCredentials(), BUCKET, project="test", prefix=f"{uuid.uuid4().hex}/")


def _gcs_client() -> KeyValueStore:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    from kvfs.net.gcstore import GoogleCloudStore

    require_server("gcs")
    client = storage.Client(
        project="test", credentials=AnonymousCredentials(), client_options={"api_endpoint": gcs_url()}
    )
    return GoogleCloudStore(None, BUCKET, client=client, prefix=f"{uuid.uuid4().hex}/")


def _redis() -> KeyValueStore:
    import redis

    from kvfs.memory.redisstore import RedisStore

    require_server("redis")
    return PrefixDecorator(f"{uuid.uuid4().hex}/", RedisStore(redis.Redis.from_url(redis_url())))


def _sqlite(tmp_path: Any) -> KeyValueStore:
    from kvfs.db.sql import SQLAlchemyStore

    return SQLAlchemyStore.from_url(f"sqlite:///{tmp_path}/store.db")


def _postgres_engine() -> KeyValueStore:
    import sqlalchemy as sa

    from kvfs.db.sql import SQLAlchemyStore, create_engine

    require_server("postgres")
    return SQLAlchemyStore(create_engine(postgres_url()), sa.MetaData(), f"kvfs_pickle_{uuid.uuid4().hex[:12]}")


def _azure() -> KeyValueStore:
    from kvfs.net.azurestore import AzureBlockBlobStore

    require_server("azurite")
    return AzureBlockBlobStore(azure_connection_string(), f"pickle{uuid.uuid4().hex[:12]}", create_if_missing=True)


def _memcached() -> KeyValueStore:
    from kvfs.memory.memcachestore import MemcacheStore

    require_server("memcached")
    return PrefixDecorator(f"{uuid.uuid4().hex[:12]}/", MemcacheStore.from_url(memcached_url()))


# Each maker gets pytest's tmp_path; every store it makes is shared with the workers
# except the in-memory ones, whose workers get a copy each.
STORES: dict[str, Callable[[Any], KeyValueStore]] = {
    "memory": lambda tmp: DictStore(),
    "filesystem": lambda tmp: FilesystemStore(tmp / "files"),
    "sqlite": _sqlite,
    "postgresql": lambda tmp: _postgres_engine(),
    "redis": lambda tmp: _redis(),
    "s3-client": lambda tmp: _s3(),
    "s3-options": lambda tmp: _s3_made_client(),
    "gcs": lambda tmp: _gcs(),
    "gcs-client": lambda tmp: _gcs_client(),
    "azure": lambda tmp: _azure(),
    "memcached": lambda tmp: _memcached(),
    "prefix-urlencode": lambda tmp: PrefixDecorator("p/", URLEncodeKeysDecorator(FilesystemStore(tmp / "f"))),
    "hmac-cache": lambda tmp: HMACDecorator(b"secret", CacheDecorator(DictStore(), FilesystemStore(tmp / "f"))),
    "hash": lambda tmp: HashDecorator(FilesystemStore(tmp / "f")),
    "uuid": lambda tmp: UUIDDecorator(FilesystemStore(tmp / "f")),
    "url-sqlite": lambda tmp: kvfs.open_store(f"sqlite:///{tmp}/url.db?prefix=a/"),
    "url-redis": lambda tmp: _require("redis", f"{redis_url()}?prefix={uuid.uuid4().hex}/&urlencode=1"),
    "url-s3": lambda tmp: _require(
        "moto",
        f"s3://testing:testing@{BUCKET}/{uuid.uuid4().hex}?endpoint_url={moto_url()}&region=us-east-1&create=1",
    ),
}
IN_PROCESS = {"memory"}


def _require(server: str, url: str) -> KeyValueStore:
    require_server(server)
    return kvfs.open_store(url)


@pytest.fixture(params=sorted(STORES))
def store(request: pytest.FixtureRequest, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[KeyValueStore]:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_url())  # as the workers have it
    made = STORES[request.param](tmp_path)
    try:
        yield made
    finally:
        if request.param == "postgresql":
            made.table.drop(made.bind)  # type: ignore[attr-defined]
        made.close()


def test_a_pool_of_workers_puts_and_reads_1000_keys(
    store: KeyValueStore, pool: Any, request: pytest.FixtureRequest
) -> None:
    store.put("before", b"there before the pickle")
    keys = [f"w/{i:04d}" for i in range(KEYS)]
    tasks = [(store, keys[worker::WORKERS]) for worker in range(WORKERS)]
    results = pool.map(_work, tasks)
    assert [sorted(result) for result in results] == [sorted(part) for _, part in tasks]
    assert pool.map(_read, [(store, ["before"])] * WORKERS) == [[b"there before the pickle"]] * WORKERS
    if request.node.callspec.params["store"] in IN_PROCESS:
        assert list(store.iter_keys("w/")) == []  # each worker wrote to its own copy
    elif not store.supports_listing:  # memcached: ask for each key
        assert [store.get(key) for key in keys] == [key.encode() for key in keys]
    else:
        assert sorted(store.iter_keys("w/")) == keys
        assert store.get(keys[-1]) == keys[-1].encode()


# ---------------------------------------------------------------------- what travels


def test_dict_store_pickles_its_content_and_times() -> None:
    store = DictStore()
    store.put("a", b"1")
    copy = pickle.loads(pickle.dumps(store))
    assert copy.get("a") == b"1" and copy.stat("a").last_modified == store.stat("a").last_modified
    copy.put("b", b"2")
    assert "b" not in store  # a copy, not a view


def test_read_only_decorator_travels_read_only(tmp_path: Any) -> None:
    inner = FilesystemStore(tmp_path)
    inner.put("k", b"v")
    copy = pickle.loads(pickle.dumps(ReadOnlyDecorator(inner)))
    assert copy.get("k") == b"v"
    with pytest.raises(ReadOnlyError):
        copy.put("k", b"new")
    with pytest.raises(AttributeError):  # what simplekv code catches
        copy.delete("k")


def test_filesystem_store_travels_with_its_absolute_root(tmp_path: Any, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    store = FilesystemStore("relative")
    store.put("k", b"v")
    monkeypatch.chdir("/")
    assert pickle.loads(pickle.dumps(store)).get("k") == b"v"


def test_a_url_store_travels_as_its_url_and_secrets_stay_in_the_environment(
    tmp_path: Any, monkeypatch: Any
) -> None:
    monkeypatch.setenv("KVFS_TEST_SECRET", "not in the pickle")
    store = kvfs.open_store(f"sqlite:///{tmp_path}/s.db?hmac_secret_env=KVFS_TEST_SECRET&prefix=p/")
    store.put("k", b"v")
    pickled = pickle.dumps(store)
    assert b"not in the pickle" not in pickled and b"KVFS_TEST_SECRET" in pickled
    assert pickle.loads(pickled).get("k") == b"v"


def test_a_memory_url_store_carries_its_content() -> None:
    store = kvfs.open_store("memory://?prefix=p/")
    store.put("k", b"v")
    assert pickle.loads(pickle.dumps(store)).get("k") == b"v"


def test_an_in_memory_sqlite_store_cannot_travel_and_says_why() -> None:
    from kvfs.db.sql import SQLAlchemyStore

    with SQLAlchemyStore.from_url("sqlite://") as store:
        with pytest.raises(TypeError, match="in-memory SQLite"):
            pickle.dumps(store)


def test_an_s3_client_travels_as_its_configuration() -> None:
    store = _s3()
    store.put("k", b"v")
    copy = pickle.loads(pickle.dumps(store))
    assert copy.client is not store.client
    assert copy.client.meta.endpoint_url == store.client.meta.endpoint_url
    assert copy.client.meta.region_name == "us-east-1"
    assert copy.get("k") == b"v"

