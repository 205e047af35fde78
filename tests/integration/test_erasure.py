"""Erasure through the real seams: webhooks received over HTTP and processed by a real rq
worker, then DELETE /api/leads/<id> or a HubSpot privacyDeletion; on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis
from rq import Queue, SimpleWorker
from sqlalchemy.engine import Engine

from apex.models import inbound_events
from apex.pipeline import erasure
from apex.pipeline.extract import extract
from apex.pipeline.tables import (
    conversions,
    lead_aliases,
    lead_identities,
    leads,
    object_properties,
    touchpoints,
)
from apex.sources.source import UnusableEventError
from config import Settings
from tests.platforms import (
    GITHUB_SECRET,
    HUBSPOT_SECRET,
    JANE,
    STRIPE_SECRET,
    body,
    charge,
    github_headers,
    hubspot,
    hubspot_property,
    hubspot_v3_headers,
    star,
    stripe,
    stripe_headers,
)
from workers.context import WorkerContext

pytestmark = pytest.mark.postgres

AT = 1764165600000  # HubSpot occurredAt, ms
BOB = "bob@example.org"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return replace(
        settings,
        stripe_webhook_secrets=(STRIPE_SECRET,),
        github_webhook_secrets=(GITHUB_SECRET,),
        hubspot_client_secrets=(HUBSPOT_SECRET,),
    )


@pytest.fixture
def engine(app: Flask) -> Engine:
    return app.extensions["apex"].engine  # type: ignore[no-any-return]


class Platforms:
    """Webhooks posted as each platform signs them, each processed by a real worker before the
    next is posted (so the order of events is the order of the calls)."""

    def __init__(self, client: FlaskClient, redis: Redis) -> None:
        self.client = client
        self.redis = redis

    def post(self, source: str, payload: Any, headers: dict[str, str]) -> list[str]:
        response = self.client.post(f"/api/webhooks/{source}", data=body(payload), headers=headers)
        assert response.status_code == 202, response.json
        queue = Queue("inbound", connection=self.redis)
        SimpleWorker([queue], connection=self.redis).work(burst=True)
        return [str(response.json["id"])]

    def hubspot(self, *events: dict[str, Any]) -> list[str]:
        return self.post("hubspot", list(events), hubspot_v3_headers(body(list(events))))

    def stripe(self, event_type: str, obj: dict[str, Any]) -> list[str]:
        payload = stripe(event_type, obj)
        return self.post("stripe", payload, stripe_headers(body(payload)))

    def github(self, payload: dict[str, Any]) -> list[str]:
        return self.post("github", payload, github_headers(body(payload), event="star"))


@pytest.fixture
def platforms(client: FlaskClient, redis_conn: Redis, worker_context: WorkerContext) -> Platforms:
    return Platforms(client, redis_conn)


def jane(platforms: Platforms, contact: int = 101) -> None:
    """Jane fills a HubSpot form (from a Google campaign), pays 49.00 and stars the repo."""
    platforms.hubspot(
        hubspot("contact.creation", contact, AT),
        hubspot_property(contact, AT + 1, "email", "Jane.Doe@acme.io"),
        hubspot_property(contact, AT + 2, "firstname", "Jane"),
        hubspot_property(contact, AT + 3, "utm_source", "google"),
    )
    platforms.stripe("charge.succeeded", charge())
    platforms.github(star())
    # An event Apex ignores that still names her: stored, so erased too.
    platforms.stripe("customer.deleted", {"id": "cus_jane", "object": "customer", "email": JANE})


def bob(platforms: Platforms) -> None:
    """Someone else, who pays 10.00."""
    paid = {**charge("pi_bob", 1000), "customer": "cus_bob"}
    paid["billing_details"] = {"email": BOB, "name": "Bob"}
    platforms.stripe("charge.succeeded", paid)


def lead_of(client: FlaskClient, auth: dict[str, str], email: str) -> dict[str, Any]:
    response = client.get("/api/leads", query_string={"email": email}, headers=auth)
    [found] = response.json["data"]
    return found  # type: ignore[no-any-return]


def revenue_by_source(client: FlaskClient, auth: dict[str, str]) -> dict[str | None, int]:
    report = client.get("/api/attribution", query_string={"model": "first_touch"}, headers=auth)
    assert report.status_code == 200, report.json
    return {row["source"]: row["revenue"] for row in report.json["bySource"]}


def payloads(engine: Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        return dict(conn.execute(sa.select(inbound_events.c.id, inbound_events.c.payload)).all())


def rows_of(engine: Engine, lead_id: str) -> dict[str, int]:
    """What the database still holds of a lead, per table."""
    with engine.connect() as conn:
        return {
            table.name: int(
                conn.execute(
                    sa.select(sa.func.count())
                    .select_from(table)
                    .where((table.c.id if table is leads else table.c.lead_id) == lead_id)
                ).scalar_one()
            )
            for table in (leads, lead_identities, touchpoints, conversions, lead_aliases)
        }


def mentions(value: Any, *needles: str) -> bool:
    text = json.dumps(value).lower()
    return any(needle.lower() in text for needle in needles)


JANES = ("jane", "cus_jane", "41234567", '"objectId": 101')


def assert_jane_is_gone(
    engine: Engine, client: FlaskClient, auth: dict[str, str], lead: str
) -> None:
    assert rows_of(engine, lead) == dict.fromkeys(
        ("leads", "lead_identities", "touchpoints", "conversions", "lead_aliases"), 0
    )
    assert client.get(f"/api/leads/{lead}", headers=auth).status_code == 404
    assert client.get("/api/leads", query_string={"email": JANE}, headers=auth).json["data"] == []
    with engine.connect() as conn:
        stored = conn.execute(
            sa.select(object_properties.c.object_value, object_properties.c.value)
        ).all()
    assert not any(mentions(list(row), "jane", ":101") for row in stored if row[1] != "1")
    for event_id, payload in payloads(engine).items():
        assert not mentions(payload, *JANES), (event_id, payload)
    assert revenue_by_source(client, auth) == {None: 1000}  # Bob's only


# --- DELETE /api/leads/<id> -----------------------------------------------------------------


def test_delete_removes_the_lead_and_what_names_it(
    platforms: Platforms, client: FlaskClient, auth: dict[str, str], engine: Engine
) -> None:
    jane(platforms)
    bob(platforms)
    lead = lead_of(client, auth, JANE)
    bobs = lead_of(client, auth, BOB)
    assert [i["kind"] for i in lead["identities"]] == ["email", "hubspot", "stripe", "github"]
    assert revenue_by_source(client, auth) == {"google": 4900, None: 1000}
    before = payloads(engine)
    janes = {event_id for event_id, payload in before.items() if mentions(payload, *JANES)}
    assert len(janes) == 7  # four HubSpot events, the charge, the star, the ignored deletion

    response = client.delete(f"/api/leads/{lead['id']}", headers=auth)

    assert response.status_code == 200, response.json
    answer = response.json
    assert {k: answer[k] for k in ("id", "leadId", "deleted", "mergedLeadIds")} == {
        "id": lead["id"],
        "leadId": lead["id"],
        "deleted": True,
        "mergedLeadIds": [],
    }
    removed = answer["removed"]
    assert (removed["identities"], removed["conversions"], removed["inboundPayloads"]) == (4, 1, 7)
    assert removed["touchpoints"] >= 2 and removed["properties"] >= 3
    assert set(answer["inboundEventIds"]) == janes
    assert_jane_is_gone(engine, client, auth, lead["id"])
    after = payloads(engine)
    reason = f"lead {lead['id']} erased on request (DELETE /api/leads)"
    for event_id in janes:
        [(key, tombstone)] = after[event_id].items()
        assert (key, tombstone["reason"]) == (erasure.TOMBSTONE, reason)
        assert tombstone["at"].endswith("Z")
        shown = client.get(f"/api/inbound/{event_id}", headers=auth).json
        assert shown["payload"] == after[event_id]
    assert {k: v for k, v in after.items() if k not in janes} == {
        k: v for k, v in before.items() if k not in janes
    }
    assert lead_of(client, auth, BOB) == bobs

    again = client.delete(f"/api/leads/{lead['id']}", headers=auth)
    assert (again.status_code, again.json["code"]) == (404, "not_found")


def test_deleting_a_merged_id_erases_the_lead_it_was_merged_into(
    platforms: Platforms, client: FlaskClient, auth: dict[str, str], engine: Engine
) -> None:
    platforms.github(star(email=None))  # a GitHub user, no email yet: a lead of their own
    platforms.stripe("charge.succeeded", charge())  # Jane pays: another lead, by email
    bob(platforms)
    leads_now = client.get("/api/leads", headers=auth).json["data"]
    [github_only] = [lead for lead in leads_now if lead["identities"][0]["kind"] == "github"]
    paying = lead_of(client, auth, JANE)
    platforms.github(star(email=JANE, starred_at="2025-11-29T10:00:00Z"))  # one person: merged
    survivor = lead_of(client, auth, JANE)
    merged = ({github_only["id"], paying["id"]} - {survivor["id"]}).pop()
    assert client.get(f"/api/leads/{merged}", headers=auth).json["id"] == survivor["id"]

    response = client.delete(f"/api/leads/{merged}", headers=auth)

    assert response.status_code == 200, response.json
    assert (response.json["id"], response.json["leadId"]) == (merged, survivor["id"])
    assert response.json["mergedLeadIds"] == [merged]
    assert response.json["removed"]["conversions"] == 1
    for gone in (merged, survivor["id"]):
        assert client.get(f"/api/leads/{gone}", headers=auth).status_code == 404
        assert client.delete(f"/api/leads/{gone}", headers=auth).status_code == 404
    for payload in payloads(engine).values():
        assert not mentions(payload, "jane", "41234567")
    assert revenue_by_source(client, auth) == {None: 1000}


def test_deleting_an_unknown_lead_is_404(client: FlaskClient, auth: dict[str, str]) -> None:
    for lead_id in ("lead_nobody", "x" * 300, "lead_%25_"):
        response = client.delete(f"/api/leads/{lead_id}", headers=auth)
        assert (response.status_code, response.json["code"]) == (404, "not_found"), lead_id


def test_delete_needs_an_api_key(client: FlaskClient) -> None:
    assert client.delete("/api/leads/lead_x").status_code == 401


def test_a_tombstoned_event_replayed_is_ignored(
    platforms: Platforms, client: FlaskClient, auth: dict[str, str], engine: Engine
) -> None:
    [charge_event] = platforms.stripe("charge.succeeded", charge())
    lead = lead_of(client, auth, JANE)
    assert client.delete(f"/api/leads/{lead['id']}", headers=auth).status_code == 200

    assert client.post(f"/api/inbound/{charge_event}/replay", headers=auth).status_code == 202
    SimpleWorker([Queue("inbound", connection=platforms.redis)], connection=platforms.redis).work(
        burst=True
    )

    shown = client.get(f"/api/inbound/{charge_event}", headers=auth).json
    assert shown["status"] == "ignored"
    assert client.get("/api/leads", headers=auth).json["data"] == []


@pytest.mark.parametrize(
    ("source", "event_type"),
    [
        ("stripe", "charge.succeeded"),
        ("github", "star"),
        ("hubspot", "contact.propertyChange"),
        ("hubspot", "contact.privacyDeletion"),
    ],
)
def test_no_source_reads_anything_from_a_tombstone(source: str, event_type: str) -> None:
    payload = erasure.tombstone("erased", datetime(2026, 12, 1, tzinfo=UTC))
    with pytest.raises(UnusableEventError):
        extract(source, event_type, payload, {})


# --- HubSpot privacyDeletion: the same erasure -----------------------------------------------


def test_a_hubspot_privacy_deletion_erases_as_delete_does(
    platforms: Platforms, client: FlaskClient, auth: dict[str, str], engine: Engine
) -> None:
    jane(platforms)
    bob(platforms)
    lead = lead_of(client, auth, JANE)

    [deletion] = platforms.hubspot(hubspot("contact.privacyDeletion", 101, AT + 10_000))

    assert_jane_is_gone(engine, client, auth, lead["id"])
    tombstone = payloads(engine)[deletion]
    assert tombstone[erasure.TOMBSTONE]["reason"] == (
        "the person erased on a HubSpot privacyDeletion"
    )
    assert client.get(f"/api/inbound/{deletion}", headers=auth).json["status"] == "processed"
    # Older news of the contact, delivered late, brings nobody back.
    platforms.hubspot(hubspot_property(101, AT + 5, "email", JANE))
    assert client.get("/api/leads", query_string={"email": JANE}, headers=auth).json["data"] == []


def test_a_plain_hubspot_deletion_still_keeps_the_revenue_anonymous(
    platforms: Platforms, client: FlaskClient, auth: dict[str, str], engine: Engine
) -> None:
    jane(platforms)
    lead = lead_of(client, auth, JANE)

    platforms.hubspot(hubspot("contact.deletion", 101, AT + 10_000))

    kept = client.get(f"/api/leads/{lead['id']}", headers=auth).json
    assert (kept["email"], kept["identities"], kept["revenue"]) == (None, [], 4900)
    assert revenue_by_source(client, auth) == {"google": 4900}
    with engine.connect() as conn:
        owned = conn.execute(sa.select(sa.func.count()).select_from(lead_identities)).scalar()
    assert owned == 0
    # Only a privacy deletion (or DELETE) tombstones the stored payloads.
    assert sum(mentions(payload, *JANES) for payload in payloads(engine).values()) == 8
