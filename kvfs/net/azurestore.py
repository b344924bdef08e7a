"""A store in an Azure Blob Storage container: :class:`AzureBlockBlobStore`."""

from __future__ import annotations

import datetime
import errno
import hashlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

from .._extras import require
from ..errors import BackendError, InvalidKeyError, KeyNotFoundError
from ..keys import MAX_KEY_LENGTH
from ..mixins import CopyMixin, UrlMixin
from ..store import DIRECTORY_MARKER_SUFFIX, KeyInfo, KeyValueStore
from . import BucketStoreCapabilities, UploadSource, open_streamed

_blob = require("azure.storage.blob", "azure", "azure-storage-blob")
from azure.core import MatchConditions  # noqa: E402  (after the check)
from azure.core.exceptions import (  # noqa: E402
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
)

MiB = 1024 * 1024

#: Values up to this size are uploaded in one request; larger ones, and every streamed
#: ``put_file``, in blocks of :data:`BLOCK_SIZE`.
SINGLE_PUT_SIZE = 8 * MiB
BLOCK_SIZE = 8 * MiB
#: Reads ask for at most this much per request (also the limit of a checked download).
GET_CHUNK_SIZE = 4 * MiB
#: Lifetime of a SAS URL when ``url_valid_time`` is 0, in seconds.
DEFAULT_URL_VALID_TIME = 3600
#: The first pause before a failed request is retried, in seconds (then 2.5 and 4.5).
RETRY_BACKOFF = 0.5
#: How often a pending server-side copy is polled, in seconds.
COPY_POLL_INTERVAL = 0.2

_NOT_FOUND = {"BlobNotFound", "CannotVerifyCopySource"}
_ACCESS_DENIED = {
    "AuthenticationFailed",
    "AuthorizationFailure",
    "AuthorizationPermissionMismatch",
    "InsufficientAccountPermissions",
}


def _message(error: AzureError) -> str:
    code = _code(error)
    # The first line is the server's sentence; the rest repeats request details.
    text = (getattr(error, "reason", None) or str(error.message or error)).splitlines()[0]
    return f"Azure {code}: {text}" if code else f"Azure: {text}"


def _code(error: AzureError) -> str:
    code = getattr(error, "error_code", None) or ""
    return str(getattr(code, "value", code))  # a StorageErrorCode, or the server's string


@contextmanager
def _errors(key: str | None = None) -> Iterator[None]:
    """Map client errors: a missing *key* to KeyNotFoundError, the rest to BackendError."""
    try:
        yield
    except AzureError as error:
        code = _code(error)
        status = getattr(error, "status_code", None)
        if key is not None and (code in _NOT_FOUND or (status == 404 and not code)):
            raise KeyNotFoundError(key) from None
        if isinstance(error, ClientAuthenticationError) or code in _ACCESS_DENIED or status == 403:
            raise BackendError(errno.EACCES, _message(error)) from error
        raise BackendError(_message(error)) from error


class AzureBlockBlobStore(BucketStoreCapabilities, UrlMixin, CopyMixin, KeyValueStore):
    """Keeps each value in a block blob of an Azure container, named *prefix* + key.

    simplekv's constructor: *conn_string* is the storage account's connection string,
    *container* the container's name, created at construction when
    *create_if_missing* (with public read access for its blobs when *public*).
    *max_connections* requests upload one value's blocks in parallel; *max_block_size*
    and *max_single_put_size* tune uploads (defaults :data:`BLOCK_SIZE` and
    :data:`SINGLE_PUT_SIZE`). With *checksum*, every request carries an MD5 of its
    bytes, which the server (on writes) or the client (on reads) checks, and values
    written by ``put`` keep their MD5 as ``Content-MD5``. *socket_timeout* (seconds)
    bounds each connection attempt and read; without it, 20 and 60 seconds. A failed
    request is retried three times within about eight seconds.

    Beyond simplekv, keyword-only: *prefix* is prepended to every blob name as it is
    (give it a trailing ``/`` to make it a directory); *url_valid_time* is the lifetime
    of the SAS URLs of :meth:`url_for` (an hour when 0; a plain URL when *public*);
    *client* is a ready ``BlobServiceClient`` to use instead of *conn_string*.

    Values are streamed both ways: ``put_file`` uploads in blocks, ``open`` reads in
    chunks of :data:`GET_CHUNK_SIZE` and starts a ranged request after a seek,
    ``get_range`` asks for the bytes needed. ``stat`` and ``in`` are one properties
    request, :meth:`describe` and :meth:`iter_level` one delimiter listing with sizes
    and times, :meth:`copy` runs on the server.

    Keys cannot hold ``\\``, which the service turns into ``/`` (so ``a\\b`` would
    overwrite ``a/b``): they raise :class:`~kvfs.errors.InvalidKeyError`. A missing blob
    raises :class:`~kvfs.errors.KeyNotFoundError`; anything else the service or the
    network does wrong (wrong key, no container, timeouts) raises
    :class:`~kvfs.errors.BackendError` with the service's message, never a secret.
    """

    def __init__(
        self,
        conn_string: str | None = None,
        container: str | None = None,
        public: bool = False,
        create_if_missing: bool = True,
        max_connections: int = 2,
        max_block_size: int | None = None,
        max_single_put_size: int | None = None,
        checksum: bool = False,
        socket_timeout: float | None = None,
        *,
        prefix: str = "",
        url_valid_time: int = 0,
        client: Any = None,
    ) -> None:
        if not container:
            raise ValueError("AzureBlockBlobStore needs a container name")
        if client is None and not conn_string:
            raise ValueError("AzureBlockBlobStore needs a connection string (or a client)")
        # The constructor's arguments, kept as given (simplekv's attribute names).
        self.conn_string = conn_string
        self.container = container
        self.public = public
        self.create_if_missing = create_if_missing
        self.max_connections = max_connections
        self.max_block_size = max_block_size
        self.max_single_put_size = max_single_put_size
        self.checksum = checksum
        self.socket_timeout = socket_timeout
        self.prefix = prefix.strip().lstrip("/")
        self.url_valid_time = url_valid_time
        # Blob names are limited to 1024 characters, the prefix included.
        self.max_key_length = MAX_KEY_LENGTH - len(self.prefix.encode())  # type: ignore[misc]
        self._owns_client = client is None
        if client is None:
            with _errors():
                client = _blob.BlobServiceClient.from_connection_string(
                    conn_string,
                    max_single_put_size=max_single_put_size or SINGLE_PUT_SIZE,
                    max_block_size=max_block_size or BLOCK_SIZE,
                    max_single_get_size=GET_CHUNK_SIZE,
                    max_chunk_get_size=GET_CHUNK_SIZE,
                    connection_timeout=socket_timeout or 20,
                    read_timeout=socket_timeout or 60,
                    # Three retries within seconds: the SDK's default backoff (15 s and
                    # up) keeps a call to a dead server waiting for over a minute.
                    retry_policy=_blob.ExponentialRetry(
                        initial_backoff=RETRY_BACKOFF, increment_base=2, retry_total=3, random_jitter_range=0.5
                    ),
                )
        self.client = client
        self._block_size = max_block_size or BLOCK_SIZE
        self._container = client.get_container_client(container)
        if create_if_missing:
            self._create_container()

    def __repr__(self) -> str:
        name = type(self).__name__
        return f"{name}({self.container!r}, prefix={self.prefix!r}, account={self.client.account_name!r})"

    def close(self) -> None:
        if self._owns_client:
            self.client.close()

    def _create_container(self) -> None:
        with _errors():
            try:
                self._container.create_container(public_access="blob" if self.public else None)
            except ResourceExistsError:
                pass

    def _check(self) -> None:
        """Raise :class:`~kvfs.errors.BackendError` unless the container can be reached."""
        with _errors():
            self._container.get_container_properties()

    def _name(self, key: str) -> str:
        return self.prefix + key

    def _check_valid_key(self, key: object) -> None:
        super()._check_valid_key(key)
        if "\\" in key:  # type: ignore[operator]
            # The service turns '\' into '/': a\b would overwrite a/b.
            raise InvalidKeyError(f"{key!r} is not a valid key for Azure Blob Storage: it cannot hold '\\'")

    def _blob(self, key: str) -> Any:
        return self._container.get_blob_client(self._name(key))

    # ------------------------------------------------------------------ hooks

    def _delete(self, key: str) -> None:
        with _errors():
            try:
                self._blob(key).delete_blob()
            except HttpResponseError as error:
                if _code(error) != "BlobNotFound":
                    raise

    def _iter_keys(self, prefix: str) -> Iterator[str]:
        cut = len(self.prefix)
        with _errors():
            for blob in self._container.list_blobs(name_starts_with=self._name(prefix)):
                yield blob.name[cut:]

    def _walk_pages(self, prefix: str, **options: Any) -> Iterator[Any]:
        listing = self._container.walk_blobs(
            name_starts_with=self._name(prefix), delimiter=DIRECTORY_MARKER_SUFFIX, **options
        )
        with _errors():
            for page in listing.by_page():
                yield list(page)

    def _info(self, key: str, blob: Any) -> KeyInfo:
        return KeyInfo(key, blob.size, blob.last_modified.timestamp())

    def _iter_level(self, prefix: str, delimiter: str) -> Iterator[KeyInfo]:
        if delimiter != DIRECTORY_MARKER_SUFFIX:
            yield from super()._iter_level(prefix, delimiter)
            return
        cut = len(self.prefix)
        for page in self._walk_pages(prefix):
            for item in page:
                name = item.name[cut:]
                if isinstance(item, _blob.BlobPrefix):
                    yield KeyInfo(name, is_prefix=True)
                elif name != prefix:  # the directory's own marker
                    yield self._info(name, item)

    def _describe(self, key: str) -> KeyInfo | None:
        # One listing of the names that start with key: the value key itself, and key/
        # (keys below it, or its marker) as a prefix; nothing past key/ matters.
        cut, directory = len(self.prefix), key + DIRECTORY_MARKER_SUFFIX
        found = None
        for page in self._walk_pages(key):
            names = []
            for item in page:
                name = item.name[cut:]
                names.append(name)
                if isinstance(item, _blob.BlobPrefix):
                    if name == directory:
                        return KeyInfo(directory, is_prefix=True)
                elif name == key:
                    found = self._info(key, item)
            if names and max(names) > directory:
                break
        return found

    def _properties(self, key: str) -> Any:
        with _errors(key):
            return self._blob(key).get_blob_properties()

    def _has_key(self, key: str) -> bool:
        try:
            self._properties(key)
        except KeyNotFoundError:
            return False
        return True

    def _stat(self, key: str) -> KeyInfo:
        return self._info(key, self._properties(key))

    def _download(self, key: str, **options: Any) -> Any:
        with _errors(key):
            return self._blob(key).download_blob(validate_content=self.checksum, **options)

    def _get(self, key: str) -> bytes:
        downloader = self._download(key, max_concurrency=self.max_connections)
        with _errors(key):
            data = downloader.readall()
        if self.checksum:
            self._verify(key, data, downloader.properties)
        return data

    def _verify(self, key: str, data: bytes, properties: Any) -> None:
        expected = properties.content_settings.content_md5
        if expected and bytes(expected) != hashlib.md5(data).digest():
            raise BackendError(errno.EIO, f"Azure: the value of {key!r} does not match its Content-MD5")

    def _open(self, key: str) -> IO[bytes]:
        first = self._download(key)
        etag = first.properties.etag

        def open_at(position: int) -> IO[bytes]:
            # The same version only: a value replaced while it is read fails instead of
            # mixing versions.
            return self._download(key, offset=position, etag=etag, match_condition=MatchConditions.IfNotModified)

        return open_streamed(first.properties.size, open_at, first_stream=first, errors=_errors)

    def _get_range(self, key: str, start: int, length: int) -> bytes:
        with _errors(key):
            try:
                downloader = self._blob(key).download_blob(
                    offset=start, length=length, validate_content=self.checksum
                )
            except HttpResponseError as error:
                if _code(error) == "InvalidRange":
                    return b""  # start at or past the end of the value
                raise
            return downloader.readall()

    def _content_settings(self, data: bytes | None = None) -> Any:
        md5 = hashlib.md5(data).digest() if self.checksum and data is not None else None
        return _blob.ContentSettings(content_type="application/octet-stream", content_md5=md5)

    def _put(self, key: str, data: bytes) -> str:
        with _errors():
            self._blob(key).upload_blob(
                data,
                length=len(data),
                overwrite=True,
                max_concurrency=self.max_connections,
                validate_content=self.checksum,
                content_settings=self._content_settings(data),
            )
        return key

    def _put_file(self, key: str, file: IO[bytes]) -> str:
        source = UploadSource(file)
        head = source.read(self._block_size)
        if len(head) < self._block_size:
            return self._put(key, head)  # smaller than a block: one request
        with _errors():
            # A source of unknown length is read front to back, one block at a time.
            self._blob(key).upload_blob(
                _Joined(head, source),
                overwrite=True,
                max_concurrency=self.max_connections,
                validate_content=self.checksum,
                content_settings=self._content_settings(),
            )
        return key

    def _copy(self, source: str, dest: str) -> str:
        source_blob = self._blob(source)
        target = self._blob(dest)
        with _errors(source):
            # Authorised by this client's key (same account); a copy within an account
            # is usually finished when the call returns, else it is polled.
            copy = target.start_copy_from_url(source_blob.url)
        status = copy.get("copy_status")
        while status == "pending":
            time.sleep(COPY_POLL_INTERVAL)
            with _errors():
                status = target.get_blob_properties().copy.status
        if status not in (None, "success"):
            raise BackendError(f"Azure: copying {source!r} to {dest!r} ended with status {status!r}")
        return dest

    def _has_directory(self, key: str) -> bool:
        # The marker itself (key/) also starts with key/.
        with _errors():
            listing = self._container.list_blobs(
                name_starts_with=self._name(key + DIRECTORY_MARKER_SUFFIX), results_per_page=1
            )
            first_page = next(iter(listing.by_page()), [])
            return any(True for _ in first_page)

    def _url_for(self, key: str) -> str:
        blob = self._blob(key)
        if self.public:
            return str(blob.url)
        credential = self.client.credential
        account_key = getattr(credential, "account_key", None)
        if not account_key:
            raise BackendError(errno.EACCES, "Azure: a SAS URL needs the account key (from the connection string)")
        expiry = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(
            seconds=self.url_valid_time or DEFAULT_URL_VALID_TIME
        )
        sas = _blob.generate_blob_sas(
            account_name=self.client.account_name,
            container_name=self.container,
            blob_name=self._name(key),
            account_key=account_key,
            permission=_blob.BlobSasPermissions(read=True),
            expiry=expiry,
        )
        return f"{blob.url}?{sas}"


class _Joined:
    """*head* (bytes already read) followed by the rest of *source*, read front to back.

    Presented like :class:`~kvfs.net.UploadSource`: no length, not seekable.
    """

    def __init__(self, head: bytes, source: UploadSource) -> None:
        self._head = head
        self._source = source
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        return self._position

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            data, self._head = self._head + self._source.read(), b""
        else:
            data, self._head = self._head[:size], self._head[size:]
            if len(data) < size:
                data += self._source.read(size - len(data))
        self._position += len(data)
        return data


__all__ = ["BLOCK_SIZE", "GET_CHUNK_SIZE", "SINGLE_PUT_SIZE", "AzureBlockBlobStore"]
