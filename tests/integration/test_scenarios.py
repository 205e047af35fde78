"""One person across HubSpot, Stripe and GitHub, through the real app and worker: every event
signed as its platform signs it, posted to /api/webhooks/<source>, processed by the worker's
job, in the original order, reversed and shuffled (fixed seeds), every one delivered twice; the
Stripe payments in both invoice shapes (before API version 2025-03-31.basil, and from it).

The person must end as exactly one lead whose revenue is the money captured minus what was
refunded or lost in disputes, each payment counted once, plus the won deal; the attribution
report of every model must add up to the leads' revenue, per currency."""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from apex.inbound import store
from apex.pipeline import identity
from apex.pipeline import run as pipeline
from apex.pipeline.attribution import MODELS
from config import Settings
from tests.platforms import (
    GITHUB_SECRET,
    HUBSPOT_SECRET,
    JANE,
    STRIPE_SECRET,
    body,
    github_headers,
    hubspot,
    hubspot_property,
    hubspot_v3_headers,
    star,
    stripe,
    stripe_headers,
)
from workers import inbound as inbound_jobs
from workers.context import WorkerContext

pytestmark = pytest.mark.postgres

T0 = 1764252000  # the story's first Stripe event (Unix seconds); one event a minute after it
CUSTOMER = "cus_jane"
CONTACT, DEAL = 501, 9001
HUBSPOT_AT_MS = (T0 - 86400) * 1000  # a day before the first payment
RECEIVED = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return replace(
        settings,
        stripe_webhook_secrets=(STRIPE_SECRET,),
        github_webhook_secrets=(GITHUB_SECRET,),
        hubspot_client_secrets=(HUBSPOT_SECRET,),
        inbound_retry_schedule=(3600,),  # a failure stays visible as such within the test
    )


# --- the story's objects, as Stripe shows them -----------------------------------------------


def intent(
    name: str, amount: int, received: int, currency: str = "usd", **fields: Any
) -> dict[str, Any]:
    return {
        "id": f"pi_{name}",
        "object": "payment_intent",
        "amount": amount,
        "amount_received": received,
        "currency": currency,
        "customer": CUSTOMER,
        "status": "succeeded" if received else "requires_capture",
        **fields,
    }


def charge(
    name: str, amount: int, captured: int, refunded: int = 0, **fields: Any
) -> dict[str, Any]:
    return {
        "id": f"ch_{name}",
        "object": "charge",
        "amount": amount,
        "amount_captured": captured,
        "amount_refunded": refunded,
        "billing_details": {"email": JANE, "name": "Jane Doe"},
        "captured": captured > 0,
        "created": T0,
        "currency": "usd",
        "customer": CUSTOMER,
        "paid": True,
        "payment_intent": f"pi_{name}",
        "refunded": refunded == amount,
        "status": "succeeded",
        **fields,
    }


def invoice(name: str, amount: int, basil: bool) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "id": f"in_{name}",
        "object": "invoice",
        "amount_due": amount,
        "amount_paid": amount,
        "billing_reason": "subscription_cycle",
        "currency": "usd",
        "customer": CUSTOMER,
        "customer_email": JANE,
        "status": "paid",
    }
    if not basil:  # before basil an invoice names what paid it
        fields |= {"payment_intent": f"pi_{name}", "charge": f"ch_{name}"}
    return fields


def invoice_payment(name: str, amount: int) -> dict[str, Any]:
    return {
        "id": f"inpay_{name}",
        "object": "invoice_payment",
        "amount_paid": amount,
        "amount_requested": amount,
        "currency": "usd",
        "invoice": f"in_{name}",
        "is_default": True,
        "payment": {"type": "payment_intent", "payment_intent": f"pi_{name}"},
        "status": "paid",
    }


def refund(name: str, amount: int) -> dict[str, Any]:
    return {
        "id": f"re_{name}",
        "object": "refund",
        "amount": amount,
        "charge": f"ch_{name}",
        "currency": "usd",
        "payment_intent": f"pi_{name}",
        "status": "succeeded",
    }


def dispute(name: str, amount: int, status: str) -> dict[str, Any]:
    return {
        "id": f"dp_{name}",
        "object": "dispute",
        "amount": amount,
        "charge": f"ch_{name}",
        "currency": "usd",
        "payment_intent": f"pi_{name}",
        "status": status,
    }


def stripe_story(basil: bool) -> list[tuple[str, dict[str, Any]]]:
    """Jane's Stripe life, in the order it happened: a customer; a one-off $25 checkout, $10 of
    it refunded (the refund described three times); a $49 subscription invoice paid by an intent
    and its charge (in the invoice shape of the API version); a $99 authorisation never
    captured; $30 captured of a $50 authorisation; $7 paid and lost in a dispute; €15."""
    story: list[tuple[str, dict[str, Any]]] = [
        (
            "customer.created",
            {
                "id": CUSTOMER,
                "object": "customer",
                "email": JANE,
                "name": "Jane Doe",
                "metadata": {"utm_source": "newsletter"},
            },
        ),
        (
            "checkout.session.completed",
            {
                "id": "cs_A",
                "object": "checkout.session",
                "amount_total": 2500,
                "created": T0,
                "currency": "usd",
                "customer": CUSTOMER,
                "customer_details": {"email": JANE, "name": "Jane Doe"},
                "metadata": {"utm_source": "spring-ads", "utm_campaign": "spring"},
                "mode": "payment",
                "payment_intent": "pi_A",
                "payment_status": "paid",
            },
        ),
        ("payment_intent.succeeded", intent("A", 2500, 2500)),
        ("charge.succeeded", charge("A", 2500, 2500)),
        ("charge.refunded", charge("A", 2500, 2500, refunded=1000)),
        ("refund.created", refund("A", 1000)),
        ("charge.refund.updated", refund("A", 1000)),
    ]
    linked: dict[str, Any] = {} if basil else {"invoice": "in_B"}
    story += [
        ("invoice.paid", invoice("B", 4900, basil)),
        ("invoice.payment_succeeded", invoice("B", 4900, basil)),
        ("payment_intent.succeeded", intent("B", 4900, 4900, **linked)),
        ("charge.succeeded", charge("B", 4900, 4900, **linked)),
    ]
    if basil:
        story.append(("invoice_payment.paid", invoice_payment("B", 4900)))
    story += [
        ("charge.succeeded", charge("C", 9900, 0)),
        ("payment_intent.amount_capturable_updated", intent("C", 9900, 0)),
        ("payment_intent.canceled", intent("C", 9900, 0, status="canceled")),
        ("charge.expired", charge("C", 9900, 0, status="failed")),
        ("charge.succeeded", charge("D", 5000, 0)),
        ("charge.captured", charge("D", 5000, 3000)),
        ("payment_intent.succeeded", intent("D", 5000, 3000)),
        ("payment_intent.succeeded", intent("E", 700, 700)),
        ("charge.dispute.created", dispute("E", 700, "needs_response")),
        ("charge.dispute.closed", dispute("E", 700, "lost")),
        ("payment_intent.succeeded", intent("F", 1500, 1500, currency="eur")),
    ]
    return story


STRIPE_USD = 2500 - 1000 + 4900 + 3000 + 700 - 700
STRIPE_EUR = 1500
STRIPE_PAYMENTS = 5  # A, B, D, E, F; C was never captured
DEAL_USD = 120000  # "1200" dollars


# --- deliveries ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """One webhook request: its source and a function that signs it now."""

    name: str
    source: str
    signed: Callable[[], tuple[bytes, dict[str, str]]]


def stripe_deliveries(basil: bool, copies: int = 1) -> list[Delivery]:
    """The story's events; with `copies`, each object's event that many times under new event
    ids (as when Stripe describes one state in several events)."""
    deliveries = []
    for number, (event_type, obj) in enumerate(stripe_story(basil)):
        for copy in range(copies):
            event = stripe(event_type, obj, created=T0 + 60 * number)
            event["api_version"] = "2025-03-31.basil" if basil else "2024-06-20"
            data = body(event)
            deliveries.append(
                Delivery(
                    f"stripe {event_type} {obj['id']} {copy}",
                    "stripe",
                    lambda data=data: (data, stripe_headers(data)),
                )
            )
    return deliveries


def hubspot_deliveries() -> list[Delivery]:
    at = HUBSPOT_AT_MS
    events = [
        hubspot("contact.creation", CONTACT, at),
        hubspot_property(CONTACT, at + 1, "email", "Jane.Doe@acme.io"),
        hubspot_property(CONTACT, at + 2, "utm_source", "google"),
        hubspot("deal.creation", DEAL, at + 3),
        hubspot("deal.propertyChange", DEAL, at + 4, propertyName="amount", propertyValue="1200"),
        hubspot(
            "deal.associationChange",
            DEAL,
            at + 5,
            objectId=None,
            associationType="DEAL_TO_CONTACT",
            fromObjectId=DEAL,
            toObjectId=CONTACT,
            associationRemoved=False,
            isPrimaryAssociation=True,
        ),
        hubspot(
            "deal.propertyChange", DEAL, at + 6, propertyName="dealstage", propertyValue="closedwon"
        ),
    ]
    deliveries = []
    for event in events:
        data = body([{k: v for k, v in event.items() if v is not None}])
        deliveries.append(
            Delivery(
                f"hubspot {event['subscriptionType']} {event['eventId']}",
                "hubspot",
                lambda data=data: (data, hubspot_v3_headers(data)),
            )
        )
    return deliveries


def github_deliveries() -> list[Delivery]:
    data = body(star(email=JANE, starred_at="2025-11-20T10:00:00Z"))
    return [
        Delivery(
            "github star",
            "github",
            lambda: (data, github_headers(data, event="star", delivery="d-star-1")),
        )
    ]


def arranged(deliveries: list[Delivery], order: str) -> list[Delivery]:
    """The deliveries in `order`, each twice (as a platform retrying a lost response would)."""
    if order == "reversed":
        deliveries = deliveries[::-1]
    elif order.startswith("shuffled"):
        deliveries = deliveries[:]
        random.Random(int(order.removeprefix("shuffled-"))).shuffle(deliveries)
    twice = [d for d in deliveries for _ in range(2)]
    if order.startswith("shuffled"):
        random.Random(7).shuffle(twice)
    return twice


def deliver_and_process(
    client: FlaskClient, app: Flask, deliveries: list[Delivery]
) -> Counter[str]:
    """Post each delivery and run the worker's job on what it stored; the final status of each
    stored event, counted."""
    engine = app.extensions["apex"].engine
    stored: set[str] = set()
    for delivery in deliveries:
        data, headers = delivery.signed()
        response = client.post(f"/api/webhooks/{delivery.source}", data=data, headers=headers)
        assert 200 <= response.status_code < 300, (delivery.name, response.json)
        event_id = response.json.get("id")
        if event_id is None:  # the same delivery again: known, nothing new to process
            assert response.json["duplicate"] is True
            continue
        for _ in range(2):  # the job run twice does no harm
            inbound_jobs.process_inbound(event_id)
        stored.add(event_id)
    rows = [store.get(engine, event_id) for event_id in stored]
    failed = [(row.type, row.error) for row in rows if row.status not in ("processed", "ignored")]
    assert not failed
    assert all(row.reason for row in rows if row.status == "ignored")
    return Counter(row.status for row in rows)


def leads(client: FlaskClient, auth: dict[str, str]) -> list[dict[str, Any]]:
    response = client.get("/api/leads", headers=auth)
    assert response.status_code == 200
    return list(response.json["data"])


def assert_attribution_adds_up(client: FlaskClient, auth: dict[str, str]) -> None:
    by_currency: Counter[str] = Counter()
    for lead in leads(client, auth):
        by_currency.update(lead["revenueByCurrency"])
    for model in MODELS:
        report = client.get(f"/api/attribution?model={model}", headers=auth)
        assert report.status_code == 200
        for part in ("bySource", "byCampaign"):
            totals: Counter[str] = Counter()
            for credit in report.json[part]:
                totals[credit["currency"]] += credit["revenue"]
            assert +totals == +by_currency, (model, part)


ORDERS = ["original", "reversed", "shuffled-1"]
SHAPES = ["before-basil", "basil"]


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("shape", SHAPES)
def test_stripe_payments_count_once_whatever_the_order_and_the_invoice_shape(
    client: FlaskClient,
    app: Flask,
    auth: dict[str, str],
    worker_context: WorkerContext,
    shape: str,
    order: str,
) -> None:
    deliver_and_process(client, app, arranged(stripe_deliveries(shape == "basil", copies=2), order))

    [lead] = leads(client, auth)
    assert lead["revenueByCurrency"] == {"usd": STRIPE_USD, "eur": STRIPE_EUR}
    assert (lead["revenue"], lead["currency"]) == (STRIPE_USD, "usd")
    assert lead["conversions"] == STRIPE_PAYMENTS
    assert [i["kind"] for i in lead["identities"]] == ["email", "stripe"]
    assert_attribution_adds_up(client, auth)


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("shape", SHAPES)
def test_one_person_across_hubspot_stripe_and_github_is_one_lead_with_revenue_counted_once(
    client: FlaskClient,
    app: Flask,
    auth: dict[str, str],
    worker_context: WorkerContext,
    shape: str,
    order: str,
) -> None:
    everything = hubspot_deliveries() + stripe_deliveries(shape == "basil") + github_deliveries()
    statuses = deliver_and_process(client, app, arranged(everything, order))

    [lead] = leads(client, auth)
    assert [i["kind"] for i in lead["identities"]] == ["email", "hubspot", "stripe", "github"]
    assert lead["email"] == JANE
    assert lead["revenueByCurrency"] == {"usd": STRIPE_USD + DEAL_USD, "eur": STRIPE_EUR}
    assert lead["conversions"] == STRIPE_PAYMENTS + 1
    assert_attribution_adds_up(client, auth)
    assert statuses["ignored"] >= 1  # payment_intent.amount_capturable_updated at least


def test_an_invoice_counted_before_its_link_arrives_moves_to_its_intent(
    client: FlaskClient, app: Flask, auth: dict[str, str], worker_context: WorkerContext
) -> None:
    """Basil: the invoice (no intent named) and the intent are counted apart until
    invoice_payment.paid links them; then they are one payment."""
    story = [
        d
        for d in stripe_deliveries(basil=True)
        if " in_B" in d.name or " pi_B" in d.name or " inpay_B" in d.name
    ]
    by_name = {d.name.split()[1]: d for d in story if d.name.endswith(" 0")}
    deliver_and_process(client, app, [by_name["invoice.paid"], by_name["payment_intent.succeeded"]])
    [lead] = leads(client, auth)
    assert (lead["revenue"], lead["conversions"]) == (9800, 2)  # not yet known to be one

    deliver_and_process(client, app, [by_name["invoice_payment.paid"]])
    [lead] = leads(client, auth)
    assert (lead["revenue"], lead["conversions"]) == (4900, 1)
    assert_attribution_adds_up(client, auth)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (
            {"id": "evt_nodata", "object": "event", "type": "charge.succeeded", "created": T0},
            "has no data.object",
        ),
        (
            {
                "id": "evt_plan",
                "object": "event",
                "type": "plan.created",
                "created": T0,
                "data": {"object": {"id": "plan_1", "object": "plan"}},
            },
            "carries nothing Apex uses",
        ),
        (
            {
                "id": "evt_thin",
                "object": "v2.core.event",
                "type": "v1.charge.captured",
                "created": "2026-11-30T10:00:00.000Z",
                "related_object": {"id": "ch_1", "type": "charge", "url": "/v1/charges/ch_1"},
            },
            "set STRIPE_API_KEY",
        ),
        ([{"not": "an event"}], "not a Stripe event"),
    ],
    ids=["no data.object", "unused type", "thin without API key", "not an event"],
)
def test_a_stripe_event_apex_cannot_use_is_ignored_at_once_with_the_reason(
    client: FlaskClient, app: Flask, worker_context: WorkerContext, payload: Any, reason: str
) -> None:
    data = body(payload)
    response = client.post("/api/webhooks/stripe", data=data, headers=stripe_headers(data))
    assert response.status_code == 202
    inbound_jobs.process_inbound(response.json["id"])

    row = store.get(app.extensions["apex"].engine, response.json["id"])
    assert (row.status, row.next_attempt_at) == ("ignored", None)
    assert row.reason is not None and reason in row.reason
    assert row.attempts <= 1


def test_concurrent_descriptions_of_one_payment_count_it_once(app: Flask) -> None:
    """Workers racing on one basil invoice, its link, its intent and two of its refunds: the
    link rows and the refund conversion are claimed before they are read, so nothing is
    counted twice or lost (PostgreSQL runs them truly at once; SQLite serialises them)."""
    engine = app.extensions["apex"].engine
    rounds = 4
    for n in range(rounds):
        name = f"R{n}"
        described = [
            ("invoice.paid", invoice(name, 4900, basil=True)),
            ("invoice_payment.paid", invoice_payment(name, 4900)),
            ("payment_intent.succeeded", intent(name, 4900, 4900)),
            ("refund.created", {**refund(name, 500), "id": f"re_{name}_1"}),
            ("refund.created", {**refund(name, 300), "id": f"re_{name}_2"}),
        ]
        race(engine, [stripe(t, obj, created=T0 + i) for i, (t, obj) in enumerate(described)])

    [lead] = identity.page(engine, None, None, 10, None)[0]
    assert lead.summary.revenue_by_currency == {"usd": rounds * (4900 - 800)}
    assert lead.summary.conversions == rounds


def race(engine: Any, events: list[dict[str, Any]]) -> None:
    """Run the pipeline on each Stripe event in threads released at once; re-raise the first
    failure."""
    barrier = threading.Barrier(len(events))
    failures: list[BaseException] = []

    def work(event: dict[str, Any]) -> None:
        barrier.wait()
        try:
            pipeline.run(engine, "stripe", event["type"], event, {}, RECEIVED)
        except BaseException as exc:  # reported below, in the test's thread
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(event,)) for event in events]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    if failures:
        raise failures[0]
