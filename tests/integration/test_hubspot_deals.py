"""HubSpot deals at the database: concurrent workers writing different properties of one deal,
and association labels, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from apex.db import make_engine
from apex.pipeline import identity
from apex.pipeline import run as pipeline
from apex.pipeline.extract import extract
from apex.pipeline.tables import conversions
from tests.platforms import JANE, hubspot, hubspot_property

pytestmark = pytest.mark.postgres

RECEIVED = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
DEAL = 31887406213
CONTACT = 101
AT_MS = 1764252000000


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def process(engine: Engine, payload: dict[str, Any]) -> None:
    pipeline.run(engine, "hubspot", payload["subscriptionType"], payload, {}, RECEIVED)


def apply(conn: Connection, payload: dict[str, Any]) -> None:
    """Apply one HubSpot event in the caller's transaction, as run() does in its own."""
    records = extract("hubspot", payload["subscriptionType"], payload, {}, RECEIVED)
    key = pipeline.run_key("hubspot", payload["subscriptionType"], payload)
    pipeline._process(conn, key, "hubspot", payload["subscriptionType"], records, RECEIVED)


def deal_property(at_ms: int, name: str, value: str) -> dict[str, Any]:
    return hubspot("deal.propertyChange", DEAL, at_ms, propertyName=name, propertyValue=value)


def association(at_ms: int, removed: bool, **fields: Any) -> dict[str, Any]:
    """A generic deal → contact association change (HUBSPOT_DEFINED label 3 unless overridden)."""
    shape = {
        "fromObjectTypeId": "0-3",
        "toObjectTypeId": "0-1",
        "fromObjectId": DEAL,
        "toObjectId": CONTACT,
        "associationRemoved": removed,
        "associationCategory": "HUBSPOT_DEFINED",
        "associationTypeId": 3,
        "isPrimaryAssociation": False,
        **fields,
    }
    return hubspot("object.associationChange", DEAL, at_ms, **shape)


def deal_revenue(engine: Engine) -> list[tuple[str | None, int]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(conversions.c.lead_id, conversions.c.amount).where(
                conversions.c.kind == "deal"
            )
        )
        return [(row.lead_id, row.amount) for row in rows]


def jane(engine: Engine) -> str:
    process(engine, hubspot_property(CONTACT, AT_MS - 1000, "email", JANE))
    lead = identity.page(engine, None, None, 10, None)[0][0]
    return lead.id


def waiting_for_a_lock(engine: Engine, other: threading.Thread) -> None:
    """Return once `other` finished or, on PostgreSQL, some session waits for a lock (bounded)."""
    if engine.dialect.name != "postgresql":
        return  # SQLite writers begin IMMEDIATE: the second one waits for the first's commit
    with engine.connect() as conn:
        for _ in range(2000):
            waiting = conn.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
            if waiting or not other.is_alive():
                return
            other.join(0.01)
    raise AssertionError("the second worker neither finished nor waited for a lock")


@pytest.mark.parametrize("stage_first", [True, False])
def test_deal_won_in_one_worker_and_associated_in_another_counts_once(
    engine: Engine, stage_first: bool
) -> None:
    lead_id = jane(engine)
    process(engine, deal_property(AT_MS, "amount", "100"))
    won = deal_property(AT_MS + 1000, "dealstage", "closedwon")
    associated = association(AT_MS + 1000, removed=False)
    first, second = (won, associated) if stage_first else (associated, won)
    # Worker A writes one and has not committed when worker B writes the other: B must read
    # A's write (or A B's), or the won deal counts nothing.
    with engine.begin() as a:
        apply(a, first)
        failures: list[BaseException] = []

        def worker_b() -> None:
            try:
                with engine.begin() as b:
                    apply(b, second)
            except BaseException as exc:  # reported in the test's thread
                failures.append(exc)

        other = threading.Thread(target=worker_b)
        other.start()
        waiting_for_a_lock(engine, other)
    other.join(60)
    assert not other.is_alive() and not failures
    assert deal_revenue(engine) == [(lead_id, 10000)]
