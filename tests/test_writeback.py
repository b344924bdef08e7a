"""The write-back journal and queue (kvfs.mount.journal, kvfs.mount.writeback), without FUSE."""

from __future__ import annotations

import io
import os
import pathlib
import threading
import time
import uuid

import pytest

from kvfs.decorator import StoreDecorator
from kvfs.errors import BackendError
from kvfs.memory import DictStore
from kvfs.mount import journal as journal_module
from kvfs.mount.errors import MountError
from kvfs.mount.journal import Journal, JournalInUseError
from kvfs.mount.writeback import WriteBack, WriteBackError
from kvfs.testing import StoreContract

FAST_RETRIES = (0.05, 0.1)


class Switchable(StoreDecorator):
    """Passes calls through; while ``broken`` is set every write fails; ``gate`` holds puts back."""

    def __init__(self, store: DictStore) -> None:
        super().__init__(store)
        self.broken = False
        self.gate = threading.Event()
        self.gate.set()
        self.calls: list[tuple[str, object]] = []
        self.lock = threading.Lock()

    def _note(self, name: str, argument: object) -> None:
        self.gate.wait(10)
        if self.broken:
            raise BackendError(f"{name} failed: the server is down")
        with self.lock:
            self.calls.append((name, argument))

    def _put(self, key, data, ttl_secs=None):  # type: ignore[no-untyped-def]
        self._note("put", key)
        return super()._put(key, data)

    def _put_file(self, key, file, ttl_secs=None):  # type: ignore[no-untyped-def]
        self._note("put_file", key)
        return super()._put_file(key, file)

    def _put_filename(self, key, filename, ttl_secs=None):  # type: ignore[no-untyped-def]
        self._note("put_file", key)
        return super()._put_filename(key, filename)

    def _delete(self, key):  # type: ignore[no-untyped-def]
        self._note("delete", key)
        return super()._delete(key)

    def _delete_many(self, keys):  # type: ignore[no-untyped-def]
        self._note("delete_many", tuple(keys))
        for key in keys:
            self._dstore.delete(key)

    def _move(self, source, dest):  # type: ignore[no-untyped-def]
        self._note("move", (source, dest))
        return super()._move(source, dest)

    def _copy(self, source, dest):  # type: ignore[no-untyped-def]
        self._note("copy", (source, dest))
        return super()._copy(source, dest)


@pytest.fixture
def backend() -> Switchable:
    return Switchable(DictStore())


def _queue(backend: Switchable, directory: pathlib.Path, **options: object) -> WriteBack:
    options.setdefault("retry_delays", FAST_RETRIES)
    return WriteBack(backend, Journal(str(directory)), **options)  # type: ignore[arg-type]


def test_changes_reach_the_store_and_leave_the_journal(backend: Switchable, tmp_path: pathlib.Path) -> None:
    queue = _queue(backend, tmp_path / "j")
    queue.put("a", b"one")
    queue.put("d/b", io.BytesIO(b"two"))
    queue.move("a", "c")
    assert queue.drain(timeout=10)
    assert backend.get("c") == b"one" and "a" not in backend
    assert backend.get("d/b") == b"two"
    assert queue.journal.pending() == []
    queue.close()
    assert os.listdir(tmp_path / "j" / "changes") == []  # nothing pending: no segment left


def test_pending_state_is_visible_at_once(backend: Switchable, tmp_path: pathlib.Path) -> None:
    backend.put("old", b"stored")
    backend.gate.clear()  # nothing reaches the store yet
    queue = _queue(backend, tmp_path / "j")
    change = queue.put("new", b"pending content")
    queue.move("old", "renamed")
    queue.delete("gone")
    resolved = queue.resolve("new")
    assert resolved is not None and resolved.change == change
    assert queue.read(change, 8, 100) == b"content"
    assert queue.resolve("old").missing  # type: ignore[union-attr]
    assert queue.resolve("renamed").store_key == "old"  # type: ignore[union-attr]
    assert queue.resolve("gone").missing  # type: ignore[union-attr]
    assert queue.resolve("untouched") is None
    assert set(queue.pending_below("")) == {"new", "old", "renamed", "gone"}
    backend.gate.set()
    assert queue.drain(timeout=10)
    assert backend.get("renamed") == b"stored"
    queue.close()


def test_a_move_of_a_pending_file_reads_the_pending_content(backend: Switchable, tmp_path: pathlib.Path) -> None:
    backend.gate.clear()
    queue = _queue(backend, tmp_path / "j")
    change = queue.put("tmp", b"draft")
    queue.move("tmp", "final")
    assert queue.resolve("final").change == change  # type: ignore[union-attr]
    backend.gate.set()
    assert queue.drain(timeout=10)
    assert backend.get("final") == b"draft" and "tmp" not in backend
    # The move (a copy, then a delete: the dictionary copies "on the server") waited
    # for the put of its source.
    names = [name for name, _ in backend.calls]
    assert names.index("put") < names.index("copy") < names.index("delete_many")
    queue.close()


def test_per_key_order_holds_under_many_writers(backend: Switchable, tmp_path: pathlib.Path) -> None:
    queue = _queue(backend, tmp_path / "j", transfers=8)

    def writer(number: int) -> None:
        for round_ in range(30):
            queue.put(f"k{number % 3}", f"{number}:{round_}".encode())

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    queue.put("k0", b"final-0")
    queue.put("k1", b"final-1")
    queue.delete("k2")
    assert queue.drain(timeout=30)
    assert backend.get("k0") == b"final-0" and backend.get("k1") == b"final-1"
    assert "k2" not in backend
    queue.close()


def test_a_queued_put_is_replaced_by_a_later_one(backend: Switchable, tmp_path: pathlib.Path) -> None:
    backend.gate.clear()
    queue = _queue(backend, tmp_path / "j", transfers=1)
    queue.put("blocker", b"x")  # the one worker waits on the gate with this one
    for version in range(5):
        queue.put("file", f"v{version}".encode())
    backend.gate.set()
    assert queue.drain(timeout=10)
    assert backend.get("file") == b"v4"
    assert [argument for name, argument in backend.calls if argument == "file"] == ["file"]
    queue.close()


def test_changes_wait_while_newer_ones_keep_coming(backend: Switchable, tmp_path: pathlib.Path) -> None:
    # Quiet and delay longer than the test: only a waiter (fsync) or a drain sends anything.
    queue = _queue(backend, tmp_path / "j", quiet=3600.0, delay=3600.0)
    queue.put("a", b"1")
    queue.put("tmp", b"scratch")
    queue.delete("tmp")  # made and removed within the burst: never uploaded
    time.sleep(0.3)
    assert backend.calls == []
    status = queue.status()
    assert status["pending"] == 2 and status["held"]  # the delete replaced the put of tmp
    queue.wait("a")  # an fsync sends at once
    assert backend.get("a") == b"1"
    assert queue.drain(timeout=10)
    assert ("put", "tmp") not in backend.calls
    assert not queue.status()["held"]
    assert "tmp" not in backend
    queue.close()


def test_status_says_when_uploads_are_held_back() -> None:
    from kvfs.cli.mount import describe_status

    queue = {"pending": 3, "in_flight": 0, "failed": 0, "bytes_left": 10, "stored": 0, "failures": []}
    held = describe_status({"write_back": queue | {"held": True}})
    assert any("held back while writes continue" in line for line in held), held
    assert not any("held back" in line for line in describe_status({"write_back": queue | {"held": False}}))


@pytest.mark.parametrize("quiet, delay", [(0.05, 3600.0), (3600.0, 0.05), (3600.0, 0.0)])
def test_held_changes_go_after_the_quiet_time_or_the_delay(
    backend: Switchable, tmp_path: pathlib.Path, quiet: float, delay: float
) -> None:
    queue = _queue(backend, tmp_path / "j", quiet=quiet, delay=delay)
    queue.put("a", b"1")
    deadline = time.monotonic() + 30
    while queue.status()["pending"] and time.monotonic() < deadline:
        time.sleep(0.02)  # nobody waits (no fsync, no drain): the queue sends by itself
    assert backend.get("a") == b"1"
    queue.close()


def test_a_negative_delay_is_refused(backend: Switchable, tmp_path: pathlib.Path) -> None:
    with pytest.raises(ValueError, match="delay"):
        _queue(backend, tmp_path / "j", delay=-1.0)


def test_ready_deletes_go_as_one_batch(backend: Switchable, tmp_path: pathlib.Path) -> None:
    for number in range(50):
        backend.put(f"d/{number}", b"x")
    backend.gate.clear()
    queue = _queue(backend, tmp_path / "j", transfers=1)
    queue.put("blocker", b"x")
    for number in range(50):
        queue.delete(f"d/{number}")
    backend.gate.set()
    assert queue.drain(timeout=10)
    batches = [argument for name, argument in backend.calls if name == "delete_many"]
    assert len(batches) == 1 and len(batches[0]) == 50  # type: ignore[arg-type]
    assert backend.keys(prefix="d/") == []
    queue.close()


def test_deletes_arriving_while_one_is_sent_wait_and_go_together(backend: Switchable, tmp_path: pathlib.Path) -> None:
    for number in range(50):
        backend.put(f"d/{number}", b"x")
    backend.gate.clear()
    queue = _queue(backend, tmp_path / "j", transfers=8)
    queue.delete("d/0")
    deadline = time.monotonic() + 10
    while queue.status()["in_flight"] != 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert queue.status()["in_flight"] == 1
    for number in range(1, 50):
        queue.delete(f"d/{number}")  # idle workers are there, yet these wait for the first batch
    assert queue.status()["in_flight"] == 1
    backend.gate.set()
    assert queue.drain(timeout=10)
    batches = [argument for name, argument in backend.calls if name == "delete_many"]
    assert batches == [("d/0",), tuple(f"d/{number}" for number in range(1, 50))]
    assert backend.keys(prefix="d/") == []
    queue.close()


def test_moves_arriving_while_one_is_sent_go_as_copies_and_one_delete(tmp_path: pathlib.Path) -> None:
    backend = Switchable(DictStore())
    for number in range(20):
        backend.put(f"a/{number}", str(number).encode())
    backend.gate.clear()
    queue = _queue(backend, tmp_path / "j", transfers=8)
    queue.move("a/0", "b/0")
    deadline = time.monotonic() + 10
    while queue.status()["in_flight"] != 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    for number in range(1, 20):
        queue.move(f"a/{number}", f"b/{number}")
    assert queue.status()["in_flight"] == 1
    backend.gate.set()
    assert queue.drain(timeout=10)
    deletes = [argument for name, argument in backend.calls if name == "delete_many"]
    assert deletes == [("a/0",), tuple(f"a/{number}" for number in range(1, 20))]
    assert not any(name in ("move", "delete") for name, _ in backend.calls)
    assert {key: backend.get(key) for key in backend.keys()} == {f"b/{n}": str(n).encode() for n in range(20)}
    queue.close()


def test_a_failed_batch_of_moves_is_sent_again_and_loses_nothing(tmp_path: pathlib.Path) -> None:
    backend = Switchable(DictStore())
    for number in range(5):
        backend.put(f"a/{number}", b"v")
    backend.broken = True
    queue = _queue(backend, tmp_path / "j", transfers=2)
    for number in range(5):
        queue.move(f"a/{number}", f"b/{number}")
    deadline = time.monotonic() + 10
    while not queue.status()["failed"] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert queue.status()["failed"]
    assert backend.keys(prefix="a/") == [f"a/{number}" for number in range(5)]  # nothing deleted
    backend.broken = False
    assert queue.drain(timeout=30)
    assert sorted(backend.keys()) == [f"b/{number}" for number in range(5)]
    queue.close()


def test_failures_are_retried_reported_and_wait_raises(backend: Switchable, tmp_path: pathlib.Path) -> None:
    backend.broken = True
    queue = _queue(backend, tmp_path / "j")
    queue.put("a", b"content")
    with pytest.raises(WriteBackError, match="server is down"):
        queue.wait("a", timeout=10)
    status = queue.status()
    assert status["failed"] == 1 and status["pending"] == 1 and status["bytes_left"] == 7
    assert status["failures"][0]["key"] == "a"  # type: ignore[index]
    backend.broken = False
    queue.put("a", b"newer")  # replaces the failing put, which is not running
    assert queue.drain(timeout=10)
    assert backend.get("a") == b"newer"
    status = queue.status()
    assert (status["pending"], status["in_flight"], status["failed"], status["bytes_left"]) == (0, 0, 0, 0)
    assert status["failures"] == []
    queue.close()


def test_when_stored_calls_back_once_the_store_has_the_change(backend: Switchable, tmp_path: pathlib.Path) -> None:
    queue = _queue(backend, tmp_path / "j")
    seen: list[object] = []
    queue.when_stored(["nothing-pending"], lambda: seen.append("at once"))
    assert seen == ["at once"]
    backend.broken = True
    queue.put("a", b"content")
    queue.put("d/x", b"below")
    queue.when_stored(["a"], lambda: seen.append(backend.get("a")))
    queue.when_stored(["d"], lambda: seen.append(backend.get("d/x")), below=True)
    with pytest.raises(WriteBackError):
        queue.wait("a", timeout=10)
    assert seen == ["at once"]  # failed and retried: not stored, not announced
    backend.broken = False
    assert queue.drain(timeout=10)
    assert seen[0] == "at once" and sorted(seen[1:]) == [b"below", b"content"]  # type: ignore[type-var]
    queue.close()


def test_when_stored_waits_for_the_put_that_replaced_the_awaited_one(
    backend: Switchable, tmp_path: pathlib.Path
) -> None:
    backend.gate.clear()
    queue = _queue(backend, tmp_path / "j", transfers=1)
    queue.put("blocker", b"x")  # the one worker waits on the gate with this one
    queue.put("file", b"v0")
    seen: list[bytes] = []
    queue.when_stored(["file"], lambda: seen.append(backend.get("file")))
    queue.put("file", b"v1")  # v0 never goes to the store
    backend.gate.set()
    assert queue.drain(timeout=10)
    assert seen == [b"v1"]
    queue.close()


def test_a_crash_leaves_changes_that_the_next_queue_replays(backend: Switchable, tmp_path: pathlib.Path) -> None:
    backend.broken = True
    queue = _queue(backend, tmp_path / "j")
    queue.put("a", b"first")
    queue.put("b", os.urandom(5 * 1024 * 1024))
    queue.delete("c")
    queue.close()  # as if the daemon died: the journal keeps the changes
    backend.broken = False
    backend.put("c", b"to delete")
    replay = _queue(backend, tmp_path / "j")
    assert replay.drain(timeout=30)
    assert backend.get("a") == b"first" and len(backend.get("b")) == 5 * 1024 * 1024
    assert "c" not in backend
    replay.close()


def test_a_torn_change_is_never_uploaded(backend: Switchable, tmp_path: pathlib.Path) -> None:
    journal = Journal(str(tmp_path / "j"))
    journal.add("put", "kept", content=b"acknowledged")
    journal.add("put", "a", content=b"complete content")
    journal.close()
    (segment,) = _segments(tmp_path / "j")
    data = segment.read_bytes()
    end = data.index(b"complete content") + len(b"complete content")
    segment.write_bytes(data[: end - 5] + bytes(len(data) - end + 5))  # the power went out during the write
    queue = _queue(backend, tmp_path / "j")
    assert queue.drain(timeout=10)
    assert "a" not in backend and backend.get("kept") == b"acknowledged"
    queue.close()


def test_a_torn_big_content_is_set_aside(backend: Switchable, tmp_path: pathlib.Path) -> None:
    journal = Journal(str(tmp_path / "j"))
    change = journal.add("put", "big", content=io.BytesIO(os.urandom(journal_module.INLINE_LIMIT + 10)))
    journal.close()
    path = tmp_path / "j" / "changes" / f"{change.sequence:012d}.data"
    with open(path, "r+b") as file:
        file.truncate(100)
    queue = _queue(backend, tmp_path / "j")
    assert queue.drain(timeout=10)
    assert "big" not in backend
    assert os.path.exists(f"{path}.torn")
    queue.close()


def _segments(directory: pathlib.Path) -> list[pathlib.Path]:
    return sorted((directory / "changes").glob("*.log"))


def test_concurrent_adds_share_a_sync_and_all_replay(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    journal = Journal(str(tmp_path / "j"))
    real_sync, syncs, gate = os.fdatasync, [], threading.Event()

    def held_sync(fd: int) -> None:  # the first sync lasts until every writer has written
        syncs.append(fd)
        gate.wait(30)
        real_sync(fd)

    monkeypatch.setattr(journal_module.os, "fdatasync", held_sync)
    writers = 16
    changes: list[object] = []

    def write(number: int) -> None:
        changes.append(journal.add("put", f"k{number}", content=f"content {number}".encode(), mtime=float(number)))

    threads = [threading.Thread(target=write, args=(number,)) for number in range(writers)]
    for thread in threads:
        thread.start()
    for _ in range(3000):  # each writer's record is in the log, the first sync still held
        if len(journal.pending()) == writers:
            break
        time.sleep(0.01)
    assert len(journal.pending()) == writers and not changes  # none acknowledged before its sync
    gate.set()
    for thread in threads:
        thread.join()
    assert len(changes) == writers
    assert len(syncs) <= 2  # the one held, then one for all who wrote meanwhile
    journal.close()
    replayed = Journal(str(tmp_path / "j"))
    pending = replayed.pending()
    assert sorted(change.key for change in pending) == sorted(f"k{number}" for number in range(writers))
    for change in pending:
        assert replayed.read_content(change, 0, change.size) == f"content {change.key[1:]}".encode()
    replayed.close()


def test_many_concurrent_adds_replay_in_order(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(journal_module, "SEGMENT_SIZE", 4096)  # many segments, rotated under load
    journal = Journal(str(tmp_path / "j"))
    done: list[object] = []

    def write(number: int) -> None:
        for index in range(40):
            change = journal.add("put", f"w{number}/f{index}", content=os.urandom(index * 10))
            if index % 2:
                journal.complete(change)
            else:
                done.append(change)

    threads = [threading.Thread(target=write, args=(number,)) for number in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    journal.close()
    replayed = Journal(str(tmp_path / "j"))
    assert replayed.pending() == sorted(done, key=lambda change: change.sequence)  # type: ignore[attr-defined]
    replayed.close()


def test_only_what_a_sync_covered_survives_a_crash(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk keeps what the last sync covered, plus part of a record written after it."""
    journal = Journal(str(tmp_path / "j"))
    (segment,) = _segments(tmp_path / "j")
    real_sync, disk = os.fdatasync, {}

    def sync(fd: int) -> None:
        real_sync(fd)
        disk["image"] = segment.read_bytes()

    monkeypatch.setattr(journal_module.os, "fdatasync", sync)
    acknowledged = [journal.add("put", f"f{number}", content=bytes([number]) * 100) for number in range(5)]
    journal.add("delete", "gone")
    monkeypatch.setattr(journal_module.os, "fdatasync", real_sync)
    journal.sync = False  # the next change's add is cut short by the crash
    journal.add("put", "torn", content=b"x" * 1000)
    journal.close()
    written, image = segment.read_bytes(), disk["image"]
    torn = next(index for index in range(len(written)) if written[index] != image[index])
    segment.write_bytes(image[:torn] + written[torn : torn + 500] + image[torn + 500 :])  # as the power cut left it
    replayed = Journal(str(tmp_path / "j"))
    keys = [change.key for change in replayed.pending()]
    assert keys == [change.key for change in acknowledged] + ["gone"]
    assert replayed.read_content(replayed.pending()[2], 0, 1000) == bytes([2]) * 100
    replayed.close()


def test_a_crash_never_replays_a_change_over_a_later_one(
    backend: Switchable, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The record that a change is done is durable before a later change of its key is sent."""
    queue = _queue(backend, tmp_path / "j")
    (segment,) = _segments(tmp_path / "j")
    real_sync, disk = os.fdatasync, {"image": segment.read_bytes()}

    def sync(fd: int) -> None:  # what the disk holds: the log as of the last sync
        real_sync(fd)
        disk["image"] = segment.read_bytes()

    monkeypatch.setattr(journal_module.os, "fdatasync", sync)
    backend.gate.clear()  # the first upload is held while the second change is recorded
    queue.put("k", b"first")
    queue.put("k", b"second")
    backend.gate.set()
    assert queue.drain(timeout=10) and backend.get("k") == b"second"
    image = disk["image"]
    monkeypatch.setattr(journal_module.os, "fdatasync", real_sync)
    queue.close()
    segment.write_bytes(image)  # the power went out: only what was synced is there
    replayed = Journal(str(tmp_path / "j"))
    assert [replayed.read_content(change, 0, 100) for change in replayed.pending()] in ([], [b"second"])
    replayed.close()


def test_one_journal_one_mount(tmp_path: pathlib.Path) -> None:
    journal = Journal(str(tmp_path / "j"))
    with pytest.raises(JournalInUseError):
        Journal(str(tmp_path / "j"))
    journal.close()
    Journal(str(tmp_path / "j")).close()


def test_journal_rejects_inconsistent_changes(tmp_path: pathlib.Path) -> None:
    journal = Journal(str(tmp_path / "j"))
    with pytest.raises(ValueError):
        journal.add("put", "a")
    with pytest.raises(ValueError):
        journal.add("move", "a")
    with pytest.raises(ValueError):
        journal.add("rename", "a", source="b")
    assert journal.pending() == []
    journal.close()


class TestPendingStoreContract(StoreContract):
    """A write-back mount's store is a store like any other, its changes visible at once."""

    streams_large_values = False  # the dictionary underneath holds whole values

    @pytest.fixture
    def store(self, tmp_path: pathlib.Path):  # type: ignore[override]
        from kvfs.mount.pending import PendingStore

        queue = WriteBack(DictStore(), Journal(str(tmp_path / "journal")), retry_delays=FAST_RETRIES)
        pending = PendingStore(queue.store, queue)
        yield pending
        assert queue.drain(timeout=60)
        pending.close()

    def test_pickles_to_a_working_store(self, store) -> None:  # type: ignore[no-untyped-def,override]
        import pickle

        with pytest.raises(TypeError, match="mount's process"):
            pickle.dumps(store)


class TestPendingStoreOnS3Contract(TestPendingStoreContract):
    """Over S3 (moto), which keeps modes, owners and times: the journal carries them."""

    streams_large_values = True

    @pytest.fixture
    def store(self, tmp_path: pathlib.Path):  # type: ignore[override]
        from servers import moto_url, require_server

        from kvfs.mount.pending import PendingStore
        from kvfs.net.boto3store import Boto3Store, make_client

        require_server("moto")
        client = make_client(
            endpoint_url=moto_url(), region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
        )
        s3 = Boto3Store("kvfs-pending-contract", f"{uuid.uuid4().hex}/", client=client, create_if_missing=True)
        queue = WriteBack(s3, Journal(str(tmp_path / "journal")), retry_delays=FAST_RETRIES)
        pending = PendingStore(s3, queue)
        yield pending
        assert queue.drain(timeout=60)
        pending.close()


def test_metadata_reaches_the_store_with_the_value_and_after(tmp_path: pathlib.Path) -> None:
    from kvfs.fs import FilesystemStore
    from kvfs.mount.pending import PendingStore
    from kvfs.store import Metadata

    backend = FilesystemStore(str(tmp_path / "files"))
    queue = WriteBack(backend, Journal(str(tmp_path / "j")), quiet=3600.0, delay=3600.0)
    pending = PendingStore(backend, queue)
    assert pending.keeps_metadata and pending.metadata_with_writes
    pending.put("k", b"value", metadata=Metadata(mode=0o640, mtime=1_500_000_000))
    pending.set_metadata("k", mode=0o600)
    assert "k" not in backend  # held back: shown from the journal
    info = pending.stat("k")
    assert (info.mode, info.last_modified) == (0o600, 1_500_000_000)
    queue.close()  # a crash: the next queue replays the put and the set_metadata, in order
    queue = WriteBack(backend, Journal(str(tmp_path / "j")), quiet=3600.0, delay=3600.0)
    assert [change.kind for change in queue.replayed] == ["put", "set_metadata"]
    assert dict(queue.replayed[0].metadata) == {"mode": 0o640, "mtime": 1_500_000_000}
    assert queue.drain(timeout=10)
    info = backend.stat("k")
    assert (info.mode, info.last_modified) == (0o600, 1_500_000_000)
    assert backend.get("k") == b"value"
    queue.close()


def test_pending_changes_reach_the_store_as_they_were_shown(tmp_path: pathlib.Path) -> None:
    from kvfs.mount.pending import PendingStore

    backend = DictStore()
    backend.put("d/old", b"old")
    queue = WriteBack(backend, Journal(str(tmp_path / "journal")), retry_delays=FAST_RETRIES)
    store = PendingStore(backend, queue)
    store.put("d/new", b"new")
    store.move("d/old", "e/moved")
    store.put_directory("empty")
    shown = {info.key for info in store.iter_level("")}
    assert shown == {"d/", "e/", "empty/"}
    assert {info.key for info in store.iter_level("d/")} == {"d/new"}
    assert store.get("e/moved") == b"old" and "d/old" not in store
    assert queue.drain(timeout=30)
    assert {info.key for info in backend.iter_level("")} == shown
    assert backend.get("e/moved") == b"old" and backend.get("d/new") == b"new"
    store.close()


def test_a_directory_move_takes_stored_and_pending_values(tmp_path: pathlib.Path) -> None:
    from kvfs.mount.pending import PendingStore

    backend = DictStore()
    backend.put("a/stored", b"1")
    backend.put("a/deleted", b"gone")
    backend.put("a/sub/deep", b"3")
    queue = WriteBack(backend, Journal(str(tmp_path / "journal")), retry_delays=FAST_RETRIES)
    store = PendingStore(backend, queue)
    store.put("a/new", b"2")
    store.delete("a/deleted")
    assert store.move_directory("a", "b") == "b"
    expected = {"b/stored": b"1", "b/new": b"2", "b/sub/deep": b"3"}
    assert {key: store.get(key) for key in store.keys()} == expected
    assert queue.drain(timeout=30)
    assert {key: backend.get(key) for key in backend.keys() if not key.endswith("/")} == expected
    assert not backend.has_directory("a")
    store.close()


def test_a_directory_move_journals_its_markers_with_the_moves(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kvfs.mount.pending import PendingStore

    backend = DictStore()
    backend.put("a/top", b"1")
    backend.put("a/sub/deep/value", b"2")
    backend.put_directory("a/stored-empty")
    backend.put_directory("a/removed")
    queue = WriteBack(backend, Journal(str(tmp_path / "journal")), retry_delays=FAST_RETRIES)
    store = PendingStore(backend, queue)
    store.put_directory("a/new-empty")
    store.delete_directory("a/removed")
    listings: list[str] = []
    real_iter_keys = backend._iter_keys
    monkeypatch.setattr(backend, "_iter_keys", lambda prefix: (listings.append(prefix), real_iter_keys(prefix))[1])
    recorded: list[list[str]] = []
    journal = queue.journal
    monkeypatch.setattr(journal, "add", lambda *args, **kwargs: pytest.fail("a change recorded on its own"))
    real_add_many = journal.add_many
    def add_many(changes):  # type: ignore[no-untyped-def]
        recorded.append([kind for kind, _, _ in changes])
        return real_add_many(changes)

    monkeypatch.setattr(journal, "add_many", add_many)
    assert store.move_directory("a", "b") == "b"
    # The moves recorded together (one sync), then every marker together.
    assert listings[0] == "a/"
    assert recorded == [["move"] * 2, ["put_directory"] * 5 + ["delete_directory"] * 5]
    directories = ["b/", "b/new-empty/", "b/stored-empty/", "b/sub/", "b/sub/deep/"]
    assert sorted(info.key for info in store.iter_level("b/") if info.is_prefix) == directories[1:4]
    assert not store.has_directory("a") and not store.has_directory("b/removed")
    monkeypatch.undo()
    assert queue.drain(timeout=30)
    assert sorted(backend.d) == sorted(directories + ["b/top", "b/sub/deep/value"])
    assert backend.get("b/sub/deep/value") == b"2"
    store.close()


def test_a_flat_directory_move_lists_the_store_once(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kvfs.mount.pending import PendingStore

    backend = DictStore()
    for number in range(5):
        backend.put(f"a/{number}", b"v%d" % number)
    backend.put_directory("a")
    backend.put("a-sibling", b"stays")
    queue = WriteBack(backend, Journal(str(tmp_path / "journal")), retry_delays=FAST_RETRIES)
    store = PendingStore(backend, queue)
    listings: list[str] = []
    real_iter_keys = backend._iter_keys
    monkeypatch.setattr(backend, "_iter_keys", lambda prefix: (listings.append(prefix), real_iter_keys(prefix))[1])
    store.move_directory("a", "b")
    # Nothing pending below it and no directory inside: its one level listed once says all.
    assert listings == ["a/"]
    monkeypatch.undo()
    assert queue.drain(timeout=30)
    assert sorted(backend.d) == ["a-sibling", "b/", *(f"b/{number}" for number in range(5))]
    store.close()


def test_many_moves_take_one_sync_and_one_batch(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    backend = Switchable(DictStore())
    for number in range(20):
        backend.put(f"a/{number}", b"v%d" % number)
    queue = _queue(backend, tmp_path / "j")
    syncs: list[int] = []
    real_sync = os.fdatasync
    monkeypatch.setattr(journal_module.os, "fdatasync", lambda fd: (syncs.append(fd), real_sync(fd)))
    changes = queue.move_many([(f"a/{number}", f"b/{number}") for number in range(20)])
    assert len(syncs) == 1 and [change.kind for change in changes] == ["move"] * 20
    assert queue.drain(timeout=10)
    assert sorted(backend.keys()) == sorted(f"b/{number}" for number in range(20))
    assert backend.get("b/7") == b"v7"
    with pytest.raises(ValueError):
        queue.journal.add_many([("put", "x", None)])
    queue.close()


def test_a_journal_in_the_earlier_format_is_refused_not_ignored(tmp_path: pathlib.Path) -> None:
    (tmp_path / "j" / "changes").mkdir(parents=True)
    (tmp_path / "j" / "changes" / "000000000001").write_bytes(b'{"kind": "delete", "key": "a"}\n')
    with pytest.raises(MountError, match="older format"):
        Journal(str(tmp_path / "j"))
    assert (tmp_path / "j" / "changes" / "000000000001").exists()


def test_the_source_of_a_pending_copy_shows_its_pending_content(backend: Switchable, tmp_path: pathlib.Path) -> None:
    queue = _queue(backend, tmp_path / "j")
    backend.gate.clear()  # nothing reaches the store yet
    queue.put("source", b"value")
    queue.copy("source", "dest")
    content = queue.resolve("source")
    assert content is not None and content.change is not None
    assert queue.read(content.change, 0, 100) == b"value"
    backend.gate.set()
    assert queue.drain(timeout=10)
    assert backend.get("source") == backend.get("dest") == b"value"
    queue.close()


# ---------------------------------------------------------------------- staging files


def _staged(journal: Journal, content: bytes) -> journal_module.StagingFile:
    file = journal.new_staging_file()
    view, offset = memoryview(content), 0
    while offset < len(content):  # as the mount writes: at offsets, the position left alone
        offset += os.pwrite(file.fileno(), view[offset : offset + 1024 * 1024], offset)
    return file


def _data_file(directory: pathlib.Path, sequence: int) -> pathlib.Path:
    return directory / "changes" / f"{sequence:012d}.data"


def test_a_big_staging_file_becomes_the_content_without_a_copy(tmp_path: pathlib.Path) -> None:
    journal = Journal(str(tmp_path / "j"))
    assert journal.stages, "this file system makes no O_TMPFILE files: the test proves nothing"
    content = os.urandom(3 * 1024 * 1024 + 5)
    file = _staged(journal, content)
    assert os.listdir(tmp_path / "j" / "changes") == [segment.name for segment in _segments(tmp_path / "j")]
    change = journal.add("put", "big", content=file)
    # The staging file itself is the content file: same inode, nothing copied.
    assert os.stat(_data_file(tmp_path / "j", change.sequence)).st_ino == os.fstat(file.fileno()).st_ino
    file.close()
    assert change.size == len(content)
    assert journal.content_path(change) == str(_data_file(tmp_path / "j", change.sequence))
    assert journal.read_content(change, 0, change.size) == content
    journal.close()  # a crash: the next mount finds the change, its content whole
    again = Journal(str(tmp_path / "j"))
    (pending,) = again.pending()
    assert pending.key == "big" and again.read_content(pending, 0, pending.size) == content
    again.close()


def test_a_small_staging_file_goes_into_the_log(tmp_path: pathlib.Path) -> None:
    journal = Journal(str(tmp_path / "j"))
    file = _staged(journal, b"small content")
    file.seek(5)  # the whole file is the content, wherever its position is
    change = journal.add("put", "small", content=file)
    file.close()
    assert journal.read_content(change, 0, 100) == b"small content"
    assert journal.content_path(change) is None
    assert list((tmp_path / "j" / "changes").glob("*.data")) == []
    journal.close()


def test_an_adopted_content_torn_afterwards_is_set_aside(backend: Switchable, tmp_path: pathlib.Path) -> None:
    journal = Journal(str(tmp_path / "j"))
    file = _staged(journal, os.urandom(2 * 1024 * 1024))
    change = journal.add("put", "big", content=file)
    file.close()
    journal.close()
    with open(_data_file(tmp_path / "j", change.sequence), "r+b") as data:
        data.truncate(1000)  # its size and checksum are in the record: replay notices
    queue = _queue(backend, tmp_path / "j")
    assert queue.drain(timeout=10)
    assert "big" not in backend
    assert os.path.exists(f"{_data_file(tmp_path / 'j', change.sequence)}.torn")
    queue.close()


def test_a_staging_file_that_cannot_be_linked_in_is_copied(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    def no_link(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    journal = Journal(str(tmp_path / "j"))
    content = os.urandom(2 * 1024 * 1024 + 1)
    file = _staged(journal, content)
    monkeypatch.setattr(journal_module.os, "link", no_link)
    change = journal.add("put", "big", content=file)
    assert os.stat(_data_file(tmp_path / "j", change.sequence)).st_ino != os.fstat(file.fileno()).st_ino
    file.close()
    journal.close()
    again = Journal(str(tmp_path / "j"))
    (pending,) = again.pending()
    assert again.read_content(pending, 0, pending.size) == content
    again.close()


def test_a_failed_add_leaves_the_staging_file_as_it_was(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    journal = Journal(str(tmp_path / "j"))
    content = os.urandom(2 * 1024 * 1024)
    file = _staged(journal, content)

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(journal, "_append", full)
    with pytest.raises(OSError):
        journal.add("put", "big", content=file)
    monkeypatch.undo()
    assert journal.pending() == []
    assert list((tmp_path / "j" / "changes").glob("*.data")) == []  # nothing named by no record
    assert os.pread(file.fileno(), len(content) + 1, 0) == content  # still open, to try again
    change = journal.add("put", "big", content=file)
    file.close()
    assert journal.read_content(change, 0, change.size) == content
    journal.close()


def test_without_nameless_files_the_store_offers_no_staging(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from kvfs.mount.pending import PendingStore

    real_open = os.open

    def no_tmpfile(path, flags, *args, **kwargs):  # type: ignore[no-untyped-def]
        if flags & getattr(os, "O_TMPFILE", 0) == getattr(os, "O_TMPFILE", -1):
            raise OSError(errno.EOPNOTSUPP, "Operation not supported")
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(journal_module.os, "open", no_tmpfile)
    queue = WriteBack(DictStore(), Journal(str(tmp_path / "j")), retry_delays=FAST_RETRIES)
    pending = PendingStore(queue.store, queue)
    assert not pending.supports_staging
    with pytest.raises(NotImplementedError):
        pending.new_staging_file("a")
    pending.put_file("a", io.BytesIO(b"x" * (2 * 1024 * 1024)))  # copied in, as without staging
    assert queue.drain(timeout=10)
    assert queue.store.get("a") == b"x" * (2 * 1024 * 1024)
    pending.close()


def test_a_committed_staging_file_reaches_the_store_by_name(backend: Switchable, tmp_path: pathlib.Path) -> None:
    from kvfs.mount.pending import PendingStore

    queue = _queue(backend, tmp_path / "j")
    pending = PendingStore(backend, queue)
    assert pending.supports_staging
    content = os.urandom(5 * 1024 * 1024)
    backend.gate.clear()  # nothing reaches the store yet
    file = pending.new_staging_file("big")
    file.write(content)
    assert pending.commit_staging_file("big", file) == "big"
    assert file.closed
    assert pending.get("big") == content  # shown at once, from the journal
    with pytest.raises(ValueError):
        pending.commit_staging_file("other", io.BytesIO(b"not a staging file"))
    backend.gate.set()
    assert queue.drain(timeout=30)
    assert backend.calls == [("put_file", "big")] and backend.get("big") == content
    assert list((tmp_path / "j" / "changes").glob("*.data")) == []
    pending.close()
