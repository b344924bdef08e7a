"""The write-back journal: changes a mount accepted and has not stored yet, kept on local disk.

A mount in write-back mode records each change (a file's new content, a delete, a copy
or move, a directory made or removed) here before it reports success to the program,
and uploads it later (:mod:`kvfs.mount.writeback`). After a crash the next mount of the
same store with the same journal finds the changes still pending and replays them.

Layout of the journal directory (one per store; see ``docs/mount.rst``)::

    lock                      flock'ed by the mount using the journal
    changes/000000000007.log  a log segment: records appended one after another
    changes/000000000042.data the content of change 42, a put too big to go in the log

Each record is a 20-byte prefix (``KVJ1``, the header's length, the inline content's
length, the CRC-32 of header and content), a JSON header, then the inline content. A
record is a change (``sequence``, ``kind``, ``key``, ``source``, ``mtime``, ``size``,
``crc32`` of a separate content, ``metadata``: the mode, owner and times a put carries
or a ``set_metadata`` sets), ``done`` (the sequence of a change the store has) or
a ``checkpoint`` (the sequences pending when the segment began).

**Group commit**: records go into the log in order under a lock, and one ``fdatasync``
of the log makes every record written before it durable, so concurrent :meth:`Journal.add`
calls share one (the first waiting caller syncs for everyone written so far; the others
wait for it, then return or sync the next group). :meth:`Journal.add` returns only once
its record (and content) is durable. ``done`` records are not synced on their own: a
crash may forget that a change was stored, and it is then sent again, which is harmless
as long as no later change of the same key was stored after it; the queue calls
:meth:`Journal.make_durable` before it sends a change (one sync shared by every worker
and every add waiting then, none when nothing was written since the last), so an earlier
change is never replayed over a later one.

**Staging files**: :meth:`Journal.new_staging_file` gives a nameless file in ``changes/``
(``O_TMPFILE``) for a put's content to be written into; :meth:`Journal.add` then adopts
it instead of copying it: it reads it once for its size and CRC-32, syncs it, links it
in as the change's content file and syncs the directory, all before the record names it.
Where the link cannot be made (no ``/proc``) the content is copied as any other.

A new segment starts (synced, with a checkpoint) when the current one passes
:data:`SEGMENT_SIZE` and at every mount; a segment none of whose changes is pending any
more is deleted (after a sync, so the ``done`` records of others are durable first). A
record torn by a crash while it was written (before the program was told it succeeded)
fails its checksum and ends its segment's replay; a separate content torn so is set aside
as ``*.torn``, never uploaded.
"""

from __future__ import annotations

import errno
import fcntl
import io
import json
import logging
import os
import struct
import threading
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any, TypeVar

from .errors import MountError

_T = TypeVar("_T")

log = logging.getLogger("kvfs.mount.journal")

#: Kinds of change. ``key`` is what a change writes; copies and moves also name a ``source``.
KINDS = frozenset({"put", "delete", "copy", "move", "put_directory", "delete_directory", "set_metadata"})
#: Metadata fields a change may carry (``set_metadata`` arguments; a put's upload takes
#: all but ``atime``).
METADATA_FIELDS = frozenset({"mode", "uid", "gid", "mtime", "atime"})
#: Bytes copied at a time into a separate content file.
_CHUNK = 1024 * 1024
#: Contents up to this size go into the log itself; bigger ones into their own file.
INLINE_LIMIT = 1024 * 1024
#: A segment bigger than this is closed: the next record starts a new one.
SEGMENT_SIZE = 64 * 1024 * 1024
#: The log grows by this much at a time, filled with zeros (see ``Journal._allocate``).
_ALLOCATION = 1024 * 1024
#: Digits of segment and content file names (sorted by name = sorted by number).
_DIGITS = 12
_MAGIC = b"KVJ1"
#: Magic, header length, inline content length, CRC-32 of header and content.
_PREFIX = struct.Struct("<4sIQI")


class StagingFile(io.FileIO):
    """A nameless file in a journal's directory (see :meth:`Journal.new_staging_file`).

    Written and read as any file; closing it unrecorded discards it (so does the end of
    the process). :meth:`Journal.add` with it as a put's content adopts it: the caller
    must not change it afterwards (a staged copy that goes on being written starts a
    new staging file).
    """

    def __init__(self, fd: int, journal: Journal) -> None:
        super().__init__(fd, "r+b", closefd=True)
        self.journal = journal


class JournalInUseError(MountError):
    """Another mount (another process) uses this journal directory."""


@dataclass(frozen=True)
class Change:
    """One pending change of the store.

    ``sequence`` orders changes (higher is later). ``kind`` is one of :data:`KINDS`.
    ``key`` is the key written (the destination of a copy or move, the directory of a
    directory change); ``source`` the key copied or moved. A put carries ``size`` bytes
    of content and the ``mtime`` the mount showed for it. ``metadata`` is what a put
    stores with its value, or what a ``set_metadata`` sets: ``(field, value)`` pairs
    (:data:`METADATA_FIELDS`), sorted.
    """

    sequence: int
    kind: str
    key: str
    source: str | None = None
    size: int = 0
    mtime: float | None = None
    metadata: tuple[tuple[str, int | float], ...] = ()

    @property
    def keys(self) -> tuple[str, ...]:
        """The keys this change touches: its source (if any) and its key."""
        return (self.key,) if self.source is None else (self.source, self.key)


@dataclass(frozen=True)
class _Where:
    """Where a pending change's record is: its segment, and its inline content's offset there."""

    change: Change
    segment: int
    offset: int
    separate: bool


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
        legacy = [name for name in os.listdir(self._changes) if len(name) == _DIGITS and name.isdigit()]
        if legacy:
            os.close(self._lock_fd)
            raise MountError(
                f"the journal {directory} holds {len(legacy)} change(s) in an older format: "
                "mount it with the kvfs that wrote them and unmount (that sends them) first"
            )
        self._directory_fd = os.open(self._changes, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        # Guards everything below; waited on by adds whose record another add is syncing.
        self._lock = threading.Condition()
        self._where: dict[int, _Where] = {}  # pending changes by sequence
        self._live: dict[int, int] = {}  # pending changes per segment
        self._fd = -1  # the current segment, appended to
        self._segment = 0
        self._end = 0  # bytes written to the current segment
        self._synced = 0  # bytes of the current segment known durable
        self._syncing = False  # an add is syncing the current segment
        self._first_record_end = 0  # the end of the current segment's checkpoint
        self._allocated = 0  # the current segment's size: zeros after the end
        self._next = 1
        for name in os.listdir(self._changes):
            if name.endswith((".log.new", ".data.new")):  # never referenced by a record
                _unlink_quietly(os.path.join(self._changes, name))
        self._replay()
        with self._lock:
            self._start_segment()
            self._delete_finished_segments()
        #: Whether :meth:`new_staging_file` works on this journal's file system.
        self.stages = self._probe_staging()

    # ------------------------------------------------------------------ files

    def _numbers(self, suffix: str) -> list[int]:
        numbers = []
        for name in os.listdir(self._changes):
            number, dot, rest = name.partition(".")
            if dot and "." + rest == suffix and len(number) == _DIGITS and number.isdigit():
                numbers.append(int(number))
        return sorted(numbers)

    def _segment_path(self, segment: int) -> str:
        return os.path.join(self._changes, f"{segment:0{_DIGITS}d}.log")

    def _data_path(self, sequence: int) -> str:
        return os.path.join(self._changes, f"{sequence:0{_DIGITS}d}.data")

    # ------------------------------------------------------------------ staging files

    def _probe_staging(self) -> bool:
        try:
            self.new_staging_file().close()
        except OSError as error:
            log.info("journal: no staging files in %s (%s): big contents are copied in", self._changes, error)
            return False
        return True

    def new_staging_file(self) -> StagingFile:
        """A new, empty, nameless file in the journal's directory, for a put's content.

        Given to :meth:`add` as the content of a put, it becomes the change's content file
        without a copy. Raises ``OSError`` where the file system makes no nameless files
        (``O_TMPFILE``: Linux 3.11 on ext4, XFS, btrfs, tmpfs).
        """
        flag = getattr(os, "O_TMPFILE", 0)
        if not flag:
            raise OSError(errno.EOPNOTSUPP, "this system makes no nameless files (O_TMPFILE)")
        # Without O_EXCL: the file may be given a name later (linked in by add).
        fd = os.open(self._changes, flag | os.O_RDWR | os.O_CLOEXEC, 0o600)
        return StagingFile(fd, self)

    def owns(self, file: object) -> bool:
        """Whether *file* is an open staging file of this journal."""
        return isinstance(file, StagingFile) and file.journal is self and not file.closed

    def _adopt(self, sequence: int, file: StagingFile) -> tuple[int, int]:
        """Make the staging *file* the content file of change *sequence*, durably: size and CRC.

        Falls back to a copy where the file cannot be linked in (no ``/proc``). Raises
        what reading, syncing or copying raises; nothing is linked in then.
        """
        fd = file.fileno()
        size, checksum = _checksum(fd)
        if self.sync:
            os.fdatasync(fd)
        path = self._data_path(sequence)
        try:
            # linkat(AT_EMPTY_PATH) would need CAP_DAC_READ_SEARCH; through /proc it does not.
            # A dst_dir_fd makes Python call linkat (AT_SYMLINK_FOLLOW), not link: link
            # would link /proc's symbolic link itself (EXDEV).
            os.link(f"/proc/self/fd/{fd}", os.path.basename(path), dst_dir_fd=self._directory_fd, follow_symlinks=True)
        except OSError as error:
            log.debug("journal: staging file not linked in (%s): copied", error)
            return self._write_separately(sequence, b"", _FromStart(fd))
        try:
            if self.sync:
                os.fsync(self._directory_fd)
        except BaseException:
            _unlink_quietly(path)
            raise
        return size, checksum

    # ------------------------------------------------------------------ writing

    def add(
        self,
        kind: str,
        key: str,
        *,
        source: str | None = None,
        content: IO[bytes] | bytes | None = None,
        mtime: float | None = None,
        metadata: Mapping[str, int | float] | None = None,
    ) -> Change:
        """Record a change durably and return it. A put takes its *content* (a file read
        from its current position to its end, or bytes); other kinds take none. A
        :class:`StagingFile` of this journal is the content from its start, adopted
        without a copy when bigger than :data:`INLINE_LIMIT` (the caller closes it
        afterwards, and changes it no more). A put may carry *metadata* (fields of
        :data:`METADATA_FIELDS`); a ``set_metadata`` must.

        Raises ``OSError`` (``ENOSPC``, ...) when the change cannot be written; nothing
        is recorded then.
        """
        if kind not in KINDS:
            raise ValueError(f"unknown kind of change: {kind!r}")
        if (kind == "put") != (content is not None):
            raise ValueError("a put, and only a put, carries content")
        if (kind in ("copy", "move")) != (source is not None):
            raise ValueError("a copy or move, and only those, has a source")
        if (kind == "set_metadata" and not metadata) or (metadata and kind not in ("put", "set_metadata")):
            raise ValueError("a set_metadata, and only it or a put, carries metadata")
        if metadata and not METADATA_FIELDS.issuperset(metadata):
            raise ValueError(f"unknown metadata fields: {sorted(set(metadata) - METADATA_FIELDS)}")
        with self._lock:
            sequence = self._next
            self._next += 1
        header: dict[str, Any] = {"sequence": sequence, "kind": kind, "key": key, "source": source, "mtime": mtime}
        if metadata:
            header["metadata"] = dict(metadata)
        inline = b""
        if self.owns(content) and os.fstat(content.fileno()).st_size > INLINE_LIMIT:  # type: ignore[union-attr]
            header["size"], header["crc32"] = self._adopt(sequence, content)  # type: ignore[arg-type]
            header["separate"] = True
        elif content is not None:
            if self.owns(content):
                content.seek(0)  # type: ignore[union-attr]
            inline = _read_up_to(content, INLINE_LIMIT + 1)
            if len(inline) > INLINE_LIMIT:
                header["size"], header["crc32"] = self._write_separately(sequence, inline, content)
                header["separate"] = True
                inline = b""
            else:
                header["size"] = len(inline)
        change = _change_of(header)
        try:
            ticket = self._append(header, inline, change)
        except BaseException:
            if header.get("separate"):  # named by no record
                _unlink_quietly(self._data_path(sequence))
            raise
        if self.sync:
            try:
                self._wait_durable(ticket)
            except OSError:
                self._cancel_quietly(change)  # the caller hears it failed: never sent
                raise
        return change

    def _cancel_quietly(self, change: Change) -> None:
        try:
            self.complete(change)
        except OSError as error:
            log.error("journal: change %d (%s) failed and could not be cancelled: %s", change.sequence, change.key, error)

    def add_many(self, changes: list[tuple[str, str, str | None]]) -> list[Change]:
        """Record several changes without content, each ``(kind, key, source)``, with one
        sync for all (a directory's rename: a move per value); durable when it returns."""
        for kind, _, source in changes:
            if kind not in KINDS or kind in ("put", "set_metadata"):
                raise ValueError(f"add_many takes changes without content, not {kind!r}")
            if (kind in ("copy", "move")) != (source is not None):
                raise ValueError("a copy or move, and only those, has a source")
        recorded, ticket = [], (0, 0)
        for kind, key, source in changes:
            with self._lock:
                sequence = self._next
                self._next += 1
            header = {"sequence": sequence, "kind": kind, "key": key, "source": source, "mtime": None}
            change = _change_of(header)
            ticket = self._append(header, b"", change)
            recorded.append(change)
        if self.sync and recorded:
            try:
                self._wait_durable(ticket)
            except OSError:
                for change in recorded:
                    self._cancel_quietly(change)
                raise
        return recorded

    def _write_separately(self, sequence: int, first: bytes, rest: IO[bytes] | bytes) -> tuple[int, int]:
        """Write a big content to its own file, durably (before its record names it): size and CRC."""

        def write(fd: int) -> tuple[int, int]:
            size, checksum = 0, 0
            for chunk in _chunks(first, rest):
                _write_all(fd, chunk, size)
                size += len(chunk)
                checksum = zlib.crc32(chunk, checksum)
            return size, checksum

        fd, written = self._create_durably(self._data_path(sequence), write)
        os.close(fd)
        return written

    def _create_durably(self, path: str, write: Callable[[int], _T]) -> tuple[int, _T]:
        """Make the file *path* with what *write* writes to the descriptor it is given, durably.

        Written as ``PATH.new`` and renamed when synced, so a crash leaves the whole file or
        none. Returns the descriptor (open for reading and writing) and what *write* returned;
        raises what writing raises.
        """
        fd = os.open(f"{path}.new", os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            written = write(fd)
            if self.sync:
                os.fdatasync(fd)
            os.rename(f"{path}.new", path)
            if self.sync:
                os.fsync(self._directory_fd)
        except BaseException:
            os.close(fd)
            _unlink_quietly(f"{path}.new")
            raise
        return fd, written

    def _append(self, header: dict[str, Any], inline: bytes, change: Change | None) -> tuple[int, int]:
        """Write a record (of *change*, if given) at the end of the log; return (segment, end) to wait for."""
        encoded = json.dumps(header, ensure_ascii=True, separators=(",", ":")).encode()
        checksum = zlib.crc32(inline, zlib.crc32(encoded))
        record = _PREFIX.pack(_MAGIC, len(encoded), len(inline), checksum) + encoded + inline
        with self._lock:
            while self._end + len(record) > SEGMENT_SIZE and self._end > self._first_record_end:
                if self._syncing:  # its descriptor must stay open until that sync ends
                    self._lock.wait()
                    continue
                self._rotate()
            offset = self._end
            try:
                _write_all(self._fd, record, offset)
                if offset + len(record) > self._allocated:
                    self._allocate(offset + len(record))
            except BaseException:
                # Whatever part was written is overwritten by the next record.
                os.ftruncate(self._fd, offset)
                self._allocated = min(self._allocated, offset)
                raise
            self._end = offset + len(record)
            if change is not None:
                self._where[change.sequence] = _Where(
                    change, self._segment, offset + _PREFIX.size + len(encoded), bool(header.get("separate"))
                )
                self._live[self._segment] = self._live.get(self._segment, 0) + 1
            return self._segment, self._end

    def _allocate(self, end: int) -> None:
        """Write zeros beyond *end*: the records written there next change no file size, so
        their sync writes data only (no file system journal commit). Holds the lock."""
        allocated = (end // _ALLOCATION + 1) * _ALLOCATION
        _write_all(self._fd, bytes(allocated - end), end)
        self._allocated = allocated

    def _wait_durable(self, ticket: tuple[int, int]) -> None:
        """Return once the log is durable up to *ticket*: sync it, or wait for the add syncing it."""
        segment, end = ticket
        with self._lock:
            while True:
                if segment < self._segment or self._synced >= end:
                    return
                if not self._syncing:
                    break
                self._lock.wait()
            self._syncing = True
            fd, target = self._fd, self._end  # everything written so far: one sync for all
        try:
            os.fdatasync(fd)
        finally:
            with self._lock:
                self._syncing = False
                if segment == self._segment:
                    self._synced = max(self._synced, target)
                self._lock.notify_all()

    def _start_segment(self) -> None:
        """Begin a new segment with a checkpoint of what is pending, durably. Holds the lock."""
        self._segment = max([self._segment, *self._numbers(".log")]) + 1
        header = {"checkpoint": sorted(self._where), "next": self._next}
        encoded = json.dumps(header, separators=(",", ":")).encode()
        record = _PREFIX.pack(_MAGIC, len(encoded), 0, zlib.crc32(encoded)) + encoded
        fd, _ = self._create_durably(self._segment_path(self._segment), lambda fd: _write_all(fd, record, 0))
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = fd
        self._end = self._synced = self._first_record_end = self._allocated = len(record)

    def _rotate(self) -> None:
        """Close the current segment (synced) and start the next. Holds the lock."""
        if self.sync:
            os.fdatasync(self._fd)
        self._start_segment()
        self._delete_finished_segments()

    def _delete_finished_segments(self) -> None:
        """Delete every older segment with nothing pending. Holds the lock.

        The current segment is synced first: the ``done`` records written since the
        last sync must not be lost while the segments they complete go away.
        """
        finished = [number for number in self._numbers(".log") if number < self._segment and not self._live.get(number)]
        if not finished:
            return
        if self.sync and self._synced < self._end:
            os.fdatasync(self._fd)
            self._synced = self._end
        for number in finished:
            _unlink_quietly(self._segment_path(number))
            self._live.pop(number, None)

    def make_durable(self) -> None:
        """Return once every record written so far is durable (shared with concurrent adds).

        :meth:`complete` does not sync; call this before sending a change, so that no
        change done before it is replayed after it.
        """
        if self.sync:
            with self._lock:
                ticket = (self._segment, self._end)
            self._wait_durable(ticket)

    def complete(self, change: Change) -> None:
        """The store has *change*: forget it. Not synced: after a crash it may be sent
        again (see :meth:`make_durable`)."""
        header = {"done": change.sequence}
        self._append(header, b"", None)
        with self._lock:
            where = self._where.pop(change.sequence, None)
            if where is None:
                return
            self._live[where.segment] -= 1
            if where.segment != self._segment and not self._live[where.segment]:
                self._delete_finished_segments()
        if where.separate:
            _unlink_quietly(self._data_path(change.sequence))

    # ------------------------------------------------------------------ reading

    def content_path(self, change: Change) -> str | None:
        """The name of the file holding a put's content, None for content kept in the log.

        The file stays until the change is complete. Raises ``FileNotFoundError`` once it is.
        """
        return self._data_path(change.sequence) if self._where_of(change).separate else None

    def open_content(self, change: Change) -> IO[bytes]:
        """The content of a put, as a file positioned at its start (the caller closes it).

        Raises ``FileNotFoundError`` once the change is complete.
        """
        where = self._where_of(change)
        if where.separate:
            return open(self._data_path(change.sequence), "rb")  # noqa: SIM115 - returned open
        return io.BytesIO(self.read_content(change, 0, change.size))

    def read_content(self, change: Change, offset: int, length: int) -> bytes:
        """Up to *length* bytes of a put's content from *offset*.

        Raises ``FileNotFoundError`` once the change is complete.
        """
        where = self._where_of(change)
        length = max(0, min(length, change.size - offset))
        if where.separate:
            path, start = self._data_path(change.sequence), offset
        else:
            path, start = self._segment_path(where.segment), where.offset + offset
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            return os.pread(fd, length, start)
        finally:
            os.close(fd)

    def _where_of(self, change: Change) -> _Where:
        with self._lock:
            where = self._where.get(change.sequence)
        if where is None:
            raise FileNotFoundError(errno.ENOENT, f"change {change.sequence} is no longer in the journal")
        return where

    def pending(self) -> list[Change]:
        """Every change recorded and not completed, oldest first."""
        with self._lock:
            return [self._where[sequence].change for sequence in sorted(self._where)]

    def _replay(self) -> None:
        """Read what earlier mounts left: the pending changes, in ``_where`` and ``_live``."""
        found: dict[int, _Where] = {}
        for segment in self._numbers(".log"):
            for offset, header in _records(self._segment_path(segment)):
                if "checkpoint" in header:
                    still = set(header["checkpoint"])
                    found = {sequence: where for sequence, where in found.items() if sequence in still}
                    self._next = max(self._next, header["next"])
                elif "done" in header:
                    found.pop(header["done"], None)
                else:
                    change = _change_of(header)
                    found[change.sequence] = _Where(change, segment, offset, bool(header.get("separate")))
                    self._next = max(self._next, change.sequence + 1)
                    if header.get("separate") and not self._separate_is_whole(change, header):
                        del found[change.sequence]
        self._where = found
        for where in found.values():
            self._live[where.segment] = self._live.get(where.segment, 0) + 1
        for sequence in self._numbers(".data"):
            if sequence not in found:  # its change is done (or its record never written)
                _unlink_quietly(self._data_path(sequence))

    def _separate_is_whole(self, change: Change, header: dict[str, Any]) -> bool:
        """Whether a put's separate content is all there (if missing, the change was done)."""
        path = self._data_path(change.sequence)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            size, checksum = _checksum(fd)
        finally:
            os.close(fd)
        if size != change.size or checksum != header["crc32"]:
            log.error("journal: the content of change %d (%s) is incomplete; kept as %s.torn, not uploaded",
                      change.sequence, change.key, path)  # fmt: skip
            os.replace(path, f"{path}.torn")
            return False
        return True

    def close(self) -> None:
        """Release the journal (its pending changes stay on disk for the next mount).

        With nothing pending its segments go: an empty journal is an empty ``changes/``.
        """
        with self._lock:
            if self.sync and self._synced < self._end:
                os.fdatasync(self._fd)
            if not self._where:
                for number in self._numbers(".log"):
                    _unlink_quietly(self._segment_path(number))
            os.close(self._fd)
            self._fd = -1
        os.close(self._directory_fd)
        os.close(self._lock_fd)


def _change_of(header: dict[str, Any]) -> Change:
    return Change(
        header["sequence"],
        header["kind"],
        header["key"],
        header.get("source"),
        header.get("size", 0),
        header.get("mtime"),
        tuple(sorted(header.get("metadata", {}).items())),
    )


def _records(path: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """The intact records of a segment: (offset of the inline content, header), up to the first torn one."""
    with open(path, "rb") as file:
        data = file.read()
    offset = 0
    while offset + _PREFIX.size <= len(data):
        magic, header_size, inline_size, checksum = _PREFIX.unpack_from(data, offset)
        start = offset + _PREFIX.size
        end = start + header_size + inline_size
        if magic != _MAGIC or end > len(data) or zlib.crc32(data[start:end]) != checksum:
            break
        try:
            header = json.loads(data[start : start + header_size])
        except ValueError:
            break
        yield start + header_size, header
        offset = end
    if data[offset:].strip(b"\0"):  # zeros: room made for later records
        log.error("journal: %s is torn at byte %d (a crash while a change was written, before it was "
                  "acknowledged); the %d bytes after it are ignored", path, offset, len(data) - offset)  # fmt: skip


def _checksum(fd: int) -> tuple[int, int]:
    """Size and CRC-32 of the file *fd*, read once from its start."""
    size, checksum = 0, 0
    buffer = bytearray(_CHUNK)
    with memoryview(buffer) as view:
        while count := os.preadv(fd, [view], size):
            checksum = zlib.crc32(view[:count], checksum)
            size += count
    return size, checksum


class _FromStart(io.RawIOBase):
    """The file *fd* read from its start, leaving its position alone."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._position = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        count = os.preadv(self._fd, [buffer], self._position)
        self._position += count
        return count


def _read_up_to(content: IO[bytes] | bytes, limit: int) -> bytes:
    if isinstance(content, (bytes, bytearray, memoryview)):
        return bytes(content[:limit])
    parts, left = [], limit
    while left > 0:
        chunk = content.read(min(left, _CHUNK))
        if not chunk:
            break
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def _chunks(first: bytes, rest: IO[bytes] | bytes) -> Iterator[bytes]:
    """*first* (read from *rest* already), then the rest of *rest*."""
    if isinstance(rest, (bytes, bytearray, memoryview)):
        if rest:
            yield bytes(rest)
        return
    if first:
        yield first
    while True:
        chunk = rest.read(_CHUNK)
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


__all__ = ["Journal", "Change", "JournalInUseError", "StagingFile", "KINDS"]
