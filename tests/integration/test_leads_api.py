"""Leads, attribution and goals through the Flask test client, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.engine import Engine

from apex.pipeline import identity
from apex.pipeline import run as pipeline
from tests.platforms import intent_succeeded, stripe
from tests.platforms import star as star_event

pytestmark = pytest.mark.postgres

RECEIVED = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
LEAD_FIELDS = {
    "id",
    "email",
    "name",
    "company",
    "identities",
    "revenue",
    "currency",
    "revenueByCurrency",
    "conversions",
    "firstTouch",
    "lastTouch",
    "createdAt",
    "updatedAt",
}


@pytest.fixture
def engine(app: Flask) -> Engine:
    engine: Engine = app.extensions["apex"].engine
    return engine


def star(engine: Engine, user_id: int, email: str | None = None, campaign: str = "a/w") -> None:
    """GitHub user `user_id` stars `campaign` on January `user_id`, 2026."""
    payload = star_event(
        user_id, email, starred_at=f"2026-01-{user_id:02d}T10:00:00Z", repository=campaign
    )
    pipeline.run(engine, "github", "star", payload, {}, RECEIVED)


def pay(engine: Engine, email: str, amount: int, intent: str, created: int = 1767520800) -> None:
    """A payment by `email`, with no Stripe customer: the receipt email names the payer."""
    paid = intent_succeeded(intent, amount, customer=None, receipt_email=email)
    payload = stripe("payment_intent.succeeded", paid, created, id=f"evt_{intent}")
    pipeline.run(engine, "stripe", "payment_intent.succeeded", payload, {}, RECEIVED)


@pytest.mark.parametrize(
    "path", ["/api/leads", "/api/leads/lead_x", "/api/attribution", "/api/goals"]
)
def test_routes_require_an_api_key(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 401
    assert response.json["code"] == "unauthorized"


def test_a_lead_has_the_spec_shape_in_the_api_and_in_its_events(
    client: FlaskClient, auth: dict[str, str], engine: Engine
) -> None:
    star(engine, 1, email="Ada@Example.com")
    pay(engine, "ada@example.com", 12000, "pi_ada")

    [lead] = client.get("/api/leads", headers=auth).json["data"]
    assert set(lead) == LEAD_FIELDS
    assert lead["email"] == "ada@example.com"
    assert lead["identities"] == [
        {"kind": "email", "value": "ada@example.com"},
        {"kind": "github", "value": "1"},
    ]
    assert (lead["revenue"], lead["currency"], lead["conversions"]) == (12000, "usd", 1)
    assert lead["revenueByCurrency"] == {"usd": 12000}
    assert lead["firstTouch"] == {
        "source": "github",
        "campaign": "a/w",
        "at": "2026-01-01T10:00:00Z",
    }
    assert TIMESTAMP.match(lead["createdAt"]) and TIMESTAMP.match(lead["updatedAt"])

    one = client.get(f"/api/leads/{lead['id']}", headers=auth)
    assert one.status_code == 200
    assert one.json == lead == identity.lead_data(identity.get(engine, lead["id"]))


def test_filters_leads_by_email_and_first_touch_source(
    client: FlaskClient, auth: dict[str, str], engine: Engine
) -> None:
    star(engine, 1, email="ada@example.com")
    pay(engine, "bob@example.com", 100, "pi_bob")

    def emails(query: str) -> list[str | None]:
        response = client.get(f"/api/leads?{query}", headers=auth)
        assert response.status_code == 200
        return [lead["email"] for lead in response.json["data"]]

    assert emails("email=%20ADA@example.com") == ["ada@example.com"]
    assert emails("email=nobody@example.com") == []
    assert emails("source=github") == ["ada@example.com"]
    assert sorted(emails("")) == ["ada@example.com", "bob@example.com"]


def test_pages_through_leads_with_a_cursor(
    client: FlaskClient, auth: dict[str, str], engine: Engine
) -> None:
    for user_id in (1, 2, 3):
        star(engine, user_id)
    first = client.get("/api/leads?limit=2", headers=auth).json
    assert len(first["data"]) == 2 and first["nextCursor"] == first["data"][-1]["id"]
    second = client.get(f"/api/leads?limit=2&cursor={first['nextCursor']}", headers=auth).json
    assert len(second["data"]) == 1 and second["nextCursor"] is None
    ids = [lead["id"] for lead in first["data"] + second["data"]]
    assert len(set(ids)) == 3

    assert client.get("/api/leads?cursor=lead_gone", headers=auth).status_code == 404
    assert client.get("/api/leads?limit=0", headers=auth).status_code == 422


def test_a_merged_lead_id_resolves_to_the_lead_it_was_merged_into(
    client: FlaskClient, auth: dict[str, str], engine: Engine
) -> None:
    star(engine, 1)
    pay(engine, "ada@example.com", 100, "pi_1")
    newer, older = client.get("/api/leads", headers=auth).json["data"]  # newest first
    star(engine, 1, email="ada@example.com")  # the GitHub user shows the same email: one person

    response = client.get(f"/api/leads/{newer['id']}", headers=auth)
    assert response.status_code == 200
    assert response.json["id"] == older["id"]
    assert client.get("/api/leads/lead_unknown", headers=auth).json["code"] == "not_found"


def test_attribution_by_model_and_period(
    client: FlaskClient, auth: dict[str, str], engine: Engine
) -> None:
    star(engine, 1, email="ada@example.com", campaign="acme/widget")
    pay(engine, "ada@example.com", 9000, "pi_ada", created=1767520800)  # 2026-01-04
    pay(engine, "bob@example.com", 1000, "pi_bob", created=1767520800)  # no touch

    response = client.get("/api/attribution?model=linear", headers=auth)
    assert response.status_code == 200
    assert response.json == {
        "model": "linear",
        "from": None,
        "to": None,
        "bySource": [
            {"source": "github", "currency": "usd", "revenue": 9000, "conversions": 1.0},
            {"source": None, "currency": "usd", "revenue": 1000, "conversions": 1.0},
        ],
        "byCampaign": [
            {
                "source": "github",
                "campaign": "acme/widget",
                "currency": "usd",
                "revenue": 9000,
                "conversions": 1.0,
            },
            {
                "source": None,
                "campaign": None,
                "currency": "usd",
                "revenue": 1000,
                "conversions": 1.0,
            },
        ],
    }
    later = client.get("/api/attribution?from=2026-02-01T00:00:00Z", headers=auth).json
    assert (later["model"], later["from"], later["bySource"]) == (
        "first_touch",
        "2026-02-01T00:00:00Z",
        [],
    )


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("model=time_decay", "model"),
        ("from=yesterday", "from"),
        ("from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z", "to"),
    ],
)
def test_rejects_a_bad_attribution_query(
    client: FlaskClient, auth: dict[str, str], query: str, field: str
) -> None:
    response = client.get(f"/api/attribution?{query}", headers=auth)
    assert response.status_code == 422
    assert [e["field"] for e in response.json["errors"]] == [field]


def test_goals_can_be_created_listed_read_and_deleted(
    client: FlaskClient, auth: dict[str, str], engine: Engine
) -> None:
    created = client.post(
        "/api/goals",
        json={"name": "Q1 revenue", "metric": "revenue", "target": 20000},
        headers=auth,
    )
    assert created.status_code == 201
    goal = created.json
    assert goal["id"].startswith("goal_")
    assert (goal["value"], goal["progress"], goal["reached"], goal["source"]) == (0, 0, False, None)
    assert goal["reachedAt"] is None and TIMESTAMP.match(goal["createdAt"])

    pay(engine, "ada@example.com", 5000, "pi_1")
    listed = client.get("/api/goals", headers=auth).json
    assert [(g["id"], g["value"], g["progress"]) for g in listed] == [(goal["id"], 5000, 0.25)]

    pay(engine, "bob@example.com", 15000, "pi_2")
    reached = client.get(f"/api/goals/{goal['id']}", headers=auth).json
    assert (reached["reached"], reached["progress"]) == (True, 1.0)
    assert TIMESTAMP.match(reached["reachedAt"])

    deleted = client.delete(f"/api/goals/{goal['id']}", headers=auth)
    assert deleted.status_code == 200 and deleted.json == {"id": goal["id"], "deleted": True}
    assert client.delete(f"/api/goals/{goal['id']}", headers=auth).status_code == 404
    assert client.get(f"/api/goals/{goal['id']}", headers=auth).status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"metric": "leads", "target": 10}, "name"),
        ({"name": "x", "metric": "signups", "target": 10}, "metric"),
        ({"name": "x", "metric": "leads", "target": 0}, "target"),
        ({"name": "x", "metric": "leads", "target": "10"}, "target"),
        ({"name": "x", "metric": "leads", "target": 10, "source": ""}, "source"),
    ],
)
def test_rejects_an_invalid_goal(
    client: FlaskClient, auth: dict[str, str], body: dict[str, Any], field: str
) -> None:
    response = client.post("/api/goals", json=body, headers=auth)
    assert response.status_code == 422
    assert response.json["code"] == "validation_failed"
    assert [e["field"] for e in response.json["errors"]] == [field]


def test_the_routes_are_in_the_openapi_document(client: FlaskClient) -> None:
    paths = client.get("/api/openapi.json").json["paths"]
    assert {
        "/api/leads",
        "/api/leads/{lead_id}",
        "/api/attribution",
        "/api/goals",
        "/api/goals/{goal_id}",
    } <= set(paths)
