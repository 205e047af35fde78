"""The management API through the Flask test client, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.factories import subscription_body

pytestmark = pytest.mark.postgres

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def create(client: FlaskClient, auth: dict[str, str], **overrides: Any) -> dict[str, Any]:
    response = client.post("/api/webhooks", json=subscription_body(**overrides), headers=auth)
    assert response.status_code == 201, response.json
    return dict(response.json)


def test_seed_contract_create_list_delete(client: FlaskClient, auth: dict[str, str]) -> None:
    created = create(client, auth)
    assert created["id"].startswith("wh_")
    assert created["secret"].startswith("whsec_")
    assert created["status"] == "active"
    assert created["events"] == ["lead.created", "experiment.completed"]
    assert TIMESTAMP.match(created["createdAt"])

    listed = client.get("/api/webhooks", headers=auth)
    assert listed.status_code == 200
    assert [w["id"] for w in listed.json] == [created["id"]]
    assert {"id", "url", "events", "status", "createdAt"} <= set(listed.json[0])
    assert "secret" not in listed.json[0]

    deleted = client.delete("/api/webhooks", json={"id": created["id"]}, headers=auth)
    assert deleted.status_code == 200
    assert deleted.json == {"id": created["id"], "deleted": True}
    assert client.get("/api/webhooks", headers=auth).json == []


def test_secret_is_shown_only_at_creation(client: FlaskClient, auth: dict[str, str]) -> None:
    created = create(client, auth)
    for response in (
        client.get(f"/api/webhooks/{created['id']}", headers=auth),
        client.patch(f"/api/webhooks/{created['id']}", json={"description": "x"}, headers=auth),
        client.get("/api/webhooks", headers=auth),
    ):
        assert created["secret"] not in response.get_data(as_text=True)


def test_accepts_a_supplied_standard_webhooks_secret(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    assert create(client, auth, secret=secret)["secret"] == secret


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"events": ["lead.created"]}, "url"),
        ({"url": "https://example.com/h"}, "events"),
        (subscription_body(events=[]), "events"),
        (subscription_body(events=["lead.created", "lead.created"]), "events"),
        (subscription_body(events=["lead.exploded"]), "events"),
        (subscription_body(events="lead.created"), "events"),
        (subscription_body(url="ftp://example.com/h"), "url"),
        (subscription_body(url="/relative/path"), "url"),
        (subscription_body(url="https://user:pw@example.com/h"), "url"),
        (subscription_body(url="https://example.com/" + "a" * 2050), "url"),
        (subscription_body(secret="not-a-secret"), "secret"),
        (subscription_body(secret="whsec_c2hvcnQ="), "secret"),
        (subscription_body(colour="blue"), "colour"),
    ],
)
def test_rejects_invalid_subscription_with_field_error(
    client: FlaskClient, auth: dict[str, str], body: dict[str, Any], field: str
) -> None:
    response = client.post("/api/webhooks", json=body, headers=auth)
    assert response.status_code == 422
    assert response.json["code"] == "validation_failed"
    assert field in [e["field"] for e in response.json["errors"]]
    assert client.get("/api/webhooks", headers=auth).json == []  # nothing half-written


def test_wildcard_subscribes_to_all(client: FlaskClient, auth: dict[str, str]) -> None:
    assert create(client, auth, events=["*"])["events"] == ["*"]


def test_http_url_refused_unless_allowed(client: FlaskClient, auth: dict[str, str], app) -> None:  # type: ignore[no-untyped-def]
    app.extensions["apex"] = replace(
        app.extensions["apex"], settings=replace(app.extensions["apex"].settings, allow_http=False)
    )
    response = client.post(
        "/api/webhooks", json=subscription_body(url="http://example.com/h"), headers=auth
    )
    assert response.status_code == 422
    assert "https" in response.json["errors"][0]["message"]


@pytest.mark.parametrize(
    ("data", "content_type"),
    [("{not json", "application/json"), ('{"url": "https://x.io"}', "text/plain")],
)
def test_malformed_json_or_wrong_content_type_is_400(
    client: FlaskClient, auth: dict[str, str], data: str, content_type: str
) -> None:
    response = client.post("/api/webhooks", data=data, content_type=content_type, headers=auth)
    assert response.status_code == 400
    assert response.json["code"] == "bad_request"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"x-api-key": "wrong"},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Basic eDp5"},
    ],
)
def test_requires_a_valid_api_key(client: FlaskClient, headers: dict[str, str]) -> None:
    response = client.get("/api/webhooks", headers=headers)
    assert response.status_code == 401
    assert response.json["code"] == "unauthorized"
    assert response.json["detail"]


def test_accepts_bearer_token(client: FlaskClient, auth: dict[str, str]) -> None:
    bearer = {"Authorization": f"Bearer {auth['x-api-key']}"}
    assert client.get("/api/webhooks", headers=bearer).status_code == 200


def test_unknown_ids_are_404(client: FlaskClient, auth: dict[str, str]) -> None:
    for response in (
        client.get("/api/webhooks/wh_nope", headers=auth),
        client.patch("/api/webhooks/wh_nope", json={"description": "x"}, headers=auth),
        client.delete("/api/webhooks/wh_nope", headers=auth),
        client.delete("/api/webhooks", json={"id": "wh_nope"}, headers=auth),
        client.post("/api/webhooks/wh_nope/rotate-secret", json={}, headers=auth),
    ):
        assert response.status_code == 404
        assert response.json["code"] == "not_found"


def test_delete_without_id_is_422(client: FlaskClient, auth: dict[str, str]) -> None:
    response = client.delete("/api/webhooks", json={}, headers=auth)
    assert response.status_code == 422
    assert response.json["errors"][0]["field"] == "id"


def test_wrong_method_is_405_json(client: FlaskClient, auth: dict[str, str]) -> None:
    response = client.put("/api/webhooks", json={}, headers=auth)
    assert response.status_code == 405
    assert response.json["code"] == "method_not_allowed"


def test_patch_updates_and_pauses(client: FlaskClient, auth: dict[str, str]) -> None:
    created = create(client, auth)
    response = client.patch(
        f"/api/webhooks/{created['id']}",
        json={"status": "paused", "events": ["goal.reached"], "url": "https://example.org/x"},
        headers=auth,
    )
    assert response.status_code == 200
    got = client.get(f"/api/webhooks/{created['id']}", headers=auth).json
    assert (got["status"], got["events"], got["url"]) == (
        "paused",
        ["goal.reached"],
        "https://example.org/x",
    )
    bad = client.patch(f"/api/webhooks/{created['id']}", json={"status": "disabled"}, headers=auth)
    assert bad.status_code == 422


def test_rotate_secret_returns_a_new_secret_once(client: FlaskClient, auth: dict[str, str]) -> None:
    created = create(client, auth)
    response = client.post(f"/api/webhooks/{created['id']}/rotate-secret", headers=auth)
    assert response.status_code == 200
    assert response.json["secret"].startswith("whsec_")
    assert response.json["secret"] != created["secret"]
    assert TIMESTAMP.match(response.json["previousSecretExpiresAt"])


def test_openapi_document_lists_the_routes(client: FlaskClient) -> None:
    spec = client.get("/api/openapi.json").json
    assert "/api/webhooks" in spec["paths"]
    assert {"get", "post", "delete"} <= set(spec["paths"]["/api/webhooks"])
    docs = client.get("/api/docs")
    assert docs.status_code == 200
    assert "/api/webhooks/{sub_id}/rotate-secret" in docs.get_data(as_text=True)


def test_health_reports_redis_and_database(client: FlaskClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json == {"status": "ok", "checks": {"redis": "ok", "database": "ok"}}


def test_health_is_503_while_shutting_down(client: FlaskClient) -> None:
    from apex.api.health import shutting_down

    shutting_down.set()
    try:
        response = client.get("/health")
    finally:
        shutting_down.clear()
    assert response.status_code == 503
    assert response.json["status"] == "shutting_down"


def test_every_response_carries_a_request_id(client: FlaskClient, auth: dict[str, str]) -> None:
    given = client.get("/api/webhooks", headers={**auth, "X-Request-ID": "abc-123"})
    assert given.headers["X-Request-ID"] == "abc-123"
    fresh = client.get("/api/webhooks", headers={**auth, "X-Request-ID": "bad id;x"})
    assert fresh.headers["X-Request-ID"].startswith("req_")


@pytest.mark.parametrize(
    "url",
    ["https://127.0.0.1/h", "https://localhost/h", "https://10.0.0.7/h", "https://[::1]/h",
     "https://169.254.169.254/latest"],
)  # fmt: skip
def test_private_address_urls_are_refused_at_creation(
    client: FlaskClient, auth: dict[str, str], app: Flask, url: str
) -> None:
    rt = app.extensions["apex"]
    settings = replace(rt.settings, allow_private_destinations=False)
    app.extensions["apex"] = replace(rt, settings=settings)
    response = client.post("/api/webhooks", json=subscription_body(url=url), headers=auth)
    assert response.status_code == 422
    assert "APEX_ALLOW_PRIVATE_DESTINATIONS" in response.json["errors"][0]["message"]


def test_publishing_an_id_again_with_other_data_is_a_conflict(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    first = {"type": "goal.reached", "data": {"n": 1}, "id": "evt_same"}
    assert client.post("/api/events", json=first, headers=auth).status_code == 202
    assert client.post("/api/events", json=first, headers=auth).json["duplicate"] is True
    other = client.post("/api/events", json={**first, "data": {"n": 2}}, headers=auth)
    assert other.status_code == 409
    assert other.json["code"] == "conflict"


def test_malformed_json_says_so(client: FlaskClient, auth: dict[str, str]) -> None:
    response = client.post(
        "/api/webhooks", data="{not json", content_type="application/json", headers=auth
    )
    assert "Malformed JSON" in response.json["detail"]


def test_openapi_documents_our_error_shape(client: FlaskClient) -> None:
    spec = client.get("/api/openapi.json").json
    error = spec["components"]["schemas"]["Error"]["properties"]
    assert error["code"]["type"] == "string" and "detail" in error and "errors" in error
    assert set(spec["components"]["securitySchemes"]) == {"apiKey", "bearer"}


def test_a_second_rotation_during_the_overlap_is_refused(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    created = create(client, auth)
    path = f"/api/webhooks/{created['id']}/rotate-secret"
    assert client.post(path, headers=auth).status_code == 200
    again = client.post(path, headers=auth)
    assert again.status_code == 409
    assert (
        again.json["code"] == "conflict" and "previous secret signs until" in again.json["detail"]
    )


@pytest.mark.parametrize("event_id", ["evt.1", "evt_✓", "a" * 65, ""])
def test_event_ids_must_be_header_safe(
    client: FlaskClient, auth: dict[str, str], event_id: str
) -> None:
    body = {"type": "lead.created", "data": {}, "id": event_id}
    response = client.post("/api/events", json=body, headers=auth)
    assert response.status_code == 422
    assert response.json["errors"][0]["field"] == "id"
