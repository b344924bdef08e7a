"""Locks across hosts: ``flock`` and ``fcntl`` locks of a coordinated mount are leases.

Only a coordinated mount serves lock requests (:class:`CoordinatedOperations`): with the
``flock`` and ``lock`` operations registered, the kernel stops keeping those locks
itself and asks the daemon, which holds each as a lease in the coordination engine
(:mod:`kvfs.coordination.leases`), so every host's mount of the store sees it. Without
coordination the operations are not registered and each host's kernel keeps ``flock``
and ``fcntl`` locks on its own, for that host only. Directories are not served either
(FUSE leaves their locks to the kernel): their locks stay local.

How the kernel and libfuse 3 ask (``fuse_lowlevel.c``, ``fuse.c``):

* ``flock(2)`` arrives as the ``flock`` operation, with ``LOCK_NB`` for a try and the
  open file (``fuse_file_info.lock_owner``) as the owner; the high-level API gives no
  path when the file was unlinked (``nullpath_ok``): the handle names the file. When
  the last descriptor of that open file closes, ``release`` comes with
  ``flock_release`` set: the lock goes.
* ``fcntl(2)`` locks arrive as the ``lock`` operation (``F_GETLK``, ``F_SETLK``,
  ``F_SETLKW``), with the process's file table as the owner and the range made
  absolute (``l_whence`` 0, ``l_len`` 0 to the end). libfuse sends ``F_UNLCK`` of
  the whole file with every ``flush``, that is at each ``close`` (POSIX drops a
  process's locks of a file at any close of it): a mount serving locks never opens a
  file with ``noflush``.

An engine lease covers a whole file: one lease per file, owner and kind (``flock`` and
``fcntl`` locks are apart, as on Linux). Byte ranges are kept here, per owner, so that
unlocking a part keeps the rest; the lease is exclusive while any range is
write-locked, shared while only read locks are left, and released with the last range.
So a range lock excludes a conflicting lock of the whole file on every host, and two
owners' locks of disjoint ranges conflict too (stricter than POSIX, never looser).
``F_GETLK`` asks the engine who holds the file (:meth:`Coordinator.holders
<kvfs.coordination.Coordinator.holders>`) and reports another owner's lock as a write
lock of the whole file, held by process 0 (the holder may be on another host). A file
renamed while locked keeps its lease under its old name until it is unlocked.

A blocked request (``F_SETLKW``, ``flock`` without ``LOCK_NB``) tries the engine again
every 20 ms growing to 250 ms, on its FUSE thread, until it gets the lock, the caller
is interrupted (a signal: ``EINTR``) or the mount ends. libfuse has 10 worker threads
by default, so at most :data:`MAX_WAITING` requests wait at once; another blocked
request fails with ``ENOLCK`` rather than leave the mount no thread to serve the
unlock it waits for. An engine that cannot be reached fails a lock request with
``ENOLCK`` (an unlock always succeeds: the lease then expires by itself). A mount that
dies stops renewing its leases, which expire after their lifetime (``lock_lifetime``).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from ..coordination import CoordinationError, Lease
from .binding import mfusepy
from .handles import OpenFile
from .operations import KvfsOperations, _operation

log = logging.getLogger("kvfs.mount")

FuseOSError = mfusepy.FuseOSError

#: Blocked lock requests that may wait on FUSE threads at once (libfuse runs 10).
MAX_WAITING = 4
#: First and longest pause between two tries of a blocked request, in seconds.
FIRST_PAUSE = 0.02
LONGEST_PAUSE = 0.25
#: The end of a range that runs to the end of the file.
TO_THE_END = (1 << 63) - 1
#: ``fcntl`` locks are leases apart from ``flock`` ones; no key starts with "/".
_FCNTL_PREFIX = "/fcntl/"

FLOCK = "flock"
FCNTL = "fcntl"

Ranges = list[tuple[int, int, int]]


def set_range(ranges: Ranges, start: int, end: int, kind: int) -> Ranges:
    """*ranges* (``(start, end, F_RDLCK or F_WRLCK)``, ends included) with ``start..end`` set to *kind*.

    ``F_UNLCK`` removes the range; a lock replaces what it overlaps, as ``fcntl`` does
    for one owner. Returns a new list in order of start.
    """
    kept: Ranges = []
    for first, last, held in ranges:
        if last < start or first > end:
            kept.append((first, last, held))
            continue
        if first < start:
            kept.append((first, start - 1, held))
        if last > end:
            kept.append((end + 1, last, held))
    if kind != fcntl.F_UNLCK:
        kept.append((start, end, kind))
    return sorted(kept)


def lease_mode(ranges: Ranges) -> bool | None:
    """Whether a lease for *ranges* is shared (True), exclusive (False), or not needed (None)."""
    if not ranges:
        return None
    return all(kind == fcntl.F_RDLCK for _, _, kind in ranges)


@dataclass
class HeldLock:
    """One owner's lock of one file, held as the lease *lease*."""

    kind: str
    name: str  # the lease's name below the store's channel: the key, or _FCNTL_PREFIX + key
    key: str
    owner: str
    file: OpenFile  # kept so the record's identity (id of the file) is not reused
    lease: Lease
    ranges: Ranges = field(default_factory=list)


def _libfuse_interrupted() -> Any:
    """libfuse's ``int fuse_interrupted(void)``, or None where it is missing."""
    function = getattr(getattr(mfusepy, "_libfuse", None), "fuse_interrupted", None)
    if function is not None:
        function.argtypes = []
        function.restype = ctypes.c_int
    return function


_fuse_interrupted = _libfuse_interrupted()


def _interrupted() -> bool:
    """Whether the caller of the FUSE request this thread serves was interrupted (a signal).

    libfuse marks a request interrupted when the kernel sends INTERRUPT for it (the
    caller got a signal, or was killed: then the kernel waits for the answer).
    """
    return _fuse_interrupted is not None and bool(_fuse_interrupted())


class CoordinatedOperations(KvfsOperations):
    """The mount's operations plus ``flock`` and ``fcntl`` locks held in the coordination engine.

    Used by a mount with ``coordinate``; the mounter sets :attr:`coordination` before
    the mount starts. See the module's documentation for the contract.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._held: dict[tuple[str, int, int], HeldLock] = {}
        self._held_lock = threading.Lock()
        self._waiting = threading.BoundedSemaphore(MAX_WAITING)
        self._waiters = 0  # blocked requests waiting now (for kvfs status)
        self._stopping = threading.Event()

    # ------------------------------------------------------------------ operations

    def open(self, path: str, fi: Any) -> int:
        result = super().open(path, fi)
        if hasattr(fi, "noflush"):
            fi.noflush = 0  # libfuse unlocks a process's fcntl locks at its flush (close)
        return result

    @_operation
    def flock(self, path: str | None, fh: Any, op: int) -> int:
        file = self._file(fh)
        record = (FLOCK, id(file), int(fh.lock_owner))
        if op & fcntl.LOCK_UN:
            self._drop(record)
            return 0
        shared = not op & fcntl.LOCK_EX
        self._set(record, file, shared, [], wait=not op & fcntl.LOCK_NB, busy=errno.EWOULDBLOCK)
        return 0

    @_operation
    def lock(self, path: str | None, fh: Any, cmd: int, lock: Any) -> int:
        request = lock.contents
        file = self._file(fh)
        record = (FCNTL, id(file), int(fh.lock_owner))
        start = max(0, int(request.l_start))
        end = TO_THE_END if request.l_len <= 0 else start + int(request.l_len) - 1
        kind = int(request.l_type)
        if cmd == fcntl.F_GETLK:
            if kind != fcntl.F_UNLCK and self._conflicts(record, file, shared=kind == fcntl.F_RDLCK):
                request.l_type, request.l_whence, request.l_start, request.l_len, request.l_pid = fcntl.F_WRLCK, 0, 0, 0, 0
            else:
                request.l_type = fcntl.F_UNLCK
            return 0
        with self._held_lock:
            held = self._held.get(record)
        if kind == fcntl.F_UNLCK and held is None:
            return 0  # every close's flush: nothing held, no request to the engine
        ranges = set_range(held.ranges if held is not None else [], start, end, kind)
        shared = lease_mode(ranges)
        if shared is None:
            self._drop(record)
        elif kind == fcntl.F_UNLCK:
            self._lower(record, ranges, shared)
        else:
            self._set(record, file, shared, ranges, wait=cmd == fcntl.F_SETLKW, busy=errno.EAGAIN)
        return 0

    @_operation
    def release(self, path: str | None, fh: Any) -> int:
        file = self._open_file(fh.fh)
        if file is not None and getattr(fh, "flock_release", 0):
            self._drop((FLOCK, id(file), int(fh.lock_owner)))
        super().release(path, fh)
        if file is not None and file.handles <= 0:
            # No descriptor of the file is left open here: no lock of it can be either.
            self._drop_file(file)
        return 0

    def destroy(self, path: str) -> None:
        self._stopping.set()
        with self._held_lock:
            held, self._held = list(self._held.values()), {}
        if self.coordination is not None:
            for record in held:
                self.coordination.coordinator.release(record.lease)
        super().destroy(path)

    def status(self) -> dict[str, Any]:
        """What ``kvfs status`` shows, with the locks this mount holds in the engine."""
        with self._held_lock:
            held = list(self._held.values())
        locks = [
            {
                "kind": record.kind,
                "key": record.key,
                "mode": "shared" if record.lease.shared else "exclusive",
                "held": record.lease.held,
            }
            for record in held
        ]
        return super().status() | {
            "locks": sorted(locks, key=lambda lock: (lock["key"], lock["kind"])),
            "lock_requests_waiting": self._waiters,
        }

    # ------------------------------------------------------------------ leases

    def _file(self, fh: Any) -> OpenFile:
        file = None if fh is None else self._open_file(fh.fh)
        if file is None:
            raise FuseOSError(errno.EBADF)
        return file

    def _open_file(self, number: int) -> OpenFile | None:
        try:
            return self.files.handle(number).file
        except KeyError:
            return None

    def _owner(self, lock_owner: int) -> str:
        assert self.coordination is not None
        return f"{self.coordination.coordinator.sender}:{lock_owner:x}"

    def _set(self, record: tuple[str, int, int], file: OpenFile, shared: bool, ranges: Ranges, *, wait: bool, busy: int) -> None:
        """Hold *record*'s lock in mode *shared* (taking or converting its lease) with *ranges*."""
        with self._held_lock:
            held = self._held.get(record)
            if held is not None and held.lease.held and held.lease.shared == shared:
                held.ranges = ranges
                return
        kind, _, lock_owner = record
        if held is not None:
            name, key = held.name, held.key  # a file renamed since keeps its lease's name
        else:
            key = file.key
            if key is None:
                raise FuseOSError(errno.ENOLCK)
            name = _FCNTL_PREFIX + key if kind == FCNTL else key
        owner = self._owner(lock_owner)
        lease = self._acquire(name, owner, shared, wait=wait, busy=busy)
        with self._held_lock:
            replaced = self._held.get(record)
            self._held[record] = HeldLock(kind, name, key, owner, file, lease, ranges)
        if replaced is not None and replaced.lease is not lease:
            self._retire(replaced.lease)

    def _lower(self, record: tuple[str, int, int], ranges: Ranges, shared: bool) -> None:
        """Part of an ``fcntl`` lock was unlocked: keep the rest, sharing the lease if only reads are left."""
        with self._held_lock:
            held = self._held.get(record)
        if held is None:
            return
        if held.lease.shared or not shared or not held.lease.held:
            held.ranges = ranges
            return
        try:
            self._set(record, held.file, shared, ranges, wait=False, busy=errno.EAGAIN)
        except FuseOSError:  # an unlock never fails: stay exclusive, stricter than needed
            held.ranges = ranges

    def _acquire(self, name: str, owner: str, shared: bool, *, wait: bool, busy: int) -> Lease:
        coordination = self.coordination
        if coordination is None:
            raise FuseOSError(errno.ENOLCK)
        lifetime = self.options.lock_lifetime

        def attempt() -> Lease | None:
            try:
                return coordination.acquire_lock(name, owner, shared=shared, timeout=0.0, lifetime=lifetime)
            except CoordinationError as error:
                log.warning("lock of %s refused: the coordination engine cannot be reached (%s)", name, error)
                raise FuseOSError(errno.ENOLCK) from None

        lease = attempt()
        if lease is not None:
            return lease
        if not wait:
            raise FuseOSError(busy)
        if not self._waiting.acquire(blocking=False):
            log.warning("lock of %s refused: %d lock requests wait already (ENOLCK)", name, MAX_WAITING)
            raise FuseOSError(errno.ENOLCK)
        with self._held_lock:
            self._waiters += 1
        try:
            pause = FIRST_PAUSE
            while lease is None:
                if _interrupted() or self._stopping.wait(pause):
                    raise FuseOSError(errno.EINTR)
                pause = min(pause * 2, LONGEST_PAUSE)
                lease = attempt()
            return lease
        finally:
            with self._held_lock:
                self._waiters -= 1
            self._waiting.release()

    def _retire(self, lease: Lease) -> None:
        """Stop renewing *lease*, replaced by a conversion (the engine's entry is the new lease's)."""
        lease.released = True
        if self.coordination is not None:
            self.coordination.coordinator.release(lease)  # released already: only forgotten

    def _drop(self, record: tuple[str, int, int]) -> None:
        with self._held_lock:
            held = self._held.pop(record, None)
        if held is not None and self.coordination is not None:
            self.coordination.coordinator.release(held.lease)

    def _drop_file(self, file: OpenFile) -> None:
        with self._held_lock:
            records = [record for record, held in self._held.items() if held.file is file]
        for record in records:
            self._drop(record)

    def _conflicts(self, record: tuple[str, int, int], file: OpenFile, *, shared: bool) -> bool:
        """Whether another owner holds a lock of *file* that a lock in mode *shared* conflicts with."""
        with self._held_lock:
            held = self._held.get(record)
        key = held.key if held is not None else file.key
        if key is None or self.coordination is None:
            return False
        try:
            holders = self.coordination.coordinator.holders(self.coordination.lock_name(_FCNTL_PREFIX + key))
        except CoordinationError as error:
            log.warning("lock test of %s failed: the coordination engine cannot be reached (%s)", key, error)
            raise FuseOSError(errno.ENOLCK) from None
        holders.pop(self._owner(record[2]), None)  # the asker's own lock is no conflict
        return any(not shared or not sharing for sharing in holders.values())


__all__ = ["CoordinatedOperations", "HeldLock", "MAX_WAITING", "lease_mode", "set_range"]
