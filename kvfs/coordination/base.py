"""The :class:`Coordinator` interface, and what every engine shares.

A coordinator connects hosts that use the same stores. It does three things:

* :meth:`~Coordinator.publish` tells the other hosts that keys changed, after the change
  reached the store. Publishing never fails the caller: when the engine is unreachable
  the message is dropped, the failure logged once and counted (:meth:`~Coordinator.status`).
* :meth:`~Coordinator.subscribe` calls a callback with every change another host
  publishes on a channel, from one listener thread that reconnects with backoff. After a
  reconnect (or a first connection that only succeeded after failures) every
  subscription's *missed* callback is called: messages may have been lost meanwhile, so
  whatever was cached must be dropped.
* :meth:`~Coordinator.acquire` / :meth:`~Coordinator.renew` / :meth:`~Coordinator.release`
  hold lock leases (:mod:`kvfs.coordination.leases`); :meth:`~Coordinator.holders`
  tells who holds one.

Engines (:mod:`~kvfs.coordination.redis`, :mod:`~kvfs.coordination.postgresql`) fill the
underscore hooks.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from ..url import mask_url
from .leases import DEFAULT_LEASE_LIFETIME, Lease, LeaseKeeper
from .messages import Change, ChangeKind, new_sender_id, split_keys

log = logging.getLogger(__name__)

#: Reconnection backoff of the listener, in seconds: doubled after each failure up to the maximum.
MIN_BACKOFF = 0.1
MAX_BACKOFF = 5.0
#: How long the listener waits for messages before looking at new subscriptions.
POLL_INTERVAL = 0.1
#: After a failed publish, further publishes are dropped at once for this long, so an
#: unreachable engine costs the caller one time-out, not one per write.
PUBLISH_RETRY_AFTER = 1.0
#: How long :meth:`Coordinator.subscribe` waits for the engine to confirm a subscription.
SUBSCRIBE_WAIT = 5.0

ChangeCallback = Callable[[Change], None]
MissedCallback = Callable[[], None]


def describe_error(error: BaseException) -> str:
    """*error* on one line, without the driver's wrapping (SQLAlchemy's background link)."""
    error = getattr(error, "orig", None) or error
    return " ".join(str(error).split()) or type(error).__name__


class CoordinationError(OSError):
    """The coordination engine could not be asked (for a lock; publishing never raises)."""


@dataclass(frozen=True)
class CoordinatorStatus:
    """What ``kvfs status`` shows about a coordinator.

    ``connected`` is the listener's state (or, before anything was subscribed, whether
    the last publish worked); ``since`` is when it last changed (epoch seconds).
    ``publish_errors`` counts messages that could not be sent, ``errors`` every failure
    (publishing, listening, lease renewal), ``reconnects`` the listener's reconnections.
    """

    url: str
    engine: str
    sender: str
    connected: bool
    since: float
    sent: int
    received: int
    publish_errors: int
    errors: int
    reconnects: int
    last_error: str | None
    subscriptions: int
    leases: int


class Subscription:
    """A callback registered with :meth:`Coordinator.subscribe`; :meth:`cancel` ends it."""

    def __init__(
        self,
        coordinator: Coordinator,
        channel: str,
        callback: ChangeCallback,
        missed: MissedCallback | None,
        own: bool,
    ) -> None:
        self.coordinator = coordinator
        self.channel = channel
        self.callback = callback
        self.missed = missed
        self.own = own
        self.confirmed = threading.Event()

    def cancel(self) -> None:
        """Stop calling the callbacks."""
        self.coordinator._unsubscribe(self)


class Listener(ABC):
    """One connection of an engine that receives messages (built by ``_connect_listener``)."""

    @abstractmethod
    def listen(self, names: Iterable[str]) -> None:
        """Start receiving the engine channels *names*; return once the engine confirmed it."""

    @abstractmethod
    def unlisten(self, names: Iterable[str]) -> None:
        """Stop receiving *names*."""

    @abstractmethod
    def poll(self, timeout: float) -> list[tuple[str, str]]:
        """(engine channel, payload) pairs received within *timeout* seconds; raise when broken."""

    @abstractmethod
    def close(self) -> None:
        """Close the connection, quietly."""


class Coordinator(ABC):
    """Publishes changes, delivers other hosts' changes, and holds lock leases.

    *url* is the engine's URL (kept for :meth:`status`, shown masked); *sender* names
    this coordinator in its messages (default: :func:`~kvfs.coordination.messages.new_sender_id`).
    A coordinator is safe to use from several threads; :meth:`close` releases its leases
    and stops its threads. Constructing one does not connect: the first use does.
    """

    #: The engine's name in :class:`CoordinatorStatus`.
    engine: str = "?"

    def __init__(self, url: str, *, sender: str | None = None) -> None:
        self.url = url
        self.sender = sender or new_sender_id()
        self._lock = threading.Lock()
        self._sequence = 0
        self._subscriptions: list[Subscription] = []
        self._listened: set[str] = set()  # engine channels the listener receives
        self._listener_thread: threading.Thread | None = None
        self._closed = threading.Event()
        self._keeper = LeaseKeeper(self._keeper_renew)
        self._connected = False
        self._since = time.time()
        self._sent = 0
        self._received = 0
        self._publish_errors = 0
        self._errors = 0
        self._reconnects = 0
        self._last_error: str | None = None
        self._publish_failing_until = 0.0
        self._publish_down = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}({mask_url(self.url)!r})"

    # ------------------------------------------------------------------ publishing

    def publish(
        self,
        channel: str,
        kind: ChangeKind | str,
        keys: Sequence[str],
        *,
        directory: bool = False,
        size: int | None = None,
        mtime: float | None = None,
    ) -> bool:
        """Tell the other hosts that *keys* of the store on *channel* changed.

        Call it after the change reached the store. *size* and *mtime* (both or
        neither) are the new attributes of a write of one regular file. Returns whether
        every message was sent (True for no keys: nothing to send); never raises for an
        unreachable engine (the failure is logged once per outage and counted).
        ``ValueError`` for an unknown *kind*, or attributes of anything but one written key.
        """
        kind = ChangeKind(kind)
        attributes = size is not None or mtime is not None
        if attributes and (kind is not ChangeKind.WRITE or len(keys) != 1 or size is None or mtime is None):
            raise ValueError("size and mtime go together, with a write of one key")
        if not keys:
            return True
        if self._closed.is_set():
            return False
        if time.monotonic() < self._publish_failing_until:
            with self._lock:
                self._publish_errors += 1
            return False
        sent_all = True
        for group in split_keys(kind, list(keys)):
            with self._lock:
                self._sequence += 1
                change = Change(channel, kind, group, self.sender, self._sequence, time.time(), directory, size, mtime)
            try:
                self._publish(self._engine_channel(channel), change.encode())
            except Exception as error:
                self._note_publish_failure(error)
                sent_all = False
                break
            with self._lock:
                self._sent += 1
                if self._publish_down:
                    self._publish_down = False
                    log.warning("coordination engine %s: publishing works again", mask_url(self.url))
                if not self._subscriptions:
                    self._set_connected(True)
        return sent_all

    def _note_publish_failure(self, error: Exception) -> None:
        with self._lock:
            self._publish_errors += 1
            self._errors += 1
            self._last_error = f"publish: {describe_error(error)}"
            self._publish_failing_until = time.monotonic() + PUBLISH_RETRY_AFTER
            first = not self._publish_down
            self._publish_down = True
            if not self._subscriptions:
                self._set_connected(False)
        if first:
            log.warning(
                "coordination engine %s unreachable, changes are not announced (%s); other hosts rely on their cache timeouts",
                mask_url(self.url),
                describe_error(error),
            )

    # ------------------------------------------------------------------ subscribing

    def subscribe(
        self,
        channel: str,
        callback: ChangeCallback,
        missed: MissedCallback | None = None,
        *,
        own: bool = False,
    ) -> Subscription:
        """Call *callback* with each change published on *channel*, from the listener thread.

        Changes this coordinator published itself are skipped unless *own*. *missed* is
        called after the listener reconnected: changes may have been lost. Returns once
        the engine confirmed the subscription, or after a few seconds when it cannot be
        reached (the listener keeps trying, and calls *missed* once it succeeds).
        Callbacks must be quick and must not raise (an exception is logged and ignored).
        """
        subscription = Subscription(self, channel, callback, missed, own)
        with self._lock:
            if self._closed.is_set():
                raise ValueError("the coordinator is closed")
            self._subscriptions.append(subscription)
            if self._listener_thread is None:
                self._listener_thread = threading.Thread(
                    target=self._listen_forever, name="kvfs-coordination-listener", daemon=True
                )
                self._listener_thread.start()
        subscription.confirmed.wait(timeout=SUBSCRIBE_WAIT)
        return subscription

    def _unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            if subscription in self._subscriptions:
                self._subscriptions.remove(subscription)

    def _wanted(self) -> set[str]:
        with self._lock:
            return {self._engine_channel(s.channel) for s in self._subscriptions}

    def _listen_forever(self) -> None:
        delay = MIN_BACKOFF
        had_trouble = False
        while not self._closed.is_set():
            listener: Listener | None = None
            try:
                listener = self._connect_listener()
                self._listened = set()
                self._sync_channels(listener)
                with self._lock:
                    self._set_connected(True)
                    if had_trouble:
                        self._reconnects += 1
                        log.warning("coordination engine %s: listening again", mask_url(self.url))
                if had_trouble:
                    self._tell_missed()
                had_trouble = False
                delay = MIN_BACKOFF
                while not self._closed.is_set():
                    self._sync_channels(listener)
                    for name, payload in listener.poll(POLL_INTERVAL):
                        self._deliver(name, payload)
            except Exception as error:
                if self._closed.is_set():
                    break
                with self._lock:
                    self._errors += 1
                    self._last_error = f"listen: {describe_error(error)}"
                    was_connected = self._connected or not had_trouble
                    self._set_connected(False)
                if was_connected:
                    log.warning(
                        "coordination engine %s unreachable (%s); caches fall back to their timeouts, reconnecting",
                        mask_url(self.url),
                        describe_error(error),
                    )
                had_trouble = True
                self._closed.wait(delay)
                delay = min(delay * 2, MAX_BACKOFF)
            finally:
                if listener is not None:
                    listener.close()

    def _sync_channels(self, listener: Listener) -> None:
        wanted = self._wanted()
        new = wanted - self._listened
        if new:
            listener.listen(sorted(new))
        gone = self._listened - wanted
        if gone:
            listener.unlisten(sorted(gone))
        self._listened = wanted
        with self._lock:
            for subscription in self._subscriptions:
                subscription.confirmed.set()

    def _tell_missed(self) -> None:
        with self._lock:
            subscriptions = list(self._subscriptions)
        for subscription in subscriptions:
            if subscription.missed is not None:
                try:
                    subscription.missed()
                except Exception:
                    log.exception("coordination: the missed-messages callback failed")

    def _deliver(self, name: str, payload: str) -> None:
        try:
            change = Change.decode(payload)
        except ValueError as error:
            log.debug("coordination: ignoring a message on %s: %s", name, error)
            return
        with self._lock:
            self._received += 1
            subscriptions = [s for s in self._subscriptions if self._engine_channel(s.channel) == name]
        for subscription in subscriptions:
            if change.channel != subscription.channel:
                continue
            if change.sender == self.sender and not subscription.own:
                continue
            try:
                subscription.callback(change)
            except Exception:
                log.exception("coordination: a change callback failed on %s", change)

    def _set_connected(self, connected: bool) -> None:
        # Called with self._lock held.
        if connected != self._connected:
            self._connected = connected
            self._since = time.time()

    # ------------------------------------------------------------------ leases

    def acquire(
        self,
        name: str,
        owner: str,
        *,
        shared: bool = False,
        lifetime: float = DEFAULT_LEASE_LIFETIME,
        timeout: float | None = 0.0,
        keep: bool = True,
    ) -> Lease | None:
        """Take the lock *name* for *owner*: exclusive, or *shared*; return the lease, or None.

        ``flock`` semantics: any number of owners may share a lock that nobody holds
        exclusively; an exclusive lock has one owner. An owner that already holds *name*
        converts its lock (shared to exclusive, or back), as ``flock`` does. With
        *timeout* 0 this is a try (``LOCK_NB``); otherwise it waits up to *timeout*
        seconds (None: for ever) and returns None if the lock stayed taken. The lease
        lasts *lifetime* seconds and, with *keep*, is renewed in a background thread
        until released; a holder that dies stops renewing and its lock frees itself.
        Raises :class:`CoordinationError` when the engine cannot be reached, and
        ``ValueError`` for an empty name or owner or a lifetime not above zero.
        """
        if not name or not owner:
            raise ValueError("a lock needs a name and an owner")
        if not lifetime > 0:
            raise ValueError(f"a lease lifetime must be above 0 seconds, not {lifetime!r}")
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = 0.02
        while True:
            started = time.monotonic()
            try:
                taken = self._try_acquire(name, owner, shared, lifetime)
            except Exception as error:
                with self._lock:
                    self._errors += 1
                    self._last_error = f"lock: {describe_error(error)}"
                raise CoordinationError(f"coordination engine {mask_url(self.url)}: {describe_error(error)}") from error
            if taken:
                lease = Lease(name, owner, shared, lifetime, started + lifetime, kept=keep)
                if keep:
                    self._keeper.keep(lease)
                return lease
            if deadline is not None and time.monotonic() >= deadline:
                return None
            wait = pause if deadline is None else min(pause, max(0.0, deadline - time.monotonic()))
            if self._closed.wait(wait):
                return None
            pause = min(pause * 2, 0.5)

    def renew(self, lease: Lease) -> bool:
        """Extend *lease* by its lifetime; False when it was no longer held (it expired).

        Raises :class:`CoordinationError` when the engine cannot be reached.
        """
        started = time.monotonic()
        try:
            renewed = self._renew(lease.name, lease.owner, lease.shared, lease.lifetime)
        except Exception as error:
            with self._lock:
                self._errors += 1
                self._last_error = f"lock: {describe_error(error)}"
            raise CoordinationError(f"coordination engine {mask_url(self.url)}: {describe_error(error)}") from error
        if renewed:
            lease.expires = started + lease.lifetime
        else:
            lease.lost = True
        return renewed

    def release(self, lease: Lease) -> None:
        """Give *lease* up. Releasing twice, or a lost lease, is not an error.

        When the engine cannot be reached the failure is logged and counted, not raised:
        the lease then expires by itself.
        """
        self._keeper.drop(lease)
        if lease.released:
            return
        lease.released = True
        try:
            self._release(lease.name, lease.owner)
        except Exception as error:
            with self._lock:
                self._errors += 1
                self._last_error = f"unlock: {describe_error(error)}"
            log.warning("lock %r: could not release it (%s); it expires with its lease", lease.name, describe_error(error))

    def holders(self, name: str) -> dict[str, bool]:
        """Who holds the lock *name* now: each owner, with whether it shares the lock.

        Expired leases are left out. Raises :class:`CoordinationError` when the engine
        cannot be reached.
        """
        try:
            return self._holders(name)
        except Exception as error:
            with self._lock:
                self._errors += 1
                self._last_error = f"lock: {describe_error(error)}"
            raise CoordinationError(f"coordination engine {mask_url(self.url)}: {describe_error(error)}") from error

    def _keeper_renew(self, lease: Lease) -> bool:
        if lease.released:
            return True
        try:
            return self._renew(lease.name, lease.owner, lease.shared, lease.lifetime)
        except Exception as error:
            with self._lock:
                self._errors += 1
                self._last_error = f"lock renewal: {describe_error(error)}"
            raise

    # ------------------------------------------------------------------ status, close

    def status(self) -> CoordinatorStatus:
        """A snapshot of the connection state and counters."""
        with self._lock:
            return CoordinatorStatus(
                url=mask_url(self.url),
                engine=self.engine,
                sender=self.sender,
                connected=self._connected,
                since=self._since,
                sent=self._sent,
                received=self._received,
                publish_errors=self._publish_errors,
                errors=self._errors + self._keeper.errors,
                reconnects=self._reconnects,
                last_error=self._last_error,
                subscriptions=len(self._subscriptions),
                leases=len(self._keeper.held()),
            )

    def close(self) -> None:
        """Release every kept lease, stop the threads and close the connections."""
        if self._closed.is_set():
            return
        for lease in self._keeper.held():
            self.release(lease)
        self._closed.set()
        self._keeper.stop()
        thread = self._listener_thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)
        self._close_engine()

    def __enter__(self) -> Coordinator:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ engine hooks

    @abstractmethod
    def _engine_channel(self, channel: str) -> str:
        """The engine's name for *channel*."""

    @abstractmethod
    def _publish(self, name: str, payload: str) -> None:
        """Send *payload* on engine channel *name*; raise on failure."""

    @abstractmethod
    def _connect_listener(self) -> Listener:
        """A new connection for receiving messages; raise when the engine is unreachable."""

    @abstractmethod
    def _try_acquire(self, name: str, owner: str, shared: bool, lifetime: float) -> bool:
        """Atomically take or convert the lock if nothing conflicts; expired holders do not count."""

    @abstractmethod
    def _renew(self, name: str, owner: str, shared: bool, lifetime: float) -> bool:
        """Extend the owner's unexpired lease; False when it is gone."""

    @abstractmethod
    def _release(self, name: str, owner: str) -> None:
        """Drop the owner's lease, if any."""

    @abstractmethod
    def _holders(self, name: str) -> dict[str, bool]:
        """The owners of unexpired leases of *name*, each with whether it shares."""

    def _close_engine(self) -> None:
        """Close the publishing and locking connections."""


__all__ = [
    "CoordinationError",
    "Coordinator",
    "CoordinatorStatus",
    "Listener",
    "Subscription",
]
