"""Coordination engines on real servers: messages between two coordinators, leases, faults.

Two coordinator instances stand in for two hosts. Every wait is for an event with a
generous time-out; nothing asserts how long anything took.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from kvfs.coordination import (
    Change,
    ChangeKind,
    CoordinationError,
    Coordinator,
    channel_for,
    normalise_store_url,
    open_coordinator,
)
from kvfs.coordination.messages import MAX_MESSAGE_BYTES, split_keys
from servers import require_server, start_service, stop_service

ENGINES = ["redis", "postgres"]
WAIT = 30.0  # seconds an expected event may take on a busy machine


class Inbox:
    """Collects the changes a subscription receives, and its missed-messages calls."""

    def __init__(self) -> None:
        self.changes: list[Change] = []
        self.missed = threading.Event()
        self._arrived = threading.Condition()

    def __call__(self, change: Change) -> None:
        with self._arrived:
            self.changes.append(change)
            self._arrived.notify_all()

    def on_missed(self) -> None:
        self.missed.set()

    def wait_for(self, count: int, timeout: float = WAIT) -> list[Change]:
        with self._arrived:
            self._arrived.wait_for(lambda: len(self.changes) >= count, timeout=timeout)
            return list(self.changes)


def engine_url(engine: str) -> str:
    url = require_server(engine)
    assert url is not None
    return url


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def hosts(engine: str) -> Iterator[tuple[Coordinator, Coordinator]]:
    """Two coordinators on the same engine: host A and host B."""
    url = engine_url(engine)
    a, b = open_coordinator(url), open_coordinator(url)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


@pytest.fixture
def channel() -> str:
    return channel_for(f"s3://bucket-{uuid.uuid4().hex}/data")


def wait_until(condition: Callable[[], bool]) -> bool:
    """Whether *condition* became true within WAIT seconds (checked every 0.1 s)."""
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def lock_name() -> str:
    return f"test-lock-{uuid.uuid4().hex}"


# ---------------------------------------------------------------------- messages


def test_a_change_survives_encoding() -> None:
    change = Change("kvfs-x", ChangeKind.RENAME, ("a/ä b", "c"), "host:1:ab", 7, 1700000000.5, True)
    assert Change.decode(change.encode()) == change
    written = Change("kvfs-x", ChangeKind.WRITE, ("f",), "host:1:ab", 8, 1700000001.0, size=12, mtime=1700000000.25)
    assert Change.decode(written.encode()) == written


def test_attributes_go_with_a_write_of_one_key_only(hosts: tuple[Coordinator, Coordinator], channel: str) -> None:
    a, _ = hosts
    for kind, keys, attributes in [
        (ChangeKind.DELETE, ["f"], {"size": 1, "mtime": 2.0}),
        (ChangeKind.WRITE, ["f", "g"], {"size": 1, "mtime": 2.0}),
        (ChangeKind.WRITE, ["f"], {"size": 1}),
    ]:
        with pytest.raises(ValueError):
            a.publish(channel, kind, keys, **attributes)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["", "{}", "[1]", '{"v": 99}', '{"v": 1, "c": "x", "k": "nope", "keys": [], "s": "a", "n": 1, "t": 0}'])
def test_a_foreign_message_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        Change.decode(text)


def test_many_keys_are_split_below_the_message_limit() -> None:
    keys = [f"directory/{i:06d}-{'x' * 100}" for i in range(500)]
    groups = list(split_keys(ChangeKind.DELETE, keys))
    assert len(groups) > 1
    assert [key for group in groups for key in group] == keys
    for group in groups:
        change = Change("kvfs-" + "0" * 32, ChangeKind.DELETE, group, "h" * 60, 10**9, 1e9)
        assert len(change.encode().encode()) <= MAX_MESSAGE_BYTES


def test_the_channel_ignores_credentials_order_and_readonly() -> None:
    one = channel_for("s3://AKIA:secret@bucket/data/?endpoint_url=http://h:9000&region=x")
    two = channel_for("S3://bucket/data?region=x&endpoint_url=http://h:9000&readonly=1&coordinate=redis://r")
    assert one == two
    assert one != channel_for("s3://bucket/other?region=x&endpoint_url=http://h:9000")
    assert one != channel_for("s3://bucket/data?region=x&endpoint_url=http://h:9000&prefix=p/")
    assert "secret" not in normalise_store_url("postgresql://u:secret@h/db?password=secret")
    assert channel_for("postgresql+psycopg://u@h:5432/db") == channel_for("postgresql://other@H:5432/db")


def test_the_coordination_package_imports_no_client_library() -> None:
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import kvfs.coordination, kvfs.coordination.store\n"
        "new = {name.split('.')[0] for name in set(sys.modules) - before}\n"
        "print(sorted(new - set(sys.stdlib_module_names) - {'kvfs'}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


def test_an_unknown_engine_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match="redis://") as caught:
        open_coordinator("mysql://user:pw@host/db")
    assert "pw" not in str(caught.value)


# ---------------------------------------------------------------------- publish / subscribe


def test_a_change_reaches_the_other_host(hosts: tuple[Coordinator, Coordinator], channel: str) -> None:
    a, b = hosts
    inbox = Inbox()
    b.subscribe(channel, inbox)
    assert a.publish(channel, ChangeKind.WRITE, ["photos/cat.jpg"])
    assert a.publish(channel, "rename", ["x", "y"], directory=True)
    assert a.publish(channel, ChangeKind.DELETE, [])  # nothing to say: nothing sent
    first, second = inbox.wait_for(2)
    assert (first.kind, first.keys, first.sender) == (ChangeKind.WRITE, ("photos/cat.jpg",), a.sender)
    assert (second.kind, second.keys, second.directory) == (ChangeKind.RENAME, ("x", "y"), True)
    assert second.sequence > first.sequence
    assert a.status().sent == 2 and b.status().received == 2


def test_own_messages_are_skipped_unless_asked_for(hosts: tuple[Coordinator, Coordinator], channel: str) -> None:
    a, b = hosts
    own, own_too, other = Inbox(), Inbox(), Inbox()
    a.subscribe(channel, own)
    a.subscribe(channel, own_too, own=True)
    b.subscribe(channel, other)
    a.publish(channel, ChangeKind.DELETE, ["k"])
    b.publish(channel, ChangeKind.MKDIR, ["d"])
    assert [c.kind for c in own_too.wait_for(2)] == [ChangeKind.DELETE, ChangeKind.MKDIR]
    assert [c.kind for c in own.wait_for(1)] == [ChangeKind.MKDIR]  # arrived after a's own, which was skipped
    assert [c.kind for c in other.wait_for(1)] == [ChangeKind.DELETE]


def test_a_change_of_many_keys_arrives_whole_in_several_messages(
    hosts: tuple[Coordinator, Coordinator], channel: str
) -> None:
    a, b = hosts
    keys = [f"big/{i:05d}-{'y' * 200}" for i in range(300)]  # ~63 kB: beyond one NOTIFY
    inbox = Inbox()
    b.subscribe(channel, inbox)
    assert a.publish(channel, ChangeKind.DELETE, keys)
    sent = a.status().sent
    assert sent > 1
    changes = inbox.wait_for(sent)
    assert [key for change in changes for key in change.keys] == keys
    assert {change.kind for change in changes} == {ChangeKind.DELETE}


def test_other_channels_are_not_delivered(hosts: tuple[Coordinator, Coordinator], channel: str) -> None:
    a, b = hosts
    inbox = Inbox()
    b.subscribe(channel, inbox)
    a.publish(channel_for("s3://another/store"), ChangeKind.WRITE, ["no"])
    a.publish(channel, ChangeKind.WRITE, ["yes"])
    assert [c.keys for c in inbox.wait_for(1)] == [("yes",)]


def test_a_cancelled_subscription_hears_nothing_more(hosts: tuple[Coordinator, Coordinator], channel: str) -> None:
    a, b = hosts
    cancelled, kept = Inbox(), Inbox()
    subscription = b.subscribe(channel, cancelled)
    b.subscribe(channel, kept)
    subscription.cancel()
    a.publish(channel, ChangeKind.WRITE, ["k"])
    kept.wait_for(1)
    assert cancelled.changes == []


def test_a_failing_callback_does_not_stop_delivery(hosts: tuple[Coordinator, Coordinator], channel: str) -> None:
    a, b = hosts

    def broken(change: Change) -> None:
        raise RuntimeError("callback bug")

    inbox = Inbox()
    b.subscribe(channel, broken)
    b.subscribe(channel, inbox)
    a.publish(channel, ChangeKind.WRITE, ["1"])
    a.publish(channel, ChangeKind.WRITE, ["2"])
    assert [c.keys for c in inbox.wait_for(2)] == [("1",), ("2",)]


# ---------------------------------------------------------------------- leases


def test_an_exclusive_lease_excludes_the_other_host(hosts: tuple[Coordinator, Coordinator]) -> None:
    a, b = hosts
    name = lock_name()
    held = a.acquire(name, "a-owner")
    assert held is not None and held.held
    assert b.acquire(name, "b-owner") is None
    assert b.acquire(name, "b-owner", shared=True) is None
    assert b.acquire(name, "b-owner", timeout=0.3) is None  # a blocking wait that times out
    a.release(held)
    a.release(held)  # twice is fine
    taken = b.acquire(name, "b-owner")
    assert taken is not None
    b.release(taken)


def test_shared_leases_coexist_and_keep_exclusive_ones_out(hosts: tuple[Coordinator, Coordinator]) -> None:
    a, b = hosts
    name = lock_name()
    first = a.acquire(name, "reader-a", shared=True)
    second = b.acquire(name, "reader-b", shared=True)
    assert first is not None and second is not None
    assert b.acquire(name, "writer", timeout=0) is None
    assert a.acquire(name, "reader-a") is None  # converting to exclusive while b shares: refused
    b.release(second)
    converted = a.acquire(name, "reader-a")  # now alone: the conversion succeeds
    assert converted is not None and not converted.shared
    assert b.acquire(name, "reader-b", shared=True) is None
    a.release(converted)
    a.release(first)


def test_holders_tells_who_holds_a_lock(hosts: tuple[Coordinator, Coordinator]) -> None:
    a, b = hosts
    name = lock_name()
    assert b.holders(name) == {}
    first = a.acquire(name, "reader-a", shared=True)
    second = b.acquire(name, "reader-b", shared=True)
    assert first is not None and second is not None
    assert a.holders(name) == {"reader-a": True, "reader-b": True}
    a.release(first)
    b.release(second)
    dead = a.acquire(name, "writer", lifetime=0.5, keep=False)
    assert dead is not None
    assert b.holders(name) == {"writer": False}
    assert wait_until(lambda: b.holders(name) == {})  # an expired lease holds nothing


def test_a_waiting_acquire_gets_the_lock_once_it_is_released(hosts: tuple[Coordinator, Coordinator]) -> None:
    a, b = hosts
    name = lock_name()
    held = a.acquire(name, "a-owner")
    assert held is not None
    releaser = threading.Timer(0.5, a.release, (held,))
    releaser.start()
    try:
        taken = b.acquire(name, "b-owner", timeout=WAIT)
    finally:
        releaser.join()
    assert taken is not None
    b.release(taken)


def test_the_lease_of_a_dead_holder_expires(hosts: tuple[Coordinator, Coordinator]) -> None:
    a, b = hosts
    name = lock_name()
    # keep=False: nobody renews it, as when the holder's host died.
    dead = a.acquire(name, "dead-owner", lifetime=1.0, keep=False)
    assert dead is not None
    taken = b.acquire(name, "b-owner", timeout=WAIT)
    assert taken is not None
    assert a.renew(dead) is False and dead.lost
    b.release(taken)


def test_a_kept_lease_is_renewed_beyond_its_lifetime(hosts: tuple[Coordinator, Coordinator]) -> None:
    a, b = hosts
    name = lock_name()
    held = a.acquire(name, "a-owner", lifetime=1.0)
    assert held is not None
    first_expiry = held.expires
    # Wait until the keeper renewed it twice: well past its first lifetime.
    assert wait_until(lambda: held.expires > first_expiry + 1.0), "the lease was not renewed"
    assert b.acquire(name, "b-owner") is None
    assert held.held and a.status().leases == 1
    a.close()  # closing releases what it holds
    taken = b.acquire(name, "b-owner")
    assert taken is not None
    b.release(taken)


def test_bad_lock_arguments_are_refused(hosts: tuple[Coordinator, Coordinator]) -> None:
    a, _ = hosts
    with pytest.raises(ValueError):
        a.acquire("", "owner")
    with pytest.raises(ValueError):
        a.acquire("name", "owner", lifetime=0)


# ---------------------------------------------------------------------- faults


def test_an_engine_outage_degrades_and_recovers(engine: str, hosts: tuple[Coordinator, Coordinator], channel: str) -> None:
    a, b = hosts
    inbox = Inbox()
    b.subscribe(channel, inbox, inbox.on_missed)
    assert a.publish(channel, ChangeKind.WRITE, ["before"])
    inbox.wait_for(1)
    assert b.status().connected
    held = a.acquire(lock_name(), "a-owner")
    assert held is not None
    stop_service(engine)
    try:
        assert a.publish(channel, ChangeKind.WRITE, ["lost"]) is False  # dropped, not raised
        with pytest.raises(CoordinationError):
            a.acquire(lock_name(), "a-owner")
        a.release(held)  # logged, not raised: the lease expires by itself
        status = a.status()
        assert status.publish_errors >= 1 and status.errors >= 1 and status.last_error
    finally:
        start_service(engine)
    assert inbox.missed.wait(WAIT), "the subscriber was not told that it may have missed messages"
    status = b.status()
    assert status.connected and status.reconnects >= 1
    # Publishing works again (after the short pause that follows a failure).
    def delivered() -> bool:
        a.publish(channel, ChangeKind.WRITE, ["after"])
        return any(c.keys == ("after",) for c in inbox.wait_for(len(inbox.changes) + 1, timeout=1.0))

    assert wait_until(delivered), "publishing did not recover"
    assert ("lost",) not in [c.keys for c in inbox.changes]


def test_a_subscriber_started_while_the_engine_is_down_catches_up(engine: str, channel: str) -> None:
    url = engine_url(engine)
    stop_service(engine)
    try:
        b = open_coordinator(url)
        inbox = Inbox()
        b.subscribe(channel, inbox, inbox.on_missed)  # returns although nothing answers
        assert not b.status().connected
    finally:
        start_service(engine)
    try:
        assert inbox.missed.wait(WAIT)
        with open_coordinator(url) as a:
            a.publish(channel, ChangeKind.DELETE, ["k"])
            assert [c.keys for c in inbox.wait_for(1)] == [("k",)]
    finally:
        b.close()
