"""A store in an S3 bucket (AWS or any S3-compatible server): :class:`Boto3Store`."""

from __future__ import annotations

import errno
import io
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

from .._extras import require
from ..errors import BackendError, InvalidKeyError, KeyNotFoundError, KeyTooLongError
from ..keys import MAX_KEY_LENGTH
from ..mixins import CopyMixin, UrlMixin
from ..store import DIRECTORY_MARKER_SUFFIX, KeyInfo, KeyValueStore, Metadata, Rebuild, chained_pages, run_parallel
from . import BucketStoreCapabilities, UploadSource, metadata_fields, open_streamed, parse_metadata
from ..writer import ValueWriter
from .s3writer import MultipartWriter, checksum_arguments

boto3 = require("boto3", "s3")
from boto3.exceptions import Boto3Error  # noqa: E402  (after the check)
from boto3.s3.transfer import TransferConfig  # noqa: E402
from botocore import UNSIGNED  # noqa: E402
from botocore.config import Config  # noqa: E402
from botocore.exceptions import BotoCoreError, ClientError, ConnectTimeoutError, ReadTimeoutError  # noqa: E402

MiB = 1024 * 1024

#: Values from this size on are uploaded in parts of :data:`PART_SIZE` (and copied in
#: parts above 5 GiB, the limit of a single copy).
MULTIPART_THRESHOLD = 8 * MiB
PART_SIZE = 8 * MiB
#: Parts in flight at once; with the part size this bounds the memory of a put.
MAX_CONCURRENCY = 4
#: Parts in flight at once for a value given as a file name: each part is read from the
#: file by the thread sending it (no part waits in memory), as boto3's ``upload_file`` does.
FILE_CONCURRENCY = 10
#: Most keys one DeleteObjects request may name.
_DELETE_BATCH = 1000
#: Connections a client made by :func:`make_client` keeps open (botocore keeps 10): more
#: than a mount sends at once (8 write-back workers, a directory rename's 8 copies, the
#: parts of streamed uploads, reads), so none is closed after its request and opened
#: again (a new TCP and TLS handshake) while the others are busy.
MAX_POOL_CONNECTIONS = 32
#: Lifetime of a presigned URL when ``url_valid_time`` is 0, in seconds.
DEFAULT_URL_VALID_TIME = 3600

_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}
_ACCESS_DENIED = {
    "403",
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
}


def make_client(
    *,
    endpoint_url: str | None = None,
    region_name: str | None = None,
    addressing_style: str | None = None,
    connect_timeout: float = 5.0,
    read_timeout: float = 30.0,
    max_attempts: int = 3,
    **credentials: Any,
) -> Any:
    """Create an S3 client whose calls fail in bounded time.

    It keeps up to :data:`MAX_POOL_CONNECTIONS` connections open for parallel requests.
    A dead server gives an error after *max_attempts* attempts (the first included) of
    at most *connect_timeout* seconds each; a server that stops answering mid-request
    after *read_timeout* seconds. *addressing_style* is ``"path"``, ``"virtual"`` or
    ``"auto"`` (path style suits most self-hosted servers). *credentials* are
    ``aws_access_key_id``, ``aws_secret_access_key``, ``aws_session_token`` or
    ``profile_name``; without them boto3's usual chain applies (environment, config
    files, instance roles).
    """
    config = Config(
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        max_pool_connections=MAX_POOL_CONNECTIONS,
        retries={"max_attempts": max_attempts, "mode": "standard"},
        s3={"addressing_style": addressing_style} if addressing_style else None,
    )
    profile = credentials.pop("profile_name", None)
    session = boto3.session.Session(profile_name=profile)
    return session.client(
        "s3", endpoint_url=endpoint_url, region_name=region_name, config=config, **credentials
    )


def _client_settings(client: Any) -> dict[str, Any]:
    """What makes a client like *client*: endpoint, region, configuration, credentials.

    Credentials are carried only where they were given explicitly; credentials found by
    boto3's chain (environment, files, instance roles) are found again by the new client.
    """
    settings: dict[str, Any] = {
        "endpoint_url": client.meta.endpoint_url,
        "region_name": client.meta.region_name,
        "config": client.meta.config,
    }
    credentials = getattr(getattr(client, "_request_signer", None), "_credentials", None)
    if credentials is not None and getattr(credentials, "method", None) == "explicit":
        frozen = credentials.get_frozen_credentials()
        settings["aws_access_key_id"] = frozen.access_key
        settings["aws_secret_access_key"] = frozen.secret_key
        settings["aws_session_token"] = frozen.token
    return settings


def _client_like(**settings: Any) -> Any:
    """A new S3 client from :func:`_client_settings` (in the process that unpickles)."""
    return boto3.session.Session().client("s3", **settings)


def _message(error: Exception) -> str:
    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        code = details.get("Code", "error")
        text = details.get("Message") or error.response.get("ResponseMetadata", {}).get(
            "HTTPStatusCode", ""
        )
        return f"S3 {code}: {text}"
    return f"S3: {error}"


@contextmanager
def _errors(key: str | None = None) -> Iterator[None]:
    """Map client errors: a missing *key* to KeyNotFoundError, the rest to BackendError."""
    try:
        yield
    except ClientError as error:
        code = str(error.response.get("Error", {}).get("Code", ""))
        if key is not None and code in _NOT_FOUND:
            raise KeyNotFoundError(key) from None
        if code == "KeyTooLongError":
            raise KeyTooLongError(f"the server refused the key as too long: {_message(error)}")
        if code in _ACCESS_DENIED:
            raise BackendError(errno.EACCES, _message(error)) from error
        raise BackendError(_message(error)) from error
    except (BotoCoreError, Boto3Error) as error:
        cause = error.__cause__ or error.__context__
        if isinstance(error, Boto3Error) and isinstance(cause, ClientError):
            error = cause  # a failed managed transfer: report the server's answer
        if isinstance(error, (ConnectTimeoutError, ReadTimeoutError)):
            raise BackendError(errno.ETIMEDOUT, _message(error)) from error
        raise BackendError(_message(error)) from error


def _copy_too_large(error: BackendError) -> bool:
    """Whether a CopyObject failed because the source is over the 5 GiB limit of one copy."""
    cause = error.__cause__
    if not isinstance(cause, ClientError):
        return False
    details = cause.response.get("Error", {})
    return details.get("Code") in ("InvalidRequest", "EntityTooLarge") and "size" in str(details.get("Message", ""))


class Boto3Store(BucketStoreCapabilities, UrlMixin, CopyMixin, KeyValueStore):
    """Keeps each value in an object of an S3 bucket, named *prefix* + key.

    *bucket* is a boto3 ``Bucket`` resource (as in simplekv) or a bucket name; with a
    name, the store uses *client* if given, else makes one with :func:`make_client`
    from the keyword arguments (``endpoint_url``, ``region_name``, ``addressing_style``,
    credentials, timeouts). *prefix* is prepended to every key as it is (give it a
    trailing ``/`` to make it a directory). With *create_if_missing* a missing bucket is
    created at construction. Servers that keep objects as files limit a key component
    (SeaweedFS: 255 bytes) or rewrite characters (SeaweedFS turns ``\\`` into ``/``, so
    ``a\\b`` would overwrite ``a/b``): pass *max_component_length* and
    *forbidden_key_characters* and such keys raise
    :class:`~kvfs.errors.InvalidKeyError` before any request.

    Values are streamed both ways: ``put_file`` uploads values from
    :data:`MULTIPART_THRESHOLD` bytes on in parts (never the whole value in memory),
    ``get_file`` and ``open`` read one response stream, and ``get_range`` and reads after
    a seek ask only for the bytes needed. ``stat`` and ``in`` are a ``HEAD`` request,
    :meth:`describe` one listing request;
    :meth:`iter_level` one delimiter listing with sizes and times; :meth:`copy` runs on
    the server. :meth:`url_for` gives a presigned ``GET`` URL valid for
    *url_valid_time* seconds (an hour when 0), or a plain URL when *public*, in which
    case values are also written with the ``public-read`` ACL.

    Modes, owners and mtimes (``keeps_metadata``) are the object's user metadata
    ``mode``, ``uid``, ``gid`` and ``mtime`` (``x-amz-meta-mode``, ..., as s3fs and
    rclone write them), written with the value by ``put``, ``put_file`` and multipart
    uploads (``metadata=``, no extra request); :meth:`set_metadata` copies the object
    onto itself with new metadata. Only :meth:`stat` (a ``HEAD``) reads them back: an S3
    listing carries no metadata (``listing_has_metadata`` is False).

    :meth:`open_writer` streams (``streams_writes``): a value written in order goes up in
    parts of :attr:`part_size` bytes (growing after every 1,000 parts) while it is written,
    at most :attr:`stream_concurrency` at once, and appears at the close (see
    :class:`~kvfs.net.s3writer.MultipartWriter`).

    A missing object raises :class:`~kvfs.errors.KeyNotFoundError`; anything else the
    server or the network does wrong (wrong credentials, no bucket, timeouts) raises
    :class:`~kvfs.errors.BackendError` with the server's message, never a credential.
    """

    keeps_metadata = True
    metadata_with_writes = True
    #: Values are sent while they are written (see :meth:`open_writer`).
    streams_writes = True
    #: The size of a streamed upload's parts (S3's least is 5 MiB) for its first 1,000 parts.
    part_size: int = PART_SIZE
    #: Parts of a streamed upload in flight at once (boto3's own transfers send 10):
    #: with :attr:`part_size` this bounds a writer's memory, 72 MiB by default.
    stream_concurrency: int = 8

    def __init__(
        self,
        bucket: Any,
        prefix: str = "",
        url_valid_time: int = 0,
        reduced_redundancy: bool = False,
        public: bool = False,
        metadata: dict[str, str] | None = None,
        *,
        client: Any = None,
        create_if_missing: bool = False,
        max_component_length: int | None = None,
        forbidden_key_characters: str = "",
        **client_options: Any,
    ) -> None:
        if max_component_length is not None:
            self.max_component_length = max_component_length  # type: ignore[misc]
        self.forbidden_key_characters = forbidden_key_characters
        if isinstance(bucket, str):
            self.bucket_name = bucket
            self.client = client if client is not None else make_client(**client_options)
        else:  # a boto3 Bucket resource
            self.bucket_name = bucket.name
            self.client = bucket.meta.client
        self.prefix = prefix.strip().lstrip("/")
        self.url_valid_time = url_valid_time
        self.public = public
        # Object names are limited to 1024 bytes, the prefix included.
        self.max_key_length = MAX_KEY_LENGTH - len(self.prefix.encode())  # type: ignore[misc]
        self._write_args: dict[str, Any] = {"Metadata": dict(metadata or {})}
        if reduced_redundancy:
            self._write_args["StorageClass"] = "REDUCED_REDUNDANCY"
        if public:
            self._write_args["ACL"] = "public-read"
        self._transfer = TransferConfig(
            multipart_threshold=MULTIPART_THRESHOLD,
            multipart_chunksize=PART_SIZE,
            max_concurrency=MAX_CONCURRENCY,
        )
        self._file_transfer = TransferConfig(
            multipart_threshold=MULTIPART_THRESHOLD,
            multipart_chunksize=PART_SIZE,
            max_concurrency=FILE_CONCURRENCY,
        )
        self._unsigned_client: Any = None
        if create_if_missing:
            self._create_bucket()

    def __repr__(self) -> str:
        endpoint = self.client.meta.endpoint_url
        name = type(self).__name__
        return f"{name}({self.bucket_name!r}, prefix={self.prefix!r}, endpoint={endpoint!r})"

    def close(self) -> None:
        self.client.close()

    def _travelling_arguments(self, arguments: dict[str, Any]) -> dict[str, Any]:
        # A client (or a Bucket resource's) is rebuilt from its configuration; a store
        # that made its own client carries the options it made it from.
        # The bucket exists by now: the other process does not create it again.
        arguments = {**arguments, "create_if_missing": False}
        if arguments.get("client") is None and isinstance(arguments.get("bucket"), str):
            return arguments
        return {**arguments, "bucket": self.bucket_name, "client": Rebuild(_client_like, **_client_settings(self.client))}

    def _name(self, key: str) -> str:
        return self.prefix + key

    def _check_valid_key(self, key: object) -> None:
        super()._check_valid_key(key)
        if self.forbidden_key_characters:
            bad = sorted(set(self.forbidden_key_characters) & set(str(key)))
            if bad:
                raise InvalidKeyError(
                    f"{key!r} is not a valid key for this server: it cannot hold {''.join(bad)!r}"
                )

    def _create_bucket(self) -> None:
        with _errors():
            try:
                self.client.head_bucket(Bucket=self.bucket_name)
                return
            except ClientError as error:
                if str(error.response.get("Error", {}).get("Code")) not in _NOT_FOUND:
                    raise
            options: dict[str, Any] = {"Bucket": self.bucket_name}
            region = self.client.meta.region_name
            if region and region != "us-east-1":
                options["CreateBucketConfiguration"] = {"LocationConstraint": region}
            self.client.create_bucket(**options)

    # ------------------------------------------------------------------ hooks

    def _check(self) -> None:
        # HEAD of the bucket: one request that needs the bucket and valid credentials.
        with _errors():
            try:
                self.client.head_bucket(Bucket=self.bucket_name)
            except ClientError as error:
                code = str(error.response.get("Error", {}).get("Code", ""))
                if code in _NOT_FOUND or code == "NoSuchBucket":
                    raise BackendError(errno.ENOENT, f"S3 bucket {self.bucket_name!r} does not exist") from error
                if code in _ACCESS_DENIED:
                    raise BackendError(
                        errno.EACCES, f"S3 denied access to bucket {self.bucket_name!r} ({code}): check the credentials"
                    ) from error
                raise

    def _delete(self, key: str) -> None:
        with _errors():
            self.client.delete_object(Bucket=self.bucket_name, Key=self._name(key))

    def _delete_many(self, keys: list[str]) -> None:
        # DeleteObjects: up to 1,000 keys a request, the batches in parallel.
        batches = [keys[start : start + _DELETE_BATCH] for start in range(0, len(keys), _DELETE_BATCH)]
        run_parallel(self._delete_batch, batches, self.parallel_requests)

    def _delete_batch(self, keys: list[str]) -> None:
        objects = [{"Key": self._name(key)} for key in keys]
        with _errors():
            answer = self.client.delete_objects(Bucket=self.bucket_name, Delete={"Objects": objects, "Quiet": True})
        failed = answer.get("Errors") or []
        if failed:
            first = failed[0]
            raise BackendError(
                f"could not delete {len(failed)} of {len(keys)} keys; {first.get('Key')!r}: "
                f"{first.get('Code')} {first.get('Message', '')}".rstrip()
            )

    def _pages(self, prefix: str, **options: Any) -> Iterator[dict[str, Any]]:
        request = {"Bucket": self.bucket_name, "Prefix": self._name(prefix), **options}

        def fetch(token: str | None) -> dict[str, Any]:
            return self.client.list_objects_v2(**request, **({"ContinuationToken": token} if token else {}))

        def next_token(page: dict[str, Any]) -> str | None:
            return page.get("NextContinuationToken") if page.get("IsTruncated") else None

        with _errors():
            # The next page is fetched while this one is read, unless the caller asks
            # for a few keys only (MaxKeys): it seldom reads on.
            yield from chained_pages(fetch, next_token, prefetch="MaxKeys" not in options)

    def _iter_keys(self, prefix: str) -> Iterator[str]:
        cut = len(self.prefix)
        for page in self._pages(prefix):
            for entry in page.get("Contents", ()):
                yield entry["Key"][cut:]

    def _iter_level(self, prefix: str, delimiter: str) -> Iterator[KeyInfo]:
        cut = len(self.prefix)
        for page in self._pages(prefix, Delimiter=delimiter):
            for entry in page.get("Contents", ()):
                name = entry["Key"][cut:]
                if name != prefix:  # the directory's own marker
                    yield KeyInfo(name, entry["Size"], entry["LastModified"].timestamp())
            for common in page.get("CommonPrefixes", ()):
                yield KeyInfo(common["Prefix"][cut:], is_prefix=True)

    def _describe(self, key: str) -> KeyInfo | None:
        # One listing of the names that start with key, in name order: the value key
        # itself comes first, and key/ (keys below it, or its marker) as a common prefix;
        # nothing past key/ matters.
        cut, directory = len(self.prefix), key + DIRECTORY_MARKER_SUFFIX
        found = None
        for page in self._pages(key, Delimiter=DIRECTORY_MARKER_SUFFIX):
            names = [common["Prefix"][cut:] for common in page.get("CommonPrefixes", ())]
            if directory in names:
                return KeyInfo(directory, is_prefix=True)
            for entry in page.get("Contents", ()):
                name = entry["Key"][cut:]
                names.append(name)
                if name == key:
                    found = KeyInfo(key, entry["Size"], entry["LastModified"].timestamp())
            if names and max(names) > directory:
                break
        return found

    def _head(self, key: str) -> dict[str, Any]:
        with _errors(key):
            return self.client.head_object(Bucket=self.bucket_name, Key=self._name(key))

    def _has_key(self, key: str) -> bool:
        try:
            self._head(key)
        except KeyNotFoundError:
            return False
        return True

    def _stat(self, key: str) -> KeyInfo:
        return self._info(key, self._head(key))

    @staticmethod
    def _info(key: str, answer: dict[str, Any]) -> KeyInfo:
        """What a HEAD's or GET's *answer* says of *key*: size, mtime (the kept one first), metadata."""
        kept = parse_metadata(answer.get("Metadata"))
        mtime = answer["LastModified"].timestamp() if kept.mtime is None else kept.mtime
        return KeyInfo(key, answer["ContentLength"], mtime, mode=kept.mode, uid=kept.uid, gid=kept.gid)

    def _upload_args(self, metadata: Metadata | None, *, directory: bool = False) -> dict[str, Any]:
        """The write arguments, with *metadata* among the object's user metadata."""
        if metadata is None:
            return self._write_args
        fields = {**self._write_args["Metadata"], **metadata_fields(metadata, directory=directory)}
        return {**self._write_args, "Metadata": fields}

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
        # A copy of the object onto itself with the new metadata (REPLACE), as s3fs does:
        # the HEAD gives what is kept already, and the content type the copy must repeat.
        # A directory's metadata is kept on its marker (written again, or made).
        name, directory = self._name(key), False
        try:
            head = self._head(key)
        except KeyNotFoundError:
            if not self._has_directory(key):
                raise
            name, directory = self._name(key) + DIRECTORY_MARKER_SUFFIX, True
            try:
                with _errors(key):
                    head = self.client.head_object(Bucket=self.bucket_name, Key=name)
            except KeyNotFoundError:
                head = None
        kept = {k: v for k, v in (head or {}).get("Metadata", {}).items()}
        if mtime is None and head is not None and parse_metadata(kept).mtime is None:
            # The copy gives the object a new LastModified: keep the time it shows now.
            mtime = head["LastModified"].timestamp()
        given = metadata_fields(Metadata(mode, uid, gid, mtime), directory=directory)
        kept = {k: v for k, v in kept.items() if k.lower() not in given}
        fields = {**kept, **given}
        extra = {k: v for k, v in self._write_args.items() if k != "Metadata"}
        with _errors(key):
            if directory:  # a marker is empty: written again (some servers cannot copy one)
                self.client.put_object(Bucket=self.bucket_name, Key=name, Body=b"", Metadata=fields, **extra)
                return
            if head.get("ContentType"):
                extra["ContentType"] = head["ContentType"]
            self.client.copy_object(  # a new checksum for the copy (see checksum_arguments)
                CopySource={"Bucket": self.bucket_name, "Key": name},
                Bucket=self.bucket_name,
                Key=name,
                Metadata=fields,
                MetadataDirective="REPLACE",
                **extra,
                **checksum_arguments(self.client),
            )

    def _get_object(self, key: str, **options: Any) -> dict[str, Any]:
        with _errors(key):
            return self.client.get_object(Bucket=self.bucket_name, Key=self._name(key), **options)

    def _get(self, key: str) -> bytes:
        body = self._get_object(key)["Body"]
        with _errors(key), body:
            return body.read()

    def _open(self, key: str) -> IO[bytes]:
        return self._open_with_info(key)[0]

    def _open_with_info(self, key: str) -> tuple[IO[bytes], KeyInfo | None]:
        # The GET's answer carries what a HEAD would: size, time and user metadata.
        first = self._get_object(key)
        etag = first["ETag"]

        def open_at(position: int) -> IO[bytes]:
            # IfMatch: a value replaced while it is read fails instead of mixing versions.
            response = self._get_object(key, Range=f"bytes={position}-", IfMatch=etag)
            return response["Body"]

        opened = open_streamed(first["ContentLength"], open_at, first_stream=first["Body"], errors=_errors)
        return opened, self._info(key, first)

    def _get_range(self, key: str, start: int, length: int) -> bytes:
        with _errors(key):
            try:
                response = self.client.get_object(
                    Bucket=self.bucket_name,
                    Key=self._name(key),
                    Range=f"bytes={start}-{start + length - 1}",
                )
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") == "InvalidRange":
                    return b""  # start at or past the end of the value
                raise
            with response["Body"] as body:
                return body.read()

    def _put(self, key: str, data: bytes, metadata: Metadata | None = None) -> str:
        if len(data) >= MULTIPART_THRESHOLD:
            return self._put_file(key, io.BytesIO(data), metadata)
        with _errors():
            self.client.put_object(
                Bucket=self.bucket_name, Key=self._name(key), Body=data, **self._upload_args(metadata)
            )
        return key

    def _put_file(self, key: str, file: IO[bytes], metadata: Metadata | None = None) -> str:
        # The metadata travels with the PutObject, or a multipart upload's first request.
        with _errors():
            self.client.upload_fileobj(
                UploadSource(file),
                self.bucket_name,
                self._name(key),
                ExtraArgs=self._upload_args(metadata),
                Config=self._transfer,
            )
        return key

    def _put_filename(self, key: str, filename: str, metadata: Metadata | None = None) -> str:
        # By name, s3transfer reads each part in the thread that sends it, seeking in the
        # file: parts are read in parallel, none copied through one reader in between.
        with _errors():
            self.client.upload_file(
                filename,
                self.bucket_name,
                self._name(key),
                ExtraArgs=self._upload_args(metadata),
                Config=self._file_transfer,
            )
        return key

    def _open_writer(self, key: str, metadata: Metadata | None = None) -> ValueWriter:
        return MultipartWriter(
            key,
            client=self.client,
            bucket=self.bucket_name,
            name=self._name(key),
            write_args=self._upload_args(metadata),
            errors=_errors,
            part_size=self.part_size,
            concurrency=self.stream_concurrency,
        )

    def _copy(self, source: str, dest: str) -> str:
        copy_source = {"Bucket": self.bucket_name, "Key": self._name(source)}
        extra = {key: value for key, value in self._write_args.items() if key != "Metadata"}
        try:
            # One request for any object up to 5 GiB (a managed copy asks HEAD first).
            with _errors(source):
                self.client.copy_object(
                    CopySource=copy_source,
                    Bucket=self.bucket_name,
                    Key=self._name(dest),
                    **extra,
                    **checksum_arguments(self.client),
                )
            return dest
        except BackendError as error:
            if not _copy_too_large(error):
                raise
        with _errors(source):
            # Larger: a managed multipart copy.
            self.client.copy(
                copy_source,
                self.bucket_name,
                self._name(dest),
                ExtraArgs=extra,
                Config=self._transfer,
            )
        return dest

    def _has_directory(self, key: str) -> bool:
        # The marker itself (key/) also starts with key/.
        for page in self._pages(key + DIRECTORY_MARKER_SUFFIX, MaxKeys=1):
            return bool(page.get("KeyCount") or page.get("Contents"))
        return False

    def _url_for(self, key: str) -> str:
        client = self.client
        if self.public:
            if self._unsigned_client is None:
                self._unsigned_client = boto3.session.Session().client(
                    "s3",
                    endpoint_url=client.meta.endpoint_url,
                    region_name=client.meta.region_name,
                    config=client.meta.config.merge(Config(signature_version=UNSIGNED)),
                )
            client = self._unsigned_client
        with _errors():
            return client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket_name, "Key": self._name(key)},
                ExpiresIn=self.url_valid_time or DEFAULT_URL_VALID_TIME,
            )


__all__ = ["MULTIPART_THRESHOLD", "PART_SIZE", "Boto3Store", "make_client"]
