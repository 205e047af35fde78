"""HubSpot's documented deliveries through the real door and worker, and the won-deal scenarios
in any order, on SQLite and PostgreSQL.

The corpus (tests/data/hubspot_*.json) holds HubSpot's published examples and one element per
documented subscription type: each batch is signed with v3, POSTed, and every element must be
stored and end `processed` or `ignored` with a reason, never `failed` or still `queued`.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.engine import Engine

from apex.db import make_engine
from apex.inbound import store
from apex.pipeline import attribution, identity
from apex.pipeline import run as pipeline
from apex.pipeline.tables import conversions, leads
from config import Settings
from tests.platforms import HUBSPOT_SECRET, body, hubspot_v3_headers
from workers import inbound as inbound_jobs
from workers.context import WorkerContext

pytestmark = pytest.mark.postgres

DATA = Path(__file__).parents[1] / "data"
CORPUS_FILES = ("hubspot_docs_examples.json", "hubspot_subscription_types.json")
BATCHES = [
    (name, batch)
    for name in CORPUS_FILES
    for batch in json.loads((DATA / name).read_text())["batches"]
]
# The subscription types HubSpot documents (webhooks API and generic webhooks): each must be in
# the corpus at least once.
DOCUMENTED = {
    f"{obj}.{action}"
    for obj in ("contact", "company", "deal", "ticket", "product", "line_item")
    for action in ("creation", "deletion", "propertyChange", "merge", "restore")
} | {
    "contact.associationChange",
    "company.associationChange",
    "deal.associationChange",
    "ticket.associationChange",
    "line_item.associationChange",
    "contact.privacyDeletion",
    "conversation.creation",
    "conversation.deletion",
    "conversation.privacyDeletion",
    "conversation.propertyChange",
    "conversation.newMessage",
    "object.creation",
    "object.deletion",
    "object.propertyChange",
    "object.merge",
    "object.restore",
    "object.associationChange",
}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return replace(settings, hubspot_client_secrets=(HUBSPOT_SECRET,))


def element_type(element: dict[str, Any]) -> str:
    return str(element.get("subscriptionType") or element.get("eventType"))


def test_the_corpus_holds_every_documented_subscription_type() -> None:
    present = {element_type(e) for _, batch in BATCHES for e in batch["body"]}
    assert DOCUMENTED <= present, DOCUMENTED - present
    assert all(batch.get("source") for _, batch in BATCHES)


@pytest.mark.parametrize(
    "batch", [batch for _, batch in BATCHES], ids=[f"{f}:{b['name']}" for f, b in BATCHES]
)
def test_every_documented_delivery_is_accepted_and_ends_processed_or_ignored(
    client: FlaskClient, app: Flask, worker_context: WorkerContext, batch: dict[str, Any]
) -> None:
    data = body(batch["body"])

    response = client.post("/api/webhooks/hubspot", data=data, headers=hubspot_v3_headers(data))

    assert response.status_code == 202, response.json
    engine = app.extensions["apex"].engine
    rows, _ = store.page(engine, None, None, 250, None)
    assert sorted(row.payload["eventId"] for row in rows) == sorted(
        element["eventId"] for element in batch["body"]
    )
    for row in rows:
        if row.status == "queued":
            inbound_jobs.process_inbound(row.id)
    ended = {row.id: store.get(engine, row.id) for row in rows}
    statuses = Counter(row.status for row in ended.values())
    assert set(statuses) <= {"processed", "ignored"}, statuses
    for row in ended.values():
        assert row.error is None, (row.type, row.error)
        if row.status == "ignored":
            assert row.reason, row.type


# --- which elements Apex uses and which it ignores --------------------------------------------

USED = {
    "contact.creation",
    "contact.deletion",
    "contact.propertyChange",
    "contact.merge",
    "contact.restore",
    "contact.associationChange",
    "contact.privacyDeletion",
    "company.creation",
    "company.deletion",
    "company.propertyChange",
    "company.merge",
    "company.restore",
    "company.associationChange",
    "deal.creation",
    "deal.deletion",
    "deal.propertyChange",
    "deal.merge",
    "deal.restore",
    "deal.associationChange",
}


def test_the_legacy_types_apex_tracks_are_processed_and_the_others_ignored(
    client: FlaskClient, app: Flask, worker_context: WorkerContext
) -> None:
    (batch,) = [b for _, b in BATCHES if b["name"] == "legacy_subscription_types"]
    data = body(batch["body"])
    assert client.post(
        "/api/webhooks/hubspot", data=data, headers=hubspot_v3_headers(data)
    ).status_code == (202)
    engine = app.extensions["apex"].engine
    rows, _ = store.page(engine, None, None, 250, None)
    for row in rows:
        inbound_jobs.process_inbound(row.id)

    ended = {store.get(engine, row.id).type: store.get(engine, row.id) for row in rows}

    assert {t for t, row in ended.items() if row.status == "processed"} == USED
    ignored = {t: row.reason for t, row in ended.items() if row.status == "ignored"}
    assert set(ignored) == set(ended) - USED
    assert "tracks contacts, companies and deals" in (ignored["ticket.creation"] or "")


# --- the won deal, whatever the order ---------------------------------------------------------

RECEIVED = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
PORTAL = 48120977
CONTACT, OTHER, DEAL, COMPANY = 90210554101, 90210559999, 31887406213, 7700112233
JANE = "jane.doe@acme.io"


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def event(subscription: str, object_id: int | None, at_ms: int, **fields: Any) -> dict[str, Any]:
    element = {
        "eventId": at_ms % 1_000_000 + len(subscription),
        "subscriptionId": 2841000 + len(subscription),
        "portalId": PORTAL,
        "appId": 3310452,
        "occurredAt": at_ms,
        "subscriptionType": subscription,
        "attemptNumber": 0,
        "objectId": object_id,
        "changeSource": "CRM_UI",
        **fields,
    }
    return {name: value for name, value in element.items() if value is not None}


def association(
    kind: str, from_id: int, to_id: int, at_ms: int, removed: bool = False
) -> dict[str, Any]:
    side = kind.split("_TO_")[0].lower()
    return event(
        f"{side}.associationChange",
        None,
        at_ms,
        associationType=kind,
        fromObjectId=from_id,
        toObjectId=to_id,
        associationRemoved=removed,
        isPrimaryAssociation=False,
    )


def won_deal() -> list[dict[str, Any]]:
    """Contact created, its email, the deal created, its amount, associated, won."""
    return [
        event("contact.creation", CONTACT, 1764165600000, changeFlag="CREATED"),
        event(
            "contact.propertyChange",
            CONTACT,
            1764165600100,
            propertyName="email",
            propertyValue="Jane.Doe@acme.io",
        ),
        event("deal.creation", DEAL, 1764252000000, changeFlag="CREATED"),
        event(
            "deal.propertyChange", DEAL, 1764252100000, propertyName="amount", propertyValue="12000"
        ),
        association("DEAL_TO_CONTACT", DEAL, CONTACT, 1764252200000),
        event(
            "deal.propertyChange",
            DEAL,
            1764252360000,
            propertyName="dealstage",
            propertyValue="closedwon",
        ),
    ]


def process(engine: Engine, payloads: list[dict[str, Any]]) -> list[pipeline.RunResult]:
    return [
        pipeline.run(engine, "hubspot", payload["subscriptionType"], payload, {}, RECEIVED)
        for payload in payloads
    ]


def the_leads(engine: Engine) -> list[identity.Lead]:
    with engine.connect() as conn:
        ids = list(conn.execute(sa.select(leads.c.id)).scalars())
        return list(identity.load(conn, ids).values())


def total_revenue(engine: Engine) -> int:
    report = attribution.report(engine, "first_touch", None, None)
    return sum(credit.revenue for credit in report.by_source)


def with_retries(payloads: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every event twice, and a third time as HubSpot's retry (attemptNumber 1)."""
    return [p for payload in payloads for p in (payload, payload, dict(payload, attemptNumber=1))]


ORDERS = {
    "original": won_deal(),
    "reversed": won_deal()[::-1],
    **{f"shuffled_{seed}": random.Random(seed).sample(won_deal(), 6) for seed in (1, 2, 3)},
    "association_first": [won_deal()[i] for i in (4, 5, 3, 2, 1, 0)],
    "email_last": [won_deal()[i] for i in (2, 3, 5, 4, 0, 1)],
    "with_duplicates": with_retries(won_deal()),
    "reversed_with_duplicates": with_retries(won_deal())[::-1],
}


@pytest.mark.parametrize("payloads", list(ORDERS.values()), ids=list(ORDERS))
def test_a_won_deal_is_one_leads_revenue_counted_once_in_any_order(
    engine: Engine, payloads: list[dict[str, Any]]
) -> None:
    process(engine, payloads)

    (lead,) = the_leads(engine)
    assert lead.email == JANE
    assert {i.kind for i in lead.identities} == {"email", "hubspot"}
    assert (lead.summary.revenue, lead.summary.currency, lead.summary.conversions) == (
        1_200_000,
        "usd",
        1,
    )
    assert total_revenue(engine) == 1_200_000


def test_both_sides_of_one_association_credit_the_deal_once(engine: Engine) -> None:
    both = [*won_deal(), association("CONTACT_TO_DEAL", CONTACT, DEAL, 1764252200000)]

    process(engine, both)

    (lead,) = the_leads(engine)
    assert (lead.summary.revenue, lead.summary.conversions) == (1_200_000, 1)


def test_the_generic_shape_credits_a_won_deal_too(engine: Engine) -> None:
    generic = [
        event("object.creation", CONTACT, 1764165600000, objectTypeId="0-1"),
        event(
            "object.propertyChange",
            CONTACT,
            1764165600100,
            objectTypeId="0-1",
            propertyName="email",
            propertyValue=JANE,
        ),
        event(
            "object.propertyChange",
            DEAL,
            1764252100000,
            objectTypeId="0-3",
            propertyName="amount",
            propertyValue="99.50",
        ),
        event(
            "object.propertyChange",
            DEAL,
            1764252360000,
            objectTypeId="0-3",
            propertyName="dealstage",
            propertyValue="closedwon",
        ),
        event(
            "object.associationChange",
            None,
            1764252200000,
            associationCategory="HUBSPOT_DEFINED",
            associationTypeId=4,
            fromObjectTypeId="0-1",
            fromObjectId=CONTACT,
            toObjectTypeId="0-3",
            toObjectId=DEAL,
            associationRemoved=False,
            isPrimaryAssociation=True,
        ),
    ]

    process(engine, generic[::-1])

    (lead,) = the_leads(engine)
    assert (lead.email, lead.summary.revenue, lead.summary.conversions) == (JANE, 9950, 1)


def test_a_deal_of_two_contacts_counts_once_for_the_first_associated(engine: Engine) -> None:
    second = association("CONTACT_TO_DEAL", OTHER, DEAL, 1764252300000)
    other_email = event(
        "contact.propertyChange",
        OTHER,
        1764165600200,
        propertyName="email",
        propertyValue="sam@acme.io",
    )

    process(engine, [second, other_email, *won_deal()[::-1]])

    revenue = {lead.email: lead.summary.revenue for lead in the_leads(engine)}
    assert revenue == {JANE: 1_200_000, "sam@acme.io": 0}
    assert total_revenue(engine) == 1_200_000


def test_a_second_contact_with_the_same_email_joins_the_lead_and_revenue_stays_once(
    engine: Engine,
) -> None:
    twin_email = event(
        "contact.propertyChange", OTHER, 1764165600300, propertyName="email", propertyValue=JANE
    )

    process(engine, [*won_deal(), twin_email])

    (lead,) = the_leads(engine)
    assert {i.value for i in lead.identities if i.kind == "hubspot"} == {
        f"portal-{PORTAL}:{CONTACT}",
        f"portal-{PORTAL}:{OTHER}",
    }
    assert (lead.summary.revenue, lead.summary.conversions) == (1_200_000, 1)


# Removing the association un-credits the deal: Apex credits a deal to the contacts associated
# with it now. A won deal no contact is associated with is no lead's conversion (and so is not in
# the attribution totals) until one is associated again; associated with another contact, it is
# that contact's. Whichever order the add and the removal arrive in, the newer one holds.

REMOVED = association("DEAL_TO_CONTACT", DEAL, CONTACT, 1764252500000, removed=True)


@pytest.mark.parametrize(
    "payloads",
    [[*won_deal(), REMOVED], [REMOVED, *won_deal()], with_retries([REMOVED, *won_deal()[::-1]])],
    ids=["removed_last", "removal_arrives_first", "shuffled_with_duplicates"],
)
def test_a_deal_whose_association_was_removed_is_no_longer_credited(
    engine: Engine, payloads: list[dict[str, Any]]
) -> None:
    process(engine, payloads)

    (lead,) = the_leads(engine)
    assert (lead.summary.revenue, lead.summary.conversions) == (0, 0)
    assert total_revenue(engine) == 0
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(conversions)).scalar() == 0


def test_a_deal_moved_to_another_contact_is_credited_to_that_contact_only(engine: Engine) -> None:
    moved = [
        *won_deal(),
        REMOVED,
        event(
            "contact.propertyChange",
            OTHER,
            1764165600200,
            propertyName="email",
            propertyValue="sam@acme.io",
        ),
        association("DEAL_TO_CONTACT", DEAL, OTHER, 1764252600000),
    ]

    process(engine, moved[::-1])

    revenue = {lead.email: lead.summary.revenue for lead in the_leads(engine)}
    assert revenue == {JANE: 0, "sam@acme.io": 1_200_000}
    assert total_revenue(engine) == 1_200_000


def test_a_reassociated_deal_is_credited_again(engine: Engine) -> None:
    again = association("DEAL_TO_CONTACT", DEAL, CONTACT, 1764252900000)

    process(engine, [again, REMOVED, *won_deal()])

    (lead,) = the_leads(engine)
    assert (lead.summary.revenue, lead.summary.conversions) == (1_200_000, 1)


def test_a_deleted_deal_is_no_longer_revenue_and_a_restored_one_is_again(engine: Engine) -> None:
    deleted = event("deal.deletion", DEAL, 1764252700000)
    process(engine, [*won_deal(), deleted])
    assert the_leads(engine)[0].summary.revenue == 0

    process(engine, [event("deal.restore", DEAL, 1764252800000)])

    assert the_leads(engine)[0].summary.revenue == 1_200_000


# --- companies --------------------------------------------------------------------------------

COMPANY_NAME = event(
    "company.propertyChange", COMPANY, 1764165700000, propertyName="name", propertyValue="Acme Inc"
)
WORKS_AT = association("CONTACT_TO_COMPANY", CONTACT, COMPANY, 1764165800000)


@pytest.mark.parametrize(
    "payloads",
    [
        [won_deal()[0], COMPANY_NAME, WORKS_AT],
        [WORKS_AT, COMPANY_NAME, won_deal()[0]],
        [COMPANY_NAME, WORKS_AT, won_deal()[1]],
    ],
    ids=["name_first", "association_first", "association_before_the_contact"],
)
def test_a_contact_associated_with_a_company_shows_its_name(
    engine: Engine, payloads: list[dict[str, Any]]
) -> None:
    process(engine, payloads)

    (lead,) = the_leads(engine)
    assert lead.company == "Acme Inc"


def test_a_company_renamed_or_unassociated_updates_its_contacts_leads(engine: Engine) -> None:
    process(engine, [won_deal()[0], WORKS_AT, COMPANY_NAME])
    renamed = dict(COMPANY_NAME, occurredAt=1764166000000, propertyValue="Acme Group")

    (result,) = process(engine, [renamed])
    assert the_leads(engine)[0].company == "Acme Group"
    assert result.leads_updated == 1  # lead.updated is published for the contact's lead

    unlinked = association("COMPANY_TO_CONTACT", COMPANY, CONTACT, 1764166100000, True)
    (result,) = process(engine, [unlinked])
    assert the_leads(engine)[0].company is None
    assert result.leads_updated == 1


def test_a_deleted_company_no_longer_names_its_contacts(engine: Engine) -> None:
    process(engine, [won_deal()[0], WORKS_AT, COMPANY_NAME])

    (result,) = process(engine, [event("company.deletion", COMPANY, 1764166000000)])

    assert the_leads(engine)[0].company is None
    assert result.leads_updated == 1


# --- contacts: merges, deletions, restores ----------------------------------------------------


def test_merged_contacts_are_one_lead_with_the_deal(engine: Engine) -> None:
    other_deal = association("DEAL_TO_CONTACT", DEAL, OTHER, 1764252200000)
    merge = event(
        "contact.merge",
        CONTACT,
        1764338400000,
        primaryObjectId=CONTACT,
        mergedObjectIds=[OTHER],
        newObjectId=CONTACT,
    )
    deal_events = [e for e in won_deal() if e["subscriptionType"].startswith("deal.")]
    payloads = [
        *won_deal()[:2],
        other_deal,
        *[d for d in deal_events if "associationType" not in d],
    ]

    process(engine, [merge, *payloads[::-1]])

    (lead,) = the_leads(engine)
    assert (lead.email, lead.summary.revenue) == (JANE, 1_200_000)


def test_a_privacy_deleted_contact_is_erased_with_its_won_deal(engine: Engine) -> None:
    process(engine, won_deal())
    assert total_revenue(engine) == 1_200_000

    process(engine, [event("contact.privacyDeletion", CONTACT, 1764338460000)])

    assert not the_leads(engine)
    assert total_revenue(engine) == 0


@pytest.mark.parametrize("restored", [True, False], ids=["restored", "still_deleted"])
def test_a_restored_contact_takes_news_older_than_its_deletion_again(
    engine: Engine, restored: bool
) -> None:
    creation, email = won_deal()[:2]  # the email is dated before the deletion
    process(engine, [creation, event("contact.deletion", CONTACT, 1764338460000)])
    if restored:
        process(engine, [event("contact.restore", CONTACT, 1764338470000)])

    process(engine, [email])

    emails = [lead.email for lead in the_leads(engine)]
    assert (JANE in emails) is restored
