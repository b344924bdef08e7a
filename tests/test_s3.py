"""Boto3Store on moto and on SeaweedFS (a real object store): the contract and S3 specifics."""

from __future__ import annotations

import io
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

boto3 = pytest.importorskip("boto3")

from servers import (  # noqa: E402
    moto_url,
    require_server,
    seaweed_credentials,
    seaweed_url,
    start_service,
    stop_service,
)

from kvfs import BackendError, InvalidKeyError, Metadata  # noqa: E402
from kvfs.crypt import HMACDecorator  # noqa: E402
from kvfs.decorator import PrefixDecorator, ReadOnlyDecorator  # noqa: E402
from kvfs.net.boto3store import (  # noqa: E402
    MAX_POOL_CONNECTIONS,
    MULTIPART_THRESHOLD,
    PART_SIZE,
    Boto3Store,
    make_client,
)
from kvfs.store import run_parallel  # noqa: E402
from kvfs.testing import ShortReadFile, StoreContract, random_bytes  # noqa: E402

MiB = 1024 * 1024
MOTO_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
# One bucket per server and test run; each test works below a fresh prefix in it.
BUCKET = f"kvfs-test-{uuid.uuid4().hex[:12]}"


_CLIENTS: dict[str, Any] = {}


def _client(server: str, fresh: bool = True) -> Any:
    """An S3 client of *server*; a shared one unless *fresh* (making one takes a while)."""
    require_server(server)
    if not fresh and server in _CLIENTS:
        return _CLIENTS[server]
    _CLIENTS[server] = _new_client(server)
    return _CLIENTS[server]


def _new_client(server: str) -> Any:
    if server == "moto":
        return make_client(endpoint_url=moto_url(), region_name="us-east-1", **MOTO_CREDENTIALS)
    key, secret = seaweed_credentials()
    return make_client(
        endpoint_url=seaweed_url(),
        region_name="us-east-1",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
    )


def _store(server: str, fresh_client: bool = True, **options: Any) -> Boto3Store:
    """A store below a fresh prefix of the shared bucket (created if missing, e.g. after a restart).

    Tests that watch the client's requests need a *fresh_client* of their own.
    """
    if server == "seaweed":
        options.setdefault("max_component_length", 255)
        options.setdefault("forbidden_key_characters", "\\")
    prefix = f"{uuid.uuid4().hex}/"
    client = _client(server, fresh=fresh_client)
    return Boto3Store(BUCKET, prefix, client=client, create_if_missing=True, **options)


class TestMotoContract(StoreContract):
    @pytest.fixture
    def store(self) -> Iterator[Boto3Store]:
        yield _store("moto", fresh_client=False)

    @pytest.fixture
    def unavailable_store(self) -> Iterator[Boto3Store]:
        yield Boto3Store(f"kvfs-missing-{uuid.uuid4().hex[:12]}", client=_client("moto", fresh=False))


class TestSeaweedFSContract(StoreContract):
    @pytest.fixture
    def store(self) -> Iterator[Boto3Store]:
        yield _store("seaweed", fresh_client=False)

    @pytest.fixture
    def unavailable_store(self) -> Iterator[Boto3Store]:
        # SeaweedFS checks signatures: the shared bucket exists, the credentials are wrong.
        _store("seaweed", fresh_client=False)  # makes sure the bucket exists
        require_server("seaweed")
        client = make_client(
            endpoint_url=seaweed_url(), region_name="us-east-1", aws_access_key_id="nobody", aws_secret_access_key="wrong"
        )
        with Boto3Store(BUCKET, client=client) as store:
            yield store

    def test_every_key_character_round_trips(self, store: Boto3Store) -> None:
        # SeaweedFS turns '\' into '/': the store refuses such keys instead of mixing them up.
        with pytest.raises(InvalidKeyError, match="cannot hold"):
            store.put("a\\b", b"value")
        for char in "!\"#$%&'()+,-.<=>?@[]^_`{}~09azAZ":
            store.put(f"k{char}", char.encode())
            assert store.get(f"k{char}") == char.encode()

    @pytest.mark.skip(reason="SeaweedFS cannot hold '\\' in keys; the moto run covers every key")
    def test_any_valid_key_round_trips(self) -> None:  # type: ignore[override]
        pass


@pytest.fixture(params=["moto", "seaweed"])
def server(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class Requests:
    """S3 operations a client sends, and the bytes its GetObject responses announce."""

    def __init__(self, client: Any) -> None:
        self.operations: list[str] = []
        self.ranges: list[str | None] = []
        self.bytes_received = 0
        client.meta.events.register("before-call.s3", self._before)
        client.meta.events.register("after-call.s3.GetObject", self._after_get)

    def _before(self, model: Any, params: Any, **_: Any) -> None:
        self.operations.append(model.name)
        if model.name == "GetObject":
            self.ranges.append(params.get("headers", {}).get("Range"))

    def _after_get(self, http_response: Any, **_: Any) -> None:
        self.bytes_received += int(http_response.headers.get("content-length", 0))


class Chunks(io.RawIOBase):
    """A long stream made on the fly, so the test never holds the value either."""

    def __init__(self, size: int) -> None:
        self.remaining = size
        self.block = random_bytes(MiB, seed=7)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        count = min(len(buffer), self.remaining, len(self.block))
        buffer[:count] = self.block[:count]
        self.remaining -= count
        return count


# ---------------------------------------------------------------------- transfers


@pytest.mark.timeout(300)
def test_large_put_goes_in_parts(server: str) -> None:
    store = _store(server)
    requests = Requests(store.client)
    size = 64 * MiB
    store.put_file("big", Chunks(size))
    assert requests.operations.count("UploadPart") == size // PART_SIZE
    assert "CreateMultipartUpload" in requests.operations
    assert "PutObject" not in requests.operations
    head = store.client.head_object(Bucket=BUCKET, Key=store.prefix + "big")
    assert head["ContentLength"] == size
    assert head["ETag"].strip('"').endswith(f"-{size // PART_SIZE}")

    # A 1 KiB range of it transfers 1 KiB, not the object.
    requests.bytes_received = 0
    part = store.get_range("big", 5 * MiB + 3, 1024)
    assert part == (random_bytes(MiB, seed=7) * 6)[5 * MiB + 3 : 5 * MiB + 3 + 1024]
    assert requests.bytes_received == 1024
    assert requests.ranges[-1] == f"bytes={5 * MiB + 3}-{5 * MiB + 3 + 1023}"
    store.delete("big")


def test_small_put_is_one_request(server: str) -> None:
    store = _store(server)
    requests = Requests(store.client)
    store.put("small", b"x" * (MULTIPART_THRESHOLD - 1))
    assert requests.operations == ["PutObject"]


def test_short_reads_become_full_parts(server: str) -> None:
    """A pipe-like file returning small reads still gives parts of PART_SIZE."""
    store = _store(server)
    requests = Requests(store.client)
    value = random_bytes(PART_SIZE + MiB, seed=3)
    store.put_file("piped", ShortReadFile(value, max_read=64 * 1024))
    assert requests.operations.count("UploadPart") == 2
    assert store.get("piped") == value


def test_open_reads_one_stream_and_seeks_with_ranges(server: str) -> None:
    store = _store(server)
    value = random_bytes(3 * MiB, seed=4)
    store.put("value", value)
    requests = Requests(store.client)
    with store.open("value") as file:
        assert file.read() == value
    assert requests.operations == ["GetObject"] and requests.ranges == [None]
    with store.open("value") as file:
        file.seek(2 * MiB)
        assert file.read(10) == value[2 * MiB : 2 * MiB + 10]
    assert requests.ranges[-1] == f"bytes={2 * MiB}-"


def test_stat_and_contains_are_head_requests(server: str) -> None:
    store = _store(server)
    store.put("key", b"12345")
    requests = Requests(store.client)
    assert store.stat("key").size == 5
    assert store.stat("key").last_modified is not None
    assert "key" in store and "nope" not in store
    assert set(requests.operations) == {"HeadObject"}


def test_listing_is_one_delimiter_request_with_sizes(server: str) -> None:
    store = _store(server)
    for key in ("a", "d/x", "d/y", "e/f/g"):
        store.put(key, b"123")
    store.put_directory("empty")
    requests = Requests(store.client)
    level = {info.key: info for info in store.iter_level("")}
    assert requests.operations == ["ListObjectsV2"]
    assert set(level) == {"a", "d/", "e/", "empty/"}
    assert level["a"].size == 3 and level["a"].last_modified is not None
    assert level["d/"].is_prefix and level["empty/"].is_prefix


def test_describe_is_one_listing_request(server: str) -> None:
    store = _store(server)
    for key in ("a", "a.txt", "b/c", "b0"):
        store.put(key, b"123")
    store.put_directory("m")
    requests = Requests(store.client)
    assert store.describe("a").size == 3
    assert store.describe("b").is_prefix and store.describe("m").is_prefix
    assert store.describe("nothing") is None
    assert requests.operations == ["ListObjectsV2"] * 4


@pytest.mark.parametrize(
    "decorate",
    [
        lambda store: PrefixDecorator("p/", store),
        lambda store: ReadOnlyDecorator(PrefixDecorator("p/", store)),
        lambda store: HMACDecorator(b"secret", PrefixDecorator("p/", store)),
    ],
    ids=["prefix", "read-only", "hmac"],
)
def test_decorated_describe_costs_what_the_bare_store_pays(decorate: Any) -> None:
    store = _store("moto")
    decorated = decorate(store)
    for key in ("p/a", "p/b/c"):
        store.put(key, b"123")
    requests = Requests(store.client)
    assert store.describe("p/a") is not None and store.describe("p/b").is_prefix
    bare = list(requests.operations)
    requests.operations.clear()
    assert decorated.describe("a") is not None and decorated.describe("b").is_prefix
    assert requests.operations == bare == ["ListObjectsV2"] * 2


def test_copy_runs_on_the_server(server: str) -> None:
    store = _store(server)
    store.put("source", b"value")
    requests = Requests(store.client)
    store.copy("source", "dest")
    assert requests.operations == ["CopyObject"]  # no HEAD first, no GET or PUT
    assert store.get("dest") == b"value"


def test_presigned_url_fetches_the_value(server: str) -> None:
    store = _store(server, url_valid_time=60)
    store.put("some/key", b"fetched by URL")
    url = store.url_for("some/key")
    assert "Signature" in url or "X-Amz-Signature" in url
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == b"fetched by URL"


def test_bucket_resource_as_in_simplekv() -> None:
    client = _client("moto")
    client.create_bucket(Bucket=BUCKET)
    resource = boto3.resource(
        "s3", endpoint_url=moto_url(), region_name="us-east-1", **MOTO_CREDENTIALS
    )
    store = Boto3Store(resource.Bucket(BUCKET), prefix="resource/")
    store.put("key", b"value")
    assert resource.Object(BUCKET, "resource/key").get()["Body"].read() == b"value"


# ---------------------------------------------------------------------- failures


def test_missing_bucket_is_a_backend_error_not_a_missing_key() -> None:
    store = Boto3Store(f"no-such-bucket-{uuid.uuid4().hex[:8]}", client=_client("moto"))
    with pytest.raises(BackendError, match="NoSuchBucket"):
        store.get("key")
    with pytest.raises(BackendError):
        store.put("key", b"value")


@pytest.mark.timeout(120)
def test_wrong_credentials_give_a_clear_oserror() -> None:
    require_server("seaweed")
    secret = "wrong-secret-" + uuid.uuid4().hex
    store = Boto3Store(
        BUCKET,
        endpoint_url=seaweed_url(),
        region_name="us-east-1",
        aws_access_key_id=seaweed_credentials()[0],
        aws_secret_access_key=secret,
        max_attempts=1,
    )
    for call in (lambda: store.put("key", b"v"), lambda: store.get("key"), lambda: store.keys()):
        with pytest.raises(OSError) as caught:
            call()
        assert isinstance(caught.value, BackendError)
        message = str(caught.value)
        assert "SignatureDoesNotMatch" in message or "AccessDenied" in message, message
        assert secret not in message and secret not in repr(store)


@pytest.mark.timeout(180)
def test_stopped_server_gives_backend_error_then_recovers() -> None:
    store = _store("moto")
    store.client.close()
    store = Boto3Store(
        BUCKET,
        store.prefix,
        endpoint_url=moto_url(),
        region_name="us-east-1",
        connect_timeout=2,
        read_timeout=5,
        max_attempts=2,
        **MOTO_CREDENTIALS,
    )
    store.put("key", b"value")
    stop_service("moto")
    try:
        with pytest.raises(BackendError) as caught:
            store.get("key")
        assert "S3" in str(caught.value)
    finally:
        start_service("moto")
    # moto keeps nothing across a restart: the bucket is gone, the client works again.
    with pytest.raises(BackendError, match="NoSuchBucket"):
        store.get("key")


def test_delete_many_is_one_request_per_thousand_keys(server: str) -> None:
    store = _store(server)
    keys = [f"d/{number}" for number in range(1500)]
    for key in keys[:20]:
        store.put(key, b"x")
    requests = Requests(store.client)
    store.delete_many(keys)
    assert sorted(requests.operations) == ["DeleteObjects", "DeleteObjects"]
    assert store.keys(prefix="d/") == []


def test_parallel_requests_keep_their_connections(caplog: pytest.LogCaptureFixture) -> None:
    # SeaweedFS keeps connections alive (moto closes each after its request). As many
    # requests at once as a write-back mount sends (its workers, a rename's copies,
    # streamed parts): each connection goes back to the pool, none is thrown away.
    store = _store("seaweed")
    store.put("value", b"x")
    at_once = 24
    assert MAX_POOL_CONNECTIONS >= at_once
    with caplog.at_level("WARNING", logger="urllib3.connectionpool"):
        for _ in range(3):
            run_parallel(lambda number: store.stat("value"), list(range(at_once * 4)), at_once)
    assert not [record for record in caplog.records if "pool is full" in record.getMessage()]


def test_a_server_that_stops_answering_is_etimedout() -> None:
    import errno
    import socket

    from kvfs.errors import BackendError
    from kvfs.net.boto3store import make_client

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts connections (in the kernel) and never answers
    try:
        host, port = silent.getsockname()
        client = make_client(
            endpoint_url=f"http://{host}:{port}", region_name="us-east-1", read_timeout=0.5, max_attempts=1,
            aws_access_key_id="k", aws_secret_access_key="s",
        )
        store = Boto3Store("bucket", client=client)
        with pytest.raises(BackendError) as raised:
            store.get("key")
        assert raised.value.errno == errno.ETIMEDOUT
    finally:
        silent.close()


def test_metadata_is_s3fs_and_rclone_user_metadata() -> None:
    """Modes, owners and mtimes are the user metadata s3fs and rclone write and read."""
    store = _store("moto")
    client = store.client
    name = store.prefix + "by-s3fs"
    # As s3fs writes a file: st_mode in decimal with the type bits, the mtime in seconds.
    client.put_object(
        Bucket=store.bucket_name,
        Key=name,
        Body=b"x",
        Metadata={"mode": "33256", "uid": "1000", "gid": "100", "mtime": "1700000000.25"},
    )
    info = store.stat("by-s3fs")
    assert (info.mode, info.uid, info.gid, info.last_modified) == (0o750, 1000, 100, 1_700_000_000.25)
    file, opened = store.open_with_info("by-s3fs")
    file.close()
    assert opened == info  # the GET's answer says what the HEAD does
    store.put_file("ours", io.BytesIO(b"y" * 10), metadata=Metadata(mode=0o640, uid=0, gid=0, mtime=1_600_000_000))
    written = client.head_object(Bucket=store.bucket_name, Key=store.prefix + "ours")["Metadata"]
    assert written == {"mode": "33184", "uid": "0", "gid": "0", "mtime": "1600000000"}
    store.set_metadata("ours", mode=0o600)  # a copy onto itself: the rest stays
    written = client.head_object(Bucket=store.bucket_name, Key=store.prefix + "ours")["Metadata"]
    assert written == {"mode": "33152", "uid": "0", "gid": "0", "mtime": "1600000000"}
    assert store.get("ours") == b"y" * 10


def test_a_multipart_upload_carries_the_metadata() -> None:
    store = _store("moto")
    big = b"z" * (MULTIPART_THRESHOLD + 1)
    store.put_file("big", io.BytesIO(big), metadata=Metadata(mode=0o604, mtime=1_650_000_000.5))
    info = store.stat("big")
    assert (info.mode, info.size, info.last_modified) == (0o604, len(big), 1_650_000_000.5)

# ---------------------------------------------------------------------- streamed writes


def _uploads(store: Boto3Store, key: str) -> list[dict[str, Any]]:
    """The multipart uploads in progress for *key*."""
    answer = store.client.list_multipart_uploads(Bucket=BUCKET, Prefix=store.prefix + key)
    return [upload for upload in answer.get("Uploads", []) if upload["Key"] == store.prefix + key]


@pytest.mark.timeout(300)
def test_writer_sends_parts_before_the_close() -> None:
    store = _store("moto")
    store.part_size = 5 * MiB  # S3's least
    store.stream_concurrency = 2
    value = random_bytes(40 * MiB, seed=11)
    writer = store.open_writer("big")
    for start in range(0, len(value), MiB):
        writer.write(value[start : start + MiB])
    # Eight parts were handed over, at most two in flight: the others are in the bucket.
    (upload,) = _uploads(store, "big")
    parts = store.client.list_parts(Bucket=BUCKET, Key=upload["Key"], UploadId=upload["UploadId"])["Parts"]
    assert len(parts) >= 6
    assert "big" not in store, "the object appeared before the close"
    assert writer.memory == 3 * 5 * MiB
    writer.close()
    head = store.client.head_object(Bucket=BUCKET, Key=store.prefix + "big")
    assert head["ETag"].strip('"').endswith("-8")
    assert store.get("big") == value
    assert _uploads(store, "big") == []


def test_a_streamed_upload_carries_the_metadata() -> None:
    store = _store("moto")
    store.part_size = 5 * MiB
    with store.open_writer("streamed", metadata=Metadata(mode=0o600, uid=7, gid=8, mtime=1_650_000_000.5)) as writer:
        for _ in range(11):
            writer.write(b"s" * MiB)
    head = store.client.head_object(Bucket=BUCKET, Key=store.prefix + "streamed")
    assert head["ETag"].strip('"').endswith("-3")  # a multipart upload
    info = store.stat("streamed")
    assert (info.mode, info.uid, info.gid, info.last_modified, info.size) == (0o600, 7, 8, 1_650_000_000.5, 11 * MiB)


def test_a_streamed_upload_keeps_a_checksum_of_its_parts_as_boto3_does() -> None:
    # CRC-32 parts named in the completion (s3transfer's way): the object keeps a checksum,
    # and the server computes none of the whole object at the completion.
    store = _store("moto")
    store.part_size = 5 * MiB
    sent: list[tuple[str, dict[str, Any]]] = []
    store.client.meta.events.register(
        "before-parameter-build.s3", lambda params, event_name, **_: sent.append((event_name.rsplit(".", 1)[-1], params))
    )
    with store.open_writer("checked") as writer:
        for _ in range(11):
            writer.write(b"c" * MiB)
    kinds = {name: params for name, params in sent}
    assert kinds["CreateMultipartUpload"]["ChecksumAlgorithm"] == "CRC32"
    assert all("ChecksumCRC32" in part for part in kinds["CompleteMultipartUpload"]["MultipartUpload"]["Parts"])
    head = store.client.head_object(Bucket=BUCKET, Key=store.prefix + "checked", ChecksumMode="ENABLED")
    assert head.get("ChecksumCRC32")
    assert store.get("checked") == b"c" * (11 * MiB)


def test_copies_of_multipart_values_read_back_whole() -> None:
    # A copy is one object: its checksum is made anew, not the parts' one kept (which a
    # GET validating checksums would refuse).
    store = _store("moto")
    store.part_size = 5 * MiB
    with store.open_writer("streamed") as writer:
        writer.write(b"w" * (11 * MiB))
    store.put_file("uploaded", io.BytesIO(b"u" * (MULTIPART_THRESHOLD + 1)))
    for key, value in (("streamed", b"w" * (11 * MiB)), ("uploaded", b"u" * (MULTIPART_THRESHOLD + 1))):
        store.copy(key, key + "-copy")
        store.set_metadata(key, mode=0o600)
        assert store.get(key + "-copy") == value
        assert store.get(key) == value


def test_writer_of_a_small_value_is_one_put(server: str) -> None:
    store = _store(server)
    requests = Requests(store.client)
    with store.open_writer("small") as writer:
        writer.write(b"x" * (PART_SIZE - 1))
    assert requests.operations == ["PutObject"]
    assert store.get("small") == b"x" * (PART_SIZE - 1)


def test_writer_aborted_leaves_no_object_and_no_upload() -> None:
    store = _store("moto")
    store.put("k", b"old")
    writer = store.open_writer("k")
    writer.write(random_bytes(2 * PART_SIZE + MiB, seed=12))
    assert _uploads(store, "k")
    writer.abort()
    assert _uploads(store, "k") == []
    assert store.get("k") == b"old"


def test_writer_failing_part_aborts_and_stores_nothing() -> None:
    store = _store("moto")
    writer = store.open_writer("k")
    writer.write(random_bytes(PART_SIZE + 1, seed=13))
    (upload,) = _uploads(store, "k")
    # The server forgets the upload: the next parts and the completion fail.
    store.client.abort_multipart_upload(Bucket=BUCKET, Key=upload["Key"], UploadId=upload["UploadId"])
    with pytest.raises(BackendError):  # moto answers such a part with a 500
        for _ in range(4):
            writer.write(random_bytes(PART_SIZE, seed=14))
        writer.close()
    assert writer.closed
    assert "k" not in store
    assert _uploads(store, "k") == []


def test_decorators_stream_only_what_they_do_not_change() -> None:
    store = _store("moto")
    assert store.streams_writes and PrefixDecorator("p/", store).streams_writes
    signed = HMACDecorator(b"secret", store)
    assert not signed.streams_writes  # its writer stores through its own put_file
    value = random_bytes(PART_SIZE + MiB, seed=15)
    with signed.open_writer("signed") as writer:
        writer.write(value)
    assert signed.get("signed") == value
    assert store.get("signed") != value  # the MAC went with it
    with PrefixDecorator("p/", store).open_writer("k") as writer:
        writer.write(value)
    assert store.get("p/k") == value


def test_a_listing_of_many_pages_has_every_key_once(server: str) -> None:
    store = _store(server)
    keys = sorted(f"d/{number:04d}" for number in range(1010))  # two pages of ListObjectsV2
    run_parallel(lambda key: store.put(key, b"x"), keys, 16)
    requests = Requests(store.client)
    assert list(store.iter_keys("d/")) == keys
    assert [info.key for info in store.iter_level("d/")] == keys
    assert requests.operations == ["ListObjectsV2"] * 4
