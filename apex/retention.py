"""Retention: deleting finished work once it is older than the retention periods, in bounded
batches that any number of hosts may run at once."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from apex.models import attempts, deliveries, events, inbound_events

BATCH = 5000  # rows deleted per transaction, at most

# Deliveries that will never be sent again on their own. Failed and skipped ones can still be
# recovered (POST /api/webhooks/<id>/recover), so they are kept for the longer period.
DONE_DELIVERIES = ("delivered", "cancelled")
RECOVERABLE_DELIVERIES = ("failed", "skipped")
# Inbound events whose processing is over; `failed` ones can be replayed, so kept longer.
DONE_INBOUND = ("processed", "ignored")


@dataclass(frozen=True)
class Policy:
    """How long rows are kept: `finished` for delivered and cancelled deliveries, events and
    processed or ignored inbound events; `recoverable` for failed and skipped deliveries and
    failed inbound events."""

    finished: timedelta
    recoverable: timedelta

    @classmethod
    def of_days(cls, finished: int, recoverable: int) -> Policy:
        return cls(timedelta(days=finished), timedelta(days=recoverable))


@dataclass(frozen=True)
class Pruned:
    """Rows deleted, per table."""

    attempts: int = 0
    deliveries: int = 0
    events: int = 0
    inbound_events: int = 0

    def __add__(self, other: Pruned) -> Pruned:
        return Pruned(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    @property
    def total(self) -> int:
        return sum(getattr(self, f.name) for f in fields(self))

    def counts(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def prune(
    engine: Engine,
    now: datetime,
    policy: Policy,
    *,
    batch: int = BATCH,
    pause: float = 0.0,
    budget: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[Pruned, bool]:
    """Delete what `policy` no longer keeps as of `now`: finished deliveries with their attempts
    (attempts first), then events none of whose deliveries is left, then inbound events. Each
    transaction deletes at most `batch` rows; `pause` seconds pass between transactions, so the
    workers' own writes get their turn. Stops early once `budget` seconds have passed.

    Never deletes a pending or in-flight delivery, an event that still has a delivery of any
    status, or a queued inbound event (however old). Safe to run on several hosts at once:
    each batch locks the rows it deletes and skips those another host holds (PostgreSQL's FOR
    UPDATE SKIP LOCKED; SQLite has one writer at a time), and every condition is checked again
    in the statement that deletes. Returns what it deleted and whether it finished (False: it
    ran out of `budget` with more to delete; the next run goes on).
    """
    deadline = None if budget is None else time.monotonic() + budget
    pruned = Pruned()
    first = True
    for step in (_deliveries, _events, _inbound):
        more = True
        while more:
            if deadline is not None and time.monotonic() >= deadline:
                return pruned, False
            if not first:
                sleep(pause)
            first = False
            with engine.begin() as conn:
                done, more = step(conn, now, policy, batch)
            pruned += done
    return pruned, True


# --- one batch each: (what it deleted, whether more may be left) ----------------------------


def _finished_delivery(now: datetime, policy: Policy) -> sa.ColumnElement[bool]:
    d = deliveries.c
    return sa.or_(
        sa.and_(d.status.in_(DONE_DELIVERIES), d.updated_at < now - policy.finished),
        sa.and_(d.status.in_(RECOVERABLE_DELIVERIES), d.updated_at < now - policy.recoverable),
    )


def _deliveries(conn: Connection, now: datetime, policy: Policy, batch: int) -> tuple[Pruned, bool]:
    """Up to `batch` rows: whole deliveries with all their attempts, as many as fit; a delivery
    with more attempts than fit loses `batch` of them now and the rest in later batches."""
    condition = _finished_delivery(now, policy)
    locked = list(
        conn.execute(
            sa.select(deliveries.c.id)
            .where(condition)
            .limit(batch)
            .with_for_update(skip_locked=True)
        ).scalars()
    )
    if not locked:
        return Pruned(), False
    counts: dict[str, int] = dict(
        conn.execute(
            sa.select(attempts.c.delivery_id, sa.func.count())
            .where(attempts.c.delivery_id.in_(locked))
            .group_by(attempts.c.delivery_id)
        ).all()
    )
    chosen: list[str] = []
    size = 0
    for delivery_id in locked:
        rows = 1 + counts.get(delivery_id, 0)
        if size + rows > batch:
            break
        chosen.append(delivery_id)
        size += rows
    if not chosen:  # the first alone has more attempts than a batch: take a batch of them
        some = sa.select(attempts.c.id).where(attempts.c.delivery_id == locked[0]).limit(batch)
        gone = conn.execute(attempts.delete().where(attempts.c.id.in_(some))).rowcount
        return Pruned(attempts=gone), True
    gone_attempts = conn.execute(
        attempts.delete().where(attempts.c.delivery_id.in_(chosen))
    ).rowcount
    gone = conn.execute(deliveries.delete().where(deliveries.c.id.in_(chosen), condition)).rowcount
    more = len(locked) == batch or len(chosen) < len(locked)
    return Pruned(attempts=gone_attempts, deliveries=gone), more


def _events(conn: Connection, now: datetime, policy: Policy, batch: int) -> tuple[Pruned, bool]:
    """Up to `batch` events older than the finished period that no delivery refers to (their
    deliveries were deleted before them, or they had none)."""
    e = events.c
    condition = sa.and_(
        e.created_at < now - policy.finished,
        ~sa.exists().where(deliveries.c.event_id == e.id),
    )
    locked = list(
        conn.execute(
            sa.select(e.id).where(condition).limit(batch).with_for_update(skip_locked=True)
        ).scalars()
    )
    if not locked:
        return Pruned(), False
    gone = conn.execute(events.delete().where(e.id.in_(locked), condition)).rowcount
    return Pruned(events=gone), len(locked) == batch


def _inbound(conn: Connection, now: datetime, policy: Policy, batch: int) -> tuple[Pruned, bool]:
    """Up to `batch` inbound events: processed or ignored ones processed before the finished
    period, failed ones received before the recoverable period. Queued ones stay."""
    i = inbound_events.c
    condition = sa.or_(
        sa.and_(i.status.in_(DONE_INBOUND), i.processed_at < now - policy.finished),
        sa.and_(i.status == "failed", i.received_at < now - policy.recoverable),
    )
    locked = list(
        conn.execute(
            sa.select(i.id).where(condition).limit(batch).with_for_update(skip_locked=True)
        ).scalars()
    )
    if not locked:
        return Pruned(), False
    gone = conn.execute(inbound_events.delete().where(i.id.in_(locked), condition)).rowcount
    return Pruned(inbound_events=gone), len(locked) == batch
