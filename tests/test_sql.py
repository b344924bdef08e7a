"""SQLAlchemyStore on SQLite and a real PostgreSQL: the contract, upserts, work done in SQL."""

from __future__ import annotations

import io
import re
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

sa = pytest.importorskip("sqlalchemy")

from servers import postgres_url, require_server  # noqa: E402

from kvfs import BackendError  # noqa: E402
from kvfs.db.sql import SQLAlchemyStore, create_engine  # noqa: E402
from kvfs.testing import StoreContract  # noqa: E402


@pytest.fixture
def sqlite_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SQLAlchemyStore]:
    path = tmp_path_factory.mktemp("sqlite") / "store.db"
    with SQLAlchemyStore.from_url(f"sqlite:///{path}") as store:
        yield store


@pytest.fixture
def postgres_store() -> Iterator[SQLAlchemyStore]:
    require_server("postgres")
    # A table of its own per test, dropped afterwards.
    name = f"kvfs_test_{uuid.uuid4().hex[:12]}"
    with SQLAlchemyStore.from_url(postgres_url(), tablename=name) as store:
        try:
            yield store
        finally:
            store.bind.dispose()  # no pooled connection holds a lock on the tables
            for table in (store.chunks, store.table):
                if table is not None:
                    table.drop(store.bind, checkfirst=True)


class TestSQLiteContract(StoreContract):

    @pytest.fixture
    def store(self, sqlite_store: SQLAlchemyStore) -> SQLAlchemyStore:
        return sqlite_store


class TestPostgreSQLContract(StoreContract):

    @pytest.fixture
    def store(self, postgres_store: SQLAlchemyStore) -> SQLAlchemyStore:
        return postgres_store


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest) -> SQLAlchemyStore:
    return request.getfixturevalue(f"{request.param}_store")


class Statements:
    """The SQL statements an engine runs, recorded with a cursor event."""

    def __init__(self, engine: Any) -> None:
        self.seen: list[str] = []
        sa.event.listen(engine, "before_cursor_execute", self._record)
        self._engine = engine

    def _record(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        self.seen.append(" ".join(statement.split()))

    def clear(self) -> None:
        self.seen.clear()

    def close(self) -> None:
        sa.event.remove(self._engine, "before_cursor_execute", self._record)


@pytest.fixture
def statements(store: SQLAlchemyStore) -> Iterator[Statements]:
    recorder = Statements(store.bind)
    yield recorder
    recorder.close()


def _data_statements(recorder: Statements) -> list[str]:
    return [s for s in recorder.seen if not s.upper().startswith(("BEGIN", "COMMIT", "SELECT 1"))]


def _chunk_rows(store: SQLAlchemyStore) -> int:
    with store.bind.connect() as connection:
        return connection.execute(sa.select(sa.func.count()).select_from(store.chunks)).scalar()


def _orphan_chunks(store: SQLAlchemyStore) -> int:
    """Chunks that no row names: left behind by a write that should have removed them."""
    named = sa.select(store.table.c.blob_id).where(store.table.c.blob_id.is_not(None))
    query = sa.select(sa.func.count()).select_from(store.chunks).where(store.chunks.c.blob_id.not_in(named))
    with store.bind.connect() as connection:
        return connection.execute(query).scalar()


def _fetches_values(query: str) -> bool:
    """Does this SELECT return the value column itself (not just its length or a part)?"""
    selected = query.lower().split(" from ")[0]
    return ".value" in re.sub(r"(length|substr)\(\s*[\w.]*value", "", selected)


# ---------------------------------------------------------------------- one statement per write


def test_put_is_one_upsert_statement(store: SQLAlchemyStore, statements: Statements) -> None:
    store.put("key", b"first")
    statements.clear()
    store.put("key", b"second")
    written = _data_statements(statements)
    assert len(written) == 1, written
    assert written[0].upper().startswith("INSERT") and "ON CONFLICT" in written[0].upper()
    assert store.get("key") == b"second"


def test_concurrent_overwrites_never_hide_the_key(store: SQLAlchemyStore) -> None:
    values = [bytes([n]) * 5000 for n in range(4)]
    store.put("shared", values[0])
    stop = threading.Event()
    problems: list[str] = []

    def write(worker: int) -> None:
        for _ in range(40):
            store.put("shared", values[worker])
        stop.set()

    def read() -> None:
        while not stop.is_set():
            if "shared" not in store:
                problems.append("missing")
            elif store.get("shared") not in values:
                problems.append("torn")

    with ThreadPoolExecutor(6) as pool:
        readers = [pool.submit(read) for _ in range(2)]
        writers = [pool.submit(write, worker) for worker in range(4)]
        for future in writers + readers:
            future.result()
    assert problems == []


def test_generic_dialects_replace_in_one_transaction(sqlite_store: SQLAlchemyStore) -> None:
    """Without an upsert, a put is delete + insert, and a failed copy leaves dest alone."""
    from kvfs.db import sql

    sqlite_store.put("dest", b"kept")
    original = dict(sql._UPSERT_INSERTS)
    sql._UPSERT_INSERTS.clear()  # as on a dialect without ON CONFLICT
    try:
        sqlite_store.put("key", b"one")
        sqlite_store.put("key", b"two")
        assert sqlite_store.get("key") == b"two"
        with pytest.raises(KeyError):
            sqlite_store.copy("missing", "dest")
        assert sqlite_store.get("dest") == b"kept"
        sqlite_store.copy("key", "dest")
        assert sqlite_store.get("dest") == b"two"
        sqlite_store.chunk_size = 4
        for value in (b"0123456789", b"abcdefghij", b"small"):
            sqlite_store.put("key", value)
            sqlite_store.copy("key", "dest")
            assert sqlite_store.get("key") == sqlite_store.get("dest") == value
        assert _orphan_chunks(sqlite_store) == 0
    finally:
        sql._UPSERT_INSERTS.update(original)


# ---------------------------------------------------------------------- work done in SQL


def test_size_and_range_are_computed_in_sql(store: SQLAlchemyStore, statements: Statements) -> None:
    value = bytes(range(256)) * 100
    store.put("blob", value)
    statements.clear()
    assert store.stat("blob").size == len(value)
    assert store.get_range("blob", 0, 3) == b"\x00\x01\x02"
    assert store.get_range("blob", 255, 2) == b"\xff\x00"
    assert store.get_range("blob", len(value) - 1, 100) == b"\xff"
    assert store.get_range("blob", len(value) + 5, 10) == b""
    assert store.get_range("blob", 2**40, 10) == b""
    queries = _data_statements(statements)
    assert any("length(" in q.lower() for q in queries)
    assert sum("substr(" in q.lower() for q in queries) == 5
    assert not [query for query in queries if _fetches_values(query)]
    store.get("blob")
    assert _fetches_values(_data_statements(statements)[-1])  # the check can fail


def test_listing_reads_keys_and_sizes_not_values(
    store: SQLAlchemyStore, statements: Statements
) -> None:
    store.put("dir/a", b"12345")
    store.put("dir/sub/b", b"1")
    store.put("other", b"")
    statements.clear()
    level = {info.key: info for info in store.iter_level("dir/")}
    assert level["dir/a"].size == 5 and level["dir/a"].last_modified is not None
    assert level["dir/sub/"].is_prefix
    assert sorted(store.keys("dir/")) == ["dir/a", "dir/sub/b"]
    assert not [query for query in _data_statements(statements) if _fetches_values(query)]


def test_listing_is_case_and_wildcard_exact(store: SQLAlchemyStore) -> None:
    # LIKE ignores case on SQLite, and % and _ are LIKE wildcards.
    for key in ("Ab/x", "ab/x", "a%/x", "aX/x", "a_/x"):
        store.put(key, b"v")
    assert store.keys("ab/") == ["ab/x"]
    assert store.keys("a%") == ["a%/x"]
    assert store.keys("a_") == ["a_/x"]
    assert store.has_directory("ab") and not store.has_directory("AB")


def test_copy_is_insert_select_and_move_an_update(
    store: SQLAlchemyStore, statements: Statements
) -> None:
    store.chunk_size = 4
    for source, value in (("small", b"val"), ("chunked", b"0123456789")):
        store.put(source, value)
        statements.clear()
        store.copy(source, "copy")
        written = _data_statements(statements)
        # The value is copied by the database, never selected into this process.
        assert any(s.upper().startswith("INSERT") and "SELECT" in s.upper() for s in written)
        assert not [s for s in written if s.upper().startswith("SELECT") and _fetches_values(s)]
        statements.clear()
        store.move("copy", "moved")
        assert any(s.upper().startswith("UPDATE") for s in _data_statements(statements))
        assert store.get("moved") == value and "copy" not in store
        store.put(source, b"changed")  # the copy is a copy, not a second name
        assert store.get("moved") == value
    assert _orphan_chunks(store) == 0
    for key in ("moved", "chunked", "small"):
        store.delete(key)
    assert _chunk_rows(store) == 0


# ---------------------------------------------------------------------- tables and engines


def test_a_simplekv_table_is_used_as_it_is(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    metadata = sa.MetaData()
    old = sa.Table(
        "blobs",
        metadata,
        sa.Column("key", sa.String(250), primary_key=True),
        sa.Column("value", sa.LargeBinary, nullable=False),
    )
    metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(old.insert().values(key="old", value=b"from simplekv"))

    store = SQLAlchemyStore(engine, sa.MetaData(), "blobs")
    assert store.get("old") == b"from simplekv"
    store.put("new", b"value")
    assert store.stat("new").size == 5
    assert store.stat("new").last_modified is None  # no modified column to read
    assert sorted(store.keys()) == ["new", "old"]
    engine.dispose()


def test_sqlite_file_uses_wal(sqlite_store: SQLAlchemyStore) -> None:
    with sqlite_store.bind.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_sqlite_memory_store_works_from_threads() -> None:
    with SQLAlchemyStore.from_url("sqlite://") as store:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda n: store.put(f"k{n}", b"v"), range(40)))
        assert len(store.keys()) == 40


def test_errors_name_the_database_failure_without_values(store: SQLAlchemyStore) -> None:
    store.put("key", b"SECRET-VALUE")
    store.table.drop(store.bind)
    try:
        with pytest.raises(BackendError) as caught:
            store.get("key")
        assert isinstance(caught.value, OSError)
        assert "SECRET-VALUE" not in str(caught.value)
        with pytest.raises(BackendError) as caught:
            store.put("key", b"SECRET-VALUE")
        assert "SECRET-VALUE" not in str(caught.value)
    finally:
        store.table.create(store.bind)


def test_unreachable_database_gives_backend_error() -> None:
    # Port 9 (discard) on loopback: nothing listens, the connection is refused at once.
    pytest.importorskip("psycopg")
    with pytest.raises(BackendError, match="SQL database"):
        SQLAlchemyStore.from_url("postgresql://kvfs:pw@127.0.0.1:9/kvfs")


def test_a_database_server_is_remote_and_sqlite_is_not(store: SQLAlchemyStore) -> None:
    # The mount answers lookups from listings only where every request is a round trip.
    assert store.is_remote is (store.bind.dialect.name != "sqlite")


def test_check_runs_one_select(store: SQLAlchemyStore, statements: Statements) -> None:
    statements.clear()
    store._check()
    assert "SELECT 1" in statements.seen


def test_check_of_an_unreachable_database_raises_backend_error(postgres_store: SQLAlchemyStore) -> None:
    # The server goes away after the store was opened: an engine to a port nothing
    # listens on (9, discard, on loopback) in place of the store's.
    postgres_store._check()
    postgres_store.bind.dispose()
    reachable = postgres_store.bind
    postgres_store.bind = create_engine("postgresql://kvfs:pw@127.0.0.1:9/kvfs")
    try:
        with pytest.raises(BackendError, match="SQL database"):
            postgres_store._check()
    finally:
        postgres_store.bind.dispose()
        postgres_store.bind = reachable


# ---------------------------------------------------------------------- values in chunks

CHUNK = 8
SIZES = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 2 * CHUNK + 1, 5 * CHUNK + 3]


@pytest.fixture
def chunked(store: SQLAlchemyStore) -> SQLAlchemyStore:
    store.chunk_size = CHUNK
    return store


def test_values_longer_than_a_chunk_are_kept_in_chunks(chunked: SQLAlchemyStore) -> None:
    for size in SIZES:
        chunked.put(f"v{size}", bytes(range(size)))
    rows = sum(-(-size // CHUNK) for size in SIZES if size > CHUNK)  # a value of one chunk stays in its row
    assert _chunk_rows(chunked) == rows
    with chunked.bind.connect() as connection:
        lengths = sa.select(chunked.table.c.key, sa.func.length(chunked.table.c.value))
        row_sizes = dict(connection.execute(lengths).all())
    assert row_sizes == {f"v{size}": 0 if size > CHUNK else size for size in SIZES}


@pytest.mark.parametrize("size", SIZES)
def test_every_range_across_chunk_boundaries(chunked: SQLAlchemyStore, size: int) -> None:
    value = bytes(range(100, 100 + size))
    chunked.put("value", value)
    assert chunked.get("value") == value
    assert chunked.stat("value").size == size
    for start in range(size + 2):
        for length in (1, 2, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK):
            assert chunked.get_range("value", start, length) == value[start : start + length], (start, length)
    with chunked.open("value") as file:
        assert file.read() == value
        for start in range(0, size + 2, 3):
            file.seek(start)
            assert file.read(CHUNK + 2) == value[start : start + CHUNK + 2]
        assert file.seek(0, io.SEEK_END) == size


def test_put_file_streams_in_chunks_and_reads_back(chunked: SQLAlchemyStore, tmp_path: Path) -> None:
    value = bytes(range(256)) * 3 + b"end"
    source = tmp_path / "source"
    source.write_bytes(value)
    chunked.put_file("from-file", str(source))
    assert _chunk_rows(chunked) == -(-len(value) // CHUNK)
    target = tmp_path / "target"
    chunked.get_file("from-file", str(target))
    assert target.read_bytes() == value
    with chunked.open("from-file") as file:
        assert file.read(5) == value[:5]


def test_a_ranged_read_fetches_only_the_chunks_it_covers(
    chunked: SQLAlchemyStore, statements: Statements, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kvfs.db import sql

    value = bytes(range(256)) * 4  # 128 chunks
    chunked.put("big", value)
    fetched: list[int] = []
    cut = sql._cut

    def counting_cut(chunks: Any, start: int, end: int) -> bytes:
        fetched.append(sum(len(chunk[1]) for chunk in chunks))
        return cut(chunks, start, end)

    monkeypatch.setattr(sql, "_cut", counting_cut)
    statements.clear()
    assert chunked.get_range("big", 100, 2) == value[100:102]  # inside chunk 12
    assert chunked.get_range("big", 7 * CHUNK - 1, 2) == value[7 * CHUNK - 1 : 7 * CHUNK + 1]  # across two
    assert chunked.get_range("big", 20 * CHUNK, 3 * CHUNK) == value[20 * CHUNK : 23 * CHUNK]
    assert fetched == [CHUNK, 2 * CHUNK, 3 * CHUNK]
    assert len(_data_statements(statements)) == 3  # one query each
    fetched.clear()
    with chunked.open("big") as file:
        file.seek(50 * CHUNK + 1)
        assert file.read(2) == value[50 * CHUNK + 1 : 50 * CHUNK + 3]
    # A buffer's worth (one chunk size) from an unaligned position: the two chunks it spans.
    assert fetched == [2 * CHUNK]
    statements.clear()
    assert chunked.stat("big").size == len(value)
    assert chunked.get_range("big", len(value), 10) == b""
    queries = _data_statements(statements)
    assert not [q for q in queries[:1] if "_chunks" in q]  # stat never touches the chunks


def test_replacing_a_chunked_value_is_atomic(chunked: SQLAlchemyStore) -> None:
    values = [bytes([n]) * (CHUNK * 20 + n) for n in range(1, 4)]
    chunked.put("shared", values[0])
    stop = threading.Event()
    problems: list[str] = []

    def write() -> None:
        for round_ in range(30):
            chunked.put("shared", values[round_ % 3])
            chunked.put_file("shared", io.BytesIO(values[(round_ + 1) % 3]))
        stop.set()

    def read() -> None:
        while not stop.is_set():
            whole = chunked.get("shared")
            if whole not in values:
                problems.append(f"torn value of {len(whole)} bytes")
            part = chunked.get_range("shared", CHUNK * 19, CHUNK * 3)
            if len(set(part)) != 1:
                problems.append("a range mixing two values")

    with ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(write), pool.submit(read), pool.submit(read)]
        for future in futures:
            future.result()
    assert problems == []
    assert chunked.get("shared") in values
    assert _orphan_chunks(chunked) == 0
    assert _chunk_rows(chunked) == 21  # only the current value's chunks remain


def test_a_failed_put_file_keeps_the_old_value(chunked: SQLAlchemyStore) -> None:
    class Failing(io.RawIOBase):
        def __init__(self) -> None:
            self.sent = 0

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: Any) -> int:
            if self.sent >= 5 * CHUNK:
                raise OSError("the source broke")
            buffer[:CHUNK] = b"x" * CHUNK
            self.sent += CHUNK
            return CHUNK

    old = b"o" * (3 * CHUNK)
    chunked.put("value", old)
    with pytest.raises(OSError, match="the source broke"):
        chunked.put_file("value", Failing())  # type: ignore[arg-type]
    with pytest.raises(OSError, match="the source broke"):
        chunked.put_file("new", Failing())  # type: ignore[arg-type]
    assert chunked.get("value") == old
    assert "new" not in chunked
    assert _chunk_rows(chunked) == 3 and _orphan_chunks(chunked) == 0


def test_an_open_value_replaced_while_read_raises(chunked: SQLAlchemyStore) -> None:
    chunked.put("value", b"a" * (4 * CHUNK))
    with chunked.open("value") as file:
        assert file.read(CHUNK) == b"a" * CHUNK
        chunked.put("value", b"b" * (4 * CHUNK))
        with pytest.raises(BackendError, match="replaced while it was read"):
            file.read()  # never a mix of a's and b's
    with chunked.open("value") as file:
        assert file.read() == b"b" * (4 * CHUNK)


def test_delete_move_and_overwrites_leave_no_chunk_behind(chunked: SQLAlchemyStore) -> None:
    big, other = b"1" * (3 * CHUNK), b"2" * (2 * CHUNK + 1)
    chunked.put("a", big)
    chunked.put("b", other)
    chunked.move("a", "b")  # replaces a chunked value
    assert chunked.get("b") == big and "a" not in chunked
    chunked.copy("b", "c")
    chunked.put("b", b"small")
    assert chunked.get("c") == big
    assert sorted(chunked.keys()) == ["b", "c"]
    assert {info.key: info.size for info in chunked.iter_level()} == {"b": 5, "c": len(big)}
    assert _orphan_chunks(chunked) == 0
    chunked.delete("c")
    assert _chunk_rows(chunked) == 0


# ---------------------------------------------------------------------- the old layout


def _old_table(engine: Any, name: str, with_modified: bool) -> Any:
    """A table as simplekv (no ``modified``) or kvfs 0.1 made it: every value in its row."""
    metadata = sa.MetaData()
    columns = [
        sa.Column("key", sa.String(250), primary_key=True),
        sa.Column("value", sa.LargeBinary, nullable=False),
    ]
    if with_modified:
        columns.append(sa.Column("modified", sa.Double()))
    table = sa.Table(name, metadata, *columns)
    metadata.create_all(engine)
    return table


@pytest.mark.parametrize("with_modified", [False, True], ids=["simplekv", "kvfs-0.1"])
def test_an_old_table_is_read_and_migrated(store: SQLAlchemyStore, with_modified: bool) -> None:
    engine, name = store.bind, f"old_{uuid.uuid4().hex[:8]}"
    old = _old_table(engine, name, with_modified)
    big = bytes(range(256)) * 40  # 10 KiB, 10 chunks of 1 KiB
    with engine.begin() as connection:
        connection.execute(old.insert(), [{"key": "big", "value": big}, {"key": "small", "value": b"tiny"}])
    try:
        older = SQLAlchemyStore(engine, sa.MetaData(), name)
        older.chunk_size = 1024
        assert older.chunks is None  # used as it is: no column added, no table created
        assert not sa.inspect(engine).has_table(name + "_chunks")
        assert older.get("big") == big and older.get_range("big", 1000, 100) == big[1000:1100]
        older.put("written-old-way", big)
        with older.open("big") as file:
            assert file.read() == big

        assert older.migrate() == 2  # the two values longer than a chunk
        assert older.chunks is not None and older.migrate() == 0
        assert _chunk_rows(older) == 20
        for key, value in (("big", big), ("small", b"tiny"), ("written-old-way", big)):
            assert older.get(key) == value
            assert older.stat(key).size == len(value)
            assert older.get_range(key, 1020, 10) == value[1020:1030]
        older.put("new", big + b"!")
        assert _chunk_rows(older) == 31
        assert older.stat("new").last_modified is not None
        reopened = SQLAlchemyStore(engine, sa.MetaData(), name)  # the new layout is recognised
        assert reopened.chunks is not None and reopened.get("new") == big + b"!"
    finally:
        with engine.begin() as connection:
            connection.exec_driver_sql(f'DROP TABLE IF EXISTS "{name}_chunks"')
            connection.exec_driver_sql(f'DROP TABLE "{name}"')


def test_old_single_row_values_keep_working_in_a_migrated_table(store: SQLAlchemyStore) -> None:
    engine, name = store.bind, f"old_{uuid.uuid4().hex[:8]}"
    old = _old_table(engine, name, with_modified=True)
    try:
        older = SQLAlchemyStore(engine, sa.MetaData(), name)
        older.chunk_size = 4
        older.migrate(move_values=False)
        # A writer of the old layout (simplekv, kvfs 0.1) still puts whole rows.
        with engine.begin() as connection:
            connection.execute(old.insert().values(key="old", value=b"0123456789", modified=1.0))
        assert older.get("old") == b"0123456789"
        assert older.stat("old").size == 10
        assert older.get_range("old", 3, 4) == b"3456"
        older.copy("old", "copied")
        assert older.get("copied") == b"0123456789"
        older.put("old", b"abcdefghij")  # rewritten: now in chunks
        assert older.get("old") == b"abcdefghij" and _chunk_rows(older) == 3
    finally:
        with engine.begin() as connection:
            connection.exec_driver_sql(f'DROP TABLE IF EXISTS "{name}_chunks"')
            connection.exec_driver_sql(f'DROP TABLE "{name}"')
