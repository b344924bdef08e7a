"""Locks across hosts: ``flock`` and ``fcntl`` locks through coordinated mounts.

Separate ``kvfs mount --coordinate URL`` processes on one moto bucket stand in for hosts
(the helpers of ``test_mount_many_hosts.py``), with Redis and with PostgreSQL. Lock
holders and takers are real processes: util-linux ``flock`` and Python's ``fcntl``,
each with a time-out. Waits are "eventually, within a generous limit" loops.
"""

from __future__ import annotations

import fcntl
import json
import os
import pathlib
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from cli_support import kvfs_command
from mount_support import require_fuse
from servers import redis_url, require_server, start_service, stop_service
from kvfs.mount.locks import lease_mode, set_range
from test_mount_many_hosts import WAIT, Hosts, bucket, engine, eventually, hosts, store_url  # noqa: F401 - fixtures

STEP = 30  # seconds any one subprocess call may take

# A process that takes and gives back locks on one file as told, one command a line:
# "flock ex|sh|un [nb]" or "lockf ex|sh|un [nb] START LENGTH"; answers "ok" or "busy".
# "getlk ex|sh" asks F_GETLK whether such a lock of the whole file would conflict: "locked"
# or "unlocked".
LOCKER = r"""
import fcntl, struct, sys
file = open(sys.argv[1], "r+")
kinds = {"ex": fcntl.LOCK_EX, "sh": fcntl.LOCK_SH, "un": fcntl.LOCK_UN}
print("ready", flush=True)
for line in sys.stdin:
    words = line.split()
    call, kind = words[0], kinds[words[1]]
    if "nb" in words:
        kind |= fcntl.LOCK_NB
    numbers = [int(word) for word in words[2:] if word.isdigit()]
    if call == "getlk":  # struct flock: l_type, l_whence, l_start, l_len, l_pid
        asked = struct.pack("hhqqi4x", fcntl.F_WRLCK if words[1] == "ex" else fcntl.F_RDLCK, 0, 0, 0, 0)
        told = struct.unpack("hhqqi4x", fcntl.fcntl(file, fcntl.F_GETLK, asked))[0]
        print("unlocked" if told == fcntl.F_UNLCK else "locked", flush=True)
        continue
    try:
        if call == "flock":
            fcntl.flock(file, kind)
        else:
            fcntl.lockf(file, kind, numbers[1], numbers[0])
    except OSError as error:
        print("busy", error.errno, flush=True)
    else:
        print("ok", flush=True)
"""


class Locker:
    """A process holding locks on *path*; :meth:`do` runs one command and returns its answer."""

    def __init__(self, path: pathlib.Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", LOCKER, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self._answer() == "ready"

    def _answer(self) -> str:
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], STEP)
        assert ready, "the locker did not answer"
        return self.process.stdout.readline().strip()

    def do(self, command: str) -> str:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self._answer().split()[0]

    def close(self) -> None:
        self.process.kill()
        self.process.wait(STEP)


@pytest.fixture
def lockers() -> Iterator[list[Locker]]:
    started: list[Locker] = []
    yield started
    for locker in started:
        locker.close()


def flock_try(path: pathlib.Path, *options: str) -> int:
    """Exit status of ``flock -n`` on *path*: 0 taken (and given back), 1 held by someone else."""
    return subprocess.run(["flock", "-n", *options, str(path), "true"], timeout=STEP, check=False).returncode


def hold_with_flock(path: pathlib.Path, *options: str) -> subprocess.Popen[str]:
    """A ``flock`` process holding *path*'s lock (for at most a minute); returns once it holds it."""
    holder = subprocess.Popen(
        ["flock", *options, str(path), "-c", "echo locked; exec sleep 60"],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,  # end() kills flock and its command together
    )
    assert holder.stdout is not None
    ready, _, _ = select.select([holder.stdout], [], [], STEP)
    assert ready and holder.stdout.readline().strip() == "locked"
    return holder


def end(process: subprocess.Popen[Any]) -> None:
    """Kill *process* (and its group, when it leads one); its descriptors close, its locks go."""
    try:
        if os.getpgid(process.pid) == process.pid:
            os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.kill()
    process.wait(STEP)


def status(mountpoint: pathlib.Path) -> dict[str, Any]:
    result = subprocess.run(
        [*kvfs_command(), "status", "--json", str(mountpoint)], capture_output=True, text=True, timeout=STEP
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def new_file(mountpoint: pathlib.Path, name: str = "f.txt") -> str:
    (mountpoint / name).write_bytes(b"shared")
    return name


# ---------------------------------------------------------------------- byte ranges


def test_set_range_splits_replaces_and_removes() -> None:
    ranges = set_range([], 0, 99, fcntl.F_WRLCK)
    ranges = set_range(ranges, 10, 19, fcntl.F_RDLCK)
    assert ranges == [(0, 9, fcntl.F_WRLCK), (10, 19, fcntl.F_RDLCK), (20, 99, fcntl.F_WRLCK)]
    assert lease_mode(ranges) is False  # a write lock is left: exclusive
    ranges = set_range(ranges, 0, 9, fcntl.F_UNLCK)
    ranges = set_range(ranges, 20, 99, fcntl.F_UNLCK)
    assert ranges == [(10, 19, fcntl.F_RDLCK)]
    assert lease_mode(ranges) is True  # only reads: shared
    assert lease_mode(set_range(ranges, 0, 1 << 62, fcntl.F_UNLCK)) is None


# ---------------------------------------------------------------------- across hosts


def test_flock_excludes_across_mounts(hosts: Hosts, lockers: list[Locker]) -> None:
    a, b = hosts.mount(), hosts.mount()
    name = new_file(a)
    assert eventually(lambda: (b / name).exists())
    lockers.append(Locker(a / name))  # keeps the file open on A: the lock goes with its own descriptor
    holder = hold_with_flock(a / name)
    try:
        assert flock_try(b / name) == 1
        assert flock_try(b / name, "-s") == 1  # a shared lock waits for an exclusive one too
        assert flock_try(a / name) == 1  # another open file on the same host
        locks = status(a)["locks"]
        assert [(lock["key"], lock["kind"], lock["mode"]) for lock in locks] == [(name, "flock", "exclusive")]
    finally:
        end(holder)
    assert eventually(lambda: flock_try(b / name) == 0)
    assert status(a)["locks"] == []


def test_shared_flocks_share_across_mounts(hosts: Hosts) -> None:
    a, b = hosts.mount(), hosts.mount()
    name = new_file(a)
    holder = hold_with_flock(a / name, "-s")
    try:
        assert eventually(lambda: flock_try(b / name, "-s") == 0)
        assert flock_try(b / name) == 1
    finally:
        end(holder)
    assert eventually(lambda: flock_try(b / name) == 0)


def test_a_flock_converts_between_shared_and_exclusive(hosts: Hosts, lockers: list[Locker]) -> None:
    a, b = hosts.mount(), hosts.mount()
    name = new_file(a)
    assert eventually(lambda: (b / name).exists())
    on_a, on_b = Locker(a / name), Locker(b / name)
    lockers += [on_a, on_b]
    assert on_a.do("flock sh nb") == "ok"
    assert on_a.do("flock ex nb") == "ok"  # alone: the shared lock becomes exclusive
    assert on_b.do("flock sh nb") == "busy"
    assert on_a.do("flock sh nb") == "ok"  # and back
    assert on_b.do("flock sh nb") == "ok"
    assert on_a.do("flock ex nb") == "busy"  # B shares it now
    assert on_b.do("flock un") == "ok"
    assert on_a.do("flock un") == "ok"
    assert on_b.do("flock ex nb") == "ok"
    assert [lock["mode"] for lock in status(b)["locks"]] == ["exclusive"]
    assert status(a)["locks"] == []


def test_a_blocked_flock_gets_the_lock_once_it_is_free(hosts: Hosts) -> None:
    a, b = hosts.mount(), hosts.mount()
    name = new_file(a)
    holder = hold_with_flock(a / name)
    waiter = subprocess.Popen(["flock", str(b / name), "-c", "echo got"], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(1)
        assert waiter.poll() is None  # it cannot have the lock while A holds it
        # A waiter that gives up (a signal) ends at once and leaves no lock behind.
        quitter = subprocess.Popen(["flock", str(b / name), "true"])
        time.sleep(0.5)
        quitter.send_signal(signal.SIGTERM)
        assert quitter.wait(STEP) != 0
        end(holder)
        out, _ = waiter.communicate(timeout=WAIT + STEP)
        assert waiter.returncode == 0 and out.strip() == "got"
    finally:
        end(holder)
        if waiter.poll() is None:
            end(waiter)
    assert eventually(lambda: flock_try(a / name) == 0)
    assert status(b)["locks"] == []


def test_waiting_requests_are_bounded_and_none_is_stuck(hosts: Hosts) -> None:
    from kvfs.mount.locks import MAX_WAITING

    a, b = hosts.mount(), hosts.mount()
    name = new_file(a)
    assert eventually(lambda: (b / name).exists())
    holder = hold_with_flock(a / name)
    waiters = [subprocess.Popen(["flock", str(b / name), "true"]) for _ in range(MAX_WAITING)]
    try:
        assert eventually(lambda: status(b)["lock_requests_waiting"] == MAX_WAITING)
        # One more would take a thread the unlock may need: refused (ENOLCK), not stuck.
        extra = subprocess.run(["flock", str(b / name), "true"], capture_output=True, text=True, timeout=STEP)
        assert extra.returncode != 0 and "No locks available" in extra.stderr
        assert flock_try(b / name) == 1  # a try still answers
        end(holder)
        for waiter in waiters:  # each gets the lock in turn, and gives it back
            assert waiter.wait(WAIT + STEP) == 0
    finally:
        end(holder)
        for waiter in waiters:
            if waiter.poll() is None:
                end(waiter)
    assert status(b)["lock_requests_waiting"] == 0
    assert eventually(lambda: flock_try(a / name) == 0)


def test_status_lists_the_locks() -> None:
    from kvfs.cli.mount import describe_status

    answer = {"locks": [{"kind": "flock", "key": "a/b.txt", "mode": "exclusive", "held": True}], "lock_requests_waiting": 1}
    lines = describe_status(answer)
    assert "locks:        1 held across hosts, 1 request(s) waiting" in lines
    assert "  exclusive flock a/b.txt" in lines
    assert not any(line.startswith("locks:") for line in describe_status({}))


def test_fcntl_locks_exclude_across_mounts(hosts: Hosts, lockers: list[Locker]) -> None:
    a, b = hosts.mount(), hosts.mount()
    name = new_file(a)
    assert eventually(lambda: (b / name).exists())
    on_a = Locker(a / name)
    on_b = Locker(b / name)
    lockers += [on_a, on_b]
    assert on_a.do("lockf ex nb 0 0") == "ok"
    assert on_b.do("lockf ex nb 0 0") == "busy"
    assert on_b.do("lockf ex nb 100 10") == "busy"  # a range lock locks the whole file across hosts
    assert on_b.do("flock ex nb") == "ok"  # flock and fcntl locks are apart, as on Linux
    assert on_a.do("lockf un 0 0") == "ok"
    assert on_b.do("lockf ex nb 0 0") == "ok"
    assert on_a.do("lockf sh nb 0 0") == "busy"


def test_fcntl_getlk_sees_a_lock_of_another_host(hosts: Hosts, lockers: list[Locker]) -> None:
    a, b = hosts.mount(), hosts.mount()
    name = new_file(a)
    assert eventually(lambda: (b / name).exists())
    on_a, on_b = Locker(a / name), Locker(b / name)
    lockers += [on_a, on_b]
    assert on_b.do("getlk ex") == "unlocked"
    assert on_a.do("lockf sh nb 0 0") == "ok"
    assert on_b.do("getlk sh") == "unlocked"  # read locks share
    assert on_b.do("getlk ex") == "locked"
    assert on_a.do("getlk ex") == "unlocked"  # its own lock is no conflict
    assert on_a.do("lockf un 0 0") == "ok"
    assert on_b.do("getlk ex") == "unlocked"
    assert status(b)["locks"] == []  # asking took no lock


def test_fcntl_unlocking_a_part_keeps_the_rest(hosts: Hosts, lockers: list[Locker]) -> None:
    a, b = hosts.mount(), hosts.mount()
    name = new_file(a)
    assert eventually(lambda: (b / name).exists())
    on_a, on_b = Locker(a / name), Locker(b / name)
    lockers += [on_a, on_b]
    assert on_a.do("lockf ex nb 0 10") == "ok"
    assert on_a.do("lockf ex nb 10 10") == "ok"
    assert on_a.do("lockf un 0 10") == "ok"
    assert on_b.do("lockf ex nb 0 10") == "busy"  # bytes 10..19 are still locked
    assert on_a.do("lockf un 10 10") == "ok"
    assert on_b.do("lockf ex nb 0 10") == "ok"


def test_closing_any_descriptor_drops_the_process_fcntl_locks(hosts: Hosts, lockers: list[Locker]) -> None:
    a, b = hosts.mount(), hosts.mount()
    name = new_file(a)
    assert eventually(lambda: (b / name).exists())
    script = (
        "import fcntl, os, sys, time\n"
        "locked = open(sys.argv[1], 'r+'); fcntl.lockf(locked, fcntl.LOCK_EX)\n"
        "os.close(os.open(sys.argv[1], os.O_RDONLY))  # POSIX: this close unlocks the file\n"
        "print('closed', flush=True); time.sleep(60)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", script, str(a / name)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        ready, _, _ = select.select([holder.stdout], [], [], STEP)
        assert ready and holder.stdout.readline().strip() == "closed"
        on_b = Locker(b / name)
        lockers.append(on_b)
        assert on_b.do("lockf ex nb 0 0") == "ok"
    finally:
        end(holder)


def test_a_killed_mount_frees_its_locks_within_the_lease(hosts: Hosts) -> None:
    a = hosts.mount("--lock-lifetime", "2")
    b = hosts.mount("--lock-lifetime", "2")
    name = new_file(a)
    assert eventually(lambda: (b / name).exists())
    holder = hold_with_flock(a / name)
    try:
        assert flock_try(b / name) == 1
        os.kill(status(a)["pid"], signal.SIGKILL)  # the host dies: nobody renews its lease
        assert eventually(lambda: flock_try(b / name) == 0)
    finally:
        end(holder)
        subprocess.run(["fusermount3", "-uz", str(a)], capture_output=True, timeout=STEP, check=False)


def test_without_the_engine_a_lock_is_refused_and_an_unlock_still_works(
    tmp_path: pathlib.Path,
    store_url: str,  # noqa: F811
    lockers: list[Locker],
) -> None:
    require_fuse()
    require_server("redis")
    hosts = Hosts(tmp_path, store_url, redis_url())
    try:
        a = hosts.mount()
        name = new_file(a)
        on_a = Locker(a / name)
        lockers.append(on_a)
        assert on_a.do("flock ex nb") == "ok"
        stop_service("redis")
        try:
            assert on_a.do("flock un") == "ok"  # the lease then expires by itself
            refused = subprocess.run(["flock", "-n", str(a / name), "true"], capture_output=True, text=True, timeout=STEP)
            assert refused.returncode != 0 and "No locks available" in refused.stderr
        finally:
            start_service("redis")
        assert eventually(lambda: flock_try(a / name) == 0, limit=90)
    finally:
        for locker in lockers:
            locker.close()  # before the unmount, which an open file would make lazy
        hosts.close()


def test_without_coordination_locks_stay_local(tmp_path: pathlib.Path, store_url: str) -> None:  # noqa: F811
    require_fuse()
    mountpoint = tmp_path / "local"
    mountpoint.mkdir()
    result = subprocess.run(
        [*kvfs_command(), "mount", store_url, str(mountpoint)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    try:
        name = new_file(mountpoint)
        holder = hold_with_flock(mountpoint / name)
        try:
            assert flock_try(mountpoint / name) == 1  # the kernel keeps the lock, for this host
        finally:
            end(holder)
        assert flock_try(mountpoint / name) == 0
        assert "locks" not in status(mountpoint)  # the mount serves no lock requests
    finally:
        subprocess.run([*kvfs_command(), "unmount", str(mountpoint)], capture_output=True, timeout=120)
        if os.path.ismount(mountpoint):
            subprocess.run(["fusermount3", "-uz", str(mountpoint)], capture_output=True, timeout=STEP)


def test_lock_lifetime_must_be_positive_and_coordinated(tmp_path: pathlib.Path) -> None:
    from kvfs.mount import MountOptions

    with pytest.raises(ValueError, match="lock_lifetime"):
        MountOptions(lock_lifetime=0)
    store = f"file://{tmp_path / 'store'}"
    for extra in (["--coordinate", "redis://127.0.0.1:1/0", "--lock-lifetime", "0"], ["--lock-lifetime", "5"]):
        result = subprocess.run(
            [*kvfs_command(), "mount", *extra, store, str(tmp_path)], capture_output=True, text=True, timeout=STEP
        )
        assert result.returncode == 2 and "lock-lifetime" in result.stderr
        assert len(result.stderr.strip().splitlines()) <= 3  # a short message, no traceback
