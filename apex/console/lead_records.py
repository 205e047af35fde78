"""What the console shows of one lead beyond its API shape: its touchpoints, its payments, deals
and refunds, and the leads merged into it, read from the pipeline's tables."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from apex.db import reading
from apex.pipeline.tables import conversions, lead_aliases, touchpoints

LIMIT = 500  # rows of each kind a page shows at most (newest first)


@dataclass(frozen=True)
class Touchpoint:
    source: str
    campaign: str | None
    at: datetime


@dataclass(frozen=True)
class Conversion:
    key: str
    kind: str  # payment | deal | refund
    amount: int  # minor units; a refund is negative
    currency: str
    at: datetime


@dataclass(frozen=True)
class Merge:
    lead_id: str
    at: datetime


@dataclass(frozen=True)
class History:
    touchpoints: list[Touchpoint]
    conversions: list[Conversion]
    merges: list[Merge]


def history(engine: Engine, lead_id: str) -> History:
    t, c, a = touchpoints.c, conversions.c, lead_aliases.c
    with reading(engine) as conn:
        touches = conn.execute(
            sa.select(t.source, t.campaign, t.occurred_at)
            .where(t.lead_id == lead_id)
            .order_by(t.occurred_at.desc())
            .limit(LIMIT)
        ).all()
        sales = conn.execute(
            sa.select(c.key, c.kind, c.amount, c.currency, c.occurred_at)
            .where(c.lead_id == lead_id)
            .order_by(c.occurred_at.desc())
            .limit(LIMIT)
        ).all()
        merges = conn.execute(
            sa.select(a.alias_id, a.merged_at)
            .where(a.lead_id == lead_id)
            .order_by(a.merged_at.desc())
            .limit(LIMIT)
        ).all()
    return History(
        [Touchpoint(*row) for row in touches],
        [Conversion(*row) for row in sales],
        [Merge(*row) for row in merges],
    )
