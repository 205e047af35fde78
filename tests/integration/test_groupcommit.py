"""Group commit (apex.groupcommit, apex.inbound.store.Receiver): concurrent callers' writes go
in shared transactions, each caller answered after the commit that holds its item; one bad item
fails only its own caller; a database that cannot be reached fails each caller, storing
nothing."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from apex.db import make_engine, reading
from apex.groupcommit import GroupCommit
from apex.inbound import store
from apex.models import inbound_events, metadata
from apex.sources.request import InboundEvent

NOTES = sa.Table(
    "notes",
    sa.MetaData(),
    sa.Column("n", sa.Integer, primary_key=True),
    sa.Column("txid", sa.Integer, nullable=False),
)
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'apex.db'}")
    NOTES.create(engine)
    yield engine
    engine.dispose()


def in_threads(count: int, call: object) -> list[object]:
    """`call(i)` from `count` threads released together; each one's result or exception."""
    barrier = threading.Barrier(count)
    outcomes: list[object] = [None] * count

    def run(i: int) -> None:
        barrier.wait()
        try:
            outcomes[i] = call(i)  # type: ignore[operator]
        except Exception as exc:  # reported to the test through outcomes
            outcomes[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return outcomes


class Writer:
    """Writes each item n as a row (n, the transaction's number); n < 0 is refused."""

    def __init__(self) -> None:
        self.transactions = 0
        self.hold = threading.Event()  # the first transaction waits for it: others pile up
        self.lock = threading.Lock()

    def __call__(self, conn: Connection, items: Sequence[int]) -> list[int]:
        with self.lock:
            self.transactions += 1
            txid = self.transactions
        if txid == 1:
            self.hold.wait(10)
        for n in items:
            if n < 0:
                raise ValueError(f"refused {n}")
        conn.execute(NOTES.insert(), [{"n": n, "txid": txid} for n in items])
        return [txid for _ in items]


def rows(engine: Engine) -> dict[int, int]:
    with reading(engine) as conn:
        return {n: txid for n, txid in conn.execute(sa.select(NOTES.c.n, NOTES.c.txid))}


def test_concurrent_callers_share_transactions_and_each_gets_its_own_result(
    engine: Engine,
) -> None:
    writer = Writer()
    group: GroupCommit[int, int] = GroupCommit(engine, writer)
    # The first caller leads and holds its transaction; the other 19 queue meanwhile and go
    # in the next one (or few), not in 19 of their own.
    releaser = threading.Timer(0.5, writer.hold.set)
    releaser.start()
    outcomes = in_threads(20, lambda i: group.submit(i + 1))
    releaser.join()
    stored = rows(engine)
    assert sorted(stored) == list(range(1, 21))
    assert outcomes == [stored[i + 1] for i in range(20)]  # each caller: its own commit's
    assert writer.transactions <= 4, writer.transactions


def test_one_bad_item_fails_only_its_caller(engine: Engine) -> None:
    writer = Writer()
    group: GroupCommit[int, int] = GroupCommit(engine, writer)
    releaser = threading.Timer(0.5, writer.hold.set)
    releaser.start()
    outcomes = in_threads(12, lambda i: group.submit(-1 if i == 5 else i + 1))
    releaser.join()
    failed = [o for o in outcomes if isinstance(o, Exception)]
    assert [str(e) for e in failed] == ["refused -1"]
    assert sorted(rows(engine)) == sorted(i + 1 for i in range(12) if i != 5)


def test_an_unreachable_database_fails_each_caller_and_stores_nothing(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")  # a folder that is a file: SQLite cannot open under it
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'file' / 'apex.db'}")
    group: GroupCommit[int, int] = GroupCommit(engine, Writer())
    outcomes = in_threads(6, lambda i: group.submit(i))
    assert all(isinstance(o, sa.exc.OperationalError) for o in outcomes), outcomes


def test_requests_received_together_store_each_event_once(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'apex.db'}")
    metadata.create_all(engine)
    receiver = store.Receiver(engine)

    def event(key: str) -> InboundEvent:
        return InboundEvent("stripe", key, "payment_intent.succeeded", {"id": key}, {}, None)

    # Eight requests at once, two of each event: each event stored once, its twin a duplicate.
    outcomes = in_threads(8, lambda i: receiver.receive([event(f"evt_{i % 4}")], NOW))
    received = [o for o in outcomes if isinstance(o, store.Received)]
    assert len(received) == 8
    assert sorted(r.duplicate for r in received) == [False] * 4 + [True] * 4
    new_ids = [i for r in received for i in r.new_ids]
    with reading(engine) as conn:
        stored = conn.execute(sa.select(inbound_events.c.id, inbound_events.c.dedupe_key)).all()
    assert sorted(i for i, _ in stored) == sorted(new_ids)
    assert sorted(key for _, key in stored) == [f"evt_{n}" for n in range(4)]
    engine.dispose()
