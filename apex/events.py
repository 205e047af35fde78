"""Publishing events: store the event and plan its deliveries in one transaction."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from apex.catalog import is_known, wants
from apex.db import insert, reading, utcnow
from apex.errors import FieldError, PayloadTooLargeError, ValidationFailedError
from apex.ids import new_id
from apex.models import deliveries, events, subscriptions

MAX_PAYLOAD_BYTES = 256 * 1024


@dataclass(frozen=True)
class Published:
    """The outcome of publish(): `pending` are the delivery ids to enqueue (none on a replay)."""

    id: str
    type: str
    created_at: datetime
    deliveries: int
    pending: list[str]
    created: bool
    differs: bool = False  # the id was published before with another type or data


def body_of(event_id: str, event_type: str, created_at: datetime, data: Any) -> bytes:
    """The exact bytes every delivery of the event carries: strict JSON, so data holding NaN or
    Infinity raises ValueError rather than reaching a receiver as a body that is not JSON."""
    envelope = {
        "id": event_id,
        "type": event_type,
        "createdAt": created_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z",
        "data": data,
    }
    return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def publish(
    engine: Engine,
    event_type: str,
    data: Any,
    event_id: str | None = None,
    only_subscription: str | None = None,
) -> Published:
    """Store an event and one delivery per subscription that wants it, in one transaction.

    Active subscriptions get `pending` deliveries; paused or disabled ones a `skipped` delivery
    that `recover` can replay. Publishing an id that exists returns the stored event unchanged
    (`created=False`). `only_subscription` limits the fan-out to one subscription (test sends).
    Raises ValidationFailedError for an unknown type and PayloadTooLargeError
    for a body over 256 KiB.
    """
    event_id = event_id or new_id("evt")
    now = utcnow()
    _check(event_type, data, event_id, now)
    try:
        with engine.begin() as conn:
            conn.execute(
                events.insert().values(id=event_id, type=event_type, data=data, created_at=now)
            )
            rows = _plan_deliveries(conn, event_id, event_type, now, only_subscription)
    except IntegrityError:
        return _existing(engine, event_id, event_type, data)
    pending = [r["id"] for r in rows if r["status"] == "pending"]
    return Published(event_id, event_type, now, len(rows), pending, True)


def publish_in(conn: Connection, event_type: str, data: Any, event_id: str) -> list[str]:
    """publish() within the caller's transaction, so the event is stored with what caused it
    or not at all. An id that exists is left as it is. Returns the pending delivery ids (none
    when the id existed); raises as publish() does."""
    now = utcnow()
    _check(event_type, data, event_id, now)
    stored = conn.execute(
        insert(conn, events)
        .values(id=event_id, type=event_type, data=data, created_at=now)
        .on_conflict_do_nothing(index_elements=["id"])
    ).rowcount
    if not stored:
        return []
    rows = _plan_deliveries(conn, event_id, event_type, now, None)
    return [r["id"] for r in rows if r["status"] == "pending"]


def _check(event_type: str, data: Any, event_id: str, now: datetime) -> None:
    if not is_known(event_type):
        raise ValidationFailedError(
            f"Unknown event type {event_type!r}", [FieldError("type", f"unknown: {event_type!r}")]
        )
    size = len(body_of(event_id, event_type, now, data))
    if size > MAX_PAYLOAD_BYTES:
        raise PayloadTooLargeError(f"Event body is {size} bytes; the limit is {MAX_PAYLOAD_BYTES}")


def _plan_deliveries(
    conn: Connection, event_id: str, event_type: str, now: datetime, only: str | None
) -> list[dict[str, Any]]:
    query = sa.select(subscriptions.c.id, subscriptions.c.events, subscriptions.c.status).where(
        subscriptions.c.deleted_at.is_(None)
    )
    if only is not None:
        query = query.where(subscriptions.c.id == only)
    subs = conn.execute(query).all()
    rows = [
        {
            "id": new_id("dlv"),
            "event_id": event_id,
            "subscription_id": sub.id,
            "status": "pending" if sub.status == "active" else "skipped",
            "attempts": 0,
            "next_attempt_at": now if sub.status == "active" else None,
            "enqueued_at": now if sub.status == "active" else None,
            "last_error": None if sub.status == "active" else f"subscription {sub.status}",
            "created_at": now,
            "updated_at": now,
        }
        for sub in subs
        if only is not None or wants(list(sub.events), event_type)
    ]
    if rows:
        conn.execute(deliveries.insert(), rows)
    return rows


def _existing(engine: Engine, event_id: str, event_type: str, data: Any) -> Published:
    with reading(engine) as conn:
        event = conn.execute(sa.select(events).where(events.c.id == event_id)).one()
        count = conn.execute(
            sa.select(sa.func.count()).where(deliveries.c.event_id == event_id)
        ).scalar_one()
    differs = event.type != event_type or event.data != data
    return Published(event.id, event.type, event.created_at, count, [], False, differs)
