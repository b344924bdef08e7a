"""The write-back journal: changes a mount accepted and has not stored yet, kept on local disk.

A mount in write-back mode records each change (a file's new content, a delete, a copy
or move, a directory made or removed) here before it reports success to the program,
and uploads it later (:mod:`kvfs.mount.writeback`). After a crash the next mount of the
same store with the same journal finds the changes still pending and replays them.

Layout of the journal directory (one per store; see ``docs/mount.rst``)::

    lock                    flock'ed by the mount using the journal
    changes/000000000042    one change: a JSON header line, then the content (puts)

A change file is written in one pass and made durable with one ``fdatasync`` and an
``fsync`` of ``changes/`` (with ``sync=True``); its header records the content's size
and CRC-32, so a change torn by a crash while it was written (before the program was
told it succeeded) is recognised and set aside as ``*.torn``, never uploaded. A change
is removed (and ``changes/`` synced) once the store has it: a change is never applied
twice after a later change of the same key was stored.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

from .errors import MountError

log = logging.getLogger("kvfs.mount.journal")

#: Kinds of change. ``key`` is what a change writes; copies and moves also name a ``source``.
KINDS = frozenset({"put", "delete", "copy", "move", "put_directory", "delete_directory"})
#: Bytes copied at a time into a change file.
_CHUNK = 1024 * 1024
#: Digits of a change file's sequence number (sorted by name = sorted by sequence).
_DIGITS = 12


class JournalInUseError(MountError):
    """Another mount (another process) uses this journal directory."""


@dataclass(frozen=True)
class Change:
    """One pending change of the store.

    ``sequence`` orders changes (higher is later). ``kind`` is one of :data:`KINDS`.
    ``key`` is the key written (the destination of a copy or move, the directory of a
    directory change); ``source`` the key copied or moved. A put carries ``size`` bytes
    of content and the ``mtime`` the mount showed for it.
    """

    sequence: int
    kind: str
    key: str
    source: str | None = None
    size: int = 0
    mtime: float | None = None

    @property
    def keys(self) -> tuple[str, ...]:
        """The keys this change touches: its source (if any) and its key."""
        return (self.key,) if self.source is None else (self.source, self.key)


class Journal:
    """The pending changes of one store, in *directory* (created, mode 0700, if missing).

    Only one process may use a journal at a time: :class:`JournalInUseError` otherwise.
    With *sync* (the default) every :meth:`add` is on disk when it returns (it survives
    a power cut); without it a change survives the mount's process being killed, not
    the machine stopping. Thread-safe.
    """

    def __init__(self, directory: str, *, sync: bool = True) -> None:
        self.directory = directory
        self.sync = sync
        self._changes = os.path.join(directory, "changes")
        os.makedirs(self._changes, mode=0o700, exist_ok=True)
        self._lock_fd = os.open(os.path.join(directory, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(self._lock_fd)
            if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise JournalInUseError(f"the journal {directory} is in use by another mount") from None
            raise
        self._directory_fd = os.open(self._changes, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._mutex = threading.Lock()
        self._next = 1 + max((int(name) for name in self._names()), default=0)

    def _names(self) -> Iterator[str]:
        for name in os.listdir(self._changes):
            if len(name) == _DIGITS and name.isdigit():
                yield name

    def _path(self, sequence: int) -> str:
        return os.path.join(self._changes, f"{sequence:0{_DIGITS}d}")

    # ------------------------------------------------------------------ writing

    def add(
        self,
        kind: str,
        key: str,
        *,
        source: str | None = None,
        content: IO[bytes] | bytes | None = None,
        mtime: float | None = None,
    ) -> Change:
        """Record a change durably and return it. A put takes its *content* (a file read
        from its current position to its end, or bytes); other kinds take none.

        Raises ``OSError`` (``ENOSPC``, ...) when the change cannot be written; nothing
        is recorded then.
        """
        if kind not in KINDS:
            raise ValueError(f"unknown kind of change: {kind!r}")
        if (kind == "put") != (content is not None):
            raise ValueError("a put, and only a put, carries content")
        if (kind in ("copy", "move")) != (source is not None):
            raise ValueError("a copy or move, and only those, has a source")
        with self._mutex:
            sequence = self._next
            self._next += 1
        path = self._path(sequence)
        fd = os.open(f"{path}.new", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            header = {"kind": kind, "key": key, "source": source, "mtime": mtime}
            size, checksum = 0, 0
            if content is not None:
                # The header goes first but its size and checksum are known last:
                # reserve a fixed-width line and write it at the end.
                os.pwrite(fd, b" " * 4096, 0)
                offset = 4096
                for chunk in _chunks(content):
                    _write_all(fd, chunk, offset)
                    offset += len(chunk)
                    checksum = zlib.crc32(chunk, checksum)
                size = offset - 4096
            header.update(size=size, crc32=checksum)
            line = json.dumps(header, ensure_ascii=True).encode() + b"\n"
            if content is not None:
                if len(line) > 4096:
                    raise ValueError("a key this long does not fit a journal header")
                line = line[:-1].ljust(4095) + b"\n"
            _write_all(fd, line, 0)
            if self.sync:
                os.fdatasync(fd)
            os.rename(f"{path}.new", path)
            if self.sync:
                os.fsync(self._directory_fd)
        except BaseException:
            os.close(fd)
            _unlink_quietly(f"{path}.new")
            raise
        os.close(fd)
        return Change(sequence, kind, key, source, size, mtime)

    def complete(self, change: Change) -> None:
        """The store has *change*: forget it (durably, so it is never applied again)."""
        _unlink_quietly(self._path(change.sequence))
        if self.sync:
            os.fsync(self._directory_fd)

    # ------------------------------------------------------------------ reading

    def open_content(self, change: Change) -> IO[bytes]:
        """The content of a put, as a file positioned at its start (the caller closes it)."""
        file = open(self._path(change.sequence), "rb")  # noqa: SIM115 - returned open
        file.seek(4096)
        return file

    def read_content(self, change: Change, offset: int, length: int) -> bytes:
        """Up to *length* bytes of a put's content from *offset*."""
        fd = os.open(self._path(change.sequence), os.O_RDONLY | os.O_CLOEXEC)
        try:
            return os.pread(fd, max(0, min(length, change.size - offset)), 4096 + offset)
        finally:
            os.close(fd)

    def pending(self) -> list[Change]:
        """Every change recorded and not completed, oldest first.

        A change file that is incomplete (torn by a crash while it was written) is
        renamed to ``*.torn`` and logged; half-written ``*.new`` files are removed.
        """
        for name in os.listdir(self._changes):
            if name.endswith(".new"):
                _unlink_quietly(os.path.join(self._changes, name))
        changes = []
        for name in sorted(self._names()):
            change = self._load(int(name))
            if change is not None:
                changes.append(change)
        return changes

    def _load(self, sequence: int) -> Change | None:
        path = self._path(sequence)
        try:
            with open(path, "rb") as file:
                header = json.loads(file.readline())
                change = Change(
                    sequence, header["kind"], header["key"], header.get("source"), header["size"], header.get("mtime")
                )
                if change.kind == "put":
                    file.seek(4096)
                    checksum, size = 0, 0
                    for chunk in iter(lambda: file.read(_CHUNK), b""):
                        checksum = zlib.crc32(chunk, checksum)
                        size += len(chunk)
                    if size != change.size or checksum != header["crc32"]:
                        raise ValueError(f"content is {size} bytes, the header says {change.size}, or differs")
                return change
        except (ValueError, KeyError, TypeError) as error:
            log.error("journal: change %s is incomplete (%s); kept as %s.torn, not uploaded", path, error, path)
            os.replace(path, f"{path}.torn")
            return None

    def close(self) -> None:
        """Release the journal (its pending changes stay on disk for the next mount)."""
        os.close(self._directory_fd)
        os.close(self._lock_fd)


def _chunks(content: IO[bytes] | bytes) -> Iterator[bytes]:
    if isinstance(content, (bytes, bytearray, memoryview)):
        if content:
            yield bytes(content)
        return
    while True:
        chunk = content.read(_CHUNK)
        if not chunk:
            return
        yield chunk


def _write_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


__all__ = ["Journal", "Change", "JournalInUseError", "KINDS"]
