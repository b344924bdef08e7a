"""A store in one table of a SQL database: :class:`SQLAlchemyStore` (SQLAlchemy 2)."""

from __future__ import annotations

import io
import itertools
import secrets
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
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
#: Values longer than this are kept in chunks of this size (see :class:`SQLAlchemyStore`).
CHUNK_SIZE = 1024 * 1024
#: The table of chunks of table ``t`` is ``t_chunks``.
CHUNK_TABLE_SUFFIX = "_chunks"

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


def _define_tables(bind: Any, metadata: Any, tablename: str) -> tuple[Any, Any | None]:
    """The store's table and, in the chunked layout, its table of chunks (else None).

    An existing table is used as it is: without a ``modified`` column last-modified times
    are unknown, and without the ``blob_id`` and ``size`` columns (a table made by simplekv
    or kvfs 0.1) every value stays whole in its row until :meth:`SQLAlchemyStore.migrate`.
    """
    inspector = sa.inspect(bind)
    existing = inspector.has_table(tablename)
    names = {column["name"] for column in inspector.get_columns(tablename)} if existing else set()
    value_type = sa.LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")
    columns = [
        sa.Column("key", sa.String(_KEY_COLUMN_LENGTH), primary_key=True),
        sa.Column("value", value_type, nullable=False),
    ]
    if not existing or "modified" in names:
        columns.append(sa.Column("modified", sa.Double()))  # POSIX seconds
    chunked = not existing or {"blob_id", "size"} <= names
    if chunked:
        columns.extend(_chunk_columns())
    table = sa.Table(tablename, metadata, *columns, extend_existing=True)
    if not chunked:
        return table, None
    chunks = sa.Table(
        f"{tablename}{CHUNK_TABLE_SUFFIX}",
        metadata,
        sa.Column("blob_id", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("start", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("data", value_type, nullable=False),
        extend_existing=True,
    )
    return table, chunks


def _chunk_columns() -> list[Any]:
    # blob_id names the value's chunks (NULL: the value is in the row); size is its length.
    return [sa.Column("blob_id", sa.BigInteger()), sa.Column("size", sa.BigInteger())]


def _new_blob_id() -> int:
    # Random, not derived from the key: a move renames the row and leaves the chunks be.
    return secrets.randbits(63)


def _read_full(file: IO[bytes], size: int) -> bytes:
    """Up to *size* bytes of *file*, fewer only at its end (pipes return short reads)."""
    parts = []
    wanted = size
    while wanted > 0:
        part = file.read(wanted)
        if not part:
            break
        parts.append(part)
        wanted -= len(part)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _file_pieces(file: IO[bytes], size: int) -> Iterator[bytes]:
    while piece := _read_full(file, size):
        yield piece


def _slices(data: bytes, size: int) -> Iterator[bytes]:
    view = memoryview(data)
    for start in range(0, len(data), size):
        yield bytes(view[start : start + size])


def _begin_immediate(connection: Any) -> None:
    """Take SQLite's write lock when a write transaction starts.

    The sqlite3 module begins a transaction only at the first INSERT, UPDATE or DELETE,
    and a transaction that has read and then writes fails at once (SQLITE_BUSY, no busy
    timeout) when another connection wrote in between. Locking first makes writers wait
    their turn, and what a writer read stays true until it commits.
    """
    dbapi_connection = connection.connection.dbapi_connection
    if not getattr(dbapi_connection, "in_transaction", True):
        connection.exec_driver_sql("BEGIN IMMEDIATE")


class SQLAlchemyStore(CopyMixin, KeyValueStore):
    """Keeps each value in a row of table *tablename* (key, value, modified, blob_id, size).

    *bind* is an SQLAlchemy :class:`~sqlalchemy.engine.Engine` (see
    :func:`create_engine` for one set up for threads), *metadata* a
    :class:`~sqlalchemy.MetaData` the table is defined in, as in simplekv. The tables are
    created if missing. A value longer than :attr:`chunk_size` is kept in chunks in a
    second table, ``<tablename>_chunks``, so a ranged read fetches only the chunks it
    covers and ``put_file`` streams; shorter values stay in their row. A table made by
    simplekv or kvfs 0.1 is used as it is (every value in its row, ``last_modified``
    unknown without a ``modified`` column) until :meth:`migrate` upgrades it.

    Every write is one transaction, so readers see the old or the new value, never a
    part or none. Sizes, ranges, listings and copies are computed in SQL without fetching
    whole values. Database failures raise :class:`~kvfs.errors.BackendError` with the
    driver's message.
    """

    fast_stat = True
    fast_ranges = True
    listing_has_sizes = True
    supports_directories = True

    #: Values longer than this many bytes are kept in chunks of this size. Chunks
    #: written with another size stay readable (each chunk records where it starts).
    chunk_size: int = CHUNK_SIZE

    def __init__(self, bind: Any, metadata: Any, tablename: str) -> None:
        self.bind = bind
        self._owns_engine = False
        self._metadata = metadata
        # A database server is remote; SQLite is a local file.
        self.is_remote = bind.dialect.name != "sqlite"
        shared = isinstance(getattr(bind, "pool", None), sa.pool.StaticPool)
        self._turns: AbstractContextManager[Any] = threading.RLock() if shared else nullcontext()
        with _errors():
            self._use_tables(*_define_tables(bind, metadata, tablename))
            metadata.create_all(bind, tables=self._tables())

    def _use_tables(self, table: Any, chunks: Any | None) -> None:
        self.table = table
        #: The table of chunks, or None for a table in the old layout (values in rows only).
        self.chunks: Any = chunks
        columns = table.c
        size = sa.func.length(columns.value)
        if chunks is not None:
            size = sa.func.coalesce(columns.size, size)
        modified = columns.modified if "modified" in columns else sa.null()
        self._info_columns = [columns.key, size, modified]
        self._queries = {} if chunks is None else self._build_queries()

    def _tables(self) -> list[Any]:
        return [self.table] if self.chunks is None else [self.table, self.chunks]

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

    def migrate(self, move_values: bool = True) -> int:
        """Upgrade a table of the old layout (simplekv's or kvfs 0.1's) to chunked values.

        Adds the missing columns (``blob_id``, ``size``, ``modified``) and creates the
        table of chunks; from then on values longer than :attr:`chunk_size` are written
        in chunks. With *move_values*, every value already stored that is longer than
        :attr:`chunk_size` is then moved into chunks, one transaction per value (each is
        read whole once); the others stay in their rows, where they are read as before.
        Returns the number of values moved. Running it again does no harm. Raises
        :class:`~kvfs.errors.BackendError` if the database refuses (for instance a user
        without the right to alter the table).
        """
        table = self.table
        wanted = [*_chunk_columns(), sa.Column("modified", sa.Double())]
        missing = [column for column in wanted if column.name not in table.c]
        if missing:
            with self._connect(write=True) as connection:
                preparer = connection.dialect.identifier_preparer
                for column in missing:
                    column_type = column.type.compile(dialect=connection.dialect)
                    connection.exec_driver_sql(
                        f"ALTER TABLE {preparer.format_table(table)}"
                        f" ADD COLUMN {preparer.quote(column.name)} {column_type}"
                    )
        with _errors():
            self._use_tables(*_define_tables(self.bind, self._metadata, table.name))
            self._metadata.create_all(self.bind, tables=self._tables())
        return self._move_values_to_chunks() if move_values else 0

    def _move_values_to_chunks(self) -> int:
        columns = self.table.c
        too_long = sa.func.length(columns.value) > self.chunk_size
        query = sa.select(columns.key).where(columns.blob_id.is_(None), too_long)
        with self._connect() as connection:
            keys = connection.execute(query).scalars().all()
        moved = 0
        for key in keys:
            with self._connect(write=True) as connection:
                # Read again under the write lock: the value may have changed since.
                current = sa.select(columns.value).where(columns.key == key, columns.blob_id.is_(None))
                value = connection.execute(current).scalar()
                if value is None or len(value) <= self.chunk_size:
                    continue
                blob_id, size = self._write_chunks(connection, _slices(value, self.chunk_size))
                changed = sa.update(self.table).where(columns.key == key)
                connection.execute(changed.values(value=b"", blob_id=blob_id, size=size))
            moved += 1
        return moved

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
            if write and connection.dialect.name == "sqlite":
                _begin_immediate(connection)
            yield connection

    def _values(self, value: Any, blob_id: int | None = None, size: int | None = None) -> dict[str, Any]:
        """The columns of a row but its key: *value* in the row, or chunks *blob_id* of *size* bytes."""
        values = {"value": value}
        if self.chunks is not None:
            values.update(blob_id=blob_id, size=size)
        if "modified" in self.table.c:
            values["modified"] = time.time()
        return values

    def _store_row(self, connection: Any, key: str, values: dict[str, Any]) -> None:
        """Make *values* the row of *key*, replacing any row there, in *connection*'s transaction.

        The chunks of a replaced value go in the same transaction. Where the dialect has
        an upsert, a row whose value is not in chunks is replaced by that one statement;
        otherwise the row is locked, read for its chunks, then replaced.
        """
        table = self.table
        upsert_insert = _UPSERT_INSERTS.get(connection.dialect.name)
        if upsert_insert is not None:
            statement: Any = upsert_insert(table).values(key=key, **values)
            statement = statement.on_conflict_do_update(
                index_elements=[table.c.key],
                set_={name: statement.excluded[name] for name in values},
                where=None if self.chunks is None else table.c.blob_id.is_(None),
            ).returning(table.c.key)
            if connection.execute(statement).first() is not None:
                return
            # The row's value is in chunks; the upsert has locked the row until the commit.
            replaced = connection.execute(sa.select(table.c.blob_id).where(table.c.key == key)).scalar()
            connection.execute(sa.update(table).where(table.c.key == key).values(**values))
        else:
            replaced = None
            if self.chunks is not None:
                query = sa.select(table.c.blob_id).where(table.c.key == key).with_for_update()
                replaced = connection.execute(query).scalar()
            connection.execute(sa.delete(table).where(table.c.key == key))
            connection.execute(sa.insert(table).values(key=key, **values))
        self._drop_chunks(connection, replaced)

    def _delete_row(self, connection: Any, key: str) -> int | None:
        """Delete the row of *key*; return the chunks it named (to drop), if any."""
        statement = sa.delete(self.table).where(self.table.c.key == key)
        if self.chunks is None:
            connection.execute(statement)
            return None
        if connection.dialect.delete_returning:
            return connection.execute(statement.returning(self.table.c.blob_id)).scalar()
        query = sa.select(self.table.c.blob_id).where(self.table.c.key == key).with_for_update()
        blob_id = connection.execute(query).scalar()
        connection.execute(statement)
        return blob_id

    def _drop_chunks(self, connection: Any, blob_id: int | None) -> None:
        if blob_id is not None:
            connection.execute(sa.delete(self.chunks).where(self.chunks.c.blob_id == blob_id))

    def _write_chunks(self, connection: Any, pieces: Iterable[bytes]) -> tuple[int, int]:
        """Insert *pieces* as the chunks of a new value; return its blob id and size."""
        blob_id, start = _new_blob_id(), 0
        insert = sa.insert(self.chunks)
        for piece in pieces:
            connection.execute(insert, {"blob_id": blob_id, "start": start, "data": piece})
            start += len(piece)
        return blob_id, start

    def _put_chunked(self, key: str, pieces: Iterable[bytes]) -> str:
        with self._connect(write=True) as connection:
            blob_id, size = self._write_chunks(connection, pieces)
            self._store_row(connection, key, self._values(b"", blob_id, size))
        return key

    def _covering(self, chunks: Any, blob_id: Any) -> Any:
        """The condition on *chunks* (an alias of the chunk table) for those of *blob_id*
        that hold bytes ``:start`` to ``:end``: from the last one starting at or before ``:start``."""
        earlier = self.chunks.alias("earlier")
        start, end = sa.bindparam("start", type_=sa.BigInteger), sa.bindparam("end", type_=sa.BigInteger)
        first = (
            sa.select(sa.func.max(earlier.c.start))
            .where(earlier.c.blob_id == blob_id, earlier.c.start <= start)
            .scalar_subquery()
        )
        return sa.and_(chunks.c.blob_id == blob_id, chunks.c.start >= first, chunks.c.start < end)

    def _read_chunks(self, blob_id: int, start: int, end: int) -> bytes:
        """Bytes *start* to *end* of the chunks *blob_id*; fewer if the chunks are gone."""
        parameters = {"blob_id": blob_id, "start": start, "end": end}
        with self._connect() as connection:
            rows = connection.execute(self._queries["chunks"], parameters).all()
        return _cut(rows, start, end)

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

    def _check(self) -> None:
        """One ``SELECT 1``; :class:`~kvfs.errors.BackendError` if the database does not answer."""
        with self._connect() as connection:
            connection.execute(sa.text("SELECT 1"))

    def _delete(self, key: str) -> None:
        with self._connect(write=True) as connection:
            self._drop_chunks(connection, self._delete_row(connection, key))

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

    def _build_queries(self) -> dict[str, Any]:
        """The queries reads of values run, built once (with named parameters).

        ``value`` (``:key``) and ``range`` (``:key``, ``:start``, ``:end``, and ``:from``
        and ``:length`` for SQL's substr, which counts from 1 and takes 32-bit numbers)
        are one query each, so one snapshot: their rows are ordered by ``start``, first
        the row's own value (or that range of it), numbered -1 and empty for a value in
        chunks, then the chunks needed; no row means no key. ``chunks`` (``:blob_id``,
        ``:start``, ``:end``) reads a range of one value's chunks.
        """
        table, chunks = self.table, self.chunks.alias("chunk")
        key = table.c.key == sa.bindparam("key", type_=table.c.key.type)
        queries = {}
        for name in ("value", "range"):
            own = table.c.value
            chunk_rows = sa.select(chunks.c.start, chunks.c.data).where(chunks.c.blob_id == table.c.blob_id, key)
            if name == "range":
                own = sa.func.substr(
                    own,
                    sa.cast(sa.bindparam("from", type_=sa.Integer), sa.Integer),
                    sa.cast(sa.bindparam("length", type_=sa.Integer), sa.Integer),
                    type_=sa.LargeBinary,
                )
                start = sa.bindparam("start", type_=sa.BigInteger)
                chunk_rows = chunk_rows.where(table.c.size > start, self._covering(chunks, table.c.blob_id))
            own_row = sa.select(sa.literal_column("-1", sa.BigInteger).label("start"), own.label("data"))
            queries[name] = sa.union_all(own_row.where(key), chunk_rows).order_by(sa.literal_column("start"))
        blob_id = sa.bindparam("blob_id", type_=sa.BigInteger)
        queries["chunks"] = (
            sa.select(chunks.c.start, chunks.c.data).where(self._covering(chunks, blob_id)).order_by(chunks.c.start)
        )
        return queries

    def _get(self, key: str) -> bytes:
        if self.chunks is None:
            query = sa.select(self.table.c.value).where(self.table.c.key == key)
            parameters: dict[str, Any] = {}
        else:
            query, parameters = self._queries["value"], {"key": key}
        with self._connect() as connection:
            rows = connection.execute(query, parameters).all()
        if not rows:
            raise KeyNotFoundError(key)
        if self.chunks is None:
            return bytes(rows[0][0])
        return b"".join(row[1] for row in rows)

    def _open(self, key: str) -> IO[bytes]:
        if self.chunks is None:
            return io.BytesIO(self._get(key))
        columns = self.table.c
        # The value itself only when it is in the row.
        own = sa.case((columns.blob_id.is_(None), columns.value), else_=sa.null())
        query = sa.select(columns.blob_id, columns.size, own).where(columns.key == key)
        with self._connect() as connection:
            row = connection.execute(query).first()
        if row is None:
            raise KeyNotFoundError(key)
        blob_id, size, value = row
        if blob_id is None:
            return io.BytesIO(value)
        return io.BufferedReader(_ChunkedValue(self, key, blob_id, size), self.chunk_size)

    def _put(self, key: str, data: bytes) -> str:
        if self.chunks is not None and len(data) > self.chunk_size:
            return self._put_chunked(key, _slices(data, self.chunk_size))
        with self._connect(write=True) as connection:
            self._store_row(connection, key, self._values(data))
        return key

    def _put_file(self, key: str, file: IO[bytes]) -> str:
        if self.chunks is None:
            # A row is written whole: read the file to its end first.
            return self._put(key, file.read())
        first = _read_full(file, self.chunk_size)
        second = _read_full(file, self.chunk_size) if len(first) == self.chunk_size else b""
        if not second:
            return self._put(key, first)
        # Streamed: at most two chunks in memory; the transaction makes it atomic.
        return self._put_chunked(key, itertools.chain((first, second), _file_pieces(file, self.chunk_size)))

    def _stat(self, key: str) -> KeyInfo:
        query = sa.select(*self._info_columns).where(self.table.c.key == key)
        with self._connect() as connection:
            row = connection.execute(query).first()
        if row is None:
            raise KeyNotFoundError(key)
        return KeyInfo(key, row[1], row[2])

    def _get_range(self, key: str, start: int, length: int) -> bytes:
        if self.chunks is not None:
            end = start + length
            parameters = {
                "key": key,
                "start": start,
                "end": end,
                "from": min(start + 1, _MAX_SQL_INT),
                "length": min(length, _MAX_SQL_INT),
            }
            with self._connect() as connection:
                rows = connection.execute(self._queries["range"], parameters).all()
            if not rows:
                raise KeyNotFoundError(key)
            own, chunks = rows[0], rows[1:]
            return _cut(chunks, start, end) if chunks else bytes(own[1] or b"")
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
        with self._connect(write=True) as connection:
            if self.chunks is None:
                found = connection.execute(sa.select(columns.key).where(columns.key == source)).first()
                blob_id = size = None
            else:
                # Locked (on servers) so the source's chunks stay until the copy commits.
                query = sa.select(columns.blob_id, columns.size).where(columns.key == source)
                found = connection.execute(query.with_for_update(read=True)).first()
                blob_id, size = found if found is not None else (None, None)
            if found is None:
                raise KeyNotFoundError(source)  # rolls back the transaction
            if blob_id is None:
                # Copied inside the database, never through this process.
                value = sa.select(columns.value).where(columns.key == source).scalar_subquery()
                values = self._values(value)
            else:
                new_blob_id = _new_blob_id()
                chunks = self.chunks.c
                copied = sa.select(sa.literal(new_blob_id, sa.BigInteger), chunks.start, chunks.data)
                copied = copied.where(chunks.blob_id == blob_id)
                connection.execute(sa.insert(self.chunks).from_select(["blob_id", "start", "data"], copied))
                values = self._values(b"", new_blob_id, size)
            self._store_row(connection, dest, values)
        return dest

    def _move(self, source: str, dest: str) -> str:
        # A rename of the row in one transaction: atomic, and the value is not copied.
        columns = self.table.c
        with self._connect(write=True) as connection:
            replaced = self._delete_row(connection, dest)
            renamed = connection.execute(
                sa.update(self.table).where(columns.key == source).values(key=dest)
            ).rowcount
            if not renamed:
                raise KeyNotFoundError(source)  # rolls back the transaction
            self._drop_chunks(connection, replaced)
        return dest

    def _has_directory(self, key: str) -> bool:
        # The marker itself (key/) also starts with key/.
        query = self._below(sa.select(self.table.c.key), key + SEPARATOR).limit(1)
        with self._connect() as connection:
            return connection.execute(query).first() is not None


def _cut(chunks: Sequence[Any], start: int, end: int) -> bytes:
    """Bytes *start* to *end* of consecutive (start, data) chunks; b"" if they do not reach *start*."""
    if not chunks or chunks[0][0] > start:
        return b""
    first = chunks[0][0]
    data = chunks[0][1] if len(chunks) == 1 else b"".join(chunk[1] for chunk in chunks)
    return bytes(data[start - first : end - first])


class _ChunkedValue(io.RawIOBase):
    """A value kept in chunks, opened for reading: each read is one query for the chunks it needs.

    A value's chunks never change, they only go when it is replaced or deleted; a read
    that then finds them gone raises :class:`~kvfs.errors.BackendError` rather than mix
    two values.
    """

    def __init__(self, store: SQLAlchemyStore, key: str, blob_id: int, size: int) -> None:
        super().__init__()
        self._store, self._key, self._blob_id, self._size = store, key, blob_id, size
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        self._check_open()
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._check_open()
        if whence == io.SEEK_SET:
            position = offset
        elif whence == io.SEEK_CUR:
            position = self._position + offset
        elif whence == io.SEEK_END:
            position = self._size + offset
        else:
            raise ValueError(f"invalid whence: {whence}")
        if position < 0:
            raise ValueError(f"negative seek position {position}")
        self._position = position
        return position

    def readinto(self, buffer: Any) -> int:
        self._check_open()
        view = memoryview(buffer).cast("B")
        start = self._position
        end = min(start + len(view), self._size)
        if start >= end:
            return 0
        data = self._store._read_chunks(self._blob_id, start, end)
        if len(data) != end - start:
            raise BackendError(f"SQL database: the value of {self._key!r} was replaced while it was read")
        view[: len(data)] = data
        self._position = end
        return len(data)

    def readall(self) -> bytes:
        # One query for the rest, not one per default-sized read.
        rest = bytearray(max(self._size - self._position, 0))
        return bytes(rest[: self.readinto(rest)]) if rest else b""

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed file")


__all__ = ["SQLAlchemyStore", "create_engine"]
