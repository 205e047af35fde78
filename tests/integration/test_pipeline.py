"""The pipeline at the database: run() on stored-event payloads, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from apex import subscriptions
from apex.db import make_engine
from apex.models import deliveries, events
from apex.pipeline import attribution, goals, identity
from apex.pipeline import run as pipeline
from apex.pipeline.records import Contact, Identity, Record
from apex.pipeline.tables import (
    conversions,
    lead_aliases,
    lead_identities,
    leads,
    object_properties,
    pipeline_runs,
    touchpoints,
)
from apex.secretbox import SecretBox, generate_key
from tests.platforms import (
    JANE,
    PORTAL,
    charge,
    checkout,
    hubspot,
    hubspot_property,
    intent_succeeded,
    star,
    stripe,
)

pytestmark = pytest.mark.postgres

RECEIVED = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def process(
    engine: Engine,
    source: str,
    payload: dict[str, Any],
    enrich: pipeline.Enrich | None = None,
) -> pipeline.RunResult:
    event_type = {
        "hubspot": lambda: payload["subscriptionType"],
        "stripe": lambda: payload["type"],
        "github": lambda: "star",
    }[source]()
    return pipeline.run(engine, source, event_type, payload, {}, RECEIVED, enrich=enrich)


def jane_in_hubspot(engine: Engine, contact: int = 101, at_ms: int = 1764165600000) -> None:
    """A HubSpot form fill: the contact, its email and name, its UTM source and campaign."""
    for payload in (
        hubspot("contact.creation", contact, at_ms),
        hubspot_property(contact, at_ms, "email", "Jane.Doe@acme.io"),
        hubspot_property(contact, at_ms + 1, "firstname", "Jane"),
        hubspot_property(contact, at_ms + 1, "lastname", "Doe"),
        hubspot_property(contact, at_ms + 2, "utm_source", "google"),
        hubspot_property(contact, at_ms + 2, "utm_campaign", "spring"),
    ):
        process(engine, "hubspot", payload)


def published(engine: Engine, event_type: str | None = None) -> list[dict[str, Any]]:
    query = sa.select(events.c.id, events.c.type, events.c.data).order_by(events.c.created_at)
    if event_type:
        query = query.where(events.c.type == event_type)
    with engine.connect() as conn:
        return [{"id": r.id, "type": r.type, "data": r.data} for r in conn.execute(query)]


def all_leads(engine: Engine) -> list[identity.Lead]:
    return identity.page(engine, None, None, 100, None)[0]


def kinds(lead: identity.Lead) -> list[str]:
    return [i.kind for i in lead.identities]


# --- the one-person-three-sources story ------------------------------------------------------


def test_one_person_through_hubspot_stripe_and_github_is_one_lead(engine: Engine) -> None:
    jane_in_hubspot(engine)
    for event_type, obj in (
        ("checkout.session.completed", checkout()),
        ("payment_intent.succeeded", intent_succeeded()),
        ("charge.succeeded", charge()),
    ):
        process(engine, "stripe", stripe(event_type, obj))
    process(engine, "github", star())

    [lead] = all_leads(engine)
    assert kinds(lead) == ["email", "hubspot", "stripe", "github"]
    assert (lead.email, lead.name) == (JANE, "Jane Doe")
    assert (lead.summary.revenue, lead.summary.currency, lead.summary.conversions) == (
        4900,
        "usd",
        1,
    )
    assert lead.summary.first_touch == attribution.Touch(
        "google", "spring", datetime(2025, 11, 26, 14, 0, tzinfo=UTC)
    )
    assert lead.summary.last_touch is not None and lead.summary.last_touch.source == "github"

    created = published(engine, "lead.created")
    assert [e["data"]["id"] for e in created] == [lead.id]
    last_update = published(engine, "lead.updated")[-1]["data"]
    assert last_update == identity.lead_data(lead)
    assert last_update["identities"][1] == {"kind": "hubspot", "value": f"portal-{PORTAL}:101"}

    report = attribution.report(engine, "first_touch", None, None)
    assert [(c.source, c.campaign, c.revenue) for c in report.by_campaign] == [
        ("google", "spring", 4900)
    ]
    last = attribution.report(engine, "last_touch", None, None)  # the checkout, not the star
    assert [(c.source, c.revenue, c.conversions) for c in last.by_source] == [("stripe", 4900, 1)]


def test_enrichment_can_link_a_github_user_by_their_public_email(engine: Engine) -> None:
    jane_in_hubspot(engine)

    def public_email(record: Record) -> Record:
        if isinstance(record, Contact) and record.subject.kind == "github":
            email = Identity("email", JANE)
            return replace(record, identities=(*record.identities, email))
        return record

    process(engine, "github", star(email=None), enrich=public_email)
    [lead] = all_leads(engine)
    assert kinds(lead) == ["email", "hubspot", "github"]


def test_lead_events_are_delivered_to_subscribers(engine: Engine) -> None:
    sub, _ = subscriptions.create(
        engine, SecretBox(generate_key()), "https://example.com/hook", ["lead.created"]
    )
    result = process(engine, "github", star())
    assert (result.records, result.leads_created, result.leads_updated) == (2, 1, 0)
    with engine.connect() as conn:
        planned = conn.execute(
            sa.select(deliveries.c.id, deliveries.c.event_id).where(
                deliveries.c.subscription_id == sub.id
            )
        ).all()
    assert [row.id for row in planned] == list(result.delivery_ids)
    assert [row.event_id for row in planned] == list(result.event_ids)


# --- stitching ------------------------------------------------------------------------------


def test_a_shared_identity_merges_two_leads_into_the_oldest(engine: Engine) -> None:
    jane_in_hubspot(engine)  # lead 1: the HubSpot contact with jane's work email
    process(
        engine,
        "stripe",
        stripe(
            "customer.created",
            {"id": "cus_home", "object": "customer", "email": "jane@home.example"},
        ),
    )  # lead 2: a Stripe customer with her home email
    first, second = sorted(all_leads(engine), key=lambda lead: lead.created_at)

    result = process(
        engine, "hubspot", hubspot_property(101, 1764165700000, "email", "jane@home.example")
    )

    [merged] = all_leads(engine)
    assert merged.id == first.id
    assert kinds(merged) == ["email", "email", "hubspot", "stripe"]
    assert merged.email == "jane@home.example"  # the newest email HubSpot states
    [update] = [e for e in published(engine) if e["id"] in result.event_ids]
    assert update["type"] == "lead.updated"
    assert update["data"]["mergedLeadIds"] == [second.id]
    assert identity.get(engine, second.id).id == first.id  # the old id still resolves


def test_a_hubspot_merge_merges_the_contacts_leads(engine: Engine) -> None:
    jane_in_hubspot(engine, contact=101)
    process(engine, "hubspot", hubspot("contact.creation", 202, 1764165600000))
    assert len(all_leads(engine)) == 2

    process(
        engine,
        "hubspot",
        hubspot(
            "contact.merge",
            101,
            1764338400000,
            primaryObjectId=101,
            mergedObjectIds=[202],
            newObjectId=101,
        ),
    )
    [lead] = all_leads(engine)
    assert [i.value for i in lead.identities if i.kind == "hubspot"] == [
        f"portal-{PORTAL}:101",
        f"portal-{PORTAL}:202",
    ]


def test_hubspot_events_out_of_order_end_as_in_order(engine: Engine) -> None:
    newer, older = 1764165900000, 1764165600000
    arrivals = [
        hubspot_property(101, newer, "email", "jane@new.example"),
        hubspot_property(101, newer, "firstname", "Janet"),
        hubspot_property(101, older, "firstname", "Jane"),  # a late retry of an older change
        hubspot_property(101, older, "email", "jane@old.example"),
        hubspot("contact.creation", 101, older - 1000),  # creation last of all
    ]
    for payload in arrivals:
        process(engine, "hubspot", payload)
    [lead] = all_leads(engine)
    assert (lead.email, lead.name) == ("jane@new.example", "Janet")
    assert [i.value for i in lead.identities if i.kind == "email"] == [
        "jane@new.example",
        "jane@old.example",
    ]
    assert lead.summary.first_touch is not None
    assert lead.summary.first_touch.at == datetime.fromtimestamp((older - 1000) / 1000, UTC)


def test_concurrent_events_of_one_person_make_one_lead(engine: Engine) -> None:
    payloads = [
        ("stripe", stripe("charge.succeeded", charge())),
        ("stripe", stripe("payment_intent.succeeded", intent_succeeded())),
        ("stripe", stripe("checkout.session.completed", checkout())),
        ("github", star()),
        ("hubspot", hubspot_property(101, 1764165600000, "email", JANE)),
    ]
    race(engine, [partial(process, engine, source, payload) for source, payload in payloads])
    [lead] = all_leads(engine)
    assert kinds(lead) == ["email", "hubspot", "stripe", "github"]
    assert lead.summary.revenue == 4900
    # Depending on who wins, a lead may be created and merged later: subscribers heard of both.
    created = {e["data"]["id"] for e in published(engine, "lead.created")}
    merged = {
        i for e in published(engine, "lead.updated") for i in e["data"].get("mergedLeadIds", [])
    }
    assert created - {lead.id} == merged


# --- attribution ----------------------------------------------------------------------------


def test_a_refund_subtracts_once_however_often_it_is_described(engine: Engine) -> None:
    process(engine, "stripe", stripe("charge.succeeded", charge()))
    process(engine, "stripe", stripe("charge.refunded", charge(refunded=1500), 1764300000))
    [lead] = all_leads(engine)
    assert (lead.summary.revenue, lead.summary.conversions) == (3400, 1)

    process(engine, "stripe", stripe("charge.refunded", charge(refunded=4900), 1764400000))
    process(engine, "stripe", stripe("charge.refunded", charge(refunded=1500), 1764300001))
    [lead] = all_leads(engine)
    assert (lead.summary.revenue, lead.summary.conversions) == (0, 1)
    report = attribution.report(engine, "linear", None, None)
    assert [(c.source, c.revenue) for c in report.by_source] == [(None, 0)]


def test_a_won_deal_is_revenue_of_its_contacts_lead(engine: Engine) -> None:
    jane_in_hubspot(engine)
    deal = 31887406213

    def deal_event(subscription: str, at_ms: int, **fields: Any) -> None:
        process(engine, "hubspot", hubspot(subscription, deal, at_ms, **fields))

    deal_event("deal.propertyChange", 1764252360000, propertyName="amount", propertyValue="120")
    deal_event(
        "deal.associationChange",
        1764252001000,
        associationType="DEAL_TO_CONTACT",
        fromObjectId=deal,
        toObjectId=101,
        associationRemoved=False,
    )
    deal_event(
        "deal.propertyChange", 1764252360000, propertyName="dealstage", propertyValue="closedwon"
    )
    [lead] = all_leads(engine)
    assert (lead.summary.revenue, lead.summary.conversions) == (12000, 1)

    deal_event(
        "deal.propertyChange", 1764252999000, propertyName="dealstage", propertyValue="closedlost"
    )
    [lead] = all_leads(engine)
    assert (lead.summary.revenue, lead.summary.conversions) == (0, 0)


def test_touch_values_longer_than_we_keep_are_cut(engine: Engine) -> None:
    process(engine, "hubspot", hubspot_property(101, 1764165600000, "utm_source", "g" * 500))
    [lead] = all_leads(engine)
    assert lead.summary.first_touch is not None
    assert lead.summary.first_touch.source == "g" * 200


def test_attribution_report_is_limited_to_the_period(engine: Engine) -> None:
    process(engine, "stripe", stripe("charge.succeeded", charge(), created=1764252000))
    process(engine, "stripe", stripe("charge.succeeded", charge("pi_2", 100), created=1764400000))
    cutoff = datetime.fromtimestamp(1764300000, UTC)
    before = attribution.report(engine, "first_touch", None, cutoff)
    after = attribution.report(engine, "first_touch", cutoff, None)
    assert [c.revenue for c in before.by_source] == [4900]
    assert [c.revenue for c in after.by_source] == [100]


# --- privacy --------------------------------------------------------------------------------


def test_privacy_deletion_erases_the_person_and_their_revenue(engine: Engine) -> None:
    # A privacyDeletion takes the path of DELETE /api/leads/<id> (apex.pipeline.erasure): the
    # lead, its identities, touchpoints and payments go, so the goal counts nothing of them.
    jane_in_hubspot(engine)
    process(engine, "stripe", stripe("charge.succeeded", charge()))
    revenue_goal = goals.create(engine, "revenue", "revenue", 10**9, None)
    assert goals.get(engine, revenue_goal.id).value == 4900
    [_] = all_leads(engine)

    result = process(engine, "hubspot", hubspot("contact.privacyDeletion", 101, 1764338460000))

    assert all_leads(engine) == []
    assert goals.get(engine, revenue_goal.id).value == 0
    assert result.event_ids == ()
    with engine.connect() as conn:
        stored = conn.execute(sa.select(object_properties.c.value)).scalars().all()
        assert not any(JANE in (value or "") or "Jane" in (value or "") for value in stored)
        assert conn.execute(sa.select(sa.func.count()).select_from(lead_identities)).scalar() == 0

    # A retry of an older change about the deleted contact brings nobody back.
    process(engine, "hubspot", hubspot_property(101, 1764165600500, "email", JANE))
    assert all_leads(engine) == []


# --- goals ----------------------------------------------------------------------------------


def test_a_goal_is_reached_once_by_racing_workers(engine: Engine) -> None:
    goal = goals.create(engine, "six leads", "leads", 6, None)
    stars = [star(user_id=n, email=None) for n in range(10)]  # ten different people
    race(engine, [partial(process, engine, "github", payload) for payload in stars])

    [reached] = published(engine, "goal.reached")
    assert reached["data"]["goalId"] == goal.id
    assert reached["data"]["value"] >= 6
    stored = goals.get(engine, goal.id)
    assert stored.reached_at is not None and stored.value == 10


def test_a_goal_by_source_counts_its_source_only(engine: Engine) -> None:
    by_github = goals.create(engine, "github revenue", "revenue", 4900, "github")
    process(engine, "stripe", stripe("charge.succeeded", charge()))  # first touch: none
    assert goals.get(engine, by_github.id).value == 0

    process(engine, "github", star(user_id=7, email="dev@example.org"))
    paid = {**charge("pi_dev"), "billing_details": {"email": "dev@example.org"}}
    paid["customer"] = None
    process(engine, "stripe", stripe("charge.succeeded", paid))
    assert goals.get(engine, by_github.id).value == 4900
    assert [e["data"]["goalId"] for e in published(engine, "goal.reached")] == [by_github.id]


# --- idempotency ----------------------------------------------------------------------------

STORY: list[tuple[str, dict[str, Any]]] = [
    ("hubspot", hubspot("contact.creation", 101, 1764165600000)),
    ("hubspot", hubspot_property(101, 1764165600000, "email", JANE)),
    ("hubspot", hubspot_property(101, 1764165600001, "utm_source", "google")),
    ("stripe", stripe("checkout.session.completed", checkout())),
    ("stripe", stripe("charge.succeeded", charge())),
    ("stripe", stripe("charge.refunded", charge(refunded=900), 1764300000)),
    ("github", star()),
    ("hubspot", hubspot("contact.creation", 202, 1764165600000)),
    (
        "hubspot",
        hubspot(
            "contact.merge",
            101,
            1764338400000,
            primaryObjectId=101,
            mergedObjectIds=[202],
            newObjectId=101,
        ),
    ),
]


def snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    tables = (
        leads,
        lead_identities,
        lead_aliases,
        object_properties,
        touchpoints,
        conversions,
        events,
        deliveries,
    )
    with engine.connect() as conn:
        return {
            table.name: sorted(tuple(map(repr, row)) for row in conn.execute(sa.select(table)))
            for table in tables
        }


def test_processing_events_again_changes_nothing(engine: Engine) -> None:
    subscriptions.create(engine, SecretBox(generate_key()), "https://example.com/hook", ["*"])
    goals.create(engine, "two conversions", "conversions", 2, None)
    for source, payload in STORY:
        process(engine, source, payload)
    before = snapshot(engine)

    for source, payload in STORY:
        again = process(engine, source, payload)
        assert again.duplicate and again.delivery_ids == ()
    assert snapshot(engine) == before


def test_a_crash_while_publishing_leaves_nothing_so_reprocessing_does_it_all(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(*_: Any, **__: Any) -> None:
        raise ConnectionError("the process died here")

    with monkeypatch.context() as patched:
        patched.setattr(pipeline, "publish_in", crash)
        with pytest.raises(ConnectionError):
            process(engine, "github", star())
    assert published(engine) == [] and all_leads(engine) == []
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(pipeline_runs)).scalar() == 0

    again = process(engine, "github", star())
    assert not again.duplicate and again.leads_created == 1
    assert [e["type"] for e in published(engine)] == ["lead.created"]
    assert len(again.delivery_ids) == 0  # no subscription: nothing to deliver, still published


def test_the_finish_work_commits_with_the_run_and_alone_for_a_duplicate(engine: Engine) -> None:
    seen: list[tuple[bool, int]] = []

    def finish(conn: Any, result: pipeline.RunResult) -> None:
        runs = conn.execute(sa.select(sa.func.count()).select_from(pipeline_runs)).scalar()
        seen.append((result.duplicate, runs))  # the run's own row is visible: one transaction

    def failing(conn: Any, result: pipeline.RunResult) -> None:
        raise RuntimeError("the bookkeeping failed")

    with pytest.raises(RuntimeError):
        pipeline.run(engine, "github", "star", star(), {}, RECEIVED, finish=failing)
    assert published(engine) == []  # rolled back with it
    pipeline.run(engine, "github", "star", star(), {}, RECEIVED, finish=finish)
    pipeline.run(engine, "github", "star", star(), {}, RECEIVED, finish=finish)
    assert seen == [(False, 1), (True, 1)]


def test_an_outbox_an_older_version_left_unpublished_is_published_on_reprocessing(
    engine: Engine,
) -> None:
    first = process(engine, "github", star())
    (event,) = published(engine)
    with engine.begin() as conn:  # as a crash after the commit, before publishing, left it
        conn.execute(events.delete())
        conn.execute(pipeline_runs.update().values(outbox=[event]))
    again = process(engine, "github", star())
    assert again.duplicate and again.event_ids == first.event_ids == (event["id"],)
    assert published(engine) == [event]
    with engine.connect() as conn:
        assert conn.execute(sa.select(pipeline_runs.c.outbox)).scalar_one() is None


# --- helpers --------------------------------------------------------------------------------


def race(engine: Engine, jobs: list[Callable[[], object]]) -> None:
    """Run the jobs in threads released at once; re-raise the first failure."""
    barrier = threading.Barrier(len(jobs))
    failures: list[BaseException] = []

    def worker(job: Callable[[], object]) -> None:
        barrier.wait()
        try:
            job()
        except BaseException as exc:  # reported below, in the test's thread
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    if failures:
        raise failures[0]
