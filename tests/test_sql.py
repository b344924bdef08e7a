"""SQLAlchemyStore on SQLite and a real PostgreSQL: the contract, upserts, work done in SQL."""

from __future__ import annotations

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
            store.table.drop(store.bind)


class TestSQLiteContract(StoreContract):
    streams_large_values = False  # a row is written whole

    @pytest.fixture
    def store(self, sqlite_store: SQLAlchemyStore) -> SQLAlchemyStore:
        return sqlite_store


class TestPostgreSQLContract(StoreContract):
    streams_large_values = False

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
    store.put("source", b"value")
    statements.clear()
    store.copy("source", "copy")
    written = _data_statements(statements)
    assert len(written) == 1 and "INSERT" in written[0].upper() and "SELECT" in written[0].upper()
    statements.clear()
    store.move("copy", "moved")
    assert any(s.upper().startswith("UPDATE") for s in _data_statements(statements))
    assert store.get("moved") == b"value" and "copy" not in store


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
