"""SQLite as Apex opens it: writers take turns on a lock file (apex.writelock), held exactly
while a write transaction is open, however it ends, never by reads, and shared by every
process on the file; commits synced before they return."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from apex.db import make_engine, reading

TABLE = sa.Table("notes", sa.MetaData(), sa.Column("n", sa.Integer, primary_key=True))


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return tmp_path / "apex.db"


@pytest.fixture
def engine(database: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{database}")
    TABLE.create(engine)
    yield engine
    engine.dispose()


def locked(database: Path) -> bool:
    """Whether someone holds the writers' lock (tried from a descriptor of our own)."""
    fd = os.open(f"{database}-writelock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def test_held_while_a_write_transaction_is_open_and_given_back_however_it_ends(
    engine: Engine, database: Path
) -> None:
    with engine.begin() as conn:
        conn.execute(TABLE.insert().values(n=1))
        assert locked(database)
    assert not locked(database)
    with pytest.raises(ZeroDivisionError), engine.begin() as conn:
        conn.execute(TABLE.insert().values(n=2))
        assert locked(database)
        _ = 1 / 0
    assert not locked(database)
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(TABLE.insert().values(n=1))  # a failing statement
    assert not locked(database)
    with reading(engine) as conn:
        assert conn.execute(sa.select(TABLE.c.n)).scalars().all() == [1]  # 2 rolled back


def test_reads_take_no_turn_and_see_the_last_commit(engine: Engine, database: Path) -> None:
    with engine.begin() as writer:
        writer.execute(TABLE.insert().values(n=1))
        with reading(engine) as conn:  # while a writer holds the lock, from this very thread
            assert conn.execute(sa.select(TABLE.c.n)).all() == []
            assert locked(database)
    with reading(engine) as conn:
        assert conn.execute(sa.select(TABLE.c.n)).scalars().all() == [1]
        assert not locked(database)
        conn.execute(TABLE.insert().values(n=2))  # never committed
    with reading(engine) as conn:
        assert conn.execute(sa.select(TABLE.c.n)).scalars().all() == [1]


def test_a_writer_in_another_process_waits_for_its_turn(engine: Engine, database: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys
        import sqlalchemy as sa
        from apex.db import make_engine
        engine = make_engine("sqlite:///{database}")
        print("waiting", flush=True)
        with engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO notes (n) VALUES (2)"))
        print("written", flush=True)
        """
    )
    with engine.begin() as conn:
        conn.execute(TABLE.insert().values(n=1))
        other = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        assert other.stdout is not None
        assert other.stdout.readline().strip() == "waiting"
        # It cannot write while we hold the turn: its transaction has not even begun.
        finished = threading.Event()
        threading.Thread(target=lambda: (other.wait(), finished.set()), daemon=True).start()
        assert not finished.wait(1.0)
    assert other.wait(timeout=30) == 0
    assert other.stdout.readline().strip() == "written"
    other.stdout.close()
    with reading(engine) as conn:
        assert conn.execute(sa.select(TABLE.c.n).order_by(TABLE.c.n)).scalars().all() == [1, 2]


def test_commits_are_synced_to_the_write_ahead_log(engine: Engine) -> None:
    # What an accepted request stored survives a power cut: WAL, synchronous=FULL (2).
    with reading(engine) as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2
