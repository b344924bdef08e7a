"""HMAC signing of values: :class:`HMACDecorator` detects any change made without the key.

Values are stored as simplekv stores them: the value followed by its HMAC, computed with
the secret key extended by the value's key (``key.encode() + secret_key``), so a signed
value copied to another key does not verify there. Stores written by simplekv's or
minimalkv's ``HMACDecorator`` with the same secret and hash function read back unchanged.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import io
import shutil
import tempfile
from collections.abc import Callable, Iterator
from typing import IO, Any

from .decorator import StoreDecorator
from .errors import KvfsError
from .mixins import TTL
from .store import CHUNK_SIZE, KeyInfo, KeyValueStore, Metadata, _write_file_atomically


class VerificationException(KvfsError):
    """A value failed its HMAC check: it was changed, cut short, or written without the key.

    A :class:`~kvfs.errors.KvfsError`; simplekv's class of the same name derived directly
    from ``Exception``, which this still is, so ``except VerificationException`` and
    ``except Exception`` catch it as before.
    """


def _read_exactly(source: IO[bytes], size: int) -> bytes:
    """Read *size* bytes from *source*, fewer only at its end (pipes return short reads)."""
    parts = []
    while size > 0:
        chunk = source.read(size)
        if not chunk:
            break
        parts.append(chunk)
        size -= len(chunk)
    return b"".join(parts)


class _HMACFileReader(io.RawIOBase):
    """Reads a stored value without its trailing HMAC, and checks the HMAC at the end.

    The last ``digest_size`` bytes read from *source* are held back, since they may be the
    HMAC. A read returns fewer bytes than asked for only at the end of the value, and then
    the held-back bytes are compared (in constant time) with the HMAC of the whole value; a
    mismatch raises :class:`VerificationException` from that last read instead of
    returning its bytes, and from every read after it. A source too short to hold an HMAC
    raises at once.
    """

    def __init__(self, hm: Any, source: IO[bytes], key: str = "") -> None:
        super().__init__()
        self.hm = hm
        self.source = source
        self._key = key
        self._error: VerificationException | None = None
        self._done = False
        try:
            self._tail = _read_exactly(source, hm.digest_size)
        except BaseException:
            source.close()
            raise
        if len(self._tail) < hm.digest_size:
            source.close()
            raise VerificationException(
                f"value of {key!r} is too short to hold its HMAC ({len(self._tail)} bytes)"
            )

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._error is not None:
            raise self._error
        if self._done or len(buffer) == 0:
            return 0
        # Fill the whole buffer unless the source ends: a short read from here then always
        # means the end, so a caller that stops at the first short read has had the check.
        chunk = _read_exactly(self.source, len(buffer))
        data = self._tail + chunk
        size = len(chunk)
        out, self._tail = data[:size], data[size:]
        self.hm.update(out)
        if size < len(buffer):
            self._done = True
            if not hmac.compare_digest(self.hm.digest(), self._tail):
                self._error = VerificationException(f"HMAC verification failed for {self._key!r}")
                raise self._error
        buffer[:size] = out
        return size

    def readall(self) -> bytes:
        parts = []
        while chunk := self.read(CHUNK_SIZE):
            parts.append(chunk)
        return b"".join(parts)

    def close(self) -> None:
        if not self.closed:
            try:
                self.source.close()
            finally:
                super().close()


class HMACDecorator(StoreDecorator):
    """Signs every value with an HMAC on write and checks it on read (simplekv's order).

    ``HMACDecorator(secret_key, store, hashfunc=hashlib.sha256)``: *secret_key* is bytes
    (a ``str`` is UTF-8 encoded; anything else raises ``TypeError``). Each stored value
    grows by :attr:`hmac_digestsize` bytes; :meth:`stat` and :meth:`iter_level` report the
    size of the value without it. Digests are compared with :func:`hmac.compare_digest`.

    What raises :class:`VerificationException`, and when:

    * :meth:`get` and :meth:`open` check the whole value before returning anything.
      ``open`` streams it into a temporary file (in memory up to 1 MiB) while checking, so
      the file it returns is verified and seekable.
    * :meth:`get_file` streams and checks at the end, as simplekv does. To a file *name*
      nothing is left behind on failure (the file is written under a temporary name and
      only renamed into place once verified); to an open file object, what was written
      before the exception must be discarded.
    * :meth:`get_range` reads and checks the whole value and returns the range, so
      ``fast_ranges`` is False: a range is never returned unverified.
    * :meth:`copy` and :meth:`move` check the source and sign the value again for the
      destination key (a server-side copy would not verify there), so
      ``supports_server_copy`` is False.

    :meth:`stat`, listings, ``in``, :meth:`delete` and directory markers pass through
    unchecked. Differences from simplekv: ``put_file`` with a file *name* no longer
    appends the HMAC to the caller's file (it is streamed through a temporary file, as
    for file objects); ``open`` checks before it returns rather than at the last read;
    ``copy``/``move``/``get_range``/``stat`` exist.
    """

    fast_ranges = False
    supports_server_copy = False

    def __init__(
        self,
        secret_key: bytes | str,
        decorated_store: KeyValueStore,
        hashfunc: Callable[..., Any] | str = hashlib.sha256,
    ) -> None:
        super().__init__(decorated_store)
        if isinstance(secret_key, str):
            secret_key = secret_key.encode("utf-8")
        elif isinstance(secret_key, (bytes, bytearray, memoryview)):
            secret_key = bytes(secret_key)
        else:
            # simplekv called bytes(secret_key): bytes(16) would be a key of 16 zero bytes.
            raise TypeError(f"secret_key must be bytes, not {type(secret_key).__name__}")
        self.__secret_key = secret_key
        self.__hashfunc = hashfunc
        self._digest_size: int = hmac.new(b"", digestmod=hashfunc).digest_size

    @property
    def hmac_digestsize(self) -> int:
        """Size in bytes of the HMAC appended to each value."""
        return self._digest_size

    def _new_hmac(self, key: str, msg: bytes = b"") -> Any:
        # The value's key salts the secret, so a signed value only verifies under its key.
        return hmac.new(key.encode("utf-8") + self.__secret_key, msg, self.__hashfunc)

    def _reader(self, key: str) -> _HMACFileReader:
        return _HMACFileReader(self._new_hmac(key), self._dstore.open(key), key)

    def _signed_spool(self, key: str, file: IO[bytes]) -> IO[bytes]:
        """Copy *file* to its end into a temporary file followed by its HMAC; rewound."""
        hm = self._new_hmac(key)
        spool = tempfile.SpooledTemporaryFile(max_size=CHUNK_SIZE)  # noqa: SIM115 - returned
        try:
            while chunk := file.read(CHUNK_SIZE):
                hm.update(chunk)
                spool.write(chunk)
            spool.write(hm.digest())
            spool.seek(0)
        except BaseException:
            spool.close()
            raise
        return spool  # type: ignore[return-value]

    def _plain_size(self, size: int | None) -> int | None:
        return None if size is None else max(size - self._digest_size, 0)

    # ------------------------------------------------------------------ reads

    def _get(self, key: str) -> bytes:
        signed = self._dstore.get(key)
        if len(signed) < self._digest_size:
            raise VerificationException(f"value of {key!r} is too short to hold its HMAC")
        cut = len(signed) - self._digest_size
        value, digest = signed[:cut], signed[cut:]
        if not hmac.compare_digest(self._new_hmac(key, value).digest(), digest):
            raise VerificationException(f"HMAC verification failed for {key!r}")
        return value

    def _open(self, key: str) -> IO[bytes]:
        spool = tempfile.SpooledTemporaryFile(max_size=CHUNK_SIZE)  # noqa: SIM115 - returned
        try:
            with self._reader(key) as reader:
                shutil.copyfileobj(reader, spool, CHUNK_SIZE)
            spool.seek(0)
        except BaseException:
            spool.close()
            raise
        return spool  # type: ignore[return-value]

    def _get_file(self, key: str, file: IO[bytes]) -> None:
        with self._reader(key) as reader:
            shutil.copyfileobj(reader, file, CHUNK_SIZE)

    def _get_filename(self, key: str, filename: str) -> None:
        with self._reader(key) as reader:
            _write_file_atomically(filename, reader)  # type: ignore[arg-type]

    def _get_range(self, key: str, start: int, length: int) -> bytes:
        end = start + length
        parts = []
        position = 0
        with self._reader(key) as reader:
            # Read to the end even past the range: only then is the HMAC checked.
            while chunk := reader.read(CHUNK_SIZE):
                low, high = max(start - position, 0), min(end - position, len(chunk))
                if low < high:
                    parts.append(chunk[low:high])
                position += len(chunk)
        return b"".join(parts)

    def _stat(self, key: str) -> KeyInfo:
        info = self._dstore.stat(key)
        return dataclasses.replace(info, size=self._plain_size(info.size))

    def _describe(self, key: str) -> KeyInfo | None:
        info = self._dstore.describe(key)
        if info is None or info.is_prefix or info.size is None:
            return info
        return dataclasses.replace(info, size=self._plain_size(info.size))

    def _iter_level(self, prefix: str, delimiter: str) -> Iterator[KeyInfo]:
        for entry in self._dstore.iter_level(prefix, delimiter):
            if entry.is_prefix or entry.size is None:
                yield entry
            else:
                yield dataclasses.replace(entry, size=self._plain_size(entry.size))

    # ------------------------------------------------------------------ writes

    def _put(self, key: str, data: bytes, ttl_secs: TTL = None, metadata: Metadata | None = None) -> str:
        return super()._put(key, data + self._new_hmac(key, data).digest(), ttl_secs, metadata=metadata)

    def _put_file(self, key: str, file: IO[bytes], ttl_secs: TTL = None, metadata: Metadata | None = None) -> str:
        with self._signed_spool(key, file) as spool:
            return super()._put_file(key, spool, ttl_secs, metadata=metadata)

    def _put_filename(self, key: str, filename: str, ttl_secs: TTL = None, metadata: Metadata | None = None) -> str:
        with open(filename, "rb") as file:
            return self._put_file(key, file, ttl_secs, metadata=metadata)

    def _copy(self, source: str, dest: str) -> str:
        # The whole source is read (and so checked) before anything is written to dest.
        with self._reader(source) as reader:
            return self._put_file(dest, reader)  # type: ignore[arg-type]

    def _move(self, source: str, dest: str) -> str:
        self._copy(source, dest)
        self._delete(source)
        return dest


__all__ = ["HMACDecorator", "VerificationException"]
