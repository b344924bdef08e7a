"""Object-store backends: S3 in :mod:`kvfs.net.boto3store`, GCS in :mod:`kvfs.net.gcstore`,
Azure Blob Storage in :mod:`kvfs.net.azurestore`.

What they need around their client libraries lives here: :func:`open_streamed`, a
seekable file that reads one response stream from the current position and starts a new
(ranged) request only after a seek, so reading a whole value is one request and reading
a part of a large value transfers about that part; and :class:`UploadSource`, which
hands a caller's file to an upload library the way those libraries need it.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import re
import stat
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from decimal import Decimal, InvalidOperation
from typing import IO

from ..errors import BackendError
from ..store import Metadata

#: Buffer of an opened value: how much a small read asks the stream for.
READ_BUFFER_SIZE = 256 * 1024


class BucketStoreCapabilities:
    """The capability flags every object-store backend (S3, GCS, Azure) shares.

    A request each, with metadata, ranges and one-level listings natively; directory
    markers are ``dir/`` objects, as other tools of these services make them.
    """

    is_remote = True
    fast_stat = True
    fast_ranges = True
    fast_level_listing = True
    listing_has_sizes = True
    supports_directories = True


#: The user-metadata names of an object's mode, owner and mtime: those s3fs and rclone use
#: (``x-amz-meta-mode`` on S3), so each reads what the other wrote.
METADATA_NAMES = ("mode", "uid", "gid", "mtime")


def metadata_fields(metadata: Metadata, *, directory: bool = False, rfc3339: bool = False) -> dict[str, str]:
    """*metadata* as an object's user metadata, the way s3fs and rclone write it.

    The mode is the decimal ``st_mode``, file type included (s3fs); the mtime is
    seconds with up to nine decimals (s3fs, rclone's S3 backend) or, with *rfc3339*, an
    RFC 3339 time with nanoseconds (rclone's GCS backend).
    """
    fields: dict[str, str] = {}
    if metadata.mode is not None:
        fields["mode"] = str((stat.S_IFDIR if directory else stat.S_IFREG) | metadata.mode)
    if metadata.uid is not None:
        fields["uid"] = str(metadata.uid)
    if metadata.gid is not None:
        fields["gid"] = str(metadata.gid)
    if metadata.mtime is not None:
        fields["mtime"] = _rfc3339(metadata.mtime) if rfc3339 else _decimal_seconds(metadata.mtime)
    return fields


def _decimal_seconds(when: float) -> str:
    # The float's value to the nanosecond: ns / 1e9 would round up into the next second.
    text = f"{Decimal(when).quantize(Decimal('1e-9')):f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _rfc3339(when: float) -> str:
    nanoseconds = int(Decimal(when).quantize(Decimal("1e-9")) * 1_000_000_000)
    seconds, fraction = divmod(nanoseconds, 1_000_000_000)
    moment = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction:09d}".rstrip("0") if fraction else "") + "Z"


def parse_metadata(fields: Mapping[str, str] | None) -> Metadata:
    """The mode, owner and mtime in an object's user metadata (see :func:`metadata_fields`).

    Names are matched in any case (S3 servers differ); what is missing or cannot be read
    is None. The mtime may be seconds (s3fs, rclone on S3) or RFC 3339 (rclone on GCS).
    """
    if not fields:
        return Metadata()
    lowered = {name.lower(): value for name, value in fields.items() if name.lower() in METADATA_NAMES}
    if not lowered:
        return Metadata()
    mode = _integer(lowered.get("mode"))
    return Metadata(
        mode=None if mode is None else stat.S_IMODE(mode),
        uid=_integer(lowered.get("uid")),
        gid=_integer(lowered.get("gid")),
        mtime=_time(lowered.get("mtime")),
    )


def _integer(text: str | None) -> int | None:
    try:
        value = int(text) if text is not None else None
    except ValueError:
        return None
    return value if value is not None and value >= 0 else None


def _time(text: str | None) -> float | None:
    if not text:
        return None
    try:
        value = float(Decimal(text))
    except (InvalidOperation, ValueError):
        return _rfc3339_seconds(text)
    return value if value == value and abs(value) != float("inf") else None


def _rfc3339_seconds(text: str) -> float | None:
    # datetime keeps microseconds only: the fraction is added with all its digits.
    match = _RFC3339.fullmatch(text.strip())
    if match is None:
        return None
    whole, fraction, zone = match.groups()
    try:
        moment = datetime.datetime.fromisoformat(whole + ("+00:00" if zone in ("Z", "z") else zone))
    except ValueError:
        return None
    return float(Decimal(int(moment.timestamp())) + Decimal("0." + (fraction or "0")))


_RFC3339 = re.compile(r"(\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d)(?:\.(\d+))?([Zz]|[+-]\d\d:\d\d)")


class _StreamedValue(io.RawIOBase):
    """A read-only, seekable raw file over ``open_at(position) -> stream`` of known size."""

    def __init__(
        self,
        size: int,
        open_at: Callable[[int], IO[bytes]],
        errors: Callable[[], AbstractContextManager[object]],
        first_stream: IO[bytes] | None,
    ) -> None:
        self._size = size
        self._open_at = open_at
        self._errors = errors
        self._stream = first_stream
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            position = offset
        elif whence == io.SEEK_CUR:
            position = self._position + offset
        elif whence == io.SEEK_END:
            position = self._size + offset
        else:
            raise ValueError(f"invalid whence: {whence!r}")
        if position < 0:
            raise OSError(f"negative seek position {position}")
        if position != self._position:
            self._drop_stream()  # the next read starts a request at the new position
            self._position = position
        return position

    def _read(self, length: int) -> bytes:
        length = min(length, self._size - self._position)
        if length <= 0:
            return b""
        with self._errors():
            if self._stream is None:
                self._stream = self._open_at(self._position)
            data = self._stream.read(length)
        if not data:
            raise BackendError(
                f"the server ended the value at byte {self._position} of {self._size}"
            )
        self._position += len(data)
        return data

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self._read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def readall(self) -> bytes:
        parts = []
        while self._position < self._size:
            parts.append(self._read(self._size - self._position))
        return b"".join(parts)

    def _drop_stream(self) -> None:
        if self._stream is not None:
            stream, self._stream = self._stream, None
            with contextlib.suppress(Exception):
                stream.close()

    def close(self) -> None:
        self._drop_stream()
        super().close()


class RangedStream(io.RawIOBase):
    """A stream of a value from *start* on, made of ``read_range(start, length)`` calls.

    For a backend whose client has ranged reads but no response stream to hand out.
    """

    def __init__(self, read_range: Callable[[int, int], bytes], start: int) -> None:
        self._read_range = read_range
        self._position = start

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            raise ValueError("a ranged stream reads in bounded pieces")
        data = self._read_range(self._position, size)
        self._position += len(data)
        return data


class UploadSource:
    """A caller's file as upload libraries need it, read from its current position.

    s3transfer and google-cloud-storage take a read that returns fewer bytes than asked
    for as the end of the file (a pipe or socket often does that), ask for ``tell()``
    (which a pipe lacks), and s3transfer closes the file it uploaded. Here ``read(n)``
    returns *n* bytes unless the file ends, ``tell()`` counts the bytes read, the file
    is presented as not seekable (so it is read once, front to back, in bounded
    pieces), and ``close()`` leaves the caller's file open.
    """

    def __init__(self, file: IO[bytes]) -> None:
        self._file = file
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        return self._position

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            data = self._file.read()
        else:
            parts = []
            wanted = size
            while wanted > 0:
                part = self._file.read(wanted)
                if not part:
                    break
                parts.append(part)
                wanted -= len(part)
            data = b"".join(parts)
        self._position += len(data)
        return data

    def close(self) -> None:
        pass


def open_streamed(
    size: int,
    open_at: Callable[[int], IO[bytes]],
    *,
    first_stream: IO[bytes] | None = None,
    errors: Callable[[], AbstractContextManager[object]] = contextlib.nullcontext,
    buffer_size: int = READ_BUFFER_SIZE,
) -> IO[bytes]:
    """Return a buffered, seekable binary file of a *size*-byte value.

    ``open_at(position)`` starts a response stream at *position* (a ranged request);
    *first_stream*, if given, is an already open stream at position 0. Every request
    and read runs inside ``errors()``, which turns client errors into kvfs errors.
    Reading past a stream that ends early raises :class:`~kvfs.errors.BackendError`.
    """
    raw = _StreamedValue(size, open_at, errors, first_stream)
    return io.BufferedReader(raw, buffer_size)


__all__ = [
    "METADATA_NAMES",
    "READ_BUFFER_SIZE",
    "RangedStream",
    "UploadSource",
    "metadata_fields",
    "open_streamed",
    "parse_metadata",
]
