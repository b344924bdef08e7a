"""Lock leases: :class:`Lease`, and the :class:`LeaseKeeper` thread that renews them.

A lease is a lock with a lifetime, held in the coordination engine: ``flock``-like,
either exclusive (one owner) or shared (any number of owners, no exclusive one). The
holder renews it while alive; a holder that dies (a crashed host, a killed mount) stops
renewing, and its lease expires after its lifetime, so nobody waits for ever.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

#: Lifetime of a lease unless the caller says otherwise, in seconds.
DEFAULT_LEASE_LIFETIME = 30.0
#: A lease is renewed when this fraction of its lifetime has passed.
RENEW_FRACTION = 1 / 3


@dataclass(eq=False)
class Lease:
    """A lock held by *owner* on *name* until ``expires`` (this host's monotonic clock).

    ``lost`` becomes True when a renewal found the lease gone (it expired while the
    engine was unreachable, and perhaps someone else holds the lock now).
    """

    name: str
    owner: str
    shared: bool
    lifetime: float
    expires: float
    kept: bool = True
    lost: bool = False
    released: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def held(self) -> bool:
        """Whether the lease is still ours, as far as this host knows."""
        return not (self.lost or self.released) and time.monotonic() < self.expires


class LeaseKeeper:
    """Renews kept leases in one background thread, at a third of their lifetime.

    *renew* is the engine's renewal: True when renewed, False when the lease was gone,
    an exception when the engine could not be asked (retried at the next round, until
    the lease would have expired anyway).
    """

    def __init__(self, renew: Callable[[Lease], bool]) -> None:
        self._renew = renew
        self._leases: dict[int, Lease] = {}
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self._stopped = False
        self.errors = 0

    def keep(self, lease: Lease) -> None:
        with self._lock:
            self._leases[id(lease)] = lease
            if self._thread is None and not self._stopped:
                self._thread = threading.Thread(target=self._run, name="kvfs-lease-keeper", daemon=True)
                self._thread.start()
            self._wake.notify()

    def drop(self, lease: Lease) -> None:
        with self._lock:
            self._leases.pop(id(lease), None)

    def held(self) -> list[Lease]:
        with self._lock:
            return list(self._leases.values())

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            self._wake.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)

    def _due(self, lease: Lease) -> float:
        return lease.expires - lease.lifetime * (1 - RENEW_FRACTION)

    def _run(self) -> None:
        while True:
            with self._lock:
                if self._stopped:
                    return
                now = time.monotonic()
                due = [lease for lease in self._leases.values() if self._due(lease) <= now]
                if not due:
                    wait = min((self._due(lease) - now for lease in self._leases.values()), default=60.0)
                    self._wake.wait(timeout=max(0.01, wait))
                    continue
            for lease in due:
                self._renew_one(lease)

    def _renew_one(self, lease: Lease) -> None:
        started = time.monotonic()
        try:
            renewed = self._renew(lease)
        except Exception as error:  # the engine is unreachable: try again soon
            self.errors += 1
            if time.monotonic() >= lease.expires:
                log.warning("lock %r: lease expired while the coordination engine was unreachable (%s)", lease.name, error)
                self._lose(lease)
            else:  # retry after a tenth of the lifetime
                with self._lock:
                    self._wake.wait(timeout=lease.lifetime / 10)
            return
        if renewed:
            with lease._lock:
                lease.expires = started + lease.lifetime
        elif not lease.released:
            log.warning("lock %r: lease was lost (it expired, or was broken)", lease.name)
            self._lose(lease)

    def _lose(self, lease: Lease) -> None:
        lease.lost = True
        self.drop(lease)


__all__ = ["DEFAULT_LEASE_LIFETIME", "Lease", "LeaseKeeper"]
