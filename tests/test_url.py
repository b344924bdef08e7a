"""open_store: every scheme on a real server, decorators in URLs, bad URLs, masked secrets."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from servers import (
    gcs_url,
    moto_url,
    postgres_url,
    redis_url,
    require_server,
    seaweed_credentials,
    seaweed_url,
)

import kvfs
from kvfs import BackendError, ReadOnlyError
from kvfs.url import SCHEMES, mask_url, open_store, parse_store_url

ROOT = Path(__file__).resolve().parent.parent


def _round_trip(store: kvfs.KeyValueStore) -> None:
    store.put("dir/key", b"value")
    assert store.get("dir/key") == b"value"
    assert "dir/key" in store.keys("dir/")


# ---------------------------------------------------------------------- every scheme


def test_plain_path_and_file_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kvfs.fs import FilesystemStore

    monkeypatch.chdir(tmp_path)
    for url, root in (
        (str(tmp_path / "plain"), tmp_path / "plain"),
        (f"file://{tmp_path}/url", tmp_path / "url"),
        ("relative", tmp_path / "relative"),
        ("odd?name#dir", tmp_path / "odd?name#dir"),
    ):
        store = open_store(url)
        assert type(store) is FilesystemStore
        _round_trip(store)
        assert (root / "dir" / "key").read_bytes() == b"value"


def test_file_url_create_makes_a_missing_directory(tmp_path: Path) -> None:
    missing = tmp_path / "a" / "b"
    store = open_store(f"file://{missing}")
    with pytest.raises(BackendError, match="does not exist"):
        store.check()
    assert not missing.exists()  # opening and checking make nothing
    store = open_store(f"file://{missing}?create=1")
    assert missing.is_dir()
    assert store.check() is None
    with pytest.raises(ValueError, match="create"):
        open_store(f"file://{missing}?create=maybe")


def test_memory_url() -> None:
    from kvfs.memory import DictStore

    store = open_store("memory://")
    assert type(store) is DictStore
    _round_trip(store)
    assert open_store("memory://").keys() == []  # a new, empty store each time


def test_sqlite_url(tmp_path: Path) -> None:
    from kvfs.db.sql import SQLAlchemyStore

    with open_store(f"sqlite:///{tmp_path}/store.db?table=blobs") as store:
        assert type(store) is SQLAlchemyStore and store.table.name == "blobs"
        _round_trip(store)
    with open_store(f"sqlite:///{tmp_path}/store.db?table=blobs") as again:
        assert again.get("dir/key") == b"value"


def test_postgresql_urls() -> None:
    pytest.importorskip("psycopg")
    require_server("postgres")
    from kvfs.db.sql import SQLAlchemyStore

    table = f"url_{uuid.uuid4().hex[:10]}"
    plain = postgres_url().replace("postgresql+psycopg://", "postgresql://", 1)
    for url in (plain, postgres_url()):
        with open_store(f"{url}?table={table}") as store:
            assert type(store) is SQLAlchemyStore
            assert store.bind.dialect.driver == "psycopg"
            _round_trip(store)
            store.delete("dir/key")
    with open_store(f"{plain}?table={table}") as store:
        store.table.drop(store.bind)


def test_redis_url() -> None:
    pytest.importorskip("redis")
    require_server("redis")
    from kvfs.memory.redisstore import RedisStore

    url = urlunsplit(urlsplit(redis_url())._replace(path="/12"))
    with open_store(url) as store:
        assert type(store) is RedisStore
        assert store.redis.connection_pool.connection_kwargs["db"] == 12
        store.redis.flushdb()
        _round_trip(store)
        store.redis.flushdb()


@pytest.mark.parametrize("server", ["moto", "seaweed"])
def test_s3_url(server: str) -> None:
    pytest.importorskip("boto3")
    require_server(server)
    from kvfs.net.boto3store import Boto3Store

    if server == "moto":
        endpoint, (key, secret) = moto_url(), ("testing", "testing")
    else:
        endpoint, (key, secret) = seaweed_url(), seaweed_credentials()
    bucket = f"kvfs-url-{uuid.uuid4().hex[:10]}"
    url = (
        f"s3://{key}:{secret}@{bucket}/some/prefix?endpoint_url={endpoint}"
        "&region=us-east-1&addressing_style=path&create=1&max_component_length=255"
    )
    with open_store(url) as store:
        assert type(store) is Boto3Store
        assert store.bucket_name == bucket and store.prefix == "some/prefix/"
        assert store.max_component_length == 255
        _round_trip(store)
        names = [o["Key"] for o in store.client.list_objects_v2(Bucket=bucket)["Contents"]]
        assert names == ["some/prefix/dir/key"]
        assert secret not in repr(store) or secret == "testing"


def test_gs_url(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("google.cloud.storage")
    require_server("gcs")
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_url())
    from kvfs.net.gcstore import GoogleCloudStore

    bucket = f"kvfs-url-{uuid.uuid4().hex[:10]}"
    with open_store(f"gs://{bucket}/pre?project=test&create=1") as store:
        assert type(store) is GoogleCloudStore
        assert store.bucket_name == bucket and store.prefix == "pre/"
        _round_trip(store)
        assert store.bucket.get_blob("pre/dir/key") is not None


def test_every_scheme_is_registered() -> None:
    assert set(SCHEMES) >= {
        "file",
        "memory",
        "sqlite",
        "postgresql",
        "postgresql+psycopg",
        "redis",
        "rediss",
        "s3",
        "gs",
    }
    assert kvfs.open_store is open_store


# ---------------------------------------------------------------------- decorators


def test_decorators_from_parameters(monkeypatch: pytest.MonkeyPatch) -> None:
    from kvfs.crypt import HMACDecorator
    from kvfs.decorator import PrefixDecorator, ReadOnlyDecorator, URLEncodeKeysDecorator

    monkeypatch.setenv("KVFS_TEST_HMAC", "secret-key")
    store = open_store(
        "memory://?readonly=1&prefix=sub/&urlencode=1&hmac_secret_env=KVFS_TEST_HMAC"
    )
    layers = []
    while hasattr(store, "_dstore"):
        layers.append(type(store))
        store = store._dstore
    assert layers == [ReadOnlyDecorator, HMACDecorator, URLEncodeKeysDecorator, PrefixDecorator]


def test_prefix_and_readonly_behave(tmp_path: Path) -> None:
    writable = open_store(str(tmp_path), prefix="app/")
    writable.put("key", b"value")
    assert (tmp_path / "app" / "key").read_bytes() == b"value"
    readonly = open_store(f"file://{tmp_path}?readonly=1&prefix=app/")
    assert readonly.get("key") == b"value"
    with pytest.raises(ReadOnlyError):
        readonly.put("key", b"other")
    assert open_store(f"file://{tmp_path}?readonly").supports_writes is False


def test_hmac_secret_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("KVFS_TEST_HMAC", "secret-key")
    signed = open_store(f"file://{tmp_path}?hmac_secret_env=KVFS_TEST_HMAC")
    signed.put("key", b"value")
    assert (tmp_path / "key").read_bytes() != b"value"  # the HMAC is appended
    assert signed.get("key") == b"value"
    monkeypatch.delenv("KVFS_TEST_HMAC")
    with pytest.raises(ValueError, match="KVFS_TEST_HMAC"):
        open_store(f"file://{tmp_path}?hmac_secret_env=KVFS_TEST_HMAC")


# ---------------------------------------------------------------------- bad URLs and secrets


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("", "no store URL given"),
        ("ftp://host/dir", "unknown store URL scheme 'ftp://'"),
        ("s3://", "no bucket given"),
        ("memory://somewhere", "has no location"),
        ("file://otherhost/dir", "local path"),
        ("s3://bucket?endpoint=http://x", "unknown parameter"),
        ("gs://bucket?public=1", "unknown parameter"),
        ("s3://bucket?create=perhaps", "not a yes/no value"),
        ("s3://bucket?max_component_length=long", "not a whole number"),
        ("redis://host:99999/0", "not a valid URL"),
        ("memory://?prefix=a&prefix=b", "given twice"),
        ("memory://#fragment", "no #fragment"),
        ("c:stuff", "not a store URL"),
    ],
)
def test_bad_urls_raise_value_error_saying_what_was_expected(url: str, expected: str) -> None:
    with pytest.raises(ValueError) as caught:
        open_store(url)
    assert expected in str(caught.value)


def test_unknown_scheme_lists_the_known_ones() -> None:
    with pytest.raises(ValueError) as caught:
        open_store("mongodb://host/db")
    for example in ("memory://", "sqlite:///", "postgresql://", "redis://", "s3://", "gs://"):
        assert example in str(caught.value)


def test_secrets_are_masked() -> None:
    assert mask_url("s3://KEY:TOPSECRET@bucket/p") == "s3://KEY:***@bucket/p"
    assert "hunter2" not in mask_url("redis://:hunter2@host:1/0")
    masked = mask_url("memory://?aws_secret_access_key=abc&hmac_secret_env=NAME&token=t")
    assert "abc" not in masked and "=t" not in masked and "NAME" in masked
    for url in (
        "s3://KEY:TOPSECRET@bucket?unknown=1",
        "ftp://user:TOPSECRET@host/",
        "redis://:TOPSECRET@host:99999/0",
        "s3://KEY:TOPSECRET@bucket?public=maybe",
    ):
        with pytest.raises(ValueError) as caught:
            open_store(url)
        assert "TOPSECRET" not in str(caught.value)
        assert "***" in str(caught.value)
    assert "TOPSECRET" not in repr(parse_store_url("s3://KEY:TOPSECRET@bucket"))


def test_password_never_shows_in_a_database_store() -> None:
    pytest.importorskip("psycopg")
    require_server("postgres")
    parts = urlsplit(postgres_url())
    # The test server trusts local connections, so any password is accepted.
    url = urlunsplit(
        parts._replace(netloc=f"{parts.username}:TOPSECRET@{parts.hostname}:{parts.port}")
    )
    with open_store(f"{url}?table=url_masked") as store:
        assert "TOPSECRET" not in repr(store)
        store.table.drop(store.bind)
    with pytest.raises(BackendError) as caught:
        open_store(urlunsplit(parts._replace(netloc="kvfs:TOPSECRET@127.0.0.1:9")))
    assert "TOPSECRET" not in str(caught.value)


def test_wrong_s3_secret_in_url_is_not_in_the_error() -> None:
    pytest.importorskip("boto3")
    require_server("seaweed")
    key = seaweed_credentials()[0]
    store = open_store(
        f"s3://{key}:TOPSECRET@any-bucket?endpoint_url={seaweed_url()}&max_attempts=1"
    )
    with pytest.raises(BackendError) as caught:
        store.get("key")
    assert "TOPSECRET" not in str(caught.value) and "TOPSECRET" not in repr(store)


# ---------------------------------------------------------------------- missing extras


@pytest.mark.parametrize(
    ("blocked", "url", "extra"),
    [
        ("boto3", "s3://bucket", "s3"),
        ("redis", "redis://127.0.0.1:1/0", "redis"),
        ("sqlalchemy", "sqlite://", "sql"),
        ("psycopg", "postgresql://u@127.0.0.1:1/db", "postgresql"),
        ("google.cloud.storage", "gs://bucket", "gcs"),
    ],
)
def test_missing_client_library_names_the_extra(blocked: str, url: str, extra: str) -> None:
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules[{blocked!r}] = None  # as if the package were not installed
        from kvfs import MissingExtraError, open_store
        try:
            open_store({url!r})
        except MissingExtraError as error:
            print("MISSING", error.extra, error)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert f"MISSING {extra} " in result.stdout, result.stdout + result.stderr
    assert f"pip install 'kvfs[{extra}]'" in result.stdout
