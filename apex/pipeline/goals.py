"""Goals: targets on leads, revenue or conversions (optionally of one source), their progress,
and deciding, exactly once, that one was reached."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from apex.db import reading, utcnow
from apex.errors import NotFoundError
from apex.ids import new_id
from apex.pipeline.tables import conversions, goals, leads

METRICS = ("leads", "revenue", "conversions")


@dataclass(frozen=True)
class Goal:
    """A goal and its progress: `value` is the metric now (in goal.reached: when reached).

    `source` limits it to leads whose first touch came from that source. Revenue is net of
    refunds, in minor units, summed over currencies.
    """

    id: str
    name: str
    metric: str
    target: int
    source: str | None
    created_at: datetime
    reached_at: datetime | None
    value: int


def create(engine: Engine, name: str, metric: str, target: int, source: str | None) -> Goal:
    """Create a goal. It is evaluated each time the pipeline processes an event. Raises
    ValueError for an unknown metric."""
    if metric not in METRICS:
        raise ValueError(f"unknown goal metric {metric!r}")
    goal_id, now = new_id("goal"), utcnow()
    with engine.begin() as conn:
        conn.execute(
            goals.insert().values(
                id=goal_id, name=name, metric=metric, target=target, source=source, created_at=now
            )
        )
    return get(engine, goal_id)


def list_all(engine: Engine) -> list[Goal]:
    """Every goal with its progress, oldest first."""
    with reading(engine) as conn:
        rows = conn.execute(sa.select(goals).order_by(goals.c.created_at, goals.c.id)).all()
        return [_goal(conn, row) for row in rows]


def get(engine: Engine, goal_id: str) -> Goal:
    """One goal with its progress. Raises NotFoundError."""
    with reading(engine) as conn:
        row = conn.execute(sa.select(goals).where(goals.c.id == goal_id)).one_or_none()
        if row is None:
            raise NotFoundError(f"No goal {goal_id}")
        return _goal(conn, row)


def delete(engine: Engine, goal_id: str) -> None:
    """Delete a goal. Raises NotFoundError."""
    with engine.begin() as conn:
        deleted = conn.execute(goals.delete().where(goals.c.id == goal_id))
    if deleted.rowcount != 1:
        raise NotFoundError(f"No goal {goal_id}")


def progress(conn: Connection, metric: str, source: str | None) -> int:
    """The current value of `metric`, for leads whose first touch is `source` if given."""
    if metric == "leads":
        query = sa.select(sa.func.count()).select_from(leads)
        if source is not None:
            query = query.where(leads.c.source == source)
        return int(conn.execute(query).scalar_one())
    if metric == "revenue":
        measure: sa.ColumnElement[Any] = sa.func.coalesce(sa.func.sum(conversions.c.amount), 0)
        query = sa.select(measure)
    elif metric == "conversions":
        query = sa.select(sa.func.count()).where(conversions.c.kind != "refund")
    else:
        raise ValueError(f"unknown goal metric {metric!r}")
    if source is not None:
        query = query.select_from(
            conversions.join(leads, leads.c.id == conversions.c.lead_id)
        ).where(leads.c.source == source)
    else:
        query = query.select_from(conversions)
    return int(conn.execute(query).scalar_one())


def evaluate(conn: Connection, now: datetime) -> list[Goal]:
    """The goals whose target is reached by the data this transaction sees, each returned by
    exactly one call ever: unreached goals are locked (PostgreSQL; SQLite serialises writers),
    so a concurrent worker waits and then sees this one's data, and the goal is marked with a
    conditional UPDATE … WHERE reached_at IS NULL."""
    rows = conn.execute(
        sa.select(goals).where(goals.c.reached_at.is_(None)).order_by(goals.c.id).with_for_update()
    ).all()
    reached: list[Goal] = []
    for row in rows:
        value = progress(conn, row.metric, row.source)
        if value < row.target:
            continue
        marked = conn.execute(
            goals.update()
            .where(goals.c.id == row.id, goals.c.reached_at.is_(None))
            .values(reached_at=now, reached_value=value)
        )
        if marked.rowcount == 1:
            reached.append(_as_goal(row, now, value))
    return reached


def reached_data(goal: Goal) -> dict[str, Any]:
    """The data of the goal.reached event."""
    return {
        "goalId": goal.id,
        "name": goal.name,
        "metric": goal.metric,
        "target": goal.target,
        "value": goal.value,
        "source": goal.source,
    }


def _goal(conn: Connection, row: sa.Row[Any]) -> Goal:
    return _as_goal(row, row.reached_at, progress(conn, row.metric, row.source))


def _as_goal(row: sa.Row[Any], reached_at: datetime | None, value: int) -> Goal:
    return Goal(
        id=row.id,
        name=row.name,
        metric=row.metric,
        target=row.target,
        source=row.source,
        created_at=row.created_at,
        reached_at=reached_at,
        value=value,
    )
