"""S3's streaming writer: a multipart upload whose parts go while the value is written.

:class:`MultipartWriter` is what :meth:`Boto3Store.open_writer
<kvfs.net.boto3store.Boto3Store.open_writer>` returns. Written bytes collect in a part
buffer; each full part is handed to a small pool of threads that upload it
(``UploadPart``) while the writer goes on, at most *concurrency* parts at once (a write
waits for a free slot), so the writer holds at most ``(concurrency + 1) * part_size``
bytes. The multipart upload is created with the first full part
(``CreateMultipartUpload``) and completed at :meth:`~kvfs.writer.ValueWriter.close`
(``CompleteMultipartUpload``): only then does the object appear. A value smaller than one
part is one ``PutObject`` at the close. On abort or any failure the upload is aborted
(``AbortMultipartUpload``): no object, and no parts left to pay for.

Where the client computes checksums of what it sends (botocore's default,
``request_checksum_calculation="when_supported"``) the upload is made as boto3's own
``upload_file`` makes it: created with ``ChecksumAlgorithm`` CRC32, each part's CRC-32
checked by the server and named again in the completion, so the object keeps a checksum
of its parts (without one the server makes its own checksum of the whole object at the
completion: on moto a second copy of it).
"""

from __future__ import annotations

import errno
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from typing import Any

from ..errors import BackendError
from ..writer import ValueWriter

log = logging.getLogger("kvfs.net.s3")

#: S3 takes at most this many parts in one upload.
MAX_PARTS = 10_000
#: The checksum boto3's transfers ask for when the client computes checksums.
CHECKSUM_ALGORITHM = "CRC32"
#: Part numbers per step of part size: the size doubles every 1,000 parts, so 10,000
#: parts of 8 MiB growing that way hold more than S3's largest object (5 TiB).
_PARTS_PER_SIZE = 1000


def checksum_algorithm(client: Any) -> str | None:
    """The checksum boto3's transfers ask the server to keep, for *client*: CRC32 where it
    computes checksums of what it sends (``request_checksum_calculation="when_supported"``,
    the default), else None."""
    config = getattr(getattr(client, "meta", None), "config", None)
    calculation = getattr(config, "request_checksum_calculation", None)
    return CHECKSUM_ALGORITHM if calculation == "when_supported" else None


def checksum_arguments(client: Any) -> dict[str, str]:
    """The ``ChecksumAlgorithm`` argument of an upload or a copy by *client*, none where it
    computes no checksums (a copy is one object: the server computes its checksum anew,
    a composite checksum of parts kept as it is would not match)."""
    algorithm = checksum_algorithm(client)
    return {} if algorithm is None else {"ChecksumAlgorithm": algorithm}


class MultipartWriter(ValueWriter):
    """Writes *name* in *bucket* through *client* as a multipart upload (see the module).

    *write_args* are the ``PutObject``/``CreateMultipartUpload`` arguments of the store
    (metadata, ACL, storage class); *errors* maps the client's exceptions to
    :class:`~kvfs.errors.BackendError` (a context manager).
    """

    def __init__(
        self,
        key: str,
        *,
        client: Any,
        bucket: str,
        name: str,
        write_args: dict[str, Any],
        errors: Callable[[], AbstractContextManager[object]],
        part_size: int,
        concurrency: int,
    ) -> None:
        super().__init__(key)
        self._client = client
        self._bucket = bucket
        self._name = name
        self._write_args = write_args
        self._errors = errors
        self._part_size = part_size
        self.memory = (concurrency + 1) * part_size
        # The part being filled, allocated whole and handed to the upload as it is: the
        # bytes are copied once, from the caller's data into it.
        self._buffer = bytearray()
        self._filled = 0
        self._upload_id: str | None = None
        self._next_part = 1
        self._etags: dict[int, str] = {}
        self._in_flight: list[Future[None]] = []
        self._slots = threading.BoundedSemaphore(concurrency)
        self._concurrency = concurrency
        self._pool: ThreadPoolExecutor | None = None
        self._failure: BaseException | None = None  # the first part that failed
        self._checksum = checksum_algorithm(client)
        self._checksum_arguments = checksum_arguments(client)
        self._part_checksums: dict[int, str] = {}

    @property
    def upload_id(self) -> str | None:
        """The multipart upload's id once it was created (the first full part), else None."""
        return self._upload_id

    def _current_part_size(self) -> int:
        return self._part_size << ((self._next_part - 1) // _PARTS_PER_SIZE)

    # ------------------------------------------------------------------ hooks

    def _write(self, data: memoryview) -> None:
        self._raise_failure()
        while data:
            size = self._current_part_size()
            if not self._buffer:  # a new part (the size changes only between parts)
                self._buffer = bytearray(size)
            count = min(size - self._filled, len(data))
            self._buffer[self._filled : self._filled + count] = data[:count]
            self._filled += count
            data = data[count:]
            if self._filled == size:
                self._send_part()

    def _commit(self) -> None:
        if self._upload_id is None:  # smaller than a part: one request
            with self._errors():
                self._client.put_object(Bucket=self._bucket, Key=self._name, Body=self._filled_part(), **self._write_args)
            self._buffer, self._filled = bytearray(), 0
            return
        if self._filled:
            self._send_part()  # the last part may be smaller than the others
        self._wait()
        self._raise_failure()
        parts = [self._part_entry(number) for number in sorted(self._etags)]
        with self._errors():
            self._client.complete_multipart_upload(
                Bucket=self._bucket, Key=self._name, UploadId=self._upload_id, MultipartUpload={"Parts": parts}
            )
        self._shut_down()

    def _abort(self) -> None:
        self._buffer, self._filled = bytearray(), 0
        for future in self._in_flight:
            future.cancel()
        self._wait()  # a part still uploading would outlive the abort (S3 keeps it)
        self._shut_down()
        if self._upload_id is None:
            return
        try:
            with self._errors():
                self._client.abort_multipart_upload(Bucket=self._bucket, Key=self._name, UploadId=self._upload_id)
        except Exception as error:  # the server's lifecycle rules expire what is left
            log.warning("could not abort the multipart upload of %s (%s): %s", self._name, self._upload_id, error)

    # ------------------------------------------------------------------ parts

    def _send_part(self) -> None:
        if self._next_part > MAX_PARTS:
            raise BackendError(errno.EFBIG, f"S3: {self._name} is larger than {MAX_PARTS} parts can hold")
        if self._upload_id is None:
            with self._errors():
                answer = self._client.create_multipart_upload(
                    Bucket=self._bucket, Key=self._name, **self._write_args, **self._checksum_arguments
                )
            self._upload_id = answer["UploadId"]
            self._pool = ThreadPoolExecutor(self._concurrency, thread_name_prefix="kvfs-s3-part")
        self._slots.acquire()  # at most `concurrency` parts in flight: this bounds memory
        try:
            self._raise_failure()
            data = self._filled_part()
            self._buffer, self._filled = bytearray(), 0
            number = self._next_part
            assert self._pool is not None
            future = self._pool.submit(self._upload_part, number, data)
        except BaseException:
            self._slots.release()
            raise
        self._next_part += 1
        self._in_flight = [part for part in self._in_flight if not part.done()]
        self._in_flight.append(future)

    def _filled_part(self) -> bytes | bytearray:
        """What the part buffer holds: itself when full (no copy), else a copy of its start."""
        if self._filled == len(self._buffer):
            return self._buffer
        return bytes(memoryview(self._buffer)[: self._filled])

    def _upload_part(self, number: int, data: bytes | bytearray) -> None:
        try:
            if self._failure is not None:
                return  # the upload is lost anyway
            with self._errors():
                answer = self._client.upload_part(
                    Bucket=self._bucket,
                    Key=self._name,
                    UploadId=self._upload_id,
                    PartNumber=number,
                    Body=data,
                    **self._checksum_arguments,
                )
            if self._checksum is not None and f"Checksum{self._checksum}" in answer:
                self._part_checksums[number] = answer[f"Checksum{self._checksum}"]
            self._etags[number] = answer["ETag"]
        except BaseException as error:
            if self._failure is None:
                self._failure = error
        finally:
            self._slots.release()

    def _part_entry(self, number: int) -> dict[str, Any]:
        """Part *number* as the completion names it: its ETag and, where asked for, its checksum."""
        entry: dict[str, Any] = {"ETag": self._etags[number], "PartNumber": number}
        if number in self._part_checksums:
            entry[f"Checksum{self._checksum}"] = self._part_checksums[number]
        return entry

    def _wait(self) -> None:
        for future in self._in_flight:
            if not future.cancelled():
                future.exception()  # waits; _upload_part keeps its own failure
        self._in_flight = []

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    def _shut_down(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


__all__ = ["MultipartWriter", "MAX_PARTS", "checksum_algorithm", "checksum_arguments"]
