"""GoogleCloudStore against fake-gcs-server: the contract and GCS specifics."""

from __future__ import annotations

import io
import socket
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

storage = pytest.importorskip("google.cloud.storage")
requests = pytest.importorskip("requests")

from google.auth.credentials import AnonymousCredentials  # noqa: E402
from servers import gcs_url, require_server  # noqa: E402

from kvfs import BackendError, Metadata  # noqa: E402
from kvfs.net.gcstore import CHUNK_SIZE, READ_CHUNK_SIZE, GoogleCloudStore  # noqa: E402
from kvfs.testing import StoreContract, random_bytes  # noqa: E402

MiB = 1024 * 1024
BUCKET = f"kvfs-test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch) -> str:
    """The emulator's URL, checked to answer (the client would retry a refused connection
    for minutes) and set as ``STORAGE_EMULATOR_HOST``."""
    require_server("gcs")
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_url())
    return gcs_url()


class Traffic:
    """Requests a client sends, with the body sizes of the answers (a requests hook)."""

    def __init__(self) -> None:
        self.session = requests.Session()
        self.calls: list[tuple[str, str, int]] = []
        self.session.hooks["response"].append(self._record)

    def _record(self, response: Any, *_args: Any, **_kwargs: Any) -> None:
        request = response.request
        self.calls.append((request.method, request.url, len(response.content)))

    def client(self) -> Any:
        return storage.Client(
            project="test", credentials=AnonymousCredentials(), _http=self.session
        )


def _store(**options: Any) -> GoogleCloudStore:
    return GoogleCloudStore(
        AnonymousCredentials(), BUCKET, project="test", prefix=f"{uuid.uuid4().hex}/", **options
    )


class TestGoogleCloudContract(StoreContract):
    @pytest.fixture
    def store(self, emulator: str) -> Iterator[GoogleCloudStore]:
        with _store() as store:
            yield store

    @pytest.fixture
    def unavailable_store(self, emulator: str) -> Iterator[GoogleCloudStore]:
        with GoogleCloudStore(
            AnonymousCredentials(), f"kvfs-missing-{uuid.uuid4().hex[:12]}", create_if_missing=False, project="test"
        ) as store:
            yield store


@pytest.fixture
def store(emulator: str) -> Iterator[GoogleCloudStore]:
    with _store() as store:
        yield store


def test_ranged_download_transfers_only_the_range(emulator: str) -> None:
    traffic = Traffic()
    store = _store(client=traffic.client())
    value = random_bytes(4 * MiB, seed=5)
    store.put("value", value)
    traffic.calls.clear()
    assert store.get_range("value", 3 * MiB + 1, 1024) == value[3 * MiB + 1 : 3 * MiB + 1025]
    assert [size for _, _, size in traffic.calls] == [1024]
    assert store.get_range("value", 10 * MiB, 10) == b""


def test_large_values_are_uploaded_in_resumable_chunks(emulator: str) -> None:
    traffic = Traffic()
    store = _store(client=traffic.client())
    value = random_bytes(2 * CHUNK_SIZE + 1000, seed=6)
    store.put_file("big", io.BytesIO(value))
    uploads = [url for method, url, _ in traffic.calls if method == "PUT"]
    assert any("uploadType=resumable" in url for _, url, _ in traffic.calls)
    assert len(uploads) == 3  # two full chunks and the rest
    assert store.stat("big").size == len(value)
    traffic.calls.clear()
    store.put("small", b"one request")
    assert len(traffic.calls) == 1


def test_listing_has_sizes_and_prefixes(store: GoogleCloudStore) -> None:
    for key in ("a", "d/x", "d/y/z"):
        store.put(key, b"1234")
    store.put_directory("empty")
    level = {info.key: info for info in store.iter_level("")}
    assert set(level) == {"a", "d/", "empty/"}
    assert level["a"].size == 4 and level["a"].last_modified is not None
    assert {info.key for info in store.iter_level("d/")} == {"d/x", "d/y/"}


def test_copy_is_a_server_side_rewrite(emulator: str) -> None:
    traffic = Traffic()
    store = _store(client=traffic.client())
    store.put("source", b"value")
    traffic.calls.clear()
    store.copy("source", "dest")
    assert all("rewriteTo" in url for _, url, _ in traffic.calls), traffic.calls
    assert store.get("dest") == b"value"


def test_url_for_without_signing_credentials_is_the_media_url(store: GoogleCloudStore) -> None:
    store.put("some/key", b"by URL")
    url = store.url_for("some/key")
    assert url.startswith(store.client.api_endpoint) and "alt=media" in url
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == b"by URL"


def test_open_never_mixes_two_versions(store: GoogleCloudStore) -> None:
    first = random_bytes(READ_CHUNK_SIZE + MiB, seed=8)
    store.put("key", first)
    with store.open("key") as file:
        assert file.read(5) == first[:5]
        store.put("key", random_bytes(READ_CHUNK_SIZE + MiB, seed=9))
        file.seek(READ_CHUNK_SIZE + 10)  # beyond what was fetched: a new ranged request
        try:
            tail = file.read(100)
        except (KeyError, BackendError):
            return  # the old generation is gone: an error, not the new value's bytes
        assert tail == first[READ_CHUNK_SIZE + 10 : READ_CHUNK_SIZE + 110]


def test_missing_bucket_is_a_backend_error(emulator: str) -> None:
    store = GoogleCloudStore(
        AnonymousCredentials(),
        f"missing-{uuid.uuid4().hex[:8]}",
        create_if_missing=False,
        project="test",
    )
    with pytest.raises(BackendError):
        store.put("key", b"value")
    with pytest.raises(BackendError):
        store.keys()


@pytest.mark.timeout(120)
def test_dead_emulator_gives_backend_error_in_bounded_time(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
    with pytest.raises(BackendError) as caught:
        GoogleCloudStore(
            AnonymousCredentials(), "bucket", project="test", retry_timeout=2, timeout=2
        )
    assert isinstance(caught.value, OSError)


def test_refusals_and_timeouts_carry_their_errno() -> None:
    import errno

    import requests
    from google.api_core import exceptions as api_exceptions

    from kvfs.errors import BackendError
    from kvfs.net.gcstore import _errors

    for raised, expected in (
        (api_exceptions.Forbidden("no access"), errno.EACCES),
        (requests.ReadTimeout("slow"), errno.ETIMEDOUT),
        (api_exceptions.InternalServerError("oops"), None),
    ):
        with pytest.raises(BackendError) as caught, _errors("k"):
            raise raised
        assert caught.value.errno == expected


def test_metadata_is_rclone_custom_metadata(store: GoogleCloudStore) -> None:
    """Modes, owners and mtimes are custom metadata as rclone names them; the mtime in RFC 3339."""
    store.put("ours", b"x", metadata=Metadata(mode=0o640, uid=1000, gid=100, mtime=1_600_000_000.5))
    blob = store.bucket.get_blob(store.prefix + "ours")
    assert blob.metadata == {"mode": "33184", "uid": "1000", "gid": "100", "mtime": "2020-09-13T12:26:40.5Z"}
    blob = store.bucket.blob(store.prefix + "theirs")
    blob.metadata = {"mtime": "2021-01-02T03:04:05.123456789Z", "mode": "33188"}
    blob.upload_from_string(b"y")
    info = store.stat("theirs")
    assert info.mode == 0o644 and abs(info.last_modified - 1_609_556_645.123457) < 1e-5  # type: ignore[operator]
    (listed,) = [entry for entry in store.iter_level("") if entry.key == "theirs"]
    assert listed == info  # the listing carries the metadata

def test_writer_sends_chunks_while_written_and_stores_at_close(emulator: str) -> None:
    traffic = Traffic()
    store = _store(client=traffic.client())
    value = random_bytes(2 * CHUNK_SIZE + 1000, seed=8)
    writer = store.open_writer("streamed")
    for start in range(0, len(value), MiB):
        writer.write(value[start : start + MiB])
    chunks = [url for method, url, _ in traffic.calls if method == "PUT"]
    assert len(chunks) == 2, "the full chunks were not sent while written"
    assert "streamed" not in store
    writer.close()
    assert store.get("streamed") == value


def test_writer_dropped_or_aborted_stores_nothing(store: GoogleCloudStore) -> None:
    import gc

    value = random_bytes(CHUNK_SIZE + 1000, seed=9)
    writer = store.open_writer("aborted")
    writer.write(value)
    writer.abort()
    dropped = store.open_writer("dropped")
    dropped.write(value)
    del dropped, writer
    gc.collect()
    assert store.keys() == []
