"""Stripe's API at the database, through the `stripe` package against a local fake Stripe API:
thin event notifications are fetched (the v2 event, then the object it is about) and counted as
their snapshot event would be (without STRIPE_API_KEY, or when Stripe has nothing Apex reads,
ignored with the reason); a basil invoice that names no payment is linked to the intent that
paid it through its invoice payments."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from sqlalchemy.engine import Engine

from apex.db import make_engine
from apex.pipeline import identity
from apex.pipeline import run as pipeline
from apex.pipeline.enrich import Enricher, build_enricher
from apex.sources.enrichment import EnrichmentUnavailableError, RetryPolicy
from apex.sources.source import UnusableEventError
from config import Settings
from tests.platforms import JANE

pytestmark = pytest.mark.postgres

RECEIVED = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
CHARGE = {
    "id": "ch_thin1",
    "object": "charge",
    "amount": 4900,
    "amount_captured": 4900,
    "amount_refunded": 0,
    "billing_details": {"email": JANE, "name": "Jane Doe"},
    "captured": True,
    "created": 1764500000,
    "currency": "usd",
    "customer": "cus_jane",
    "paid": True,
    "payment_intent": "pi_thin1",
    "status": "succeeded",
}


def thin(event_id: str, event_type: str, url: str | None) -> dict[str, Any]:
    """A thin notification as Stripe posts it (and, with `data`, as v2/core/events shows it)."""
    event: dict[str, Any] = {
        "id": event_id,
        "object": "v2.core.event",
        "type": event_type,
        "created": "2026-11-30T10:00:00.000Z",
        "livemode": False,
    }
    if url:
        event["related_object"] = {"id": url.rsplit("/", 1)[-1], "type": "charge", "url": url}
    return event


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def enricher(settings: Settings, httpserver: HTTPServer) -> Iterator[Enricher]:
    configured = replace(
        settings,
        stripe_api_key="sk_test_key",
        stripe_api_base=httpserver.url_for("/").rstrip("/"),
    )
    built = build_enricher(configured, policy=RetryPolicy(first_delay=0.01, retries=1))
    assert built is not None
    yield built
    built.close()


def process(engine: Engine, payload: dict[str, Any], enrich: Enricher | None) -> Any:
    return pipeline.run(engine, "stripe", payload["type"], payload, {}, RECEIVED, enrich=enrich)


def test_a_thin_v1_event_is_fetched_and_counted_as_its_snapshot_event(
    engine: Engine, enricher: Enricher, httpserver: HTTPServer
) -> None:
    notification = thin("evt_thin_1", "v1.charge.captured", "/v1/charges/ch_thin1")
    httpserver.expect_request(
        "/v2/core/events/evt_thin_1", headers={"Authorization": "Bearer sk_test_key"}
    ).respond_with_json({**notification, "data": None, "context": None, "reason": None})
    httpserver.expect_request("/v1/charges/ch_thin1").respond_with_json(CHARGE)

    result = process(engine, notification, enricher)

    assert result.records == 2  # the payer and the payment
    [lead] = identity.page(engine, None, None, 10, None)[0]
    assert (lead.email, lead.summary.revenue, lead.summary.conversions) == (JANE, 4900, 1)


def test_a_thin_event_is_ignored_with_the_reason_without_an_api_key(engine: Engine) -> None:
    notification = thin("evt_thin_2", "v1.charge.captured", "/v1/charges/ch_thin1")
    with pytest.raises(UnusableEventError, match="STRIPE_API_KEY"):
        process(engine, notification, None)


def test_a_thin_v2_event_is_fetched_and_ignored_as_about_nothing_apex_tracks(
    engine: Engine, enricher: Enricher, httpserver: HTTPServer
) -> None:
    notification = thin("evt_thin_3", "v2.core.account.created", "/v2/core/accounts/acct_1")
    httpserver.expect_request("/v2/core/events/evt_thin_3").respond_with_json(notification)
    with pytest.raises(UnusableEventError, match="about no object Apex tracks"):
        process(engine, notification, enricher)


def test_a_thin_event_stripe_no_longer_has_is_ignored(
    engine: Engine, enricher: Enricher, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/v2/core/events/evt_thin_4").respond_with_json(
        {"error": {"type": "invalid_request_error", "code": "resource_missing"}}, status=404
    )
    with pytest.raises(UnusableEventError, match="no event evt_thin_4, or not its object"):
        process(engine, thin("evt_thin_4", "v1.charge.captured", "/v1/charges/x"), enricher)


def test_a_stripe_outage_delays_a_thin_event(
    engine: Engine, enricher: Enricher, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/v2/core/events/evt_thin_5").respond_with_json(
        {"error": {"type": "api_error"}}, status=503
    )
    with pytest.raises(EnrichmentUnavailableError):
        process(engine, thin("evt_thin_5", "v1.charge.captured", "/v1/charges/x"), enricher)
    assert identity.page(engine, None, None, 10, None)[0] == []


def test_with_an_api_key_a_basil_invoice_is_linked_to_its_intent_without_invoice_payment(
    engine: Engine, enricher: Enricher, httpserver: HTTPServer
) -> None:
    invoice = {
        "id": "in_basil1",
        "object": "invoice",
        "amount_paid": 4900,
        "currency": "usd",
        "customer": "cus_jane",
        "customer_email": JANE,
        "status": "paid",
    }
    intent = {
        "id": "pi_basil1",
        "object": "payment_intent",
        "amount": 4900,
        "amount_received": 4900,
        "currency": "usd",
        "customer": "cus_jane",
        "receipt_email": JANE,
        "status": "succeeded",
    }
    paid = {
        "id": "inpay_1",
        "object": "invoice_payment",
        "amount_paid": 4900,
        "currency": "usd",
        "invoice": "in_basil1",
        "payment": {"type": "payment_intent", "payment_intent": "pi_basil1"},
        "status": "paid",
    }
    httpserver.expect_request(
        "/v1/invoice_payments", query_string={"invoice": "in_basil1", "status": "paid"}
    ).respond_with_json({"object": "list", "data": [paid], "has_more": False, "url": "/v1/x"})

    for event_type, obj in (("invoice.paid", invoice), ("payment_intent.succeeded", intent)):
        event = {
            "id": f"evt_{event_type}",
            "object": "event",
            "type": event_type,
            "created": 1764500000,
            "data": {"object": obj},
        }
        process(engine, event, enricher)

    [lead] = identity.page(engine, None, None, 10, None)[0]
    assert (lead.summary.revenue, lead.summary.conversions) == (4900, 1)
