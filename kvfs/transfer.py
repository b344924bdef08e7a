"""Copy and synchronise keys between any two stores, streaming and in parallel.

This is the engine behind ``kvfs cp`` and ``kvfs sync``, usable from Python::

    from kvfs.transfer import transfer
    report = transfer(source, dest, prefix="photos/", delete=True)
    if report.failed:
        ...

A transfer has two steps. :func:`plan_transfer` lists both sides (with sizes, from the
listing where the backend has them, else from :meth:`~kvfs.KeyValueStore.stat`) and
decides, key by key, what to copy, what to skip and (for a sync with ``delete``) what to
delete. :func:`run_transfer` then carries the plan out with a pool of threads:

* a value is streamed from ``source.open(key)`` into ``dest.put_file(key, ...)``, so it
  never sits whole in memory (unless a backend itself buffers it);
* a key that fails is recorded in :attr:`TransferReport.failed` and the others go on;
* deletions start only after every copy of the run succeeded, so a failed or interrupted
  sync never removes a key whose replacement did not arrive.

A key whose destination already has the same size (or, with ``compare="checksum"``, the
same content) is skipped, so rerunning an interrupted transfer copies only what is
missing. Each backend's ``put_file`` replaces a key atomically, so an interrupted copy
leaves the old value or none, never a part.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import IO, Literal, Protocol, TypeVar

from .errors import KeyNotFoundError
from .keys import SEPARATOR
from .store import CHUNK_SIZE, DIRECTORY_MARKER_SUFFIX, KeyInfo, KeyValueStore

#: Threads used by default: transfers wait on networks and disks far more than on the CPU.
DEFAULT_JOBS = 8

#: How to decide that a key already present in the destination needs no copy:
#: ``"size"`` (same size), ``"checksum"`` (same size and same content) or ``"never"``
#: (always copy).
Compare = Literal["size", "checksum", "never"]

# A delimiter no key can contain: iter_level with it is one flat listing, with sizes.
_NO_DELIMITER = "\n"

T = TypeVar("T")
R = TypeVar("R")


class ProgressListener(Protocol):
    """Receives progress from :func:`run_transfer`, from several threads at once."""

    def bytes_moved(self, count: int) -> None:
        """*count* more bytes were read from the source."""

    def key_finished(self, key: str, error: BaseException | None) -> None:
        """*key* was copied (*error* is None) or failed with *error*."""


@dataclass
class TransferPlan:
    """What a transfer will do: the keys to copy, skip and delete.

    ``copy`` and ``skip`` hold the source's :class:`~kvfs.KeyInfo` (with sizes);
    ``missing`` the explicitly named keys that the source does not have.
    """

    copy: list[KeyInfo] = field(default_factory=list)
    skip: list[KeyInfo] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def bytes_to_copy(self) -> int:
        """The total size of the values to copy (unknown sizes count as 0)."""
        return sum(info.size or 0 for info in self.copy)


@dataclass
class TransferReport:
    """What :func:`run_transfer` did.

    ``failed`` maps each key that could not be copied (or deleted, or that is missing
    from the source) to its exception. ``deletions_held_back`` counts the deletions not
    attempted because a copy failed.
    """

    copied: list[str] = field(default_factory=list)
    skipped: int = 0
    deleted: list[str] = field(default_factory=list)
    failed: dict[str, BaseException] = field(default_factory=dict)
    bytes_copied: int = 0
    deletions_held_back: int = 0

    @property
    def ok(self) -> bool:
        """True when nothing failed."""
        return not self.failed


# ---------------------------------------------------------------------- listing


def walk(store: KeyValueStore, prefix: str = "", jobs: int = DEFAULT_JOBS) -> list[KeyInfo]:
    """Return a :class:`~kvfs.KeyInfo` with a size for every key starting with *prefix*.

    Sizes come from the store's listing where it has them (``listing_has_sizes``): one
    listing per level for stores with ``fast_level_listing``, one flat listing for the
    others. Otherwise each key is stat'ed, *jobs* at a time. A key deleted between the
    listing and its stat is left out. Directory markers are not keys and are left out.
    Raises what the store raises for a failed listing (a
    :class:`~kvfs.errors.BackendError`, usually).
    """
    infos = list(_listing(store, prefix))
    unsized = [info.key for info in infos if info.size is None]
    if not unsized:
        return infos
    stats, _missing = stat_keys(store, unsized, jobs)
    sized = {info.key: info for info in stats}
    complete: list[KeyInfo] = []
    for info in infos:
        if info.size is None:
            info = sized.get(info.key)  # type: ignore[assignment]
            if info is None:
                continue  # deleted since it was listed
        complete.append(info)
    return complete


def _listing(store: KeyValueStore, prefix: str) -> Iterator[KeyInfo]:
    if not store.listing_has_sizes:
        for key in store.iter_keys(prefix):
            yield KeyInfo(key)
    elif store.fast_level_listing:
        yield from _walk_levels(store, prefix)
    else:
        for info in store.iter_level(prefix, _NO_DELIMITER):
            if not info.is_prefix and not info.key.endswith(DIRECTORY_MARKER_SUFFIX):
                yield info


def _walk_levels(store: KeyValueStore, prefix: str) -> Iterator[KeyInfo]:
    pending = [prefix]
    while pending:
        level = pending.pop()
        for info in store.iter_level(level, SEPARATOR):
            if info.is_prefix:
                pending.append(info.key)
            elif not info.key.endswith(DIRECTORY_MARKER_SUFFIX):
                yield info


def stat_keys(
    store: KeyValueStore, keys: Iterable[str], jobs: int = DEFAULT_JOBS
) -> tuple[list[KeyInfo], list[str]]:
    """Stat *keys* in *store*, *jobs* at a time: ``(infos of those found, keys missing)``.

    Keys keep their order. Raises the first error other than a missing key (an invalid
    key, a backend failure).
    """
    keys = list(keys)
    found: dict[str, KeyInfo] = {}
    missing: set[str] = set()
    for key, info, error in parallel_map(store.stat, keys, jobs):
        if isinstance(error, KeyNotFoundError):
            missing.add(key)
        elif error is not None:
            raise error
        else:
            found[key] = info  # type: ignore[assignment]
    return [found[key] for key in keys if key in found], [key for key in keys if key in missing]


def checksum(store: KeyValueStore, key: str) -> str:
    """The BLAKE2b digest (hex) of *key*'s value, read in chunks. ``KeyError`` if missing."""
    digest = hashlib.blake2b()
    with store.open(key) as file:
        while chunk := file.read(CHUNK_SIZE):
            digest.update(chunk)
    return digest.hexdigest()


# ---------------------------------------------------------------------- planning


def select(
    store: KeyValueStore,
    *,
    keys: Sequence[str] | None = None,
    prefix: str = "",
    jobs: int = DEFAULT_JOBS,
) -> tuple[list[KeyInfo], list[str]]:
    """The keys a transfer considers in *store*, with sizes: ``(infos, missing keys)``.

    With *keys*, those of them that exist (the others are returned as missing);
    otherwise every key starting with *prefix* (see :func:`walk`).
    """
    if keys is not None:
        return stat_keys(store, dict.fromkeys(keys), jobs)
    return walk(store, prefix, jobs), []


def plan_transfer(
    source: KeyValueStore,
    dest: KeyValueStore,
    *,
    keys: Sequence[str] | None = None,
    prefix: str = "",
    compare: Compare = "size",
    delete: bool = False,
    jobs: int = DEFAULT_JOBS,
) -> TransferPlan:
    """Decide what a transfer from *source* to *dest* does, changing nothing.

    With *keys*, exactly those keys are considered (those the source lacks go to
    :attr:`TransferPlan.missing`); otherwise every key starting with *prefix*. A key is
    copied when the destination lacks it, or, by *compare*: has another size
    (``"size"``), another size or content (``"checksum"``, which reads both values), or
    always (``"never"``). With *delete*, destination keys starting with *prefix* that the
    source lacks are planned for deletion (not allowed together with *keys*).

    Raises ``ValueError`` for *delete* with *keys* or an unknown *compare*, and what the
    stores raise for a failed listing or stat.
    """
    check_options(keys=keys, compare=compare, delete=delete)
    wanted, missing = select(source, keys=keys, prefix=prefix, jobs=jobs)
    present: list[KeyInfo] = []
    if compare != "never" or delete:
        named = None if keys is None else [info.key for info in wanted]
        present, _ = select(dest, keys=named, prefix=prefix, jobs=jobs)
    return decide(source, dest, wanted, present, compare=compare, delete=delete, missing=missing, jobs=jobs)


def check_options(*, keys: Sequence[str] | None, compare: str, delete: bool) -> None:
    """Raise ``ValueError`` for options a transfer cannot honour together."""
    if delete and keys is not None:
        raise ValueError("delete applies to a whole prefix, not to named keys")
    if compare not in ("size", "checksum", "never"):
        raise ValueError(f"compare must be 'size', 'checksum' or 'never', not {compare!r}")


def decide(
    source: KeyValueStore,
    dest: KeyValueStore,
    wanted: Iterable[KeyInfo],
    present: Iterable[KeyInfo],
    *,
    compare: Compare = "size",
    delete: bool = False,
    missing: Sequence[str] = (),
    jobs: int = DEFAULT_JOBS,
) -> TransferPlan:
    """The plan for copying *wanted* (source keys with sizes) given *present* (the
    destination's), as :func:`plan_transfer` describes. Reads values only for
    ``compare="checksum"``; a value that cannot be read for comparison is copied, so its
    failure shows in the transfer instead of being silently skipped.
    """
    plan = TransferPlan(missing=list(missing))
    wanted = list(wanted)
    there = {info.key: info for info in present}
    same_size: list[KeyInfo] = []
    for info in wanted:
        other = there.get(info.key)
        if compare == "never" or other is None or other.size != info.size:
            plan.copy.append(info)
        elif compare == "checksum":
            same_size.append(info)
        else:
            plan.skip.append(info)
    for info, same, _error in parallel_map(
        lambda info: _same_content(source, dest, info.key), same_size, jobs
    ):
        (plan.skip if same else plan.copy).append(info)
    if delete:
        in_source = {info.key for info in wanted}
        plan.delete = sorted(key for key in there if key not in in_source)
    return plan


def _same_content(source: KeyValueStore, dest: KeyValueStore, key: str) -> bool:
    return checksum(source, key) == checksum(dest, key)


# ---------------------------------------------------------------------- running


class _CountingReader:
    """A read-only file that reports each byte it hands out, once (even after a seek back)."""

    def __init__(self, file: IO[bytes], report: Callable[[int], None]) -> None:
        self._file = file
        self._report = report
        self._reported = 0  # the furthest offset already reported

    def _advance(self) -> None:
        position = self._file.tell()
        if position > self._reported:
            self._report(position - self._reported)
            self._reported = position

    def read(self, size: int = -1) -> bytes:
        data = self._file.read(size)
        self._advance()
        return data

    def readinto(self, buffer: bytearray | memoryview) -> int:
        count = self._file.readinto(buffer)  # type: ignore[attr-defined]
        self._advance()
        return count

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return self._file.seekable()

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def close(self) -> None:
        self._file.close()

    @property
    def closed(self) -> bool:
        return self._file.closed


def copy_value(
    source: KeyValueStore,
    dest: KeyValueStore,
    key: str,
    on_bytes: Callable[[int], None] | None = None,
) -> None:
    """Stream *key*'s value from *source* into *dest* (replacing it there).

    *on_bytes* is called with each number of bytes read. ``KeyError`` if *source* lacks
    *key*; whatever *dest* raises for a failed write (the key is then left as it was).
    """
    with source.open(key) as file:
        reader = file if on_bytes is None else _CountingReader(file, on_bytes)
        dest.put_file(key, reader)  # type: ignore[arg-type]


def run_transfer(
    source: KeyValueStore,
    dest: KeyValueStore,
    plan: TransferPlan,
    *,
    jobs: int = DEFAULT_JOBS,
    progress: ProgressListener | None = None,
) -> TransferReport:
    """Carry out *plan*: copy its keys *jobs* at a time, then (only if every copy
    succeeded) delete its deletions.

    Failures are collected in the report, never raised; a ``KeyboardInterrupt`` stops
    the remaining work (copies in flight finish, each atomically) and is re-raised.
    """
    report = TransferReport(skipped=len(plan.skip))
    for key in plan.missing:
        report.failed[key] = KeyNotFoundError(key)
    lock = threading.Lock()

    def moved(count: int) -> None:
        with lock:
            report.bytes_copied += count
        if progress is not None:
            progress.bytes_moved(count)

    def copy(info: KeyInfo) -> None:
        copy_value(source, dest, info.key, moved)

    for info, _, error in parallel_map(copy, plan.copy, jobs):
        if error is None:
            report.copied.append(info.key)
        else:
            report.failed[info.key] = error
        if progress is not None:
            progress.key_finished(info.key, error)

    if plan.delete and report.failed:
        report.deletions_held_back = len(plan.delete)
    elif plan.delete:
        for key, _, error in parallel_map(dest.delete, plan.delete, jobs):
            if error is None:
                report.deleted.append(key)
            else:
                report.failed[key] = error
    return report


def transfer(
    source: KeyValueStore,
    dest: KeyValueStore,
    *,
    keys: Sequence[str] | None = None,
    prefix: str = "",
    compare: Compare = "size",
    delete: bool = False,
    jobs: int = DEFAULT_JOBS,
    progress: ProgressListener | None = None,
) -> TransferReport:
    """Plan and run a transfer: :func:`plan_transfer` then :func:`run_transfer`."""
    plan = plan_transfer(source, dest, keys=keys, prefix=prefix, compare=compare, delete=delete, jobs=jobs)
    return run_transfer(source, dest, plan, jobs=jobs, progress=progress)


def parallel_map(
    function: Callable[[T], R], items: Sequence[T], jobs: int = DEFAULT_JOBS
) -> Iterator[tuple[T, R | None, Exception | None]]:
    """Apply *function* to *items* with *jobs* threads; yield ``(item, result, error)``.

    Results come in the order the calls finish, so one slow item holds back no other.
    Each call's ``Exception`` is caught and yielded, never raised. Only a few calls per
    thread are queued at once, so millions of items do not make millions of futures.
    On ``KeyboardInterrupt`` (or when the iterator is closed early) queued calls are
    cancelled, calls in flight are waited for, and the interrupt is re-raised.
    """
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, not {jobs}")
    if not items:
        return
    window = jobs * 4
    pending = iter(items)
    with ThreadPoolExecutor(max_workers=min(jobs, len(items)), thread_name_prefix="kvfs") as pool:
        running: dict[Future[R], T] = {}
        try:
            while True:
                for item in pending:
                    running[pool.submit(function, item)] = item
                    if len(running) >= window:
                        break
                if not running:
                    return
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    item = running.pop(future)
                    error = future.exception()
                    if error is None:
                        yield item, future.result(), None
                    elif isinstance(error, Exception):
                        yield item, None, error
                    else:
                        raise error  # KeyboardInterrupt or SystemExit in a worker: stop all
        finally:
            for future in running:
                future.cancel()


__all__ = [
    "DEFAULT_JOBS",
    "Compare",
    "ProgressListener",
    "TransferPlan",
    "TransferReport",
    "walk",
    "stat_keys",
    "checksum",
    "select",
    "plan_transfer",
    "check_options",
    "decide",
    "copy_value",
    "run_transfer",
    "transfer",
    "parallel_map",
]
