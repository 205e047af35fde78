"""Delivery rows: claim under a lease, record attempts and decisions, find what is due or stuck."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from apex.db import reading
from apex.delivery import circuit
from apex.delivery.attempt import Outcome
from apex.delivery.backoff import Decision
from apex.errors import NotFoundError
from apex.ids import new_id
from apex.models import attempts, deliveries, events, subscriptions
from apex.pagination import newest_first, split_page

# RQ's scheduler keeps whole-second times, so a scheduled job can run up to a second early.
EARLY = timedelta(seconds=1)


@dataclass(frozen=True)
class Claimed:
    """A delivery this process now holds the lease on, with what it needs to attempt it."""

    id: str
    event_id: str
    event_type: str
    event_created_at: datetime
    data: Any
    subscription_id: str
    url: str
    subscription_status: str
    attempts: int
    failing_since: datetime | None
    lease_until: datetime  # the lease we hold: recording checks it is still ours
    concurrency: int | None  # the subscription's own limits (None: the defaults)
    rate_limit: int | None


def _claimable(now: datetime) -> sa.ColumnElement[bool]:
    """Due pending deliveries, and in-flight ones whose lease expired (their worker died)."""
    return sa.or_(
        sa.and_(deliveries.c.status == "pending", deliveries.c.next_attempt_at <= now + EARLY),
        sa.and_(deliveries.c.status == "in_flight", deliveries.c.lease_until < now),
    )


def _reachable() -> sa.ColumnElement[bool]:
    """Deliveries whose endpoint's circuit is closed (see apex.delivery.circuit)."""
    return deliveries.c.subscription_id.not_in(circuit.open_ids().scalar_subquery())


def claim(
    conn: Connection, delivery_ids: list[str], now: datetime, lease: timedelta, probe: bool = False
) -> list[Claimed]:
    """Take the lease on each due pending delivery, or one whose lease expired, among `ids`.

    Ids that are not ours to attempt (delivered, cancelled, not yet due, leased by another
    worker, or waiting for an endpoint whose circuit is open) are left out: a duplicate job is
    a no-op. A `probe` is claimed whatever the circuit.
    """
    if not delivery_ids:
        return []
    claimable = _claimable(now) if probe else sa.and_(_claimable(now), _reachable())
    taken = list(
        conn.execute(
            deliveries.update()
            .where(deliveries.c.id.in_(delivery_ids), claimable)
            .values(status="in_flight", lease_until=now + lease, updated_at=now)
            .returning(deliveries.c.id)
        ).scalars()
    )
    if not taken:
        return []
    rows = conn.execute(
        sa.select(
            deliveries.c.id,
            deliveries.c.event_id,
            events.c.type.label("event_type"),
            events.c.created_at.label("event_created_at"),
            events.c.data,
            deliveries.c.subscription_id,
            subscriptions.c.url,
            subscriptions.c.status.label("subscription_status"),
            deliveries.c.attempts,
            subscriptions.c.failing_since,
            deliveries.c.lease_until,
            subscriptions.c.concurrency,
            subscriptions.c.rate_limit,
        )
        .join(events, events.c.id == deliveries.c.event_id)
        .join(subscriptions, subscriptions.c.id == deliveries.c.subscription_id)
        .where(deliveries.c.id.in_(taken))
        .order_by(deliveries.c.created_at, deliveries.c.id)  # oldest first (concurrency: 1)
    ).all()
    return [Claimed(**row._mapping) for row in rows]


@dataclass(frozen=True)
class Finished:
    """One finished attempt to record: what was claimed, what happened, what to do next."""

    claimed: Claimed
    outcome: Outcome
    decision: Decision
    at: datetime


def record(
    conn: Connection, finished: list[Finished], disable_after: timedelta
) -> list[str | None]:
    """Store a batch of attempts and apply their decisions; returns each delivery's new status,
    or None for one no longer held under our lease (cancelled meanwhile, or taken over after
    the lease ran out): its attempt is kept in the log, its row is left as it is.

    Attempts and delivery rows are written with one statement each for the whole batch. A 410
    disables the subscription at once; a subscription failing continuously for `disable_after`
    is disabled too; a success clears its failure record.
    """
    if not finished:
        return []
    held = _still_held(conn, [f.claimed for f in finished])
    conn.execute(
        attempts.insert(),
        [
            {
                "id": new_id("att"),
                "delivery_id": f.claimed.id,
                "attempted_at": f.at,
                "duration_ms": f.outcome.duration_ms,
                "status_code": f.outcome.status_code,
                "error": f.outcome.error,
                "response_body": f.outcome.response_body,
            }
            for f in finished
        ],
    )
    rows = [_delivery_values(f) for f in finished if f.claimed.id in held]
    if rows:
        conn.execute(
            deliveries.update()
            .where(deliveries.c.id == sa.bindparam("b_id"))
            .values({name: sa.bindparam(f"b_{name}") for name in rows[0] if name != "id"}),
            [{f"b_{name}": value for name, value in row.items()} for row in rows],
        )
    for f in finished:
        _apply_to_subscription(conn, f, disable_after)
    status = {row["id"]: str(row["status"]) for row in rows}
    return [status.get(f.claimed.id) for f in finished]


def _still_held(conn: Connection, claimed: list[Claimed]) -> set[str]:
    """The ids among `claimed` still in flight under the lease we took (rows locked on
    PostgreSQL; SQLite's BEGIN IMMEDIATE already serializes writers)."""
    rows = conn.execute(
        sa.select(deliveries.c.id, deliveries.c.lease_until)
        .where(deliveries.c.id.in_([c.id for c in claimed]), deliveries.c.status == "in_flight")
        .with_for_update()
    ).all()
    ours = {c.id: c.lease_until for c in claimed}
    return {row.id for row in rows if row.lease_until == ours[row.id]}


def renew(conn: Connection, claimed: Claimed, until: datetime) -> bool:
    """Extend our lease on a delivery that waited for a slot; False if it is no longer ours."""
    return bool(
        conn.execute(
            deliveries.update()
            .where(
                deliveries.c.id == claimed.id,
                deliveries.c.status == "in_flight",
                deliveries.c.lease_until == claimed.lease_until,
            )
            .values(lease_until=until)
        ).rowcount
    )


def _delivery_values(f: Finished) -> dict[str, Any]:
    """The delivery row after this attempt; every row has the same keys (one statement)."""
    status, next_attempt_at = "failed", None
    if f.decision.kind == "delivered":
        status = "delivered"
    elif f.decision.kind == "retry" and f.decision.delay is not None:
        status, next_attempt_at = "pending", f.at + timedelta(seconds=f.decision.delay)
    return {
        "id": f.claimed.id,
        "status": status,
        "attempts": f.claimed.attempts + 1,
        "lease_until": None,
        "next_attempt_at": next_attempt_at,
        "enqueued_at": f.at,  # a retry is scheduled now; for other statuses it is unused
        "last_status_code": f.outcome.status_code,
        "last_error": f.outcome.error,
        "updated_at": f.at,
        "delivered_at": f.at if status == "delivered" else None,
    }


def _apply_to_subscription(conn: Connection, f: Finished, disable_after: timedelta) -> None:
    sub = subscriptions.update().where(subscriptions.c.id == f.claimed.subscription_id)
    if f.decision.kind == "delivered":
        if f.claimed.failing_since is not None:
            conn.execute(sub.values(failing_since=None))
    elif f.decision.kind == "disable":
        conn.execute(
            sub.where(subscriptions.c.status != "disabled").values(
                status="disabled", disabled_reason="endpoint answered 410 Gone", updated_at=f.at
            )
        )
    else:
        failing_since = f.claimed.failing_since or f.at
        if f.claimed.failing_since is None:
            conn.execute(
                sub.where(subscriptions.c.failing_since.is_(None)).values(failing_since=f.at)
            )
        if f.at - failing_since >= disable_after:
            conn.execute(
                sub.where(subscriptions.c.status == "active").values(
                    status="disabled",
                    disabled_reason=f"failing continuously since {failing_since.isoformat()}",
                    updated_at=f.at,
                )
            )


def skip(conn: Connection, claimed: list[Claimed], now: datetime) -> None:
    """Hand claimed deliveries back as `skipped`: their subscription is paused or disabled."""
    for c in claimed:
        conn.execute(
            deliveries.update()
            .where(deliveries.c.id == c.id)
            .values(status="skipped", lease_until=None, next_attempt_at=None,
                    last_error=f"subscription {c.subscription_status}", updated_at=now)
        )  # fmt: skip


def release(conn: Connection, delivery_ids: list[str], now: datetime, delay: timedelta) -> None:
    """Give back claimed deliveries untried (their endpoint is at its concurrency limit)."""
    conn.execute(
        deliveries.update()
        .where(deliveries.c.id.in_(delivery_ids), deliveries.c.status == "in_flight")
        .values(status="pending", lease_until=None, next_attempt_at=now + delay, enqueued_at=now,
                updated_at=now)
    )  # fmt: skip


def due_of(conn: Connection, subscription_id: str, now: datetime, limit: int) -> list[str]:
    """Up to `limit` deliveries of one subscription that may be claimed now, oldest first."""
    # Through ix_deliveries_due, whose size follows the active deliveries: SQLite would rather
    # walk the subscription's whole history by (subscription_id, created_at), which grows
    # without bound. Comparing an expression, not the column, keeps it off that index.
    subscription = deliveries.c.subscription_id + ""
    return list(
        conn.execute(
            sa.select(deliveries.c.id)
            .where(subscription == subscription_id, _claimable(now))
            .order_by(deliveries.c.created_at, deliveries.c.id)
            .limit(limit)
        ).scalars()
    )


def lost(engine: Engine, now: datetime, requeue_after: timedelta, limit: int = 5000) -> list[str]:
    """Deliveries the queue seems to have lost: due, pending, and not enqueued for
    `requeue_after`; or in flight with an expired lease (the worker died). Marks them enqueued.
    Deliveries waiting for an open circuit are not lost: its probes release them."""
    stale = now - requeue_after
    with engine.begin() as conn:
        ids = list(
            conn.execute(
                sa.select(deliveries.c.id)
                .where(
                    sa.or_(
                        sa.and_(
                            deliveries.c.status == "pending",
                            deliveries.c.next_attempt_at <= now,
                            sa.or_(
                                deliveries.c.enqueued_at.is_(None),
                                deliveries.c.enqueued_at <= stale,
                            ),
                        ),
                        sa.and_(deliveries.c.status == "in_flight", deliveries.c.lease_until < now),
                    ),
                    _reachable(),
                )
                .order_by(deliveries.c.next_attempt_at)
                .limit(limit)
            ).scalars()
        )
        if ids:
            conn.execute(
                deliveries.update().where(deliveries.c.id.in_(ids)).values(enqueued_at=now)
            )
    return ids


def requeue(
    engine: Engine, delivery_ids: list[str], now: datetime, include_delivered: bool = False
) -> list[str]:
    """Make deliveries due now (retry/recover); returns the ids it changed. In-flight and
    cancelled deliveries are left alone; delivered ones only with `include_delivered`."""
    if not delivery_ids:
        return []
    statuses = ["failed", "skipped", "pending"] + (["delivered"] if include_delivered else [])
    with engine.begin() as conn:
        result = conn.execute(
            deliveries.update()
            .where(
                deliveries.c.id.in_(delivery_ids),
                deliveries.c.status.in_(statuses),
            )
            .values(status="pending", next_attempt_at=now, enqueued_at=now, updated_at=now)
            .returning(deliveries.c.id)
        )
        return list(result.scalars())


def get_delivery_subscription(engine: Engine, delivery_id: str) -> str:
    """The subscription id of a delivery. Raises NotFoundError."""
    with reading(engine) as conn:
        sub_id = conn.execute(
            sa.select(deliveries.c.subscription_id).where(deliveries.c.id == delivery_id)
        ).scalar_one_or_none()
    if sub_id is None:
        raise NotFoundError(f"No delivery {delivery_id}")
    return str(sub_id)


def recoverable(engine: Engine, subscription_id: str, since: datetime) -> list[str]:
    """Failed and skipped deliveries of a subscription created since `since`, oldest first."""
    with reading(engine) as conn:
        return list(
            conn.execute(
                sa.select(deliveries.c.id)
                .where(
                    deliveries.c.subscription_id == subscription_id,
                    deliveries.c.status.in_(("failed", "skipped")),
                    deliveries.c.created_at >= since,
                )
                .order_by(deliveries.c.created_at)
            ).scalars()
        )


def page(
    engine: Engine, subscription_id: str, status: str | None, limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """Deliveries of a subscription, newest first, each with its attempts; and the next cursor.
    `status` is a delivery status, or `retrying` (pending after at least one attempt)."""
    query = (
        sa.select(deliveries, events.c.type.label("event_type"))
        .join(events, events.c.id == deliveries.c.event_id)
        .where(deliveries.c.subscription_id == subscription_id)
    )
    if status == "retrying":  # pending again after failed attempts
        query = query.where(deliveries.c.status == "pending", deliveries.c.attempts > 0)
    elif status:
        query = query.where(deliveries.c.status == status)
    with reading(engine) as conn:
        query = newest_first(conn, query, deliveries.c.created_at, deliveries.c.id, limit, cursor)
        rows, next_cursor = split_page(
            [dict(r._mapping) for r in conn.execute(query)], limit, lambda r: r["id"]
        )
        ids = [r["id"] for r in rows]
        tries = (
            conn.execute(
                sa.select(attempts)
                .where(attempts.c.delivery_id.in_(ids))
                .order_by(attempts.c.attempted_at)
            ).all()
            if ids
            else []
        )
    by_delivery: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
    for t in tries:
        by_delivery[t.delivery_id].append(dict(t._mapping))
    for r in rows:
        r["attempt_log"] = by_delivery[r["id"]]
    return rows, next_cursor
