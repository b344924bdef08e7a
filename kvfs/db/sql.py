"""A store in one table of a SQL database: :class:`SQLAlchemyStore` (SQLAlchemy 2)."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import IO, Any

from .._extras import require
from ..errors import BackendError, KeyNotFoundError
from ..keys import MAX_KEY_LENGTH, SEPARATOR
from ..mixins import CopyMixin
from ..store import DIRECTORY_MARKER_SUFFIX, KeyInfo, KeyValueStore, Rebuild, group_level

sa = require("sqlalchemy", "sql", "SQLAlchemy")
from sqlalchemy.dialects import mysql, postgresql, sqlite  # noqa: E402  (after the check)

#: Seconds a connection attempt to a database server may take.
CONNECT_TIMEOUT = 5
#: Seconds a SQLite connection waits for another writer before giving up.
SQLITE_BUSY_TIMEOUT = 30.0

# The key column holds a key or a directory marker (the key and a separator).
_KEY_COLUMN_LENGTH = MAX_KEY_LENGTH + len(DIRECTORY_MARKER_SUFFIX)
# substr() takes 32-bit arguments on PostgreSQL; no value is that long (bytea <= 1 GiB).
_MAX_SQL_INT = 2**31 - 1
# Dialects whose INSERT has an ON CONFLICT DO UPDATE clause (one atomic upsert).
_UPSERT_INSERTS = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except sa.exc.DBAPIError as error:
        # The driver's message, without SQLAlchemy's echo of the statement and its values.
        raise BackendError(f"SQL database: {str(error.orig).strip()}") from error
    except sa.exc.SQLAlchemyError as error:
        raise BackendError(f"SQL database: {error}") from error


def create_engine(url: str, **options: Any) -> Any:
    """Create an engine for *url* set up for a store used from several threads.

    A ``postgresql://`` URL without a driver uses psycopg 3 (``kvfs[postgresql]``);
    connections are checked before use and time out after :data:`CONNECT_TIMEOUT`
    seconds. A SQLite file gets WAL journaling (readers never wait for a writer) and a
    busy timeout; ``sqlite://`` (in memory) shares one connection between threads.
    Statement parameters (the values) never appear in error messages.
    """
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError:
        raise ValueError("not a valid SQLAlchemy database URL (dialect+driver://...)") from None
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername == "postgresql+psycopg":
        require("psycopg", "postgresql")
        options.setdefault("connect_args", {}).setdefault("connect_timeout", CONNECT_TIMEOUT)
    options.setdefault("hide_parameters", True)
    options.setdefault("pool_pre_ping", True)
    if parsed.get_backend_name() != "sqlite":
        return _create_engine(parsed, **options)

    connect_args = options.setdefault("connect_args", {})
    connect_args.setdefault("timeout", SQLITE_BUSY_TIMEOUT)
    connect_args.setdefault("check_same_thread", False)
    in_memory = parsed.database in (None, "", ":memory:")
    if in_memory:
        options.setdefault("poolclass", sa.pool.StaticPool)
    engine = _create_engine(parsed, **options)
    if not in_memory:

        @sa.event.listens_for(engine, "connect")
        def _use_wal(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.close()

    return engine


def _in_memory(url: Any) -> bool:
    """Whether the engine URL *url* names an in-memory SQLite database."""
    return bool(url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"))


def _create_engine(url: Any, **options: Any) -> Any:
    try:
        return sa.create_engine(url, **options)
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError) as error:
        # SQLAlchemy renders URLs in its messages with the password hidden.
        raise ValueError(str(error)) from None


def _define_table(bind: Any, metadata: Any, tablename: str) -> Any:
    """The store's table; an existing table without a ``modified`` column is used as is."""
    inspector = sa.inspect(bind)
    with_modified = not inspector.has_table(tablename) or "modified" in {
        column["name"] for column in inspector.get_columns(tablename)
    }
    value_type = sa.LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")
    columns = [
        sa.Column("key", sa.String(_KEY_COLUMN_LENGTH), primary_key=True),
        sa.Column("value", value_type, nullable=False),
    ]
    if with_modified:
        columns.append(sa.Column("modified", sa.Double()))  # POSIX seconds
    return sa.Table(tablename, metadata, *columns, extend_existing=True)


class SQLAlchemyStore(CopyMixin, KeyValueStore):
    """Keeps each value in a row of table *tablename* (key, value, modified).

    *bind* is an SQLAlchemy :class:`~sqlalchemy.engine.Engine` (see
    :func:`create_engine` for one set up for threads), *metadata* a
    :class:`~sqlalchemy.MetaData` the table is defined in, as in simplekv. The table is
    created if missing; a table made by simplekv (no ``modified`` column) works, with
    ``last_modified`` unknown. A put is one atomic statement (an upsert on SQLite and
    PostgreSQL, delete and insert in one transaction elsewhere), so readers see the old
    or the new value, never none. Sizes, ranges, listings and copies are computed in SQL
    without fetching values; a value is held in memory whole when written or read.
    Database failures raise :class:`~kvfs.errors.BackendError` with the driver's message.
    """

    fast_stat = True
    fast_ranges = True
    listing_has_sizes = True
    supports_directories = True

    def __init__(self, bind: Any, metadata: Any, tablename: str) -> None:
        self.bind = bind
        self._owns_engine = False
        # A database server is remote; SQLite is a local file.
        self.is_remote = bind.dialect.name != "sqlite"
        shared = isinstance(getattr(bind, "pool", None), sa.pool.StaticPool)
        self._turns: AbstractContextManager[Any] = threading.RLock() if shared else nullcontext()
        with _errors():
            self.table = _define_table(bind, metadata, tablename)
            metadata.create_all(bind, tables=[self.table])
        columns = self.table.c
        self._info_columns = [columns.key, sa.func.length(columns.value)]
        self._info_columns.append(columns.modified if "modified" in columns else sa.null())

    @classmethod
    def from_url(cls, url: str, tablename: str = "kvfs", **engine_options: Any) -> SQLAlchemyStore:
        """Open table *tablename* of the database at *url* (see :func:`create_engine`).

        The store owns the engine and disposes of it in :meth:`close`.
        """
        engine = create_engine(url, **engine_options)
        try:
            store = cls(engine, sa.MetaData(), tablename)
        except BaseException:
            engine.dispose()
            raise
        store._owns_engine = True
        if not _in_memory(engine.url):
            store._rebuilt_by(cls.from_url, url, tablename, **engine_options)
        return store

    def _travelling_arguments(self, arguments: dict[str, Any]) -> dict[str, Any]:
        # The engine is rebuilt from its URL (with the password) by create_engine: its
        # other options stay behind. An in-memory database lives in this process only.
        url = self.bind.url
        if _in_memory(url):
            raise TypeError(f"cannot pickle {self!r}: an in-memory SQLite database exists only in this process")
        engine = Rebuild(create_engine, url.render_as_string(hide_password=False))
        return {**arguments, "bind": engine, "metadata": Rebuild(sa.MetaData)}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.bind!r}, table={self.table.name!r})"

    def close(self) -> None:
        if self._owns_engine:
            self.bind.dispose()

    # ------------------------------------------------------------------ helpers

    @contextmanager
    def _connect(self, write: bool = False) -> Iterator[Any]:
        """A connection (in a transaction when *write*), with errors mapped.

        Where the engine shares one connection (SQLite in memory), callers take turns.
        """
        with (
            self._turns,
            _errors(),
            self.bind.begin() if write else self.bind.connect() as connection,
        ):
            yield connection

    def _values(self, data: Any) -> dict[str, Any]:
        values = {"value": data}
        if "modified" in self.table.c:
            values["modified"] = time.time()
        return values

    def _replace(self, connection: Any, dest: str, build: Callable[[Any], Any]) -> int:
        """Insert the row *build* makes from an INSERT construct, replacing row *dest*.

        Returns the number of rows written. One upsert statement where the dialect has
        one; otherwise a delete then an insert, which the caller's transaction makes atomic.
        """
        upsert_insert = _UPSERT_INSERTS.get(connection.dialect.name)
        if upsert_insert is not None:
            statement = build(upsert_insert(self.table))
            replaced = {
                column.name: statement.excluded[column.name]
                for column in self.table.c
                if column.name != "key"
            }
            statement = statement.on_conflict_do_update(
                index_elements=[self.table.c.key], set_=replaced
            )
        else:
            connection.execute(sa.delete(self.table).where(self.table.c.key == dest))
            statement = build(sa.insert(self.table))
        # rowcount of an INSERT is only kept on request (SQLAlchemy 2.0.28 and later).
        return connection.execute(statement, execution_options={"preserve_rowcount": True}).rowcount

    def _below(self, query: Any, prefix: str) -> Any:
        """*query* restricted to the names starting with *prefix*."""
        if not prefix:
            return query
        key = self.table.c.key
        # LIKE can use the index but ignores case on SQLite; substr() compares exactly.
        return query.where(
            key.startswith(prefix, autoescape=True), sa.func.substr(key, 1, len(prefix)) == prefix
        )

    # ------------------------------------------------------------------ hooks

    def _delete(self, key: str) -> None:
        with self._connect(write=True) as connection:
            connection.execute(sa.delete(self.table).where(self.table.c.key == key))

    def _iter_keys(self, prefix: str) -> Iterator[str]:
        query = self._below(sa.select(self.table.c.key), prefix)
        # Fetched at once, so no connection (and, on SQLite, no read lock) is held while
        # the caller iterates and perhaps writes.
        with self._connect() as connection:
            return iter(connection.execute(query).scalars().all())

    def _has_key(self, key: str) -> bool:
        query = sa.select(self.table.c.key).where(self.table.c.key == key)
        with self._connect() as connection:
            return connection.execute(query).first() is not None

    def _get(self, key: str) -> bytes:
        query = sa.select(self.table.c.value).where(self.table.c.key == key)
        with self._connect() as connection:
            row = connection.execute(query).first()
        if row is None:
            raise KeyNotFoundError(key)
        return bytes(row[0])

    def _open(self, key: str) -> IO[bytes]:
        return io.BytesIO(self._get(key))

    def _put(self, key: str, data: bytes) -> str:
        values = {"key": key, **self._values(data)}
        with self._connect(write=True) as connection:
            self._replace(connection, key, lambda insert: insert.values(values))
        return key

    def _put_file(self, key: str, file: IO[bytes]) -> str:
        # A row is written whole: read the file to its end first.
        return self._put(key, file.read())

    def _stat(self, key: str) -> KeyInfo:
        query = sa.select(*self._info_columns).where(self.table.c.key == key)
        with self._connect() as connection:
            row = connection.execute(query).first()
        if row is None:
            raise KeyNotFoundError(key)
        return KeyInfo(key, row[1], row[2])

    def _get_range(self, key: str, start: int, length: int) -> bytes:
        # SQL's substr counts from 1.
        part = sa.func.substr(
            self.table.c.value,
            sa.cast(min(start + 1, _MAX_SQL_INT), sa.Integer),
            sa.cast(min(length, _MAX_SQL_INT), sa.Integer),
            type_=sa.LargeBinary,
        )
        query = sa.select(part).where(self.table.c.key == key)
        with self._connect() as connection:
            row = connection.execute(query).first()
        if row is None:
            raise KeyNotFoundError(key)
        return bytes(row[0] or b"")

    def _iter_level(self, prefix: str, delimiter: str) -> Iterator[KeyInfo]:
        query = self._below(sa.select(*self._info_columns), prefix)
        with self._connect() as connection:
            rows = connection.execute(query).all()
        infos = (KeyInfo(name, size, modified) for name, size, modified in rows)
        return group_level(prefix, delimiter, infos)

    def _copy(self, source: str, dest: str) -> str:
        columns = self.table.c
        selected = [sa.literal(dest, sa.String), columns.value]
        if "modified" in columns:
            selected.append(sa.literal(time.time(), sa.Double))
        rows = sa.select(*selected).where(columns.key == source)
        with self._connect(write=True) as connection:
            written = self._replace(
                connection, dest, lambda insert: insert.from_select(list(columns.keys()), rows)
            )
            if not written:
                raise KeyNotFoundError(source)  # rolls back the transaction
        return dest

    def _move(self, source: str, dest: str) -> str:
        # A rename of the row in one transaction: atomic, and the value is not copied.
        columns = self.table.c
        with self._connect(write=True) as connection:
            connection.execute(sa.delete(self.table).where(columns.key == dest))
            renamed = connection.execute(
                sa.update(self.table).where(columns.key == source).values(key=dest)
            ).rowcount
            if not renamed:
                raise KeyNotFoundError(source)  # rolls back the transaction
        return dest

    def _has_directory(self, key: str) -> bool:
        # The marker itself (key/) also starts with key/.
        query = self._below(sa.select(self.table.c.key), key + SEPARATOR).limit(1)
        with self._connect() as connection:
            return connection.execute(query).first() is not None


__all__ = ["SQLAlchemyStore", "create_engine"]
