"""AzureBlockBlobStore on Azurite: what is special to Azure (the contract is in test_contract_azure.py)."""

from __future__ import annotations

import errno
import hashlib
import io
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

blob = pytest.importorskip("azure.storage.blob")

from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from servers import AZURITE_KEY, azure_connection_string, require_server, start_service, stop_service  # noqa: E402

from kvfs import BackendError, open_store  # noqa: E402
from kvfs.net.azurestore import BLOCK_SIZE, AzureBlockBlobStore  # noqa: E402
from kvfs.testing import _hypothesis_settings, random_bytes, valid_keys  # noqa: E402

MiB = 1024 * 1024
CONTAINER = f"kvfs-test-{uuid.uuid4().hex[:12]}"


class Requests:
    """Counts the HTTP requests of a client, by method: ``[("GET", url), ...]``."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def __call__(self, request: Any) -> None:
        self.sent.append((request.http_request.method, request.http_request.url))

    def methods(self) -> list[str]:
        return [method for method, _ in self.sent]


def _store(requests: Requests | None = None, **options: Any) -> AzureBlockBlobStore:
    """A store below a fresh prefix of this run's container; *requests* sees every request."""
    require_server("azurite")
    if requests is not None:
        options["client"] = blob.BlobServiceClient.from_connection_string(
            azure_connection_string(), raw_request_hook=requests
        )
    return AzureBlockBlobStore(azure_connection_string(), CONTAINER, prefix=f"{uuid.uuid4().hex}/", **options)


@pytest.fixture
def store() -> Iterator[AzureBlockBlobStore]:
    with _store() as store:
        yield store


def _blob(store: AzureBlockBlobStore, key: str) -> Any:
    return store._container.get_blob_client(store.prefix + key)


# ---------------------------------------------------------------------- transfers


def test_large_put_file_goes_in_blocks(store: AzureBlockBlobStore) -> None:
    value = random_bytes(2 * BLOCK_SIZE + 123)
    store.put_file("large", io.BytesIO(value))
    committed, _ = _blob(store, "large").get_block_list("committed")
    assert [block.size for block in committed] == [BLOCK_SIZE, BLOCK_SIZE, 123]
    assert store.get("large") == value


def test_small_put_file_is_one_request() -> None:
    requests = Requests()
    with _store(requests) as store:
        requests.sent.clear()
        store.put_file("small", io.BytesIO(b"small"))
        assert requests.methods() == ["PUT"]
        assert store.get("small") == b"small"


def test_open_reads_on_and_seeks_with_ranges(store: AzureBlockBlobStore) -> None:
    value = random_bytes(3 * MiB)
    store.put("v", value)
    with store.open("v") as file:
        assert file.read(10) == value[:10]
        file.seek(2 * MiB)
        assert file.read(100) == value[2 * MiB : 2 * MiB + 100]
        file.seek(-5, io.SEEK_END)
        assert file.read() == value[-5:]


def test_a_value_replaced_while_open_is_not_mixed(store: AzureBlockBlobStore) -> None:
    store.put("v", b"a" * (6 * MiB))
    with store.open("v") as file:
        assert file.read(10) == b"a" * 10
        store.put("v", b"b" * (6 * MiB))
        file.seek(5 * MiB)  # a new ranged request, for the version opened only
        with pytest.raises(BackendError):
            file.read(10)


def test_stat_describe_and_copy_are_one_request_each() -> None:
    requests = Requests()
    with _store(requests) as store:
        store.put("d/e", b"12345")
        store.put("f", b"x")
        for call, expected in (
            (lambda: store.stat("d/e"), ["HEAD"]),
            (lambda: store.describe("d"), ["GET"]),
            (lambda: store.describe("f"), ["GET"]),
            (lambda: list(store.iter_level("")), ["GET"]),
        ):
            requests.sent.clear()
            call()
            assert requests.methods() == expected
        requests.sent.clear()
        store.copy("d/e", "copy")
        assert requests.methods() == ["PUT"], "the copy moved the value through the client"
        assert store.get("copy") == b"12345"


# ---------------------------------------------------------------------- checksums, URLs, errors


def test_checksum_keeps_the_md5_of_put_values() -> None:
    with _store(checksum=True) as store:
        store.put("k", b"checked")
        md5 = _blob(store, "k").get_blob_properties().content_settings.content_md5
        assert bytes(md5) == hashlib.md5(b"checked").digest()
        assert store.get("k") == b"checked"


def test_sas_url_fetches_the_value(store: AzureBlockBlobStore) -> None:
    store.put("some/key", b"shared")
    with urllib.request.urlopen(store.url_for("some/key"), timeout=10) as response:
        assert response.read() == b"shared"
    plain = str(_blob(store, "some/key").url)
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(plain, timeout=10)  # the container is private


def test_public_container_gives_plain_urls() -> None:
    require_server("azurite")
    container = f"kvfs-public-{uuid.uuid4().hex[:12]}"
    with AzureBlockBlobStore(azure_connection_string(), container, public=True) as store:
        store.put("k", b"public")
        url = store.url_for("k")
        assert "sig=" not in url
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.read() == b"public"


def test_missing_container_is_a_backend_error_not_a_missing_key() -> None:
    require_server("azurite")
    store = AzureBlockBlobStore(azure_connection_string(), f"absent-{uuid.uuid4().hex[:12]}", create_if_missing=False)
    for call in (lambda: store.get("k"), lambda: store.put("k", b"v"), store._check):
        with pytest.raises(BackendError) as caught:
            call()
        assert not isinstance(caught.value, KeyError)
        assert "ContainerNotFound" in str(caught.value)


def test_wrong_key_gives_a_clear_oserror_without_the_secret() -> None:
    require_server("azurite")
    wrong = "d3Jvbmc" + AZURITE_KEY[7:]
    conn_string = azure_connection_string().replace(AZURITE_KEY, wrong)
    with pytest.raises(BackendError) as caught:
        AzureBlockBlobStore(conn_string, CONTAINER)
    assert caught.value.errno == errno.EACCES
    assert wrong not in str(caught.value) and "Azure" in str(caught.value)


def test_simplekv_positional_constructor_and_attributes() -> None:
    require_server("azurite")
    store = AzureBlockBlobStore(azure_connection_string(), CONTAINER, False, True, 3, None, None, True)
    assert (store.container, store.public, store.create_if_missing, store.max_connections, store.checksum) == (
        CONTAINER,
        False,
        True,
        3,
        True,
    )
    assert store.conn_string == azure_connection_string()
    store._check()


def test_open_store_url(monkeypatch: pytest.MonkeyPatch) -> None:
    require_server("azurite")
    container = f"kvfs-url-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("KVFS_TEST_AZ", azure_connection_string())
    with open_store(f"azure://{container}/data?create=1&connection_string_env=KVFS_TEST_AZ") as store:
        store.put("k", b"v")
        assert store.prefix == "data/"
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING", raising=False)
    with pytest.raises(ValueError, match="AZURE_STORAGE_CONNECTION_STRING"):
        open_store(f"azure://{container}/data")
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azure_connection_string())
    with open_store(f"azure://{container}/data") as store:
        assert store.get("k") == b"v"


@_hypothesis_settings
@given(data=st.data())
def test_any_valid_key_without_backslash_round_trips(data: st.DataObject) -> None:
    # The contract's own version draws '\', which Azure keys cannot hold.
    with _store() as store:
        keys = valid_keys(store.max_key_length).filter(lambda key: "\\" not in key)
        key = data.draw(keys, label="key")
        assert store.put(key, key.encode()) == key
        assert store.get(key) == key.encode()
        assert store.keys() == [key]
        store.delete(key)
        assert key not in store


@pytest.mark.timeout(180)
def test_stopped_server_gives_backend_error_then_recovers() -> None:
    with _store() as store:
        store.put("survivor", b"value")
        stop_service("azurite")
        try:
            for call in (lambda: store.get("survivor"), store._check):
                with pytest.raises(BackendError, match="Azure"):
                    call()
        finally:
            start_service("azurite")
        # Azurite keeps its data on disk, under the services directory.
        assert store.get("survivor") == b"value"
