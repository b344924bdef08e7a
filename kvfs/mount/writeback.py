"""Write-back: changes recorded in the journal and sent to the store by a pool of workers.

:class:`WriteBack` takes changes (a file's content, deletes, copies, moves, directories),
records each in the :class:`~kvfs.mount.journal.Journal` (durable when the call returns)
and uploads them with *transfers* worker threads, keeping the order per key: a change
waits for every earlier pending change that touches one of its keys (a write or delete
never overtakes an earlier one; a move waits for its source's upload), and removing a
directory waits for every pending change below it. Everything else runs in parallel.

Along the way:

* a put or delete of a key whose earlier put has not started yet replaces it (the earlier
  content is never uploaded: an editor saving twice uploads once);
* deletes that are ready together go as one :meth:`~kvfs.KeyValueStore.delete_many` (one
  request per 1,000 keys on S3);
* a change that fails is retried with backoff (1 s doubling to 60 s) for as long as the
  mount lives, logged with its key, and listed by :meth:`WriteBack.status`; the journal
  keeps it for the next mount;
* :meth:`resolve` says where a key's content is while changes are pending (the journal,
  another key of the store, or nowhere), so the mount shows the pending state at once;
* uploads wait while changes keep coming: a change is sent once no new one has come for
  :data:`QUIET` seconds, or once it has waited *delay* seconds (``--write-back-delay``),
  so a burst of writes (``tar -x``, ``cp -r``) runs at local speed without uploads
  competing with it for the processor, and a file replaced or deleted within the burst
  is never uploaded. ``fsync`` (:meth:`wait`) and unmounting (:meth:`drain`) send at once;
* :meth:`when_stored` calls back once the store has what is pending for some keys (a
  coordinated mount announces its changes to other hosts then, not when journaled).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO

from ..errors import KeyNotFoundError
from ..store import KeyValueStore, Metadata, run_parallel
from .journal import Change, Journal
from .options import DEFAULT_TRANSFERS, DEFAULT_WRITE_BACK_DELAY

log = logging.getLogger("kvfs.mount.writeback")

#: Default of the longest a change waits while newer changes keep coming, in seconds
#: (rclone's ``--vfs-write-back`` waits 5 s after a file's last change too).
DEFAULT_DELAY = DEFAULT_WRITE_BACK_DELAY
#: Uploads start once no new change has come for this long, in seconds: longer than the
#: gaps inside a burst of writes, short enough not to be felt after it.
QUIET = 0.1
#: The interpreter's thread switch interval while workers run, in seconds: a FUSE thread
#: waiting for the GIL held by a busy worker waits up to this long (Python's default, 5 ms,
#: is longer than a whole small-file close).
_SWITCH_INTERVAL = 0.0005
#: Delays between attempts of a failing change, in seconds (the last one repeats).
RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0)
#: Most deletes (or moves) sent in one batch (S3: 1,000 keys per DeleteObjects).
_BATCH_SIZE = 1000
#: Batches of deletes (and of moves, on stores that copy on the server) sent at once:
#: the ones that arrive meanwhile wait and go together, in one batch (rm -r: a few
#: DeleteObjects instead of one request per file; a directory rename: parallel COPYs,
#: then one DeleteObjects).
_BATCHES_IN_FLIGHT = 1
#: Puts up to this size are uploaded as one bytes object, larger ones streamed.
_SMALL = 4 * 1024 * 1024


@dataclass(eq=False)
class _Pending:
    """A change in the queue, with what it waits for and what waits for it."""

    change: Change
    waits_for: set[_Pending] = field(default_factory=set)
    waiting: set[_Pending] = field(default_factory=set)
    #: The pending change of the source a copy or move reads (None: the store has it).
    source_before: _Pending | None = None
    state: str = "queued"  # queued -> running -> done (or back to queued after a failure)
    #: When the change was queued (``time.monotonic()``).
    queued_at: float = 0.0
    attempts: int = 0
    error: BaseException | None = None
    retry_at: float = 0.0
    #: Callbacks of :meth:`WriteBack.when_stored` waiting for this change, among others.
    announcements: list[_Announcement] = field(default_factory=list)

    __hash__ = object.__hash__


@dataclass(eq=False)
class _Announcement:
    """A :meth:`WriteBack.when_stored` callback and the pending changes it still waits for."""

    callback: Callable[[], None]
    waits_for: set[_Pending]


@dataclass(frozen=True)
class Content:
    """Where a key's pending content is: in the journal (*change*, a put), or in the store
    under *store_key* (a copy or move not yet done), or nowhere (*missing*).

    *directory* is True for a directory made and not yet stored, False for one removed.
    *metadata* is what the key's pending put and ``set_metadata`` changes give it
    (``(field, value)`` pairs, sorted), over what the store keeps.
    """

    change: Change | None = None
    store_key: str | None = None
    missing: bool = False
    directory: bool | None = None
    metadata: tuple[tuple[str, int | float], ...] = ()

    @property
    def fields(self) -> dict[str, int | float]:
        """:attr:`metadata` as a dict."""
        return dict(self.metadata)


class WriteBackError(OSError):
    """A pending change of the key failed (the store's error is the cause); it is retried."""


class WriteBack:
    """The write-back queue of one mount: see the module's documentation.

    On construction every change the *journal* still holds is queued again (a crash
    replay) before anything else. *on_stored* is called (from a worker) with each change
    once the store has it. Changes are sent once none has come for *quiet* seconds, or
    once one has waited *delay* seconds while newer ones kept coming (see the module's
    documentation); a *delay* of 0 sends every change at once.
    """

    def __init__(
        self,
        store: KeyValueStore,
        journal: Journal,
        transfers: int = DEFAULT_TRANSFERS,
        on_stored: Callable[[Change], None] | None = None,
        retry_delays: tuple[float, ...] = RETRY_DELAYS,
        delay: float = DEFAULT_DELAY,
        quiet: float = QUIET,
    ) -> None:
        if transfers < 1:
            raise ValueError(f"transfers must be at least 1, not {transfers}")
        if delay < 0:
            raise ValueError(f"delay must not be negative, not {delay}")
        self.store = store
        self.journal = journal
        self._on_stored = on_stored
        self._delays = retry_delays
        self._delay = delay
        self._quiet = min(quiet, delay)
        self._last_change = 0.0  # when the newest change was queued
        self._hurry = 0  # callers of wait() and drain() waiting: nothing is held back meanwhile
        self._lock = threading.Condition()
        self._latest: dict[str, _Pending] = {}  # newest pending change touching each key
        self._ready: deque[_Pending] = deque()
        self._retrying: list[_Pending] = []
        self._all: set[_Pending] = set()
        # Kept as changes come and go, so that status() (polled while draining) costs no scan.
        self._running = 0
        self._bytes_left = 0
        self._failing: set[_Pending] = set()
        self._stopping = False
        # Kinds of change sent in batches, and how many batches of each are in flight.
        self._batched = {"delete": 0} | ({"move": 0} if store.supports_server_copy else {})
        self.stored = 0  # changes the store has, since the mount started
        replayed = journal.pending()
        #: The changes an earlier mount left in the journal, queued first.
        self.replayed: list[Change] = list(replayed)
        with self._lock:
            for change in replayed:
                self._enqueue(change)
        if replayed:
            log.warning("write-back: replaying %d change(s) left by an earlier mount", len(replayed))
        sys.setswitchinterval(min(sys.getswitchinterval(), _SWITCH_INTERVAL))
        self._workers = [
            threading.Thread(target=self._work, name=f"kvfs-upload-{number}", daemon=True) for number in range(transfers)
        ]
        for worker in self._workers:
            worker.start()

    # ------------------------------------------------------------------ changes

    def put(
        self,
        key: str,
        content: IO[bytes] | bytes,
        mtime: float | None = None,
        metadata: Mapping[str, int | float] | None = None,
    ) -> Change:
        """Record *content* (a file from its position to its end, or bytes) as *key*'s new
        value, stored with *metadata* (:class:`~kvfs.Metadata` fields) where given.

        A staging file of the journal (:meth:`Journal.new_staging_file`) is adopted, not
        copied: the caller closes it afterwards and writes it no more.
        """
        return self._add("put", key, content=content, mtime=mtime, metadata=metadata)

    def set_metadata(self, key: str, fields: Mapping[str, int | float]) -> Change:
        """Record a ``set_metadata(key, **fields)`` (after every earlier change of *key*)."""
        return self._add("set_metadata", key, metadata=fields)

    def delete(self, key: str) -> Change:
        """Record the deletion of *key*."""
        return self._add("delete", key)

    def copy(self, source: str, key: str) -> Change:
        """Record a copy of *source*'s value (as it is now, pending changes included) to *key*."""
        return self._add("copy", key, source=source)

    def move(self, source: str, key: str) -> Change:
        """Record a move of *source*'s value (pending changes included) to *key*."""
        return self._add("move", key, source=source)

    def move_many(self, moves: list[tuple[str, str]]) -> list[Change]:
        """Record a move of each ``(source, key)``, in order, with one journal sync for all."""
        return self.add_many([("move", key, source) for source, key in moves])

    def add_many(self, changes: Sequence[tuple[str, str, str | None]]) -> list[Change]:
        """Record changes without content, each ``(kind, key, source)``, in order, with one
        journal sync for all (a directory's rename: its moves; its markers)."""
        recorded = self.journal.add_many(list(changes))
        with self._lock:
            for change in recorded:
                self._enqueue(change)
        return recorded

    def put_directory(self, key: str) -> Change:
        """Record a new (empty) directory *key*."""
        return self._add("put_directory", key)

    def delete_directory(self, key: str) -> Change:
        """Record the removal of the directory *key* (after every pending change below it)."""
        return self._add("delete_directory", key)

    def _add(self, kind: str, key: str, **details: object) -> Change:
        change = self.journal.add(kind, key, **details)  # type: ignore[arg-type]
        with self._lock:
            self._enqueue(change)
        return change

    def _enqueue(self, change: Change) -> None:
        pending = _Pending(change, queued_at=time.monotonic())
        # Inside a burst (the previous change came less than QUIET ago) workers are holding
        # back, in waits that end by themselves: no need to wake one for each change.
        in_burst = pending.queued_at - self._last_change < self._quiet and not self._hurry
        self._last_change = pending.queued_at
        for key in change.keys:
            earlier = self._latest.get(key)
            if earlier is None:
                continue
            if (
                key == change.key
                and change.kind in ("put", "delete")
                and earlier.change.kind == "put"
                and earlier.change.key == key
                and earlier.state == "queued"
                and not earlier.waiting
            ):
                # Never started, nothing depends on it: the new change replaces it.
                self._cancel(earlier, pending)
                continue
            pending.waits_for.add(earlier)
            earlier.waiting.add(pending)
            if key == change.source or change.kind == "set_metadata":
                pending.source_before = earlier  # where the value it reads (or leaves) is
        if change.kind == "delete_directory":
            below = change.key + "/"
            for other in self._all:
                if any(key.startswith(below) for key in other.change.keys):
                    pending.waits_for.add(other)
                    other.waiting.add(pending)
        for key in change.keys:
            self._latest[key] = pending
        self._all.add(pending)
        self._bytes_left += change.size
        if not pending.waits_for:
            if not self._ready or not in_burst:  # with nothing ready, workers wait without end
                self._lock.notify()
            self._ready.append(pending)

    def _cancel(self, earlier: _Pending, replacement: _Pending) -> None:
        """Drop *earlier* (a queued put nothing waits for) in favour of *replacement*."""
        for before in earlier.waits_for:
            before.waiting.discard(earlier)
            before.waiting.add(replacement)
            replacement.waits_for.add(before)
        for announcement in earlier.announcements:  # they wait for what replaces it
            announcement.waits_for.discard(earlier)
            announcement.waits_for.add(replacement)
            replacement.announcements.append(announcement)
        earlier.announcements = []
        earlier.state = "done"
        self._all.discard(earlier)
        self._failing.discard(earlier)
        self._bytes_left -= earlier.change.size
        try:
            self._ready.remove(earlier)
        except ValueError:
            pass
        if earlier in self._retrying:
            self._retrying.remove(earlier)
        self.journal.complete(earlier.change)

    # ------------------------------------------------------------------ the mount's view

    def resolve(self, key: str) -> Content | None:
        """Where *key*'s content is while changes of it are pending; None when none are."""
        with self._lock:
            pending = self._latest.get(key)
            if pending is None:
                return None
            return self._content_of(pending, key)

    def _content_of(self, pending: _Pending | None, key: str) -> Content:
        metadata: dict[str, int | float] = {}  # set by pending set_metadata changes, newest first
        while True:
            if pending is None or pending.state == "done":
                return Content(store_key=key, metadata=_pairs(metadata))
            change = pending.change
            if change.kind == "set_metadata":
                metadata = dict(change.metadata) | metadata
                pending = pending.source_before
                continue
            if change.kind == "put":
                return Content(change=change, metadata=_pairs(dict(change.metadata) | metadata))
            if change.kind == "delete" or (change.kind == "move" and key == change.source):
                return Content(missing=True)
            if change.kind in ("copy", "move") and key == change.key:
                pending, key = pending.source_before, change.source  # type: ignore[assignment]
                continue
            if change.kind == "copy" and key == change.source:
                pending = pending.source_before  # a copy leaves its source as it was before
                continue
            return Content(store_key=key, directory=change.kind == "put_directory", metadata=_pairs(metadata))

    def is_pending(self, key: str) -> bool:
        """Whether a change touching *key* is still pending."""
        with self._lock:
            return key in self._latest

    def pending_below(self, directory: str) -> dict[str, Content]:
        """The pending state of the keys directly below *directory* ("" for the top)."""
        prefix = directory + "/" if directory else ""
        return {key: content for key, content in self.pending_under(prefix).items() if "/" not in key[len(prefix) :]}

    def pending_under(self, prefix: str) -> dict[str, Content]:
        """The pending state of every key that starts with *prefix*."""
        with self._lock:
            return {
                key: self._content_of(pending, key) for key, pending in self._latest.items() if key.startswith(prefix)
            }

    def read(self, change: Change, offset: int, length: int) -> bytes:
        """Bytes of a pending put's content (see :meth:`resolve`)."""
        return self.journal.read_content(change, offset, length)

    # ------------------------------------------------------------------ waiting

    def when_stored(self, keys: Sequence[str], callback: Callable[[], None], *, below: bool = False) -> None:
        """Call *callback* once the store has every change now pending that touches *keys*.

        With *below*, changes of the keys below them (``key/...``) count too (a directory's
        rename or removal). The call comes at once when nothing is pending, else from the
        worker that stored the last of them (a change replaced before it started hands the
        wait on to its replacement; a failing one is waited for through its retries).
        Changes still pending when the mount stops never call back. Exceptions of
        *callback* are logged, not raised.
        """
        with self._lock:
            waits_for = {self._latest[key] for key in keys if key in self._latest}
            if below:
                prefixes = tuple(key + "/" for key in keys)
                waits_for.update(p for p in self._all if any(k.startswith(prefixes) for k in p.change.keys))
            if waits_for:
                announcement = _Announcement(callback, waits_for)
                for pending in waits_for:
                    pending.announcements.append(announcement)
                return
        _call_back(callback)

    def wait(self, key: str, timeout: float | None = None) -> None:
        """Wait until no change of *key* is pending (fsync). Raises :class:`WriteBackError`
        as soon as one of them has failed (it is still retried), ``TimeoutError`` after
        *timeout* seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock, self._hurrying():
            while True:
                pending = self._latest.get(key)
                if pending is None:
                    return
                failed = self._failed_before(pending)
                if failed is not None:
                    raise WriteBackError(
                        f"the upload of {failed.change.key!r} failed: {failed.error}"
                    ) from failed.error
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"changes of {key!r} are still pending")
                self._lock.wait(remaining)

    @contextlib.contextmanager
    def _hurrying(self) -> Iterator[None]:
        """Hold nothing back while the caller waits (an fsync, an unmount). Holds the lock."""
        self._hurry += 1
        self._lock.notify_all()
        try:
            yield
        finally:
            self._hurry -= 1

    def _failed_before(self, pending: _Pending) -> _Pending | None:
        """*pending* or a change it waits for (transitively) that has failed."""
        seen: set[_Pending] = set()
        stack = [pending]
        while stack:
            current = stack.pop()
            if current in seen:
                continue
            seen.add(current)
            if current.error is not None:
                return current
            stack.extend(current.waits_for)
        return None

    def drain(self, progress: Callable[[dict[str, int]], None] | None = None, timeout: float | None = None) -> bool:
        """Wait until every pending change is stored; True if so, False after *timeout*.

        *progress* is called with :meth:`status` about once a second while waiting.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock, self._hurrying():
            while self._all:
                if progress is not None:
                    self._lock.release()
                    try:
                        progress(self.status())
                    finally:
                        self._lock.acquire()
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._lock.wait(1.0 if remaining is None else min(1.0, remaining))
            return True

    def status(self) -> dict[str, object]:
        """Counts for ``kvfs status``: pending, in flight, failed, bytes left, whether uploads
        are held back (changes keep coming), and the failures."""
        with self._lock:
            return {
                "pending": len(self._all),
                "in_flight": self._running,
                "failed": len(self._failing),
                "bytes_left": self._bytes_left,
                "stored": self.stored,
                # Uploads wait for writes to pause (see _held_until).
                "held": self._held_until(time.monotonic()) is not None,
                "failures": [
                    {"key": p.change.key, "kind": p.change.kind, "attempts": p.attempts, "error": str(p.error)}
                    for p in sorted(self._failing, key=lambda p: p.change.sequence)[:100]
                ],
            }

    def close(self) -> None:
        """Stop the workers (after the changes in flight). Pending changes stay in the journal."""
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
        for worker in self._workers:
            worker.join()
        self.journal.close()

    # ------------------------------------------------------------------ workers

    def _next_batch(self) -> list[_Pending] | None:
        """The next change (or batch of deletes or moves) to send; None when stopping. Holds the lock."""
        while not self._stopping:
            now = time.monotonic()
            for pending in list(self._retrying):
                if pending.retry_at <= now:
                    self._retrying.remove(pending)
                    self._ready.append(pending)
            held_until = self._held_until(now)
            first = None if held_until is not None else self._first_sendable()
            if first is not None:
                self._ready.remove(first)
                batch = [first]
                kind = first.change.kind
                if kind in self._batched:
                    self._batched[kind] += 1
                    for other in list(self._ready):
                        if len(batch) >= _BATCH_SIZE:
                            break
                        if other.change.kind == kind:
                            self._ready.remove(other)
                            batch.append(other)
                for pending in batch:
                    pending.state = "running"
                self._running += len(batch)
                return batch
            wake = min((p.retry_at for p in self._retrying), default=None)
            if held_until is not None:
                wake = held_until if wake is None else min(wake, held_until)
            self._lock.wait(None if wake is None else max(0.0, wake - now))
        return None

    def _held_until(self, now: float) -> float | None:
        """When the ready changes may go, if they are held back now (changes are still
        coming, and the oldest ready one has waited less than the delay); else None."""
        if not self._ready or self._hurry or not self._delay:
            return None
        until = min(self._last_change + self._quiet, self._ready[0].queued_at + self._delay)
        return until if until > now else None

    def _first_sendable(self) -> _Pending | None:
        """The oldest ready change a worker may send now (a batched kind waits while its batches are in flight)."""
        for pending in self._ready:
            if self._batched.get(pending.change.kind, 0) < _BATCHES_IN_FLIGHT:
                return pending
        return None

    def _work(self) -> None:
        while True:
            with self._lock:
                batch = self._next_batch()
            if batch is None:
                return
            try:
                self._send(batch)
            except Exception as error:  # retried: logged, kept, counted
                self._failed(batch, error)
            else:
                self._done(batch)
            finally:
                if batch[0].change.kind in self._batched:
                    with self._lock:
                        self._batched[batch[0].change.kind] -= 1
                        self._lock.notify_all()

    def _send(self, batch: list[_Pending]) -> None:
        # The journal's records of changes done so far are durable before anything later
        # is stored: a crash then never replays an earlier change over a later one.
        self.journal.make_durable()
        change = batch[0].change
        store = self.store
        if change.kind == "delete":
            store.delete_many([pending.change.key for pending in batch])
        elif change.kind == "put":
            metadata = _uploaded(change.metadata)  # recorded only where the store keeps it
            path = None if change.size <= _SMALL else self.journal.content_path(change)
            if path is not None:
                # By name: S3 reads the parts in its sending threads, a local store copies in the kernel.
                store.put_file(change.key, path, metadata=metadata)
            elif change.size <= _SMALL:
                store.put(change.key, self.journal.read_content(change, 0, change.size), metadata=metadata)
            else:
                with self.journal.open_content(change) as content:
                    store.put_file(change.key, content, metadata=metadata)
        elif change.kind == "set_metadata":
            try:
                store.set_metadata(change.key, **dict(change.metadata))  # type: ignore[arg-type]
            except KeyNotFoundError:
                log.warning("write-back: the metadata of %s were not set: it is gone", change.key)
        elif change.kind == "move" and "move" in self._batched:
            self._send_moves(batch)
        elif change.kind in ("copy", "move"):
            try:
                (store.copy if change.kind == "copy" else store.move)(change.source, change.key)  # type: ignore[arg-type]
            except KeyNotFoundError:
                # The source was deleted by someone else meanwhile: nothing left to move.
                log.warning("write-back: %s of %s to %s: the source is gone", change.kind, change.source, change.key)
        elif change.kind == "put_directory":
            if store.supports_directories:
                store.put_directory(change.key)
        elif change.kind == "delete_directory":
            if store.supports_directories:
                store.delete_directory(change.key)

    def _send_moves(self, batch: list[_Pending]) -> None:
        """Copy every value of *batch* (in parallel), then delete the sources in one ``delete_many``.

        A failure leaves every source in place, so the whole batch can be sent again.
        """
        moved: list[str] = []

        def copy(pending: _Pending) -> None:
            source, key = pending.change.source, pending.change.key
            try:
                self.store.copy(source, key)  # type: ignore[arg-type]
            except KeyNotFoundError:
                log.warning("write-back: move of %s to %s: the source is gone", source, key)
            else:
                moved.append(source)  # type: ignore[arg-type]

        run_parallel(copy, batch, self.store.parallel_requests)
        self.store.delete_many(moved)

    def _done(self, batch: list[_Pending]) -> None:
        for pending in batch:
            self.journal.complete(pending.change)
        announced: list[Callable[[], None]] = []
        with self._lock:
            for pending in batch:
                if pending.attempts:
                    log.warning("write-back: %s of %s stored after %d failed attempt(s)",
                                pending.change.kind, pending.change.key, pending.attempts)
                pending.state = "done"
                pending.error = None
                self._all.discard(pending)
                self._failing.discard(pending)
                self._bytes_left -= pending.change.size
                self._running -= 1
                self.stored += 1
                for key in pending.change.keys:
                    if self._latest.get(key) is pending:
                        del self._latest[key]
                for waiting in pending.waiting:
                    waiting.waits_for.discard(pending)
                    if not waiting.waits_for and waiting.state == "queued" and waiting not in self._retrying:
                        self._ready.append(waiting)
                for announcement in pending.announcements:
                    announcement.waits_for.discard(pending)
                    if not announcement.waits_for:
                        announced.append(announcement.callback)
                pending.announcements = []
            self._lock.notify_all()
        for callback in announced:
            _call_back(callback)
        if self._on_stored is not None:
            for pending in batch:
                self._on_stored(pending.change)

    def _failed(self, batch: list[_Pending], error: Exception) -> None:
        with self._lock:
            for pending in batch:
                pending.attempts += 1
                if pending.attempts == 1 or pending.attempts % 10 == 0:
                    log.error("write-back: %s of %s failed (attempt %d, retried): %s",
                              pending.change.kind, pending.change.key, pending.attempts, error)
                pending.error = error
                self._failing.add(pending)
                self._running -= 1
                pending.state = "queued"
                delay = self._delays[min(pending.attempts, len(self._delays)) - 1]
                pending.retry_at = time.monotonic() + delay
                self._retrying.append(pending)
            self._lock.notify_all()


def _pairs(fields: dict[str, int | float]) -> tuple[tuple[str, int | float], ...]:
    return tuple(sorted(fields.items()))


def _uploaded(metadata: tuple[tuple[str, int | float], ...]) -> Metadata | None:
    """What the upload of a put with *metadata* carries (no ``atime``: no store takes one there)."""
    fields = {name: value for name, value in metadata if name != "atime"}
    return Metadata(**fields) if fields else None  # type: ignore[arg-type]


def _call_back(callback: Callable[[], None]) -> None:
    try:
        callback()
    except Exception:
        log.exception("write-back: a stored-change callback failed")


__all__ = [
    "WriteBack",
    "WriteBackError",
    "Content",
    "DEFAULT_DELAY",
    "DEFAULT_TRANSFERS",
    "QUIET",
    "RETRY_DELAYS",
]
