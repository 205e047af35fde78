"""What the console counts and draws, read from the delivery tables: each subscription's last
24 hours, its deliveries per hour by status and its latency percentiles per hour."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from apex.db import reading
from apex.models import attempts, deliveries

WINDOW = timedelta(hours=24)
MAX_ROWS = 50_000  # rows a chart reads at most (the newest)
# The statuses a chart shows, in stacking order; `retrying` is pending after an attempt.
STATUSES = ("delivered", "retrying", "pending", "in_flight", "failed", "skipped", "cancelled")


@dataclass(frozen=True)
class Activity:
    """A subscription's deliveries created in the window, by status, and its latest times."""

    by_status: dict[str, int] = field(default_factory=dict)
    last_attempt_at: datetime | None = None
    last_delivered_at: datetime | None = None

    @property
    def total(self) -> int:
        return sum(self.by_status.values())

    @property
    def success_rate(self) -> float | None:
        """Delivered among those that finished (delivered or failed); None if none did."""
        done = self.by_status.get("delivered", 0) + self.by_status.get("failed", 0)
        return self.by_status.get("delivered", 0) / done if done else None


@dataclass(frozen=True)
class Hour:
    start: datetime
    counts: dict[str, int]


@dataclass(frozen=True)
class Latency:
    start: datetime
    attempts: int
    p50: int | None
    p90: int | None
    p99: int | None


def _status(row_status: str, tried: int) -> str:
    return "retrying" if row_status == "pending" and tried > 0 else row_status


def activity(engine: Engine, sub_ids: Sequence[str], now: datetime) -> dict[str, Activity]:
    """The Activity of each subscription over the 24 hours before `now`."""
    if not sub_ids:
        return {}
    d = deliveries.c
    ids = list(sub_ids)
    # A literal, not a parameter: PostgreSQL matches the GROUP BY expression by its text.
    was_tried = d.attempts > sa.literal_column("0")
    with reading(engine) as conn:
        counts = conn.execute(
            sa.select(d.subscription_id, d.status, was_tried, sa.func.count())
            .where(d.subscription_id.in_(ids), d.created_at >= now - WINDOW)
            .group_by(d.subscription_id, d.status, was_tried)
        ).all()
        delivered = dict(
            conn.execute(
                sa.select(d.subscription_id, sa.func.max(d.delivered_at))
                .where(d.subscription_id.in_(ids))
                .group_by(d.subscription_id)
            ).all()
        )
        last_tried = dict(
            conn.execute(
                sa.select(d.subscription_id, sa.func.max(attempts.c.attempted_at))
                .join(attempts, attempts.c.delivery_id == d.id)
                .where(d.subscription_id.in_(ids))
                .group_by(d.subscription_id)
            ).all()
        )
    by_sub: dict[str, Counter[str]] = {sub_id: Counter() for sub_id in ids}
    for sub_id, status, tried_once, count in counts:
        by_sub[sub_id][_status(status, 1 if tried_once else 0)] += count
    return {
        sub_id: Activity(dict(by_sub[sub_id]), last_tried.get(sub_id), delivered.get(sub_id))
        for sub_id in ids
    }


def _hours(now: datetime) -> list[datetime]:
    """The starts of the 24 whole hours up to and including the current one, oldest first."""
    current = now.replace(minute=0, second=0, microsecond=0)
    return [current - timedelta(hours=n) for n in range(23, -1, -1)]


def hourly(engine: Engine, sub_id: str, now: datetime) -> list[Hour]:
    """Deliveries of `sub_id` created in each of the last 24 hours, by status."""
    hours = _hours(now)
    d = deliveries.c
    with reading(engine) as conn:
        rows = conn.execute(
            sa.select(d.created_at, d.status, d.attempts)
            .where(d.subscription_id == sub_id, d.created_at >= hours[0])
            .order_by(d.created_at.desc())
            .limit(MAX_ROWS)
        ).all()
    counts: dict[datetime, Counter[str]] = {hour: Counter() for hour in hours}
    for created, status, tried in rows:
        hour = created.replace(minute=0, second=0, microsecond=0)
        if hour in counts:
            counts[hour][_status(status, tried)] += 1
    return [Hour(hour, {s: counts[hour][s] for s in STATUSES}) for hour in hours]


def percentile(sorted_values: Sequence[int], share: float) -> int | None:
    """The nearest-rank percentile of ascending `sorted_values`; None when there are none."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(share * len(sorted_values)))
    return sorted_values[rank - 1]


def latency(engine: Engine, sub_id: str, now: datetime) -> list[Latency]:
    """The 50th, 90th and 99th percentile attempt durations (ms) of each of the last 24 hours."""
    hours = _hours(now)
    a = attempts.c
    with reading(engine) as conn:
        rows = conn.execute(
            sa.select(a.attempted_at, a.duration_ms)
            .join(deliveries, deliveries.c.id == a.delivery_id)
            .where(deliveries.c.subscription_id == sub_id, a.attempted_at >= hours[0])
            .order_by(a.attempted_at.desc())
            .limit(MAX_ROWS)
        ).all()
    durations: dict[datetime, list[int]] = {hour: [] for hour in hours}
    for at, duration in rows:
        hour = at.replace(minute=0, second=0, microsecond=0)
        if hour in durations:
            durations[hour].append(duration)
    out = []
    for hour in hours:
        values = sorted(durations[hour])
        out.append(
            Latency(
                hour,
                len(values),
                percentile(values, 0.5),
                percentile(values, 0.9),
                percentile(values, 0.99),
            )
        )
    return out
