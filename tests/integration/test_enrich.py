"""Pipeline enrichment at the database: run() with the enricher against local fake HubSpot,
Stripe and GitHub APIs. An API that fails delays the event; it never loses it."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from pytest_httpserver import HTTPServer
from sqlalchemy.engine import Engine
from werkzeug import Request, Response

from apex.db import make_engine
from apex.models import events
from apex.pipeline import identity
from apex.pipeline import run as pipeline
from apex.pipeline.enrich import Enricher, build_enricher
from apex.pipeline.tables import leads, pipeline_runs
from apex.sources.enrichment import EnrichmentUnavailableError, RetryPolicy
from config import Settings
from tests.platforms import JANE, hubspot, hubspot_property, intent_succeeded, star, stripe

pytestmark = pytest.mark.postgres

RECEIVED = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
AT_MS = 1764165600000  # when the HubSpot events occurred
STARGAZER = 41234567  # Jane's GitHub user id; her login is user41234567

HUBSPOT_CONTACT = {
    "id": "101",
    "properties": {"email": "Jane.Doe@acme.io", "firstname": "Jane", "lastname": "Doe"},
}
STRIPE_CUSTOMER = {"id": "cus_jane", "object": "customer", "email": JANE, "name": "Jane Doe"}
GITHUB_USER = {"login": f"user{STARGAZER}", "id": STARGAZER, "name": "Jane Doe", "email": JANE}
GITHUB_USER_PATH = f"/users/user{STARGAZER}"


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def enricher(settings: Settings, httpserver: HTTPServer) -> Iterator[Enricher]:
    base = httpserver.url_for("/").rstrip("/")
    configured = replace(
        settings,
        hubspot_access_token="pat-test-token",
        hubspot_api_base=base,
        stripe_api_key="sk_test_key",
        stripe_api_base=base,
        github_token="ghp_test_token",
        github_api_base=base,
    )
    built = build_enricher(configured, policy=RetryPolicy(first_delay=0.01))
    assert built is not None
    yield built
    built.close()


def process(
    engine: Engine, source: str, payload: dict[str, Any], enrich: Enricher | None
) -> pipeline.RunResult:
    event_type = {
        "hubspot": lambda: payload["subscriptionType"],
        "stripe": lambda: payload["type"],
        "github": lambda: "star",
    }[source]()
    return pipeline.run(engine, source, event_type, payload, {}, RECEIVED, enrich=enrich)


def all_leads(engine: Engine) -> list[identity.Lead]:
    return identity.page(engine, None, None, 100, None)[0]


def count(engine: Engine, table: sa.Table) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


class FlakyApi:
    """Answers `body` at `path`, or 503 while `down`; counts the requests."""

    def __init__(self, server: HTTPServer, path: str, body: dict[str, Any]) -> None:
        self.down = True
        self.requests = 0
        self.body = body
        self.lock = threading.Lock()
        server.expect_request(path).respond_with_handler(self.handle)

    def handle(self, request: Request) -> Response:
        with self.lock:
            self.requests += 1
            if self.down:
                return Response("unavailable", status=503)
        return Response(json.dumps(self.body), status=200, content_type="application/json")


# --- what enrichment adds to leads -----------------------------------------------------------


def test_a_hubspot_contact_known_by_id_only_becomes_a_lead_with_email_and_name(
    engine: Engine, enricher: Enricher, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/crm/v3/objects/contacts/101").respond_with_json(HUBSPOT_CONTACT)
    result = process(engine, "hubspot", hubspot("contact.creation", 101, AT_MS), enricher)
    [lead] = all_leads(engine)
    assert (lead.email, lead.name) == (JANE, "Jane Doe")
    assert [i.kind for i in lead.identities] == ["email", "hubspot"]
    assert (result.leads_created, result.leads_updated) == (1, 0)


def test_a_github_star_stitches_to_an_existing_lead_by_the_senders_public_email(
    engine: Engine, enricher: Enricher, httpserver: HTTPServer
) -> None:
    jane = hubspot_property(101, AT_MS, "email", JANE)
    process(engine, "hubspot", jane, None)  # jane, known to HubSpot
    httpserver.expect_request(GITHUB_USER_PATH).respond_with_json(GITHUB_USER)
    process(engine, "github", star(STARGAZER, email=None), enricher)
    [lead] = all_leads(engine)
    assert [i.kind for i in lead.identities] == ["email", "hubspot", "github"]
    assert (lead.email, lead.name) == (JANE, "Jane Doe")
    assert lead.summary.last_touch is not None and lead.summary.last_touch.source == "github"


def test_a_stripe_payment_with_only_a_customer_id_is_credited_to_the_customers_lead(
    engine: Engine, enricher: Enricher, httpserver: HTTPServer
) -> None:
    process(engine, "hubspot", hubspot_property(101, AT_MS, "email", JANE), None)
    httpserver.expect_request("/v1/customers/cus_jane").respond_with_json(STRIPE_CUSTOMER)
    process(engine, "stripe", stripe("payment_intent.succeeded", intent_succeeded()), enricher)
    [lead] = all_leads(engine)
    assert [i.kind for i in lead.identities] == ["email", "hubspot", "stripe"]
    assert (lead.summary.revenue, lead.summary.currency, lead.summary.conversions) == (
        4900,
        "usd",
        1,
    )


def test_an_api_failing_twice_then_answering_processes_the_event(
    engine: Engine, enricher: Enricher, httpserver: HTTPServer
) -> None:
    path = "/crm/v3/objects/contacts/101"
    httpserver.expect_oneshot_request(path).respond_with_data("boom", status=500)
    httpserver.expect_oneshot_request(path).respond_with_data("boom", status=500)
    httpserver.expect_request(path).respond_with_json(HUBSPOT_CONTACT)
    process(engine, "hubspot", hubspot("contact.creation", 101, AT_MS), enricher)
    [lead] = all_leads(engine)
    assert lead.email == JANE
    assert len([r for r, _ in httpserver.log if r.path == path]) == 3


def test_enrichment_api_down_then_back_delays_the_event_without_losing_it(
    engine: Engine, enricher: Enricher, httpserver: HTTPServer
) -> None:
    api = FlakyApi(httpserver, GITHUB_USER_PATH, GITHUB_USER)
    payload = star(STARGAZER, email=None)

    with pytest.raises(EnrichmentUnavailableError):
        process(engine, "github", payload, enricher)
    assert api.requests == 4
    assert (count(engine, leads), count(engine, pipeline_runs), count(engine, events)) == (0, 0, 0)

    api.down = False  # the job's own backoff runs the event again later
    result = process(engine, "github", payload, enricher)
    assert (result.duplicate, result.leads_created) == (False, 1)
    [lead] = all_leads(engine)
    assert lead.email == JANE
    assert count(engine, pipeline_runs) == 1

    again = process(engine, "github", payload, enricher)  # and a redelivery changes nothing
    assert again.duplicate and len(all_leads(engine)) == 1
