"""A coordinator on PostgreSQL: LISTEN/NOTIFY for changes, a table for lock leases.

Changes are sent with ``pg_notify('kvfs_<hex>', message)`` on a raw psycopg 3
connection in autocommit mode (one round trip each), and received on another, since
``LISTEN`` belongs to one session, which SQLAlchemy's pool would hand to others. Leases
use a SQLAlchemy engine (as :mod:`kvfs.db.sql`). NOTIFY delivers only to sessions listening at commit time,
in commit order, at most 8000 bytes a message (longer changes are split by
:func:`~kvfs.coordination.messages.split_keys`).

Leases are rows of the table ``kvfs_leases`` (created when first needed): one per lock
name and holder, with its mode and its expiry on the server's clock. Each acquisition
runs in one transaction serialised per lock name by a transaction-level advisory lock,
and deletes expired holders first.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from .._extras import require
from .base import Coordinator, Listener

_sa = require("sqlalchemy", "postgresql", "SQLAlchemy")
_psycopg = require("psycopg", "postgresql")

#: Seconds to wait for a connection.
CONNECT_TIMEOUT = 2
#: Name of the lease table.
LEASE_TABLE = "kvfs_leases"
CHANNEL_PREFIX = "kvfs_"

_CREATE = f"""
CREATE TABLE IF NOT EXISTS {LEASE_TABLE} (
    name text NOT NULL,
    owner text NOT NULL,
    exclusive boolean NOT NULL,
    expires timestamptz NOT NULL,
    PRIMARY KEY (name, owner)
)
"""
# Any constant: serialises the CREATE TABLE of several hosts starting at once.
_CREATE_LOCK_ID = 0x6B766673


def _urls(url: str) -> tuple[Any, str]:
    """(SQLAlchemy URL, psycopg conninfo) for *url*."""
    parsed = _sa.engine.make_url(url.replace("postgres://", "postgresql://", 1))
    if parsed.get_backend_name() != "postgresql":
        raise ValueError("a PostgreSQL coordination URL starts with postgresql://")
    engine_url = parsed.set(drivername="postgresql+psycopg")
    conninfo = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    return engine_url, conninfo


class _PostgresListener(Listener):
    def __init__(self, conninfo: str) -> None:
        self._connection = _psycopg.connect(
            conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT, keepalives=1, keepalives_idle=30
        )

    def listen(self, names: Iterable[str]) -> None:
        for name in names:  # LISTEN takes effect before it returns (autocommit)
            self._connection.execute(_psycopg.sql.SQL("LISTEN {}").format(_psycopg.sql.Identifier(name)))

    def unlisten(self, names: Iterable[str]) -> None:
        for name in names:
            self._connection.execute(_psycopg.sql.SQL("UNLISTEN {}").format(_psycopg.sql.Identifier(name)))

    def poll(self, timeout: float) -> list[tuple[str, str]]:
        received = [(n.channel, n.payload) for n in self._connection.notifies(timeout=timeout, stop_after=1)]
        if received:  # take whatever else already arrived, without waiting
            received += [(n.channel, n.payload) for n in self._connection.notifies(timeout=0)]
        if self._connection.closed or self._connection.broken:
            raise ConnectionError("the PostgreSQL connection was closed")
        return received

    def close(self) -> None:
        try:
            self._connection.close()
        except Exception:
            pass


class PostgresCoordinator(Coordinator):
    """A :class:`~kvfs.coordination.base.Coordinator` on the PostgreSQL database at *url*.

    *url* is ``postgresql://user[:password]@host:5432/db`` (``postgresql+psycopg://``
    too). The role needs to create the table ``kvfs_leases`` once, or find it made.
    Raises :class:`~kvfs.errors.MissingExtraError` without ``kvfs[postgresql]`` and
    ``ValueError`` for a URL of another database; nothing connects until first use.
    """

    engine = "postgresql"

    def __init__(self, url: str, *, sender: str | None = None) -> None:
        super().__init__(url, sender=sender)
        from ..db.sql import create_engine

        engine_url, self._conninfo = _urls(url)
        self._engine = create_engine(
            engine_url.render_as_string(hide_password=False),
            connect_args={"connect_timeout": CONNECT_TIMEOUT},
            pool_size=2,
        )
        # Messages go through one raw autocommit connection: NOTIFY is then one round
        # trip (a pooled SQLAlchemy connection adds a ping, BEGIN and COMMIT).
        self._publisher: Any = None
        self._publisher_lock = threading.Lock()
        self._table_ready = False

    def _engine_channel(self, channel: str) -> str:
        # NOTIFY channels are identifiers: at most 63 bytes, folded to lower case.
        return (CHANNEL_PREFIX + channel.removeprefix("kvfs-")).lower()[:63]

    def _publish(self, name: str, payload: str) -> None:
        with self._publisher_lock:
            for attempt in (1, 2):
                fresh = self._publisher is None
                if fresh:
                    self._publisher = _psycopg.connect(
                        self._conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT
                    )
                try:
                    self._publisher.execute("SELECT pg_notify(%s, %s)", (name, payload))
                    return
                except _psycopg.Error:
                    self._close_publisher()
                    if fresh or attempt == 2:
                        raise
                    # else the connection died since its last use (a server restart): once more

    def _close_publisher(self) -> None:
        if self._publisher is not None:
            try:
                self._publisher.close()
            except Exception:
                pass
            self._publisher = None

    def _connect_listener(self) -> Listener:
        return _PostgresListener(self._conninfo)

    def _leases(self) -> Any:
        """A transaction on the engine, with the lease table made where missing."""
        if not self._table_ready:
            with self._engine.begin() as connection:
                connection.execute(_sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": _CREATE_LOCK_ID})
                connection.execute(_sa.text(_CREATE))
            self._table_ready = True
        return self._engine.begin()

    def _try_acquire(self, name: str, owner: str, shared: bool, lifetime: float) -> bool:
        with self._leases() as connection:
            run = connection.execute
            run(_sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:name, 0))"), {"name": name})
            run(_sa.text(f"DELETE FROM {LEASE_TABLE} WHERE name = :name AND expires <= clock_timestamp()"), {"name": name})
            others = run(
                _sa.text(f"SELECT exclusive FROM {LEASE_TABLE} WHERE name = :name AND owner <> :owner"),
                {"name": name, "owner": owner},
            ).scalars().all()
            if others and (not shared or any(others)):
                return False
            run(
                _sa.text(
                    f"INSERT INTO {LEASE_TABLE} (name, owner, exclusive, expires) "
                    "VALUES (:name, :owner, :exclusive, clock_timestamp() + make_interval(secs => :lifetime)) "
                    "ON CONFLICT (name, owner) DO UPDATE SET exclusive = EXCLUDED.exclusive, expires = EXCLUDED.expires"
                ),
                {"name": name, "owner": owner, "exclusive": not shared, "lifetime": float(lifetime)},
            )
            return True

    def _renew(self, name: str, owner: str, shared: bool, lifetime: float) -> bool:
        with self._leases() as connection:
            result = connection.execute(
                _sa.text(
                    f"UPDATE {LEASE_TABLE} SET expires = clock_timestamp() + make_interval(secs => :lifetime) "
                    "WHERE name = :name AND owner = :owner AND expires > clock_timestamp()"
                ),
                {"name": name, "owner": owner, "lifetime": float(lifetime)},
            )
            return bool(result.rowcount)

    def _release(self, name: str, owner: str) -> None:
        with self._leases() as connection:
            connection.execute(
                _sa.text(f"DELETE FROM {LEASE_TABLE} WHERE name = :name AND owner = :owner"),
                {"name": name, "owner": owner},
            )

    def _holders(self, name: str) -> dict[str, bool]:
        with self._leases() as connection:
            rows = connection.execute(
                _sa.text(f"SELECT owner, exclusive FROM {LEASE_TABLE} WHERE name = :name AND expires > clock_timestamp()"),
                {"name": name},
            ).all()
        return {owner: not exclusive for owner, exclusive in rows}

    def _close_engine(self) -> None:
        with self._publisher_lock:
            self._close_publisher()
        self._engine.dispose()


__all__ = ["PostgresCoordinator"]
