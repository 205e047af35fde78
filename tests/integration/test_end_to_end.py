"""End to end: signed webhooks from HubSpot, Stripe and GitHub through the HTTP surface, the real
worker (and scheduler) processes, a local fake GitHub users API as the enrichment source, and a
subscriber receiving the events; on the real Redis and both databases."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from flask.testing import FlaskClient
from pytest_httpserver import HTTPServer
from standardwebhooks import Webhook
from werkzeug import Request, Response

from config import Settings
from tests.integration.conftest import wait_for
from tests.integration.receivers import Receiver, subscribe
from tests.platforms import (
    GITHUB_SECRET,
    HUBSPOT_SECRET,
    JANE,
    PORTAL,
    STRIPE_SECRET,
    body,
    charge,
    checkout,
    github_headers,
    hubspot,
    hubspot_property,
    hubspot_v3_headers,
    intent_succeeded,
    star,
    stripe,
    stripe_headers,
)

pytestmark = pytest.mark.postgres

CONTACT = 101  # Jane's HubSpot contact id
STARGAZER = 41234567  # Jane's GitHub user id; her login is user41234567
GITHUB_TOKEN = "test-token"


@pytest.fixture
def settings(settings: Settings, httpserver: HTTPServer) -> Settings:
    return replace(
        settings,
        stripe_webhook_secrets=(STRIPE_SECRET,),
        github_webhook_secrets=(GITHUB_SECRET,),
        hubspot_client_secrets=(HUBSPOT_SECRET,),
        github_token=GITHUB_TOKEN,
        github_api_base=httpserver.url_for("/github"),
        connector_sync_interval=1,
    )


class FakeGitHub:
    """GitHub's users API for one user, answering 500 while `down`; records each request's
    Authorization header."""

    def __init__(self, server: HTTPServer, user: dict[str, Any], down: bool = False) -> None:
        self.user = user
        self.down = down
        self.authorizations: list[str | None] = []
        self.lock = threading.Lock()
        path = f"/github/users/{user['login']}"
        server.expect_request(path, method="GET").respond_with_handler(self.handle)

    def handle(self, request: Request) -> Response:
        with self.lock:
            self.authorizations.append(request.headers.get("Authorization"))
            if self.down:
                return Response('{"message": "Server Error"}', 500)
        return Response(json.dumps(self.user), 200, content_type="application/json")


def jane_on_github() -> dict[str, Any]:
    """What the users API tells of the stargazer: her public email is the one she pays with."""
    return {"login": f"user{STARGAZER}", "id": STARGAZER, "name": "Jane Doe", "email": JANE}


# --- the platforms' side --------------------------------------------------------------------


def send(client: FlaskClient, source: str, payload: Any, github_event: str = "star") -> None:
    """Post `payload` to /api/webhooks/<source>, signed as that platform signs it."""
    data = body(payload)
    headers = {
        "stripe": lambda: stripe_headers(data),
        "github": lambda: github_headers(data, event=github_event),
        "hubspot": lambda: hubspot_v3_headers(data),
    }[source]()
    response = client.post(f"/api/webhooks/{source}", data=data, headers=headers)
    assert response.status_code == 202, response.json


def star_while_github_is_down(
    client: FlaskClient,
    auth: dict[str, str],
    httpserver: HTTPServer,
    processes: Callable[..., Any],
) -> tuple[FakeGitHub, Receiver, str]:
    """GitHub's users API down, a subscriber to every event, the workers started, then Jane's
    star sent: its enrichment fails. Returns the fake API, the subscriber and its secret."""
    github = FakeGitHub(httpserver, jane_on_github(), down=True)
    subscriber = Receiver(httpserver, "/hook")
    sub = subscribe(client, auth, subscriber.url, ["*"])
    processes()
    send(client, "github", star(STARGAZER, email=None))
    return github, subscriber, str(sub["secret"])


# --- what the API and the subscriber tell ---------------------------------------------------


def inbound(client: FlaskClient, auth: dict[str, str], **query: str) -> list[dict[str, Any]]:
    response = client.get("/api/inbound", query_string={"limit": 250, **query}, headers=auth)
    assert response.status_code == 200
    return list(response.json["data"])


def all_processed(client: FlaskClient, auth: dict[str, str], count: int) -> bool:
    rows = inbound(client, auth)
    return len(rows) == count and all(row["status"] == "processed" for row in rows)


def leads_by_email(client: FlaskClient, auth: dict[str, str], email: str) -> list[dict[str, Any]]:
    response = client.get("/api/leads", query_string={"email": email}, headers=auth)
    assert response.status_code == 200
    return list(response.json["data"])


def subscription_deliveries(
    client: FlaskClient, auth: dict[str, str], sub_id: str
) -> list[dict[str, Any]]:
    response = client.get(f"/api/webhooks/{sub_id}/deliveries?limit=250", headers=auth)
    assert response.status_code == 200
    assert response.json["nextCursor"] is None
    return list(response.json["data"])


def all_delivered(
    client: FlaskClient, auth: dict[str, str], sub_id: str, receiver: Receiver
) -> list[dict[str, Any]]:
    """The subscription's deliveries once every one is delivered and received; else []."""
    rows = subscription_deliveries(client, auth, sub_id)
    done = all(row["status"] == "delivered" for row in rows)
    return rows if done and len(receiver.requests) == len(rows) else []


def received(receiver: Receiver, secret: str) -> list[dict[str, Any]]:
    """Every event the subscriber received, each verified as Standard Webhooks says."""
    with receiver.lock:
        requests = list(receiver.requests)
    return [
        Webhook(secret).verify(data, {name.lower(): value for name, value in headers.items()})
        for _, headers, data in requests
    ]


def of_type(events: list[dict[str, Any]], event_type: str) -> list[dict[str, Any]]:
    return [event for event in events if event["type"] == event_type]


def received_once(receiver: Receiver, secret: str, event_type: str) -> list[dict[str, Any]]:
    """Every event the subscriber received, verified, once one of `event_type` is among them."""
    wait_for(lambda: of_type(received(receiver, secret), event_type))
    return received(receiver, secret)


def synced_batches(events: list[dict[str, Any]]) -> Counter[str]:
    batches: Counter[str] = Counter()
    for event in of_type(events, "connector.synced"):
        batches[event["data"]["connector"]] += event["data"]["batches"]
    return batches


# --- the tests ------------------------------------------------------------------------------


def test_one_person_through_three_sources_is_one_lead_told_once(
    client: FlaskClient,
    auth: dict[str, str],
    httpserver: HTTPServer,
    processes: Callable[..., Any],
) -> None:
    github = FakeGitHub(httpserver, jane_on_github())
    subscriber = Receiver(httpserver, "/hook")
    sub = subscribe(client, auth, subscriber.url, ["*"])
    processes()
    processes("workers.scheduled")  # reports the connectors' last batches once they go quiet

    # HubSpot: a form fill creates the contact; its email arrives as a property change.
    at_ms = 1764165600000
    send(
        client,
        "hubspot",
        [
            hubspot("contact.creation", CONTACT, at_ms),
            hubspot_property(CONTACT, at_ms, "email", "Jane.Doe@acme.io"),
        ],
    )
    wait_for(lambda: all_processed(client, auth, 2))
    # Stripe: one payment, described by three event types.
    for event_type, obj in (
        ("checkout.session.completed", checkout()),
        ("payment_intent.succeeded", intent_succeeded()),
        ("charge.succeeded", charge()),
    ):
        send(client, "stripe", stripe(event_type, obj))
    wait_for(lambda: all_processed(client, auth, 5))
    # GitHub: a star by a user whose email only the users API knows.
    send(client, "github", star(STARGAZER, email=None))
    wait_for(lambda: all_processed(client, auth, 6))

    [lead] = leads_by_email(client, auth, JANE)
    assert sorted((i["kind"], i["value"]) for i in lead["identities"]) == [
        ("email", JANE),
        ("github", str(STARGAZER)),
        ("hubspot", f"portal-{PORTAL}:{CONTACT}"),
        ("stripe", "cus_jane"),
    ]
    assert (lead["revenue"], lead["currency"], lead["conversions"]) == (4900, "usd", 1)
    assert lead["name"] == "Jane Doe"
    assert github.authorizations and set(github.authorizations) == {f"Bearer {GITHUB_TOKEN}"}

    # Every batch is reported, then every event is delivered, once.
    expected_batches = {"hubspot": 2, "stripe": 3, "github": 1}
    wait_for(lambda: synced_batches(received(subscriber, sub["secret"])) == expected_batches)
    sent = wait_for(lambda: all_delivered(client, auth, sub["id"], subscriber))
    events = received(subscriber, sub["secret"])
    assert sorted(event["id"] for event in events) == sorted(row["eventId"] for row in sent)
    assert [e["data"]["id"] for e in of_type(events, "lead.created")] == [lead["id"]]
    updated = of_type(events, "lead.updated")
    assert updated and {e["data"]["id"] for e in updated} == {lead["id"]}
    assert lead in [e["data"] for e in updated]  # the subscriber heard of the lead as it is
    assert of_type(events, "connector.error") == []

    # The connectors' reports add up to what the batches did.
    rows = inbound(client, auth)
    synced = [e["data"] for e in of_type(events, "connector.synced")]
    for counter in ("records", "leadsCreated", "leadsUpdated"):
        assert sum(s[counter] for s in synced) == sum(row["result"][counter] for row in rows)
    assert sum(s["leadsCreated"] for s in synced) == 1
    assert sum(s["leadsUpdated"] for s in synced) == len(updated)
    httpserver.check_assertions()


def test_enrichment_api_down_then_back_delays_the_event_and_loses_nothing(
    client: FlaskClient,
    auth: dict[str, str],
    httpserver: HTTPServer,
    processes: Callable[..., Any],
) -> None:
    github, subscriber, secret = star_while_github_is_down(client, auth, httpserver, processes)

    [waiting] = wait_for(
        lambda: [row for row in inbound(client, auth) if row["attempts"] and row["error"]]
    )
    assert (waiting["status"], waiting["attempts"]) == ("queued", 1)
    assert "EnrichmentUnavailableError" in waiting["error"] and "HTTP 500" in waiting["error"]
    assert waiting["nextAttemptAt"] is not None
    assert client.get("/api/leads", headers=auth).json["data"] == []
    failing_calls = len(github.authorizations)
    assert failing_calls > 1  # the job retried within itself before giving up for now

    github.down = False  # the first retry comes about 10 s after the failure
    wait_for(lambda: all_processed(client, auth, 1), timeout=30)

    [row] = inbound(client, auth)
    assert (row["attempts"], row["error"]) == (2, None)
    [lead] = leads_by_email(client, auth, JANE)
    assert sorted(i["kind"] for i in lead["identities"]) == ["email", "github"]
    assert len(github.authorizations) == failing_calls + 1
    events = received_once(subscriber, secret, "lead.created")
    assert [e["data"]["id"] for e in of_type(events, "lead.created")] == [lead["id"]]
    assert of_type(events, "connector.error") == []
    httpserver.check_assertions()


class TestAnInboundEventThatFailsForGood:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return replace(settings, inbound_retry_schedule=(1,))  # one quick retry, then failed

    def test_ends_failed_fires_connector_error_and_replay_processes_it(
        self,
        client: FlaskClient,
        auth: dict[str, str],
        httpserver: HTTPServer,
        processes: Callable[..., Any],
    ) -> None:
        github, subscriber, secret = star_while_github_is_down(client, auth, httpserver, processes)

        [failed] = wait_for(lambda: inbound(client, auth, status="failed"), timeout=30)
        assert failed["source"] == "github"
        assert (failed["attempts"], failed["nextAttemptAt"]) == (2, None)  # the retry, then no more
        assert "EnrichmentUnavailableError" in failed["error"] and "HTTP 500" in failed["error"]
        [error] = of_type(received_once(subscriber, secret, "connector.error"), "connector.error")
        assert error["data"] == {
            "connector": "github",
            "inboundEventId": failed["id"],
            "reason": failed["error"],
        }
        assert client.get("/api/leads", headers=auth).json["data"] == []

        github.down = False
        replayed = client.post(f"/api/inbound/{failed['id']}/replay", headers=auth)
        assert replayed.status_code == 202
        assert replayed.json == {"id": failed["id"], "status": "queued"}
        wait_for(lambda: all_processed(client, auth, 1))

        [row] = inbound(client, auth)
        assert (row["id"], row["attempts"], row["error"]) == (failed["id"], 1, None)
        [lead] = leads_by_email(client, auth, JANE)
        events = received_once(subscriber, secret, "lead.created")
        assert [e["data"]["id"] for e in of_type(events, "lead.created")] == [lead["id"]]
        assert len(of_type(events, "connector.error")) == 1  # the replay's success adds none
        httpserver.check_assertions()
