"""Enrichment against local fake HubSpot, Stripe and GitHub APIs: what each adds, retries, the
cache, credentials on the wire, and what it never does (lose an error, log a token)."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from apex.pipeline.enrich import Enricher, build_enricher
from apex.pipeline.records import Contact, Deal, Erasure, Identity, Payment, Record, Touchpoint
from apex.sources.enrichment import CACHE_SECONDS, EnrichmentUnavailableError, requested_wait
from config import Settings

AT = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
HUBSPOT_TOKEN = "pat-na1-hubspot-secret-0001"
STRIPE_KEY = "sk_test_stripe_secret_0002"
GITHUB_TOKEN = "ghp_github_secret_0003"
JANE = "jane.doe@acme.io"

HUBSPOT_JANE = Identity("hubspot", "portal-48120977:101")
STRIPE_JANE = Identity("stripe", "cus_jane")
GITHUB_JANE = Identity("github", "41234567")

CONTACT_PATH = "/crm/v3/objects/contacts/101"
DEAL_PATH = "/crm/v3/objects/deals/501"
CUSTOMER_PATH = "/v1/customers/cus_jane"
USER_PATH = "/users/octojane"

HUBSPOT_CONTACT = {
    "id": "101",
    "properties": {
        "email": "Jane.Doe@Acme.io",
        "firstname": "Jane",
        "lastname": "Doe",
        "company": "Acme",
        "hs_analytics_source": "ORGANIC_SEARCH",
        "utm_campaign": None,
        "hs_object_id": "101",
    },
    "archived": False,
}
HUBSPOT_DEAL = {
    "id": "501",
    "properties": {"amount": "12000", "dealstage": "closedwon", "deal_currency_code": "EUR"},
}
STRIPE_CUSTOMER = {"id": "cus_jane", "object": "customer", "email": JANE, "name": "Jane Doe"}
GITHUB_USER = {
    "login": "octojane",
    "id": 41234567,
    "type": "User",
    "name": "Jane Doe",
    "company": "Acme",
    "email": JANE,
}


def hubspot_contact(*properties: tuple[str, str | None]) -> Contact:
    return Contact(HUBSPOT_JANE, (HUBSPOT_JANE,), AT, (("created", "hubspot"), *properties))


def github_sender() -> Contact:
    return Contact(GITHUB_JANE, (GITHUB_JANE,), AT, (("login", "octojane"),))


def stripe_payment() -> Payment:
    return Payment("stripe:pi_1", (STRIPE_JANE,), 4900, "usd", AT)


@dataclass(frozen=True)
class Api:
    """One fake API resource: the record that makes the enricher ask for it, and its answer."""

    record: Record
    path: str
    body: dict[str, Any]


APIS = {
    "hubspot": Api(hubspot_contact(), CONTACT_PATH, HUBSPOT_CONTACT),
    "stripe": Api(stripe_payment(), CUSTOMER_PATH, STRIPE_CUSTOMER),
    "github": Api(github_sender(), USER_PATH, GITHUB_USER),
}


class Clock:
    """Unix time, a minute after the records' time, moved by hand."""

    def __init__(self) -> None:
        self.now = AT.timestamp() + 60

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def api_settings(settings: Settings, httpserver: HTTPServer) -> Settings:
    base = httpserver.url_for("/").rstrip("/")
    return replace(
        settings,
        hubspot_access_token=HUBSPOT_TOKEN,
        hubspot_api_base=base,
        stripe_api_key=STRIPE_KEY,
        stripe_api_base=base,
        github_token=GITHUB_TOKEN,
        github_api_base=base,
    )


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def enricher(api_settings: Settings, sleeps: list[float], clock: Clock) -> Iterator[Enricher]:
    built = build_enricher(api_settings, sleep=sleeps.append, clock=clock)
    assert built is not None
    yield built
    built.close()


def error(status: int, **headers: str) -> Response:
    body = '{"error": {"type": "api_error", "message": "unavailable"}}'
    return Response(body, status=status, headers=headers, content_type="application/json")


def requests_to(server: HTTPServer, path: str) -> list[Request]:
    return [request for request, _ in server.log if request.path == path]


# --- credentials -------------------------------------------------------------------------------


def test_without_credentials_there_is_no_enricher(settings: Settings) -> None:
    assert build_enricher(settings) is None


def test_only_sources_with_credentials_are_enriched(
    settings: Settings, httpserver: HTTPServer
) -> None:
    base = httpserver.url_for("/").rstrip("/")
    github_only = replace(settings, github_token=GITHUB_TOKEN, github_api_base=base)
    httpserver.expect_request(USER_PATH).respond_with_json(GITHUB_USER)
    enricher = build_enricher(github_only)
    assert enricher is not None
    try:
        assert enricher(hubspot_contact()) == hubspot_contact()
        assert enricher(stripe_payment()) == stripe_payment()
        assert enricher(github_sender()) != github_sender()
    finally:
        enricher.close()
    assert [request.path for request, _ in httpserver.log] == [USER_PATH]


@pytest.mark.parametrize(
    ("source", "authorization", "accept"),
    [
        ("hubspot", f"Bearer {HUBSPOT_TOKEN}", "application/json"),
        ("stripe", f"Bearer {STRIPE_KEY}", None),
        ("github", f"Bearer {GITHUB_TOKEN}", "application/vnd.github+json"),
    ],
)
def test_each_api_is_sent_its_own_credentials(
    enricher: Enricher,
    httpserver: HTTPServer,
    source: str,
    authorization: str,
    accept: str | None,
) -> None:
    api = APIS[source]
    httpserver.expect_request(api.path, method="GET").respond_with_json(api.body)
    enricher(api.record)
    [request] = requests_to(httpserver, api.path)
    assert request.headers["Authorization"] == authorization
    if accept is not None:
        assert request.headers["Accept"] == accept


# --- what each API adds ------------------------------------------------------------------------


def test_a_hubspot_contact_known_by_id_only_gets_its_email_name_and_source(
    enricher: Enricher, httpserver: HTTPServer
) -> None:
    httpserver.expect_request(CONTACT_PATH).respond_with_json(HUBSPOT_CONTACT)
    enriched = enricher(hubspot_contact())
    assert enriched == Contact(
        HUBSPOT_JANE,
        (HUBSPOT_JANE, Identity("email", JANE)),
        AT,
        (
            ("created", "hubspot"),
            ("email", JANE),
            ("first_name", "Jane"),
            ("last_name", "Doe"),
            ("company", "Acme"),
            ("analytics_source", "ORGANIC_SEARCH"),
        ),
    )
    [request] = requests_to(httpserver, CONTACT_PATH)
    asked = request.args["properties"].split(",")
    assert {"email", "firstname", "lastname", "company", "hs_analytics_source"} <= set(asked)
    assert "utm_campaign" in asked


def test_what_a_record_states_wins_over_what_the_api_says(
    enricher: Enricher, httpserver: HTTPServer
) -> None:
    httpserver.expect_request(CONTACT_PATH).respond_with_json(HUBSPOT_CONTACT)
    record = Contact(HUBSPOT_JANE, (HUBSPOT_JANE,), AT, (("email", None), ("first_name", "J.")))
    enriched = enricher(record)
    assert isinstance(enriched, Contact)
    assert enriched.identities == (HUBSPOT_JANE,)  # the event cleared the email: no identity
    assert enriched.properties == (
        ("email", None),
        ("first_name", "J."),
        ("last_name", "Doe"),
        ("company", "Acme"),
        ("analytics_source", "ORGANIC_SEARCH"),
    )


def test_a_hubspot_deal_gets_its_stage_amount_and_currency(
    enricher: Enricher, httpserver: HTTPServer
) -> None:
    httpserver.expect_request(DEAL_PATH).respond_with_json(HUBSPOT_DEAL)
    deal = Deal("portal-48120977:501", AT, (("contact:portal-48120977:101", "1"),))
    assert enricher(deal) == replace(
        deal,
        properties=(
            ("contact:portal-48120977:101", "1"),
            ("stage", "closedwon"),
            ("amount", "12000"),
            ("currency", "EUR"),
        ),
    )
    [request] = requests_to(httpserver, DEAL_PATH)
    assert set(request.args["properties"].split(",")) == {
        "amount",
        "dealstage",
        "deal_currency_code",
    }


def test_a_stripe_payment_with_only_a_customer_id_gets_the_customers_email(
    enricher: Enricher, httpserver: HTTPServer
) -> None:
    httpserver.expect_request(CUSTOMER_PATH, method="GET").respond_with_json(STRIPE_CUSTOMER)
    assert enricher(stripe_payment()) == replace(
        stripe_payment(), identities=(STRIPE_JANE, Identity("email", JANE))
    )


def test_a_stripe_customer_known_by_id_only_gets_email_and_name(
    enricher: Enricher, httpserver: HTTPServer
) -> None:
    httpserver.expect_request(CUSTOMER_PATH).respond_with_json(STRIPE_CUSTOMER)
    payer = Contact(STRIPE_JANE, (STRIPE_JANE,), AT)
    assert enricher(payer) == Contact(
        STRIPE_JANE,
        (STRIPE_JANE, Identity("email", JANE)),
        AT,
        (("email", JANE), ("name", "Jane Doe")),
    )


def test_a_stripe_payer_whose_email_is_known_is_not_looked_up(
    enricher: Enricher, httpserver: HTTPServer
) -> None:
    touch = Touchpoint(
        "stripe:checkout:cs_1", (STRIPE_JANE, Identity("email", JANE)), "x", None, AT
    )
    assert enricher(touch) == touch
    assert httpserver.log == []


def test_a_github_sender_gets_their_public_email_name_and_company(
    enricher: Enricher, httpserver: HTTPServer
) -> None:
    httpserver.expect_request(USER_PATH).respond_with_json(GITHUB_USER)
    assert enricher(github_sender()) == Contact(
        GITHUB_JANE,
        (GITHUB_JANE, Identity("email", JANE)),
        AT,
        (("login", "octojane"), ("email", JANE), ("name", "Jane Doe"), ("company", "Acme")),
    )


def test_a_github_noreply_email_is_not_an_identity(
    enricher: Enricher, httpserver: HTTPServer
) -> None:
    user = {**GITHUB_USER, "email": "41234567+octojane@users.noreply.github.com"}
    httpserver.expect_request(USER_PATH).respond_with_json(user)
    enriched = enricher(github_sender())
    assert isinstance(enriched, Contact)
    assert enriched.identities == (GITHUB_JANE,)
    assert ("email", user["email"]) not in enriched.properties


def test_records_no_api_can_complete_are_returned_as_they_are(
    enricher: Enricher, httpserver: HTTPServer
) -> None:
    for record in (
        Erasure(HUBSPOT_JANE, AT),
        Contact(GITHUB_JANE, (GITHUB_JANE,), AT),  # no login to look up
        Contact(GITHUB_JANE, (GITHUB_JANE,), AT, (("login", "../admin"),)),
        Payment("stripe:pi_2", (), 100, "usd", AT),
    ):
        assert enricher(record) == record
    assert httpserver.log == []


# --- not found, retries, giving up ---------------------------------------------------------------


@pytest.mark.parametrize("source", sorted(APIS))
def test_not_found_leaves_the_record_unchanged(
    enricher: Enricher, httpserver: HTTPServer, source: str
) -> None:
    api = APIS[source]
    httpserver.expect_request(api.path).respond_with_response(error(404))
    assert enricher(api.record) == api.record
    assert len(requests_to(httpserver, api.path)) == 1


def test_a_deleted_stripe_customer_adds_nothing(enricher: Enricher, httpserver: HTTPServer) -> None:
    deleted = {"id": "cus_jane", "object": "customer", "deleted": True}
    httpserver.expect_request(CUSTOMER_PATH).respond_with_json(deleted)
    assert enricher(stripe_payment()) == stripe_payment()


@pytest.mark.parametrize("source", sorted(APIS))
def test_server_errors_are_retried_until_the_api_answers(
    enricher: Enricher, httpserver: HTTPServer, sleeps: list[float], source: str
) -> None:
    api = APIS[source]
    httpserver.expect_oneshot_request(api.path).respond_with_response(error(500))
    httpserver.expect_oneshot_request(api.path).respond_with_response(error(502))
    httpserver.expect_request(api.path).respond_with_json(api.body)
    assert enricher(api.record) != api.record
    assert len(requests_to(httpserver, api.path)) == 3
    assert len(sleeps) == 2 and all(0 < delay <= 1.0 for delay in sleeps)


@pytest.mark.parametrize("source", sorted(APIS))
def test_an_api_down_for_good_raises_after_a_few_retries(
    enricher: Enricher, httpserver: HTTPServer, sleeps: list[float], source: str
) -> None:
    api = APIS[source]
    httpserver.expect_request(api.path).respond_with_response(error(503))
    with pytest.raises(EnrichmentUnavailableError, match="HTTP 503 after 4 attempts"):
        enricher(api.record)
    assert len(requests_to(httpserver, api.path)) == 4
    assert len(sleeps) == 3


def test_a_failure_is_not_cached(enricher: Enricher, httpserver: HTTPServer) -> None:
    httpserver.expect_request(USER_PATH).respond_with_response(error(503))
    with pytest.raises(EnrichmentUnavailableError):
        enricher(github_sender())
    httpserver.clear_all_handlers()
    httpserver.expect_request(USER_PATH).respond_with_json(GITHUB_USER)
    assert enricher(github_sender()) != github_sender()


def test_an_unreachable_api_raises(
    api_settings: Settings, sleeps: list[float], clock: Clock
) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    down = replace(api_settings, github_api_base=f"http://127.0.0.1:{port}")
    enricher = build_enricher(down, sleep=sleeps.append, clock=clock)
    assert enricher is not None
    try:
        with pytest.raises(EnrichmentUnavailableError, match="ConnectionError after 4 attempts"):
            enricher(github_sender())
    finally:
        enricher.close()
    assert len(sleeps) == 3


def test_a_rejected_credential_raises_at_once(
    enricher: Enricher, httpserver: HTTPServer, sleeps: list[float]
) -> None:
    httpserver.expect_request(CONTACT_PATH).respond_with_response(error(401))
    with pytest.raises(EnrichmentUnavailableError, match="HTTP 401"):
        enricher(hubspot_contact())
    assert len(requests_to(httpserver, CONTACT_PATH)) == 1
    assert sleeps == []


def test_retry_after_is_honoured(
    enricher: Enricher, httpserver: HTTPServer, sleeps: list[float]
) -> None:
    httpserver.expect_oneshot_request(CONTACT_PATH).respond_with_response(
        error(429, **{"Retry-After": "3"})
    )
    httpserver.expect_request(CONTACT_PATH).respond_with_json(HUBSPOT_CONTACT)
    assert enricher(hubspot_contact()) != hubspot_contact()
    assert sleeps == [3.0]


def test_a_stripe_rate_limit_is_retried(
    enricher: Enricher, httpserver: HTTPServer, sleeps: list[float]
) -> None:
    httpserver.expect_oneshot_request(CUSTOMER_PATH).respond_with_response(
        error(429, **{"Retry-After": "2"})
    )
    httpserver.expect_request(CUSTOMER_PATH).respond_with_json(STRIPE_CUSTOMER)
    assert enricher(stripe_payment()) != stripe_payment()
    assert sleeps == [2.0]


def test_a_rate_limit_reset_far_off_is_left_to_the_jobs_backoff(
    enricher: Enricher, httpserver: HTTPServer, sleeps: list[float]
) -> None:
    exhausted = error(403, **{"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "4102444800"})
    httpserver.expect_request(USER_PATH).respond_with_response(exhausted)
    with pytest.raises(EnrichmentUnavailableError) as raised:
        enricher(github_sender())
    assert raised.value.retry_after is not None and raised.value.retry_after > 3600
    assert len(requests_to(httpserver, USER_PATH)) == 1
    assert sleeps == []


def test_retries_stop_when_the_time_budget_is_spent(
    enricher: Enricher, httpserver: HTTPServer, clock: Clock
) -> None:
    def slow_failure(request: Request) -> Response:
        clock.now += 15  # each attempt takes 15 s: the second one would pass the 20 s budget
        return error(503)

    httpserver.expect_request(USER_PATH).respond_with_handler(slow_failure)
    with pytest.raises(EnrichmentUnavailableError, match="after 2 attempts"):
        enricher(github_sender())


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        ({}, None),
        ({"Retry-After": "7"}, 7.0),
        ({"retry-after": "Thu, 01 Jan 1970 00:01:40 GMT"}, 40.0),
        ({"Retry-After": "soon"}, None),
        ({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "90"}, 30.0),
        ({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "10"}, 0.0),
        ({"X-RateLimit-Remaining": "12", "X-RateLimit-Reset": "90"}, None),
        ({"X-HubSpot-RateLimit-Secondly-Remaining": "0"}, 1.0),
        (
            {
                "X-HubSpot-RateLimit-Remaining": "0",
                "X-HubSpot-RateLimit-Interval-Milliseconds": "10000",
            },
            10.0,
        ),
    ],
)
def test_the_wait_an_api_asks_for(headers: dict[str, str], wait: float | None) -> None:
    assert requested_wait(headers, now=60.0) == wait


# --- the cache -----------------------------------------------------------------------------------


def test_answers_are_cached_for_a_while(
    enricher: Enricher, httpserver: HTTPServer, clock: Clock
) -> None:
    httpserver.expect_request(USER_PATH).respond_with_json(GITHUB_USER)
    first = enricher(github_sender())
    assert enricher(github_sender()) == first
    assert len(requests_to(httpserver, USER_PATH)) == 1
    clock.now += CACHE_SECONDS + 1
    assert enricher(github_sender()) == first
    assert len(requests_to(httpserver, USER_PATH)) == 2


def test_an_answer_older_than_the_record_is_fetched_again(
    enricher: Enricher, httpserver: HTTPServer, clock: Clock
) -> None:
    httpserver.expect_request(CONTACT_PATH).respond_with_json(HUBSPOT_CONTACT)
    enricher(hubspot_contact())  # fetched a minute after AT
    enricher(replace(hubspot_contact(), at=AT + timedelta(seconds=30)))  # older than the answer
    assert len(requests_to(httpserver, CONTACT_PATH)) == 1
    enricher(replace(hubspot_contact(), at=AT + timedelta(seconds=90)))  # newer: ask again
    assert len(requests_to(httpserver, CONTACT_PATH)) == 2


def test_not_found_is_cached_too(enricher: Enricher, httpserver: HTTPServer) -> None:
    httpserver.expect_request(CUSTOMER_PATH).respond_with_response(error(404))
    enricher(stripe_payment())
    enricher(Contact(STRIPE_JANE, (STRIPE_JANE,), AT))
    assert len(requests_to(httpserver, CUSTOMER_PATH)) == 1


# --- secrets -------------------------------------------------------------------------------------


def test_tokens_are_never_logged_nor_in_errors(
    enricher: Enricher, httpserver: HTTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    errors: list[str] = []
    for source, api in APIS.items():
        httpserver.expect_request(api.path).respond_with_response(error(503))
        with pytest.raises(EnrichmentUnavailableError) as raised:
            enricher(api.record)
        errors.append(f"{source}: {raised.value!r} {raised.value.__cause__!r}")
    assert caplog.records, "retries are logged"
    for secret in (HUBSPOT_TOKEN, STRIPE_KEY, GITHUB_TOKEN):
        assert secret not in caplog.text
        assert all(secret not in text for text in errors)
