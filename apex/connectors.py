"""Connectors: each inbound source is one. A processed batch adds to its counts; at most once per
interval the counts are reported as connector.synced; a batch that fails for good fires
connector.error."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from apex.db import insert, reading
from apex.events import publish
from apex.models import connector_stats


@dataclass(frozen=True)
class Counts:
    records: int
    leads_created: int
    leads_updated: int


def count(conn: Connection, source: str, counts: Counts) -> None:
    """Add one processed batch's counts to the source's unreported totals, in the caller's
    transaction (the one that processed it: counted once, with it)."""
    totals = {
        "records": counts.records,
        "leads_created": counts.leads_created,
        "leads_updated": counts.leads_updated,
    }
    upsert = insert(conn, connector_stats).values(source=source, batches=1, **totals)
    conn.execute(
        upsert.on_conflict_do_update(
            index_elements=["source"],
            set_={
                **{name: connector_stats.c[name] + value for name, value in totals.items()},
                "batches": connector_stats.c.batches + 1,
            },
        )
    )


def report_due(engine: Engine, now: datetime, interval: timedelta) -> list[str]:
    """Publish connector.synced for every source with unreported batches whose last report is
    at least `interval` old, resetting its counts. Returns the delivery ids to enqueue."""
    reports: list[tuple[str, dict[str, Any], str]] = []
    due = sa.select(connector_stats).where(
        connector_stats.c.batches > 0,
        sa.or_(
            connector_stats.c.last_synced_at.is_(None),
            connector_stats.c.last_synced_at <= now - interval,
        ),
    )
    with reading(engine) as conn:  # after every event: mostly nothing is due, and no writer waits
        if not conn.execute(due.limit(1)).first():
            return []
    with engine.begin() as conn:
        rows = conn.execute(due).all()
        for row in rows:
            taken = conn.execute(
                connector_stats.update()
                .where(connector_stats.c.source == row.source)
                .where(connector_stats.c.batches == row.batches)
                .values(records=0, leads_created=0, leads_updated=0, batches=0, last_synced_at=now)
            ).rowcount
            if not taken:
                continue  # counted again meanwhile; the next report includes it
            data = {
                "connector": row.source,
                "batches": row.batches,
                "records": row.records,
                "leadsCreated": row.leads_created,
                "leadsUpdated": row.leads_updated,
                "syncedAt": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
            reports.append((row.source, data, f"evt_sync_{row.source}_{now.timestamp():.0f}"))
    return [
        delivery
        for _, data, event_id in reports
        for delivery in publish(engine, "connector.synced", data, event_id).pending
    ]


def report_error(engine: Engine, source: str, inbound_id: str, reason: str) -> list[str]:
    """Publish connector.error for an inbound event that failed for good (once per event)."""
    data = {"connector": source, "inboundEventId": inbound_id, "reason": reason[:500]}
    return publish(engine, "connector.error", data, f"evt_error_{inbound_id}").pending
