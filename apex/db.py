"""The database engine: SQLite (WAL, busy timeout) by default, PostgreSQL in production."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.pool import ConnectionPoolEntry

from apex import writelock
from config.settings import DEFAULT_DB_MAX_OVERFLOW, DEFAULT_DB_POOL_SIZE

CONNECT_TIMEOUT = 5  # seconds to reach PostgreSQL


def utcnow() -> datetime:
    return datetime.now(UTC)


# SQLSTATEs of a server that is going away or not taking connections: it is shutting down or
# restarting (57P01-57P03), or has no connection slot left (53300). Class 08 is "connection
# exception". Deadlocks, serialization failures (class 40) and statement timeouts (57014) are
# errors of one transaction, not of the database.
_SERVER_GONE = frozenset({"57P01", "57P02", "57P03", "53300"})


def unreachable(exc: BaseException) -> bool:
    """Whether a database error means the database could not be reached just now (refused,
    restarting, a dropped or closed connection, no connection free in the pool) rather than a
    failure of one statement or a bug. Only connection-level failures count: what SQLAlchemy saw
    invalidate a connection; a PostgreSQL error of SQLSTATE class 08, of a server going away, or
    with no SQLSTATE at all (the driver lost the server); SQLite unable to open its file. A
    deadlock, a serialization failure, a statement timeout or a missing table is not
    unreachable. Never raises."""
    if isinstance(exc, sa.exc.TimeoutError):  # the pool had no connection to give in time
        return True
    if not isinstance(exc, sa.exc.DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    if not isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError):
        return False
    orig = exc.orig
    if isinstance(orig, sqlite3.Error):
        return "unable to open database file" in str(orig)
    sqlstate = getattr(orig, "sqlstate", None)
    return sqlstate is None or sqlstate.startswith("08") or sqlstate in _SERVER_GONE


def make_engine(
    url: str, pool_size: int = DEFAULT_DB_POOL_SIZE, max_overflow: int = DEFAULT_DB_MAX_OVERFLOW
) -> Engine:
    """Create an engine for `url`. For SQLite, creates the parent folder and sets WAL mode and a
    busy timeout so web, worker and scheduler processes share one file without 'database is locked'.
    For PostgreSQL, the process keeps up to `pool_size` connections open and opens up to
    `max_overflow` more under load (APEX_DB_POOL_SIZE, APEX_DB_MAX_OVERFLOW): at most their sum
    per process, which the database's connection limit must cover for every process.
    """
    if url.startswith("sqlite"):
        database = sa.engine.make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            url,
            connect_args={"timeout": 30, "check_same_thread": False},
            hide_parameters=True,  # errors and logs never carry payloads or secrets
        )
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        if database and database != ":memory:":
            writelock.install(engine, database)
        else:
            sa.event.listen(engine, "begin", _sqlite_begin_immediate)
        return engine
    # pool_pre_ping: a pooled connection that died with a database restart is replaced before
    # use, so the first request after the restart succeeds. connect_timeout: an unreachable
    # host fails the request (503, see apex.api.errors) instead of hanging it.
    return sa.create_engine(
        url,
        pool_pre_ping=True,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=10,
        connect_args={"connect_timeout": CONNECT_TIMEOUT},
        hide_parameters=True,
    )


def _sqlite_pragmas(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    # Let SQLAlchemy issue BEGIN itself (see _sqlite_begin_immediate).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    # FULL: each commit is synced to the write-ahead log before it returns, so what a 2xx
    # acknowledged survives a power cut too (NORMAL would keep it only through a crash of
    # the process, and may lose the last commits to one of the machine).
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()


def _sqlite_begin_immediate(connection: Any) -> None:
    # An in-memory database has one connection, so none of apex.writelock's turns to take.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def insert(on: Connection | str, table: sa.Table) -> postgresql.Insert | sqlite.Insert:
    """An INSERT that supports ON CONFLICT on this connection's database, or the database
    named (a dialect's name): PostgreSQL or SQLite. Raises ValueError on another."""
    dialect = on if isinstance(on, str) else on.dialect.name
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise ValueError(f"Apex supports PostgreSQL and SQLite, not {dialect}")


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A connection for reads only, in one transaction: on SQLite a plain BEGIN (a snapshot of
    the last commit) that waits for no writer and holds no writer up; elsewhere as
    `engine.connect()`. It never commits: a write through it is rolled back."""
    with engine.connect().execution_options(**{writelock.READ_ONLY: True}) as conn:
        yield conn


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware (SQLite keeps no zone)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
