"""apex.db.unreachable() on real driver errors: only a database that cannot be reached (refused,
gone, a connection cut or closed, no connection free, SQLite unable to open its file) counts;
deadlocks, serialization failures, statement timeouts and missing tables do not."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from apex.db import make_engine, unreachable
from tests.conftest import fresh_database

Failure = Callable[[sa.Connection], object]


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def postgres(tmp_path: Path) -> Iterator[sa.Engine]:
    """PostgreSQL (TEST_DATABASE_URL): these errors have no SQLite counterpart."""
    with fresh_database("postgres", tmp_path) as url:
        engine = make_engine(url)
        yield engine
        engine.dispose()


def error_of(engine: sa.Engine, failure: Failure) -> sa.exc.SQLAlchemyError:
    with pytest.raises(sa.exc.SQLAlchemyError) as caught, engine.connect() as conn:
        failure(conn)
    return caught.value


def raising(sqlstate: str) -> Failure:
    """The server raising the error of `sqlstate` (as it does on a deadlock, say)."""
    statement = f"DO $$ BEGIN RAISE EXCEPTION 'injected' USING ERRCODE = '{sqlstate}'; END $$"
    return lambda conn: conn.execute(sa.text(statement))


def statement_timeout(conn: sa.Connection) -> None:
    conn.execute(sa.text("SET statement_timeout = 1"))
    conn.execute(sa.text("SELECT pg_sleep(1)"))


def missing_table(conn: sa.Connection) -> None:
    conn.execute(sa.text("SELECT * FROM no_such_table"))


NOT_UNREACHABLE: dict[str, list[Failure]] = {
    "sqlite": [missing_table],
    "postgres": [
        raising("40P01"),  # deadlock_detected
        raising("40001"),  # serialization_failure
        statement_timeout,  # query_canceled, 57014
        missing_table,
    ],
}


@pytest.mark.postgres
def test_a_failed_statement_is_not_the_database_unreachable(
    database_kind: str, engine: sa.Engine
) -> None:
    for failure in NOT_UNREACHABLE[database_kind]:
        exc = error_of(engine, failure)
        assert not unreachable(exc), exc
    with engine.connect() as conn:  # and the database answers, as it did all along
        assert conn.execute(sa.text("SELECT 1")).scalar() == 1


@pytest.mark.parametrize("sqlstate", ["57P01", "57P03", "08006"])
def test_a_server_going_away_is_the_database_unreachable(
    postgres: sa.Engine, sqlstate: str
) -> None:
    # admin_shutdown, cannot_connect_now (starting up or shutting down), connection_failure
    exc = error_of(postgres, raising(sqlstate))
    assert unreachable(exc), exc


def test_postgres_refusing_connections_is_unreachable() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    engine = make_engine(f"postgresql+psycopg://postgres@127.0.0.1:{port}/apex")
    with pytest.raises(sa.exc.OperationalError) as caught:
        engine.connect()
    engine.dispose()
    assert unreachable(caught.value)


def test_a_connection_the_server_cut_is_unreachable(postgres: sa.Engine) -> None:
    with postgres.connect() as victim, postgres.connect() as killer:
        pid = victim.execute(sa.text("SELECT pg_backend_pid()")).scalar()
        killer.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        with pytest.raises(sa.exc.DBAPIError) as caught:
            victim.execute(sa.text("SELECT 1"))
    assert unreachable(caught.value)


def test_a_pool_with_no_free_connection_is_unreachable(tmp_path: Path) -> None:
    engine = sa.create_engine(
        f"sqlite:///{tmp_path / 'db'}",
        poolclass=sa.pool.QueuePool,
        pool_size=1,
        max_overflow=0,
        pool_timeout=0.01,
    )
    with engine.connect(), pytest.raises(sa.exc.TimeoutError) as caught:
        engine.connect()
    engine.dispose()
    assert unreachable(caught.value)


def test_sqlite_unable_to_open_its_file_is_unreachable(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'file' / 'apex.db'}")  # under a file
    with pytest.raises(sa.exc.OperationalError) as caught:
        engine.connect()
    engine.dispose()
    assert unreachable(caught.value)


def test_errors_that_are_not_the_database_are_not_unreachable() -> None:
    assert not unreachable(ValueError("bad input"))
    assert not unreachable(sa.exc.NoResultFound())
