"""Coordination between hosts that use the same stores: change messages and lock leases.

Several mounts (and library users) of one store on several machines each cache what
they saw. A coordinator lets them tell each other what changed, at once, and hold locks
across machines, through a server they already have:

* ``redis://host:6379/0``: :class:`~kvfs.coordination.redis.RedisCoordinator`
  (pub/sub, and keys with an expiry for leases);
* ``postgresql://user@host:5432/db``: :class:`~kvfs.coordination.postgresql.PostgresCoordinator`
  (LISTEN/NOTIFY, and a table for leases).

:func:`open_coordinator` picks the engine from the URL. The library's writes are
published by :class:`~kvfs.coordination.store.CoordinatedStore` (or the store URL
parameter ``?coordinate=URL``). Importing this package imports neither redis-py nor
psycopg; opening a coordinator does.
"""

from __future__ import annotations

from .base import CoordinationError, Coordinator, CoordinatorStatus, Subscription
from .leases import DEFAULT_LEASE_LIFETIME, Lease
from .messages import Change, ChangeKind, channel_for, normalise_store_url
from .store import CoordinatedStore

#: The URL schemes :func:`open_coordinator` knows, and the engine each opens.
ENGINES = {
    "redis": "redis",
    "rediss": "redis",
    "unix": "redis",
    "postgresql": "postgresql",
    "postgresql+psycopg": "postgresql",
    "postgres": "postgresql",
}


def open_coordinator(url: str, *, sender: str | None = None) -> Coordinator:
    """A coordinator for the engine *url* names (``redis://…`` or ``postgresql://…``).

    Does not connect yet. Raises ``ValueError`` for another scheme (naming the known
    ones) and :class:`~kvfs.errors.MissingExtraError` when the engine's client library
    is not installed.
    """
    from ..url import mask_url

    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if " " in scheme:  # a '+' that a query string decoded to a space (?coordinate=postgresql+psycopg://)
        scheme = scheme.replace(" ", "+")
        url = scheme + url[len(scheme) :]
    engine = ENGINES.get(scheme)
    if engine == "redis":
        from .redis import RedisCoordinator

        return RedisCoordinator(url, sender=sender)
    if engine == "postgresql":
        from .postgresql import PostgresCoordinator

        return PostgresCoordinator(url, sender=sender)
    raise ValueError(
        f"{mask_url(url)!r} is not a coordination URL; expected redis://host:6379/0 "
        "or postgresql://user@host:5432/db"
    )


__all__ = [
    "DEFAULT_LEASE_LIFETIME",
    "ENGINES",
    "Change",
    "ChangeKind",
    "CoordinatedStore",
    "CoordinationError",
    "Coordinator",
    "CoordinatorStatus",
    "Lease",
    "Subscription",
    "channel_for",
    "normalise_store_url",
    "open_coordinator",
]
