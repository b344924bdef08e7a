"""A store in a Google Cloud Storage bucket: :class:`GoogleCloudStore`."""

from __future__ import annotations

import datetime
import errno
import io
import pickle
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any, cast
from urllib.parse import quote

from .._extras import require
from ..errors import BackendError, KeyNotFoundError
from ..keys import MAX_KEY_LENGTH
from ..mixins import CopyMixin, UrlMixin
from ..store import DIRECTORY_MARKER_SUFFIX, KeyInfo, KeyValueStore, Metadata, Rebuild
from ..writer import ValueWriter
from . import BucketStoreCapabilities, RangedStream, UploadSource, metadata_fields, open_streamed, parse_metadata

storage = require("google.cloud.storage", "gcs", "google-cloud-storage")
import requests  # noqa: E402  (a dependency of google-cloud-storage)
from google.api_core import exceptions as api_exceptions  # noqa: E402
from google.auth import exceptions as auth_exceptions  # noqa: E402
from google.auth.credentials import Credentials, Signing  # noqa: E402
from google.cloud.storage import exceptions as storage_exceptions  # noqa: E402
from google.cloud.storage.fileio import BlobWriter  # noqa: E402
from google.cloud.storage.retry import DEFAULT_RETRY  # noqa: E402

MiB = 1024 * 1024

#: Values are uploaded in resumable chunks of this size (a multiple of 256 KiB), and
#: smaller ``put`` values in one request.
CHUNK_SIZE = 8 * MiB
#: An opened value is read in ranged requests of this size.
READ_CHUNK_SIZE = 4 * MiB
#: Lifetime of a signed URL when ``url_valid_time`` is 0, in seconds.
DEFAULT_URL_VALID_TIME = 3600

_CONTENT_TYPE = "application/octet-stream"


def _client_like(project: str | None, credentials: Any, api_endpoint: str | None) -> Any:
    """A new client like one with these settings (in the process that unpickles)."""
    options = {"api_endpoint": api_endpoint} if api_endpoint else None
    return storage.Client(project=project, credentials=credentials, client_options=options)


@contextmanager
def _errors(key: str | None = None) -> Iterator[None]:
    """Map client errors: a missing *key* to KeyNotFoundError, the rest to BackendError."""
    try:
        yield
    except api_exceptions.NotFound as error:
        if key is None:
            raise BackendError(f"GCS: {error.message}") from error
        raise KeyNotFoundError(key) from None
    except (api_exceptions.Forbidden, api_exceptions.Unauthorized) as error:
        raise BackendError(errno.EACCES, f"GCS: {error.message}") from error
    except api_exceptions.GoogleAPICallError as error:
        raise BackendError(f"GCS: {error.message}") from error
    except (
        api_exceptions.GoogleAPIError,  # RetryError: the retry deadline passed
        auth_exceptions.GoogleAuthError,
        storage_exceptions.InvalidResponse,
        storage_exceptions.DataCorruption,
        requests.RequestException,
    ) as error:
        if isinstance(error, requests.Timeout):
            raise BackendError(errno.ETIMEDOUT, f"GCS: {error}") from error
        raise BackendError(f"GCS: {error}") from error


class GoogleCloudStore(BucketStoreCapabilities, UrlMixin, CopyMixin, KeyValueStore):
    """Keeps each value in an object (blob) of a Google Cloud Storage bucket.

    The constructor takes simplekv's arguments: *credentials* is the path of a service
    account JSON file or a :class:`google.auth.credentials.Credentials` (``None``: the
    environment's default credentials, or anonymous ones against an emulator named by
    ``STORAGE_EMULATOR_HOST``); *bucket_name* is created in
    *bucket_creation_location* when missing and *create_if_missing* is set. Beyond
    simplekv: *prefix* is prepended to every blob name as it is; *client* is a ready
    :class:`google.cloud.storage.Client` used instead of making one; *timeout* (seconds
    per request) and *retry_timeout* (seconds for all retries of a call) bound how long
    a dead server takes to give an error.

    Small values are uploaded in one request, others (and every ``put_file``) in
    resumable chunks of :data:`CHUNK_SIZE`; ``get_range`` downloads only the range;
    ``open`` reads in ranges of :data:`READ_CHUNK_SIZE` pinned to the object's
    generation; :meth:`iter_level` is one delimiter listing with sizes and times;
    :meth:`copy` is a server-side rewrite. :meth:`open_writer` streams
    (``streams_writes``): a resumable upload, sending each chunk as it fills, the object
    appearing at the close. :meth:`url_for` gives a V4 signed URL (valid
    *url_valid_time* seconds, an hour when 0) when the credentials can sign (a service
    account), and otherwise the object's media download URL, which works for public
    objects and emulators.

    Modes, owners and mtimes (``keeps_metadata``) are the blob's custom metadata
    ``mode``, ``uid``, ``gid`` and ``mtime`` (the mtime in RFC 3339, as rclone writes
    it), sent with the upload of the value (``metadata=``, no extra request); listings
    carry them (``listing_has_metadata``), and :meth:`set_metadata` patches them. A
    directory's are kept on its marker, and shown by :meth:`describe`.

    A missing blob raises :class:`~kvfs.errors.KeyNotFoundError`; other failures
    (credentials, permissions, a missing bucket, the network) raise
    :class:`~kvfs.errors.BackendError` with the server's message.
    """

    keeps_metadata = True
    metadata_with_writes = True
    listing_has_metadata = True
    #: Values are sent while they are written (see :meth:`open_writer`).
    streams_writes = True

    def __init__(
        self,
        credentials: str | Credentials | None,
        bucket_name: str,
        create_if_missing: bool = True,
        bucket_creation_location: str = "EUROPE-WEST3",
        project: str | None = None,
        *,
        prefix: str = "",
        client: Any = None,
        url_valid_time: int = 0,
        timeout: float = 30.0,
        retry_timeout: float = 20.0,
    ) -> None:
        self.bucket_name = bucket_name
        self.prefix = prefix.strip().lstrip("/")
        self.url_valid_time = url_valid_time
        # Object names are limited to 1024 bytes, the prefix included.
        self.max_key_length = MAX_KEY_LENGTH - len(self.prefix.encode())  # type: ignore[misc]
        # Every call gets these: the library's defaults retry for two minutes.
        self._call: dict[str, Any] = {
            "timeout": timeout,
            "retry": DEFAULT_RETRY.with_timeout(retry_timeout),
        }
        with _errors():
            if client is None:
                if isinstance(credentials, str):
                    client = storage.Client.from_service_account_json(credentials, project=project)
                else:
                    client = storage.Client(project=project, credentials=credentials)
            self.client = client
            self.bucket = client.bucket(bucket_name)
            if create_if_missing and client.lookup_bucket(bucket_name, **self._call) is None:
                self.bucket = client.create_bucket(
                    bucket_name, location=bucket_creation_location, **self._call
                )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.bucket_name!r}, prefix={self.prefix!r}, "
            f"endpoint={self.client.api_endpoint!r})"
        )

    def close(self) -> None:
        self.client.close()

    def _travelling_arguments(self, arguments: dict[str, Any]) -> dict[str, Any]:
        # A client is rebuilt from its project, credentials and endpoint; the bucket
        # exists by now, so the other process does not look it up again.
        arguments = {**arguments, "create_if_missing": False}
        client = arguments.get("client")
        if client is not None:
            credentials = client._credentials
            settings = {"project": client.project, "credentials": credentials, "api_endpoint": client.api_endpoint}
            arguments["client"] = Rebuild(_client_like, **settings)
        else:
            credentials = arguments.get("credentials")
        if credentials is not None and not isinstance(credentials, str):
            try:
                pickle.dumps(credentials)
            except Exception as error:
                raise TypeError(
                    f"cannot pickle {self!r}: its credentials cannot be pickled ({error}); "
                    "give the path of a service account file instead"
                ) from None
        return arguments

    def _blob(self, key: str, generation: int | None = None) -> Any:
        return self.bucket.blob(self.prefix + key, generation=generation)

    def _upload_blob(self, key: str) -> Any:
        # A chunk size makes uploads resumable in bounded pieces; downloads stay single
        # requests (a chunked download of an empty object fails on some servers).
        return self.bucket.blob(self.prefix + key, chunk_size=CHUNK_SIZE)

    # ------------------------------------------------------------------ hooks

    def _check(self) -> None:
        with _errors():
            if self.client.lookup_bucket(self.bucket_name, **self._call) is None:
                raise BackendError(errno.ENOENT, f"GCS bucket {self.bucket_name!r} does not exist")

    def _delete(self, key: str) -> None:
        try:
            with _errors(key):
                self.bucket.delete_blob(self.prefix + key, **self._call)
        except KeyNotFoundError:
            pass

    def _pages(self, prefix: str, **options: Any) -> Iterator[Any]:
        with _errors():
            blobs = self.client.list_blobs(
                self.bucket, prefix=self.prefix + prefix, **options, **self._call
            )
            yield from blobs.pages

    def _iter_keys(self, prefix: str) -> Iterator[str]:
        cut = len(self.prefix)
        for page in self._pages(prefix, fields="items(name),nextPageToken"):
            for blob in page:
                yield blob.name[cut:]

    def _iter_level(self, prefix: str, delimiter: str) -> Iterator[KeyInfo]:
        cut = len(self.prefix)
        # includeTrailingDelimiter lists each sub-directory's marker too, with its metadata.
        for page in self._pages(prefix, delimiter=delimiter, include_trailing_delimiter=True):
            markers = {}
            for blob in page:
                name = blob.name[cut:]
                if name.endswith(delimiter) and delimiter not in name[len(prefix) : -len(delimiter)]:
                    markers[name] = blob  # a marker, listed as a prefix below
                elif name != prefix:  # the directory's own marker
                    yield _info(name, blob)
            # A page's prefixes are known once its blobs have been read.
            for common in sorted(page.prefixes):
                yield _directory_info(common[cut:], markers.get(common[cut:]))

    def _describe(self, key: str) -> KeyInfo | None:
        # One listing of the names that start with key (see Boto3Store._describe).
        cut, directory = len(self.prefix), key + DIRECTORY_MARKER_SUFFIX
        found = marker = None
        # includeTrailingDelimiter lists the marker key/ itself too, with its metadata.
        for page in self._pages(key, delimiter=DIRECTORY_MARKER_SUFFIX, include_trailing_delimiter=True):
            names = []
            for blob in page:
                name = blob.name[cut:]
                names.append(name)
                if name == key:
                    found = _info(key, blob)
                elif name == directory:  # the marker: the directory's metadata
                    marker = blob
            # A page's prefixes are known once its blobs have been read.
            prefixes = [common[cut:] for common in page.prefixes]
            if directory in prefixes:
                return _directory_info(directory, marker)
            names += prefixes
            if names and max(names) > directory:
                break
        return found

    def _get_blob(self, key: str) -> Any:
        with _errors(key):
            blob = self.bucket.get_blob(self.prefix + key, **self._call)
        if blob is None:
            raise KeyNotFoundError(key)
        return blob

    def _has_key(self, key: str) -> bool:
        with _errors():
            return bool(self._blob(key).exists(**self._call))

    def _stat(self, key: str) -> KeyInfo:
        return _info(key, self._get_blob(key))

    def _set_metadata(
        self,
        key: str,
        *,
        mode: int | None,
        uid: int | None,
        gid: int | None,
        mtime: float | None,
        atime: float | None,
    ) -> None:
        # A patch of the blob's metadata (the value's, or a directory's marker, made
        # where there is none); the fields not given stay.
        fields = metadata_fields(Metadata(mode, uid, gid, mtime), rfc3339=True)
        try:
            blob = self._get_blob(key)
        except KeyNotFoundError:
            if not self._has_directory(key):
                raise
            fields = metadata_fields(Metadata(mode, uid, gid, mtime), directory=True, rfc3339=True)
            with _errors(key):
                blob = self.bucket.get_blob(self.prefix + key + DIRECTORY_MARKER_SUFFIX, **self._call)
                if blob is None:
                    marker = self._blob(key + DIRECTORY_MARKER_SUFFIX)
                    marker.metadata = fields
                    marker.upload_from_string(b"", content_type=_CONTENT_TYPE, **self._call)
                    return
        if mtime is None and parse_metadata(blob.metadata).mtime is None and blob.updated is not None:
            # A patch moves the object's "updated" time: keep the time it shows now.
            fields.update(metadata_fields(Metadata(mtime=blob.updated.timestamp()), rfc3339=True))
        with _errors(key):
            blob.metadata = {**(blob.metadata or {}), **fields}
            blob.patch(**self._call)

    def _get(self, key: str) -> bytes:
        with _errors(key):
            return self._blob(key).download_as_bytes(**self._call)

    def _get_file(self, key: str, file: IO[bytes]) -> None:
        with _errors(key):
            self._blob(key).download_to_file(file, **self._call)

    def _download_range(self, blob: Any, key: str, start: int, length: int) -> bytes:
        with _errors(key):
            try:
                # end is inclusive; a checksum cannot be checked for a part.
                return blob.download_as_bytes(
                    start=start, end=start + length - 1, checksum=None, **self._call
                )
            except api_exceptions.RequestRangeNotSatisfiable:
                return b""  # start at or past the end of the value

    def _get_range(self, key: str, start: int, length: int) -> bytes:
        return self._download_range(self._blob(key), key, start, length)

    def _open(self, key: str) -> IO[bytes]:
        found = self._get_blob(key)
        # Pinned to this generation: a value replaced meanwhile fails instead of mixing.
        blob = self._blob(key, generation=found.generation)

        def read_range(start: int, length: int) -> bytes:
            return self._download_range(blob, key, start, length)

        def open_at(position: int) -> IO[bytes]:
            return cast(IO[bytes], RangedStream(read_range, position))

        return open_streamed(found.size, open_at, buffer_size=READ_CHUNK_SIZE)

    def _put(self, key: str, data: bytes, metadata: Metadata | None = None) -> str:
        if len(data) >= CHUNK_SIZE:
            return self._put_file(key, io.BytesIO(data), metadata)
        blob = self._blob(key)
        _carry(blob, metadata)
        with _errors():
            blob.upload_from_string(data, content_type=_CONTENT_TYPE, **self._call)
        return key

    def _put_file(self, key: str, file: IO[bytes], metadata: Metadata | None = None) -> str:
        blob = self._upload_blob(key)
        _carry(blob, metadata)
        with _errors():
            blob.upload_from_file(UploadSource(file), content_type=_CONTENT_TYPE, **self._call)
        return key

    def _open_writer(self, key: str, metadata: Metadata | None = None) -> ValueWriter:
        blob = self._upload_blob(key)
        _carry(blob, metadata)
        return _ResumableWriter(key, blob, self._call)

    def _copy(self, source: str, dest: str) -> str:
        source_blob = self._blob(source)
        dest_blob = self._blob(dest)
        with _errors(source):
            # A rewrite may take several calls for a large object.
            token, _, _ = dest_blob.rewrite(source_blob, **self._call)
            while token is not None:
                token, _, _ = dest_blob.rewrite(source_blob, token=token, **self._call)
        return dest

    def _has_directory(self, key: str) -> bool:
        # The marker itself (key/) also starts with key/.
        for page in self._pages(key + DIRECTORY_MARKER_SUFFIX, max_results=1):
            for _ in page:
                return True
        return False

    def _url_for(self, key: str) -> str:
        blob = self._blob(key)
        if isinstance(getattr(self.client, "_credentials", None), Signing):
            with _errors():
                return blob.generate_signed_url(
                    version="v4",
                    method="GET",
                    expiration=datetime.timedelta(
                        seconds=self.url_valid_time or DEFAULT_URL_VALID_TIME
                    ),
                )
        name = quote(blob.name, safe="")
        endpoint = self.client.api_endpoint
        return f"{endpoint}/download/storage/v1/b/{self.bucket_name}/o/{name}?alt=media"


class _ResumableWriter(ValueWriter):
    """GCS's streaming writer: a resumable upload (the library's ``BlobWriter``).

    Each :data:`CHUNK_SIZE` bytes written go up as one chunk of the upload, in the
    ``write`` that fills it; the close sends the last one and finishes the upload, and
    only then does the object appear. An aborted upload is left unfinished: no object
    appears, and the server drops the session after a week.
    """

    memory = 2 * CHUNK_SIZE  # a chunk, and the write that overfills it

    def __init__(self, key: str, blob: Any, call: dict[str, Any]) -> None:
        super().__init__(key)
        # No request yet: the session starts with the first full chunk or the close.
        self._file = _AbortableBlobWriter(blob, ignore_flush=True, content_type=_CONTENT_TYPE, **call)

    def _write(self, data: memoryview) -> None:
        with _errors():
            self._file.write(data)

    def _commit(self) -> None:
        with _errors():
            self._file.finish()

    def _abort(self) -> None:
        self._file = None  # the unfinished session is never completed


class _AbortableBlobWriter(BlobWriter):
    """A ``BlobWriter`` whose upload is finished by :meth:`finish` only.

    An ``io`` file closes itself when it is collected, and closing a ``BlobWriter``
    finishes the upload: a writer aborted (or dropped) half way would store its part.
    Here ``close`` does nothing.
    """

    def finish(self) -> None:
        """Send what is buffered and finish the upload: the object appears."""
        super().close()

    def close(self) -> None:
        pass


def _timestamp(moment: datetime.datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


def _carry(blob: Any, metadata: Metadata | None) -> None:
    """Send *metadata* with *blob*'s upload (the upload's first request carries it)."""
    if metadata is not None:
        fields = metadata_fields(metadata, rfc3339=True)
        if fields:
            blob.metadata = fields


def _info(key: str, blob: Any) -> KeyInfo:
    """What *blob* (listed or fetched) says of the value *key*, its metadata included."""
    kept = parse_metadata(blob.metadata)
    mtime = _timestamp(blob.updated) if kept.mtime is None else kept.mtime
    return KeyInfo(key, blob.size, mtime, mode=kept.mode, uid=kept.uid, gid=kept.gid)


def _directory_info(key: str, marker: Any) -> KeyInfo:
    """The directory *key* (ending in the delimiter), with its *marker*'s metadata if listed."""
    kept = parse_metadata(None if marker is None else marker.metadata)
    return KeyInfo(key, None, kept.mtime, is_prefix=True, mode=kept.mode, uid=kept.uid, gid=kept.gid)


__all__ = ["CHUNK_SIZE", "GoogleCloudStore"]
