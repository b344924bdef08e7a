"""The mount's side of coordination: changes become cache invalidations; the kernel forgets paths.

:class:`MountCoordination` is tested against a real Redis with recording callbacks (the
mount itself is wired to it elsewhere); :class:`KernelInvalidator` with a real FUSE
mount of a tiny filesystem in its own process (``kernel_invalidation_fs.py``).
"""

from __future__ import annotations

import errno
import pathlib
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence

import pytest

from kvfs.coordination import ChangeKind, Coordinator, open_coordinator
from kvfs.mount.coordination import CacheCallbacks, MountCoordination, key_path
from kvfs.mount.journal import Change as JournalChange
from mount_support import require_fuse
from servers import require_server, start_service, stop_service

WAIT = 30.0
HERE = pathlib.Path(__file__).resolve().parent


class Recorder:
    """Callbacks that write down what they were asked to forget."""

    def __init__(self, *, with_tree: bool = True) -> None:
        self.calls: list[tuple[str, str]] = []
        self.everything = threading.Event()
        self._changed = threading.Condition()
        self.with_tree = with_tree

    def _note(self, name: str, argument: str = "") -> None:
        with self._changed:
            self.calls.append((name, argument))
            self._changed.notify_all()

    def callbacks(self, *, learn: bool = False) -> CacheCallbacks:
        def everything() -> None:
            self._note("everything")
            self.everything.set()

        return CacheCallbacks(
            forget_entry=lambda key: self._note("entry", key),
            forget_listing=lambda key: self._note("listing", key),
            invalidate_kernel=lambda path: self._note("kernel", path),
            forget_everything=everything,
            forget_tree=(lambda key: self._note("tree", key)) if self.with_tree else None,
            learn_file=(lambda key, size, mtime: self._note("learn", f"{key} {size} {mtime}")) if learn else None,
        )

    def wait_for(self, call: tuple[str, str]) -> list[tuple[str, str]]:
        with self._changed:
            self._changed.wait_for(lambda: call in self.calls, timeout=WAIT)
            return list(self.calls)


@pytest.fixture
def redis_hosts() -> Iterator[tuple[Coordinator, Coordinator]]:
    url = require_server("redis")
    assert url is not None
    a, b = open_coordinator(url), open_coordinator(url)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


@pytest.fixture
def store_url() -> str:
    return f"s3://bucket-{uuid.uuid4().hex}/data"


def test_key_paths_are_the_mount_names() -> None:
    assert key_path("") == "/"
    assert key_path("a/b.txt") == "/a/b.txt"
    assert key_path("a%20b/c") == "/a b/c"


def test_another_mounts_write_drops_the_entry_listing_and_kernel_caches(
    redis_hosts: tuple[Coordinator, Coordinator], store_url: str
) -> None:
    a, b = redis_hosts
    recorder = Recorder()
    mount_b = MountCoordination(b, store_url, recorder.callbacks())
    mount_b.start()
    mount_a = MountCoordination(a, store_url, Recorder().callbacks())
    mount_a.publish(ChangeKind.WRITE, ["docs/a%20b.txt"])
    calls = recorder.wait_for(("kernel", "/docs"))
    assert calls == [
        ("entry", "docs/a%20b.txt"),
        ("listing", "docs"),
        ("kernel", "/docs/a b.txt"),
        ("kernel", "/docs"),
    ]
    assert mount_b.changes_applied == 1


def test_a_write_with_its_attributes_is_learnt_not_forgotten(
    redis_hosts: tuple[Coordinator, Coordinator], store_url: str
) -> None:
    a, b = redis_hosts
    learning, forgetting = Recorder(), Recorder()
    MountCoordination(b, store_url, learning.callbacks(learn=True)).start()
    MountCoordination(b, store_url, forgetting.callbacks()).start()
    MountCoordination(a, store_url, Recorder().callbacks()).publish(
        ChangeKind.WRITE, ["docs/f"], size=5, mtime=1700000000.5
    )
    # The parent's listing stays: the learnt entry takes its line in it.
    assert learning.wait_for(("kernel", "/docs")) == [
        ("learn", "docs/f 5 1700000000.5"),
        ("kernel", "/docs/f"),
        ("kernel", "/docs"),
    ]
    # A mount that cannot learn forgets, as for a write without attributes.
    assert ("listing", "docs") in forgetting.wait_for(("kernel", "/docs"))


def test_a_write_after_another_hosts_change_of_the_key_is_asked_for(
    redis_hosts: tuple[Coordinator, Coordinator], store_url: str
) -> None:
    a, b = redis_hosts
    url = require_server("redis")
    assert url is not None
    recorder = Recorder()
    MountCoordination(b, store_url, recorder.callbacks(learn=True)).start()
    with open_coordinator(url) as c:
        MountCoordination(a, store_url, Recorder().callbacks()).publish(ChangeKind.WRITE, ["f"], size=1, mtime=1.0)
        recorder.wait_for(("learn", "f 1 1.0"))
        # Two hosts wrote "f": which came last, the store says, not the order of the messages.
        MountCoordination(c, store_url, Recorder().callbacks()).publish(ChangeKind.WRITE, ["f"], size=2, mtime=2.0)
        calls = recorder.wait_for(("entry", "f"))
    assert ("learn", "f 2 2.0") not in calls and ("listing", "") in calls


def test_changes_left_in_a_write_back_journal_are_announced_once_stored(
    redis_hosts: tuple[Coordinator, Coordinator], store_url: str
) -> None:
    a, b = redis_hosts
    recorder = Recorder()
    MountCoordination(b, store_url, recorder.callbacks()).start()
    waiting: list[tuple[tuple[str, ...], Callable[[], None]]] = []

    def when_stored(keys: Sequence[str], callback: Callable[[], None], *, below: bool = False) -> None:
        waiting.append((tuple(keys), callback))

    mount_a = MountCoordination(a, store_url, Recorder().callbacks(), when_stored)
    mount_a.announce_journaled(
        [JournalChange(1, "put", "x/f", size=3), JournalChange(2, "move", "y/new", source="x/old")]
    )
    assert [keys for keys, _ in waiting] == [("x/f",), ("x/old", "y/new")]
    assert a.status().sent == 0  # nothing goes before the store has it
    for _, stored in waiting:
        stored()
    calls = recorder.wait_for(("entry", "y/new"))
    assert ("entry", "x/f") in calls and ("entry", "x/old") in calls


def test_a_directory_rename_left_in_a_write_back_journal_is_announced_as_one(
    redis_hosts: tuple[Coordinator, Coordinator], store_url: str
) -> None:
    a, b = redis_hosts
    recorder = Recorder()
    MountCoordination(b, store_url, recorder.callbacks()).start()
    waiting: list[tuple[tuple[str, ...], bool]] = []

    def when_stored(keys: Sequence[str], callback: Callable[[], None], *, below: bool = False) -> None:
        waiting.append((tuple(keys), below))
        callback()

    mount_a = MountCoordination(a, store_url, Recorder().callbacks(), when_stored)
    # The journal keeps "mv top/d1 top/d2" as a move per value.
    mount_a.announce_journaled(
        [
            JournalChange(1, "move", "top/d2/f", source="top/d1/f"),
            JournalChange(2, "move", "top/d2/sub/g", source="top/d1/sub/g"),
            JournalChange(3, "move", "top/renamed", source="top/file"),
        ]
    )
    assert (("top/d1", "top/d2"), True) in waiting
    assert sum(1 for keys, _ in waiting if keys == ("top/d1", "top/d2")) == 1
    calls = recorder.wait_for(("tree", "top/d2"))
    assert ("tree", "top/d1") in calls and ("listing", "top") in calls


def test_a_rename_forgets_both_names(redis_hosts: tuple[Coordinator, Coordinator], store_url: str) -> None:
    a, b = redis_hosts
    recorder = Recorder()
    MountCoordination(b, store_url, recorder.callbacks()).start()
    MountCoordination(a, store_url, Recorder().callbacks()).publish(ChangeKind.RENAME, ["x/old", "new"])
    calls = recorder.wait_for(("kernel", "/"))
    assert {("entry", "x/old"), ("entry", "new"), ("listing", "x"), ("listing", ""), ("kernel", "/x/old")} <= set(calls)


def test_a_directory_rename_forgets_the_trees(redis_hosts: tuple[Coordinator, Coordinator], store_url: str) -> None:
    a, b = redis_hosts
    with_tree, without_tree = Recorder(), Recorder(with_tree=False)
    MountCoordination(b, store_url, with_tree.callbacks()).start()
    MountCoordination(b, store_url, without_tree.callbacks()).start()
    MountCoordination(a, store_url, Recorder().callbacks()).publish(ChangeKind.RENAME, ["d1", "d2"], directory=True)
    calls = with_tree.wait_for(("kernel", "/d2"))
    assert ("tree", "d1") in calls and ("tree", "d2") in calls and ("listing", "d1") in calls
    assert ("everything", "") not in calls
    assert without_tree.everything.wait(WAIT)  # no tree callback: everything goes


def test_a_mount_ignores_its_own_changes(redis_hosts: tuple[Coordinator, Coordinator], store_url: str) -> None:
    a, b = redis_hosts
    own = Recorder()
    mount_a = MountCoordination(a, store_url, own.callbacks())
    mount_a.start()
    mount_b = MountCoordination(b, store_url, Recorder().callbacks())
    mount_a.publish(ChangeKind.DELETE, ["mine"])
    mount_b.publish(ChangeKind.DELETE, ["theirs"])
    # Messages arrive in order: by the time b's change is applied, a's own was skipped.
    calls = own.wait_for(("entry", "theirs"))
    assert ("entry", "mine") not in calls
    assert mount_a.changes_applied == 1


def test_a_reconnect_forgets_everything(store_url: str) -> None:
    url = require_server("redis")
    assert url is not None
    with open_coordinator(url) as b:
        recorder = Recorder()
        mount_b = MountCoordination(b, store_url, recorder.callbacks())
        mount_b.start()
        stop_service("redis")
        start_service("redis")
        assert recorder.everything.wait(WAIT)
        assert mount_b.resets >= 1
        mount_b.stop()


# ---------------------------------------------------------------------- the kernel


@pytest.fixture
def tiny_mount(tmp_path: pathlib.Path) -> Iterator[tuple[pathlib.Path, subprocess.Popen[str]]]:
    require_fuse()
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    process = subprocess.Popen(
        [sys.executable, str(HERE / "kernel_invalidation_fs.py"), str(mountpoint)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=HERE,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().split() == ["ready", "True"]
        yield mountpoint, process
    finally:
        if process.poll() is None:
            assert process.stdin is not None
            process.stdin.write("quit\n")
            process.stdin.flush()
            try:
                process.wait(timeout=WAIT)
            except subprocess.TimeoutExpired:
                subprocess.run(["fusermount3", "-u", "-z", str(mountpoint)], check=False)
                process.kill()
                process.wait()


def ask(process: subprocess.Popen[str], line: str) -> str:
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(line + "\n")
    process.stdin.flush()
    return process.stdout.readline().strip()


def read_in_another_process(path: pathlib.Path) -> str:
    return subprocess.run(["cat", str(path)], capture_output=True, text=True, check=True).stdout


def test_the_kernel_forgets_pages_and_attributes_of_an_invalidated_path(
    tiny_mount: tuple[pathlib.Path, subprocess.Popen[str]],
) -> None:
    mountpoint, process = tiny_mount
    assert read_in_another_process(mountpoint / "f") == "AAAA"
    assert ask(process, "set /f BBBB") == "ok"
    # Same size, same time, 60 s lifetimes: the kernel serves its cached pages.
    assert read_in_another_process(mountpoint / "f") == "AAAA"
    assert ask(process, "inval /f") == "0"
    assert read_in_another_process(mountpoint / "f") == "BBBB"
    # Deeper paths, and a size change: the attributes are asked for again.
    assert (mountpoint / "d" / "g").stat().st_size == 4
    assert ask(process, "set /d/g 666666") == "ok"
    assert (mountpoint / "d" / "g").stat().st_size == 4
    assert ask(process, "inval /d/g") == "0"
    assert (mountpoint / "d" / "g").stat().st_size == 6
    assert read_in_another_process(mountpoint / "d" / "g") == "666666"
    # A path the kernel does not know has nothing to invalidate.
    assert ask(process, "inval /never-seen") == str(-errno.ENOENT)


def test_locks_of_a_key_exclude_across_mounts(redis_hosts: tuple[Coordinator, Coordinator], store_url: str) -> None:
    a, b = redis_hosts
    mount_a = MountCoordination(a, store_url, Recorder().callbacks())
    mount_b = MountCoordination(b, store_url, Recorder().callbacks())
    held = mount_a.acquire_lock("docs/a.txt", "a:fh1")
    assert held is not None and held.name == mount_b.lock_name("docs/a.txt")
    assert mount_b.acquire_lock("docs/a.txt", "b:fh1", shared=True) is None
    other_file = mount_b.acquire_lock("docs/b.txt", "b:fh1")
    assert other_file is not None
    a.release(held)
    b.release(other_file)
    taken = mount_b.acquire_lock("docs/a.txt", "b:fh1", timeout=WAIT)
    assert taken is not None
    b.release(taken)
