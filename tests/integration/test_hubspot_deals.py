"""HubSpot deals at the database: concurrent workers writing different properties of one deal,
and association labels, on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
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
from apex.pipeline.records import HUBSPOT_DEAL, Identity
from apex.pipeline.tables import conversions
from tests.platforms import JANE, PORTAL, hubspot, hubspot_property

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
            conn.rollback()  # pg_stat_activity is a snapshot per transaction: take a new one
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


# --- association labels: linked while any label remains --------------------------------------

LABELS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "two_labels": (
        {"associationTypeId": 3},
        {"associationTypeId": 41, "associationCategory": "USER_DEFINED"},
    ),
    "primary_flag": (
        {
            "associationTypeId": None,
            "associationCategory": None,
            "associationType": "DEAL_TO_CONTACT",
        },
        {
            "associationTypeId": None,
            "associationCategory": None,
            "associationType": "DEAL_TO_CONTACT",
            "isPrimaryAssociation": True,
        },
    ),
}


def won_deal(engine: Engine, deal: int) -> None:
    for name, value in (("amount", "100"), ("dealstage", "closedwon")):
        process(
            engine,
            hubspot("deal.propertyChange", deal, AT_MS, propertyName=name, propertyValue=value),
        )


def credited(engine: Engine, deal: int) -> list[tuple[str | None, int]]:
    key = f"hubspot:deal:portal-{PORTAL}:{deal}"
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(conversions.c.lead_id, conversions.c.amount).where(conversions.c.key == key)
        )
        return [(row.lead_id, row.amount) for row in rows]


@pytest.mark.parametrize("labels", list(LABELS), ids=list(LABELS))
def test_a_deal_stays_credited_while_any_association_with_its_contact_remains(
    engine: Engine, labels: str
) -> None:
    lead_id = jane(engine)
    first, second = LABELS[labels]

    def change(deal: int, label: dict[str, Any], at_ms: int, removed: bool) -> dict[str, Any]:
        return association(at_ms, removed, objectId=deal, fromObjectId=deal, **label)

    # Each order of: add the first, add the second, remove the first, on a deal of its own.
    for number, order in enumerate(itertools.permutations(range(3))):
        deal = DEAL + number
        won_deal(engine, deal)
        changes = [
            change(deal, first, AT_MS + 1000, removed=False),
            change(deal, second, AT_MS + 2000, removed=False),
            change(deal, first, AT_MS + 3000, removed=True),
        ]
        for index in order:
            process(engine, changes[index])
        assert credited(engine, deal) == [(lead_id, 10000)], order
        process(engine, change(deal, second, AT_MS + 4000, removed=True))
        assert credited(engine, deal) == [], order
        # An older addition arriving late changes nothing.
        process(engine, change(deal, second, AT_MS + 2500, removed=False))
        assert credited(engine, deal) == [], order


def test_a_removal_clears_a_link_stored_before_labels_were_kept(engine: Engine) -> None:
    lead_id = jane(engine)
    won_deal(engine, DEAL)
    deal = Identity(HUBSPOT_DEAL, f"portal-{PORTAL}:{DEAL}")
    at = datetime.fromtimestamp((AT_MS + 1000) / 1000, UTC)
    with engine.begin() as conn:  # as the version before labels stored an association
        identity.record_properties(conn, deal, [(f"contact:portal-{PORTAL}:{CONTACT}", "1")], at)
    process(engine, deal_property(AT_MS + 1500, "amount", "100"))
    assert credited(engine, DEAL) == [(lead_id, 10000)]

    process(engine, association(AT_MS + 2000, removed=True))

    assert credited(engine, DEAL) == []


SIDES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "legacy": (
        {"associationType": "DEAL_TO_CONTACT"},
        {"associationType": "CONTACT_TO_DEAL"},
    ),
    "generic": ({"associationTypeId": 3}, {"associationTypeId": 4}),
}


@pytest.mark.parametrize("shape", list(SIDES))
def test_an_association_added_on_one_side_and_removed_on_the_other_is_gone(
    engine: Engine, shape: str
) -> None:
    lead_id = jane(engine)
    won_deal(engine, DEAL)
    deal_side, contact_side = SIDES[shape]
    added = association(AT_MS + 1000, removed=False)
    removed = dict(
        association(AT_MS + 2000, removed=True),
        fromObjectTypeId="0-1",
        toObjectTypeId="0-3",
        fromObjectId=CONTACT,
        toObjectId=DEAL,
    )
    if shape == "legacy":
        generic = ("fromObjectTypeId", "toObjectTypeId", "associationCategory", "associationTypeId")
        added = {key: value for key, value in added.items() if key not in generic}
        removed = {key: value for key, value in removed.items() if key not in generic}

    process(engine, added | deal_side)
    assert credited(engine, DEAL) == [(lead_id, 10000)]

    process(engine, removed | contact_side)
    assert credited(engine, DEAL) == []
