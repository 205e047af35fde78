"""Inbound event rows: store verified events once per (source, dedupe key), claim, record, list."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from apex.db import insert, reading
from apex.errors import NotFoundError
from apex.groupcommit import GroupCommit
from apex.ids import new_id
from apex.models import inbound_events
from apex.pagination import newest_first, split_page
from apex.sources.request import InboundEvent

STATUSES = ("queued", "processed", "ignored", "failed")
ID_PREFIX = "inb"

# Seconds to wait after the 1st, 2nd, … failed attempt; a failure beyond the last is final.

_MAX_ERROR = 1000  # the width of inbound_events.error and .reason
_MAX_TYPE = 100  # the width of inbound_events.type

# A job may start a moment before the row is due by its own clock: the web process that stored
# it and the worker read different clocks. claim() keeps it under half the lease, so a held row
# is never claimed twice.
CLOCK_SKEW = timedelta(seconds=5)


@dataclass(frozen=True)
class Received:
    """The outcome of receive(): `new_ids` are the rows created, in request order, and
    `queued_ids` those of them to enqueue (the others were stored `ignored`).

    `duplicate` is true when there were events and every one was already stored.
    """

    new_ids: list[str]
    queued_ids: list[str]
    duplicate: bool


@dataclass(frozen=True)
class Claimed:
    """A queued event this process now holds for `lease`, with what processing needs."""

    id: str
    source: str
    type: str
    payload: Any
    headers: Mapping[str, str]
    attempts: int
    received_at: datetime


@dataclass(frozen=True)
class StoredEvent:
    """One row as the operator sees it."""

    id: str
    source: str
    dedupe_key: str
    type: str
    payload: Any
    headers: Mapping[str, str]
    status: str
    attempts: int
    error: str | None
    reason: str | None
    result: Any
    next_attempt_at: datetime | None
    enqueued_at: datetime | None
    received_at: datetime
    processed_at: datetime | None


@dataclass(frozen=True)
class Arrival:
    """One request's verified events, as rows to insert (see receive)."""

    ids: list[str]  # in request order, one per distinct event
    ignored: frozenset[str]  # those stored `ignored`
    rows: list[dict[str, Any]]


def receive(engine: Engine, events: Sequence[InboundEvent], now: datetime) -> Received:
    """Store each event as a `queued` row (`ignored`, with its reason, when the verifier said
    so), in one transaction, skipping those already stored.

    Race-safe: the insert is `ON CONFLICT (source, dedupe_key) DO NOTHING`, so concurrent
    deliveries of one event create one row and every other sees a duplicate. Rows are marked
    enqueued at `now`: the caller enqueues their ids next, and sweep finds them if it cannot.
    Works on PostgreSQL and SQLite; raises ValueError on another database. Request threads
    share transactions through `Receiver`.
    """
    with engine.begin() as conn:
        return store_arrivals(conn, [arrival(events, now)])[0]


class Receiver(GroupCommit[Arrival, Received]):
    """receive() for the web's request threads: concurrent requests' events are inserted in
    one transaction (see apex.groupcommit), each request answered once it is committed."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine, store_arrivals)

    def receive(self, events: Sequence[InboundEvent], now: datetime) -> Received:
        return self.submit(arrival(events, now))


def arrival(events: Sequence[InboundEvent], now: datetime) -> Arrival:
    """The rows for one request's events: the same event twice in it is one row."""
    ids: list[str] = []
    ignored: set[str] = set()
    rows: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for event in events:
        key = (event.source, event.dedupe_key)
        if key in seen:
            continue
        seen.add(key)
        ids.append(new_id(ID_PREFIX))
        queued = event.ignored is None
        if not queued:
            ignored.add(ids[-1])
        rows.append(
            {
                "id": ids[-1],
                "source": event.source,
                "dedupe_key": event.dedupe_key,
                "type": event.type[:_MAX_TYPE],
                "payload": event.payload,
                "headers": dict(event.headers),
                "status": "queued" if queued else "ignored",
                "attempts": 0,
                "reason": None if queued else (event.ignored or "")[:_MAX_ERROR],
                "next_attempt_at": now if queued else None,
                "enqueued_at": now if queued else None,
                "received_at": now,
                "processed_at": None if queued else now,
            }
        )
    return Arrival(ids, frozenset(ignored), rows)


def store_arrivals(conn: Connection, arrivals: Sequence[Arrival]) -> list[Received]:
    """Insert the rows of `arrivals` in the caller's transaction, with one statement; what
    each request's events became. Of two requests carrying the same event, the first stores it
    and the second finds it stored (a duplicate)."""
    rows = [row for a in arrivals for row in a.rows]
    created: set[str] = set()
    if rows:
        # One cached statement run over the rows (not a multi-row VALUES compiled per call).
        statement = (
            insert(conn, inbound_events)
            .on_conflict_do_nothing(index_elements=["source", "dedupe_key"])
            .returning(inbound_events.c.id)
        )
        created = set(conn.execute(statement, rows).scalars())
    received = []
    for a in arrivals:
        new_ids = [row_id for row_id in a.ids if row_id in created]
        queued_ids = [row_id for row_id in new_ids if row_id not in a.ignored]
        received.append(
            Received(new_ids=new_ids, queued_ids=queued_ids, duplicate=bool(a.ids) and not new_ids)
        )
    return received


def claim(
    engine: Engine, event_ids: Sequence[str], now: datetime, lease: timedelta
) -> list[Claimed]:
    """Take the due queued events among `event_ids` for `lease` and count their attempt, in
    one transaction; returns them in the order asked.

    Those not ours to process (processed, failed for good, not yet due within CLOCK_SKEW, held
    by another worker, or unknown) are left out: a duplicate job is a no-op. A worker that
    dies while holding one leaves it due again when the lease ends, for sweep to find.
    """
    if not event_ids:
        return []
    skew = min(CLOCK_SKEW, lease / 2)
    with engine.begin() as conn:
        taken = list(
            conn.execute(
                inbound_events.update()
                .where(
                    inbound_events.c.id.in_(list(event_ids)),
                    inbound_events.c.status == "queued",
                    inbound_events.c.next_attempt_at <= now + skew,
                )
                .values(attempts=inbound_events.c.attempts + 1, next_attempt_at=now + lease)
                .returning(inbound_events.c.id)
            ).scalars()
        )
        if not taken:
            return []
        rows = conn.execute(
            sa.select(
                inbound_events.c.id,
                inbound_events.c.source,
                inbound_events.c.type,
                inbound_events.c.payload,
                inbound_events.c.headers,
                inbound_events.c.attempts,
                inbound_events.c.received_at,
            ).where(inbound_events.c.id.in_(taken))
        ).all()
    claimed = {row.id: Claimed(**row._mapping) for row in rows}
    return [claimed[event_id] for event_id in dict.fromkeys(event_ids) if event_id in claimed]


def mark_processed(conn: Connection, event_id: str, now: datetime, result: Any) -> bool:
    """Record a successful processing with its `result`, in the caller's transaction (the
    one that processed it). Returns False if the row is no longer queued (e.g. replayed and
    processed by another job meanwhile)."""
    updated = conn.execute(
        inbound_events.update()
        .where(inbound_events.c.id == event_id, inbound_events.c.status == "queued")
        .values(status="processed", result=result, error=None, processed_at=now,
                next_attempt_at=None)
    )  # fmt: skip
    return updated.rowcount == 1


def mark_ignored(engine: Engine, event_id: str, now: datetime, reason: str) -> bool:
    """Record that the event carries nothing Apex uses, and why; it is never retried (a replay
    processes it again). Returns False if the row is no longer queued."""
    with engine.begin() as conn:
        updated = conn.execute(
            inbound_events.update()
            .where(inbound_events.c.id == event_id, inbound_events.c.status == "queued")
            .values(status="ignored", reason=reason[:_MAX_ERROR], error=None, result=None,
                    processed_at=now, next_attempt_at=None)
        )  # fmt: skip
    return updated.rowcount == 1


def mark_failed(
    engine: Engine,
    event_id: str,
    now: datetime,
    error: str,
    delays: Sequence[float],
) -> timedelta | None:
    """Record a failed attempt and its `error` (truncated to fit).

    After the n-th attempt the event stays queued for a retry in `delays[n-1]` seconds, which is
    returned; past the last delay it becomes `failed` for good and None is returned. The row is
    marked enqueued for its retry time, so sweep re-enqueues it only if the retry goes missing.
    """
    with engine.begin() as conn:
        attempts = conn.execute(
            sa.select(inbound_events.c.attempts).where(inbound_events.c.id == event_id)
        ).scalar_one()
        values: dict[str, Any] = {"error": error[:_MAX_ERROR]}
        delay = timedelta(seconds=delays[attempts - 1]) if 0 < attempts <= len(delays) else None
        if delay is None:
            values.update(status="failed", next_attempt_at=None)
        else:
            values.update(status="queued", next_attempt_at=now + delay, enqueued_at=now + delay)
        conn.execute(
            inbound_events.update()
            .where(inbound_events.c.id == event_id, inbound_events.c.status == "queued")
            .values(**values)
        )
    return delay


def lost(engine: Engine, now: datetime, requeue_after: timedelta, limit: int = 5000) -> list[str]:
    """Queued events the queue seems to have lost: due and not enqueued for `requeue_after`
    (Redis was down at receipt, a retry went missing, or a worker died holding one).
    Marks them enqueued now and returns their ids, oldest due first."""
    stale = now - requeue_after
    with engine.begin() as conn:
        ids = list(
            conn.execute(
                sa.select(inbound_events.c.id)
                .where(
                    inbound_events.c.status == "queued",
                    inbound_events.c.next_attempt_at <= now,
                    sa.or_(
                        inbound_events.c.enqueued_at.is_(None),
                        inbound_events.c.enqueued_at <= stale,
                    ),
                )
                .order_by(inbound_events.c.next_attempt_at)
                .limit(limit)
            ).scalars()
        )
        if ids:
            conn.execute(
                inbound_events.update().where(inbound_events.c.id.in_(ids)).values(enqueued_at=now)
            )
    return ids


def replay(engine: Engine, event_id: str, now: datetime) -> None:
    """Queue an event to be processed again now, whatever its status, with a fresh retry budget.

    Raises NotFoundError for an unknown id.
    """
    with engine.begin() as conn:
        updated = conn.execute(
            inbound_events.update()
            .where(inbound_events.c.id == event_id)
            .values(status="queued", attempts=0, error=None, reason=None, result=None,
                    processed_at=None, next_attempt_at=now, enqueued_at=now)
        )  # fmt: skip
    if updated.rowcount != 1:
        raise NotFoundError(f"No inbound event {event_id}")


def get(engine: Engine, event_id: str) -> StoredEvent:
    """One event. Raises NotFoundError."""
    with reading(engine) as conn:
        row = conn.execute(
            sa.select(*_columns()).where(inbound_events.c.id == event_id)
        ).one_or_none()
    if row is None:
        raise NotFoundError(f"No inbound event {event_id}")
    return StoredEvent(*row)


def page(
    engine: Engine,
    source: str | None,
    status: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[StoredEvent], str | None]:
    """Events newest first, optionally of one source and status; and the cursor of the next page
    (the last id shown, or None at the end). Raises NotFoundError for an unknown cursor."""
    query = sa.select(*_columns())
    if source:
        query = query.where(inbound_events.c.source == source)
    if status:
        query = query.where(inbound_events.c.status == status)
    with reading(engine) as conn:
        query = newest_first(
            conn, query, inbound_events.c.received_at, inbound_events.c.id, limit, cursor
        )
        rows = [StoredEvent(*row) for row in conn.execute(query)]
    return split_page(rows, limit, lambda r: r.id)


def _columns() -> list[sa.Column[Any]]:
    c = inbound_events.c
    return [
        c.id,
        c.source,
        c.dedupe_key,
        c.type,
        c.payload,
        c.headers,
        c.status,
        c.attempts,
        c.error,
        c.reason,
        c.result,
        c.next_attempt_at,
        c.enqueued_at,
        c.received_at,
        c.processed_at,
    ]
