"""POST /api/webhooks/<source> and the operator routes, through the Flask test client, with
requests signed as Stripe, GitHub and HubSpot sign them, on the real Redis and both databases."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any
from urllib.parse import urlencode

import pytest
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis
from rq import Queue
from werkzeug.test import TestResponse

from apex.inbound import store
from config import Settings
from tests.factories import subscription_body
from tests.integration.conftest import queued_inbound
from tests.platforms import (
    GITHUB_SECRET,
    HUBSPOT_SECRET,
    STRIPE_SECRET,
    github_body,
    github_headers,
    hubspot_body,
    hubspot_v1_headers,
    hubspot_v3_headers,
    stripe_body,
    stripe_headers,
)
from tests.platforms import HUBSPOT_LOCAL_URL as LOCAL_URL

pytestmark = pytest.mark.postgres

PUBLIC_URL = "https://apex.example.com/api/webhooks/hubspot"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return replace(
        settings,
        stripe_webhook_secrets=(STRIPE_SECRET,),
        github_webhook_secrets=(GITHUB_SECRET,),
        hubspot_client_secrets=(HUBSPOT_SECRET,),
    )


# --- helpers --------------------------------------------------------------------------------


def post(client: FlaskClient, source: str, body: bytes, headers: dict[str, str]) -> TestResponse:
    return client.post(f"/api/webhooks/{source}", data=body, headers=headers)


def stored(app: Flask) -> list[store.StoredEvent]:
    rows, _ = store.page(app.extensions["apex"].engine, None, None, 250, None)
    return rows


def queued_jobs(redis_conn: Redis) -> int:
    return len(queued_inbound(redis_conn))


def assert_refused(
    response: TestResponse, status: int, code: str, app: Flask, redis_conn: Redis
) -> None:
    assert response.status_code == status, response.json
    assert response.json["code"] == code
    assert stored(app) == []
    assert queued_jobs(redis_conn) == 0


# --- accepted, then duplicate ---------------------------------------------------------------


def test_stripe_event_is_accepted_stored_and_queued(
    client: FlaskClient, app: Flask, redis_conn: Redis
) -> None:
    body = stripe_body()

    response = post(client, "stripe", body, stripe_headers(body))

    assert response.status_code == 202
    assert response.json["received"] is True
    assert response.json["id"].startswith("inb_")
    [row] = stored(app)
    assert (row.id, row.source, row.dedupe_key, row.type, row.status) == (
        response.json["id"],
        "stripe",
        "evt_1SAbcCustCreated01",
        "customer.created",
        "queued",
    )
    assert row.payload == json.loads(body)
    assert queued_inbound(redis_conn) == [row.id]
    [job] = Queue("inbound", connection=redis_conn).get_jobs()
    assert job.func_name == "workers.inbound.drain_inbound"


@pytest.mark.parametrize(
    ("source", "make"),
    [
        ("stripe", lambda: (stripe_body(), stripe_headers)),
        ("github", lambda: (github_body(), github_headers)),
        ("hubspot", lambda: (hubspot_body(), hubspot_v3_headers)),
    ],
    ids=["stripe", "github", "hubspot"],
)
def test_same_delivery_again_answers_200_duplicate(
    client: FlaskClient, app: Flask, redis_conn: Redis, source: str, make: Any
) -> None:
    body, sign = make()
    headers = sign(body)

    first = post(client, source, body, headers)
    again = post(client, source, body, headers)

    assert first.status_code == 202
    assert again.status_code == 200
    assert again.json == {"received": True, "duplicate": True}
    assert len(stored(app)) == 1
    assert queued_jobs(redis_conn) == 1


def test_concurrent_identical_deliveries_store_one_row(app: Flask, redis_conn: Redis) -> None:
    body = hubspot_body(1, 2)
    headers = hubspot_v3_headers(body)
    start = threading.Barrier(8)

    def deliver(_: int) -> int:
        client = app.test_client()
        start.wait()
        return post(client, "hubspot", body, headers).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = sorted(pool.map(deliver, range(8)))

    assert statuses == [200] * 7 + [202]
    assert len(stored(app)) == 2
    assert queued_jobs(redis_conn) == 2


def test_stripe_redelivery_resigned_later_is_still_a_duplicate(client: FlaskClient) -> None:
    body = stripe_body()
    assert post(client, "stripe", body, stripe_headers(body)).status_code == 202
    later = stripe_headers(body, timestamp=int(time.time()) + 60)
    assert post(client, "stripe", body, later).status_code == 200


def test_stripe_header_with_two_v1_of_which_one_matches(client: FlaskClient) -> None:
    body = stripe_body()
    good = stripe_headers(body)
    bad = stripe_headers(body, secret="whsec_some_other_secret")
    timestamp, good_v1 = good["Stripe-Signature"].split(",")
    bad_v1 = bad["Stripe-Signature"].split(",")[1]
    headers = {**good, "Stripe-Signature": f"{timestamp},{bad_v1},{good_v1}"}

    assert post(client, "stripe", body, headers).status_code == 202


def test_github_ping_is_accepted(client: FlaskClient, app: Flask) -> None:
    body = json.dumps({"zen": "Design for failure.", "hook_id": 4242}).encode()

    response = post(client, "github", body, github_headers(body, event="ping"))

    assert response.status_code == 202
    assert stored(app)[0].type == "ping"


def test_github_form_encoded_delivery_is_accepted(client: FlaskClient, app: Flask) -> None:
    payload = github_body().decode()
    body = urlencode({"payload": payload}).encode()
    headers = github_headers(body, content_type="application/x-www-form-urlencoded")

    response = post(client, "github", body, headers)

    assert response.status_code == 202, response.json
    assert stored(app)[0].payload == json.loads(payload)


def test_github_same_body_on_another_hook_or_delivery_is_a_duplicate(client: FlaskClient) -> None:
    # GitHub signs the body only: the hook and delivery ids are the sender's word (issue 10).
    body = github_body()
    headers = github_headers(body, delivery="72d3162e-cc78-11e3-81ab-4c9367dc0958")
    assert post(client, "github", body, headers).status_code == 202
    other_hook = {**headers, "X-GitHub-Hook-ID": "4343", "X-GitHub-Delivery": "other"}
    assert post(client, "github", body, other_hook).status_code == 200


def test_hubspot_batch_stores_one_row_per_event_and_answers_with_the_first(
    client: FlaskClient, app: Flask, redis_conn: Redis
) -> None:
    body = hubspot_body(1, 2)

    response = post(client, "hubspot", body, hubspot_v3_headers(body))

    assert response.status_code == 202
    rows = stored(app)
    assert len(rows) == 2
    assert response.json["id"] in {row.id for row in rows}
    assert queued_jobs(redis_conn) == 2


def test_hubspot_batch_with_one_new_event_is_accepted_for_that_one(
    client: FlaskClient, app: Flask
) -> None:
    first = hubspot_body(1, 2)
    assert post(client, "hubspot", first, hubspot_v3_headers(first)).status_code == 202
    ids_before = {row.id for row in stored(app)}
    second = hubspot_body(2, 3)

    response = post(client, "hubspot", second, hubspot_v3_headers(second))

    assert response.status_code == 202
    [new] = [row for row in stored(app) if row.id not in ids_before]
    assert response.json["id"] == new.id
    assert new.payload["eventId"] == 3


def test_hubspot_empty_batch_is_accepted_with_nothing_stored(
    client: FlaskClient, app: Flask
) -> None:
    body = b"[]"
    response = post(client, "hubspot", body, hubspot_v3_headers(body))
    assert response.status_code == 202
    assert response.json == {"received": True, "id": None}
    assert stored(app) == []


def test_hubspot_v3_behind_a_proxy_is_verified_over_the_public_https_url(
    client: FlaskClient,
) -> None:
    body = hubspot_body()
    headers = {
        **hubspot_v3_headers(body, url=PUBLIC_URL),
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "apex.example.com",
    }
    assert post(client, "hubspot", body, headers).status_code == 202


def test_hubspot_v3_over_the_public_url_without_forwarded_headers_is_refused(
    client: FlaskClient, app: Flask, redis_conn: Redis
) -> None:
    body = hubspot_body()
    response = post(client, "hubspot", body, hubspot_v3_headers(body, url=PUBLIC_URL))
    assert_refused(response, 401, "invalid_signature", app, redis_conn)


def test_hubspot_v3_is_verified_over_apex_public_url_when_set(app: Flask) -> None:
    rt = app.extensions["apex"]
    public = "https://hooks.example.org"
    app.extensions["apex"] = replace(rt, settings=replace(rt.settings, public_url=public))
    body = hubspot_body()
    headers = hubspot_v3_headers(body, url=f"{public}/api/webhooks/hubspot")

    assert post(app.test_client(), "hubspot", body, headers).status_code == 202


def test_hubspot_v3_query_string_is_signed_as_sent(client: FlaskClient) -> None:
    # HubSpot decodes only the escapes it lists; %C3%A9 and %20 stay as they were sent.
    query = "tenant=caf%C3%A9&note=a%20b&path=%2Fx"
    signed_url = f"{LOCAL_URL}?tenant=caf%C3%A9&note=a%20b&path=/x"
    body = hubspot_body()
    headers = hubspot_v3_headers(body, url=signed_url)

    response = client.post(f"/api/webhooks/hubspot?{query}", data=body, headers=headers)

    assert response.status_code == 202, response.json


def test_hubspot_v1_legacy_signature_is_refused_by_default(
    client: FlaskClient, app: Flask, redis_conn: Redis
) -> None:
    body = hubspot_body()
    response = post(client, "hubspot", body, hubspot_v1_headers(body))
    assert_refused(response, 401, "invalid_signature", app, redis_conn)
    assert "APEX_HUBSPOT_LEGACY_SIGNATURES" in response.json["detail"]


def test_hubspot_v1_legacy_signature_is_accepted_when_allowed(app: Flask) -> None:
    rt = app.extensions["apex"]
    allowed = replace(rt.settings, hubspot_legacy_signatures=True)
    app.extensions["apex"] = replace(rt, settings=allowed)
    body = hubspot_body()
    assert post(app.test_client(), "hubspot", body, hubspot_v1_headers(body)).status_code == 202


def test_hubspot_verified_json_that_is_not_an_array_is_stored_ignored(
    client: FlaskClient, app: Flask
) -> None:
    body = b'{"eventId": 1}'
    response = post(client, "hubspot", body, hubspot_v3_headers(body))

    assert response.status_code == 202, response.json
    (row,) = stored(app)
    assert (row.status, row.payload) == ("ignored", {"eventId": 1})
    assert row.reason and "no subscriptionType" in row.reason


def test_chunked_body_within_the_limit_is_accepted(client: FlaskClient) -> None:
    body = stripe_body()
    response = client.post(
        "/api/webhooks/stripe",
        data=body,
        headers={**stripe_headers(body), "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.status_code == 202, response.json


# --- refused, and nothing stored or queued --------------------------------------------------


def _tampered(source: str) -> tuple[bytes, dict[str, str]]:
    """A body signed correctly, then changed by one digit."""
    if source == "stripe":
        signed = stripe_body()
        headers = stripe_headers(signed)
    elif source == "github":
        signed = github_body()
        headers = github_headers(signed)
    else:
        signed = hubspot_body()
        headers = hubspot_v3_headers(signed)
    return signed.replace(b"1", b"2", 1), headers


@pytest.mark.parametrize(
    ("source", "make"),
    [
        ("stripe", lambda: _tampered("stripe")),
        ("github", lambda: _tampered("github")),
        ("hubspot", lambda: _tampered("hubspot")),
        ("stripe", lambda: (stripe_body(), stripe_headers(stripe_body(), secret="whsec_wrong"))),
        ("github", lambda: (github_body(), github_headers(github_body(), secret="wrong"))),
        ("hubspot", lambda: (hubspot_body(), hubspot_v3_headers(hubspot_body(), secret="wrong"))),
        ("hubspot", lambda: (hubspot_body(), hubspot_v1_headers(hubspot_body(), secret="wrong"))),
        ("stripe", lambda: (stripe_body(), {"Content-Type": "application/json"})),
        ("github", lambda: (github_body(), {"Content-Type": "application/json"})),
        ("hubspot", lambda: (hubspot_body(), {"Content-Type": "application/json"})),
        (
            "stripe",
            lambda: (
                stripe_body(),
                stripe_headers(stripe_body(), timestamp=int(time.time()) - 15 * 60),
            ),
        ),
        (
            "hubspot",
            lambda: (
                hubspot_body(),
                hubspot_v3_headers(
                    hubspot_body(), timestamp_ms=int((time.time() - 10 * 60) * 1000)
                ),
            ),
        ),
    ],
    ids=[
        "stripe_tampered_body",
        "github_tampered_body",
        "hubspot_tampered_body",
        "stripe_wrong_secret",
        "github_wrong_secret",
        "hubspot_v3_wrong_secret",
        "hubspot_v1_wrong_secret",
        "stripe_missing_header",
        "github_missing_header",
        "hubspot_missing_header",
        "stripe_15_minutes_old",
        "hubspot_10_minutes_old",
    ],
)
def test_bad_signature_is_refused_with_401(
    client: FlaskClient, app: Flask, redis_conn: Redis, source: str, make: Any
) -> None:
    body, headers = make()
    assert_refused(post(client, source, body, headers), 401, "invalid_signature", app, redis_conn)


def test_github_sha1_only_signature_is_refused(
    client: FlaskClient, app: Flask, redis_conn: Redis
) -> None:
    body = github_body()
    headers = github_headers(body)
    del headers["X-Hub-Signature-256"]
    sha1 = hmac.new(GITHUB_SECRET.encode(), body, hashlib.sha1).hexdigest()
    headers["X-Hub-Signature"] = f"sha1={sha1}"

    response = post(client, "github", body, headers)

    assert_refused(response, 401, "invalid_signature", app, redis_conn)


def test_unknown_source_is_404(client: FlaskClient, app: Flask, redis_conn: Redis) -> None:
    body = stripe_body()
    response = post(client, "shopify", body, stripe_headers(body))
    assert_refused(response, 404, "not_found", app, redis_conn)


def test_body_over_the_limit_is_413(client: FlaskClient, app: Flask, redis_conn: Redis) -> None:
    body = b'{"pad": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    response = post(client, "stripe", body, stripe_headers(body))
    assert_refused(response, 413, "payload_too_large", app, redis_conn)


def test_chunked_body_over_the_limit_is_413(
    client: FlaskClient, app: Flask, redis_conn: Redis
) -> None:
    body = b'{"pad": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    response = client.post(
        "/api/webhooks/stripe",
        data=body,
        headers={**stripe_headers(body), "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert_refused(response, 413, "payload_too_large", app, redis_conn)


def test_source_without_a_secret_is_503(app: Flask, redis_conn: Redis) -> None:
    rt = app.extensions["apex"]
    app.extensions["apex"] = replace(rt, settings=replace(rt.settings, github_webhook_secrets=()))
    body = github_body()

    response = post(app.test_client(), "github", body, github_headers(body))

    assert_refused(response, 503, "source_not_configured", app, redis_conn)


@pytest.mark.parametrize(
    ("source", "body", "sign"),
    [
        ("stripe", b"not json", stripe_headers),
        ("github", b"not json", github_headers),
        ("hubspot", b"{not json", hubspot_v3_headers),
    ],
    ids=["stripe", "github", "hubspot"],
)
def test_verified_body_that_is_not_the_json_expected_is_400(
    client: FlaskClient, app: Flask, redis_conn: Redis, source: str, body: bytes, sign: Any
) -> None:
    response = post(client, source, body, sign(body))
    assert_refused(response, 400, "bad_request", app, redis_conn)


def test_wrong_method_is_405(client: FlaskClient, app: Flask, redis_conn: Redis) -> None:
    body = stripe_body()
    response = client.put("/api/webhooks/stripe", data=body, headers=stripe_headers(body))
    assert_refused(response, 405, "method_not_allowed", app, redis_conn)
    assert "POST" in response.headers["Allow"]


def test_subscription_routes_on_the_same_path_still_work(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    created = client.post("/api/webhooks", json=subscription_body(), headers=auth).json
    assert client.get(f"/api/webhooks/{created['id']}", headers=auth).status_code == 200
    assert client.get("/api/webhooks/stripe").status_code == 401  # the management route
    assert client.get("/api/webhooks/stripe", headers=auth).json["code"] == "not_found"


def test_redis_down_still_answers_202_and_the_row_is_stored(app: Flask) -> None:
    rt = app.extensions["apex"]
    app.extensions["apex"] = replace(rt, redis=Redis(port=1, socket_connect_timeout=0.2))
    body = stripe_body()

    response = post(app.test_client(), "stripe", body, stripe_headers(body))

    assert response.status_code == 202
    [row] = stored(app)
    assert (row.id, row.status) == (response.json["id"], "queued")


def test_logs_one_line_without_secret_signature_or_body(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    body = stripe_body(event_id="evt_LogCheck")
    headers = stripe_headers(body)
    signature = headers["Stripe-Signature"].split("v1=")[1]
    caplog.set_level(logging.INFO, logger="apex.api.inbound")

    accepted = post(client, "stripe", body, headers)
    refused = post(client, "stripe", body.replace(b"jane", b"john"), headers)

    lines = [r.getMessage() for r in caplog.records if r.name == "apex.api.inbound"]
    assert len(lines) == 2
    assert "accepted" in lines[0] and accepted.json["id"] in lines[0]
    assert "refused 401 invalid_signature" in lines[1] and refused.status_code == 401
    text = "\n".join(lines)
    for secret in (STRIPE_SECRET, signature, "jane@acme.io", "john@acme.io"):
        assert secret not in text


def test_openapi_documents_the_inbound_door_without_api_key(client: FlaskClient) -> None:
    spec = client.get("/api/openapi.json").json
    # As three concrete paths: `/api/webhooks/{source}` would overlap `/api/webhooks/{sub_id}`.
    assert "/api/webhooks/{source}" not in spec["paths"]
    for source in ("stripe", "github", "hubspot"):
        operation = spec["paths"][f"/api/webhooks/{source}"]["post"]
        assert operation["security"] == []
        assert {"202", "200", "401", "413"} <= set(operation["responses"])
    assert "get" in spec["paths"]["/api/inbound"]


# --- the operator's view --------------------------------------------------------------------


def test_operator_routes_need_an_api_key(client: FlaskClient) -> None:
    assert client.get("/api/inbound").status_code == 401
    assert client.post("/api/inbound/inb_x/replay").status_code == 401


def test_operator_lists_with_filters_and_cursor(client: FlaskClient, auth: dict[str, str]) -> None:
    ids = []
    for n in range(3):
        body = stripe_body(event_id=f"evt_{n}")
        ids.append(post(client, "stripe", body, stripe_headers(body)).json["id"])
    body = github_body()
    github_id = post(client, "github", body, github_headers(body)).json["id"]

    everything = client.get("/api/inbound", headers=auth).json
    first = client.get("/api/inbound?source=stripe&limit=2", headers=auth).json
    rest = client.get(
        f"/api/inbound?source=stripe&limit=2&cursor={first['nextCursor']}", headers=auth
    ).json

    assert {e["id"] for e in everything["data"]} == {*ids, github_id}
    assert everything["nextCursor"] is None
    assert len(first["data"]) == 2 and first["nextCursor"] == first["data"][-1]["id"]
    assert {e["id"] for e in first["data"] + rest["data"]} == set(ids)
    assert rest["nextCursor"] is None
    row = first["data"][0]
    assert row["source"] == "stripe" and row["status"] == "queued" and row["attempts"] == 0
    assert {"dedupeKey", "type", "error", "result", "receivedAt", "nextAttemptAt"} <= set(row)
    assert "payload" not in row
    assert client.get("/api/inbound?status=failed", headers=auth).json["data"] == []


def test_operator_list_rejects_unknown_filters(client: FlaskClient, auth: dict[str, str]) -> None:
    response = client.get("/api/inbound?source=shopify&status=lost", headers=auth)
    assert response.status_code == 422
    assert {e["field"] for e in response.json["errors"]} == {"source", "status"}
    assert client.get("/api/inbound?cursor=inb_nope", headers=auth).status_code == 404


def test_operator_gets_one_event_with_its_payload(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    body = github_body()
    event_id = post(client, "github", body, github_headers(body)).json["id"]

    response = client.get(f"/api/inbound/{event_id}", headers=auth)

    assert response.status_code == 200
    assert response.json["payload"] == json.loads(body)
    assert response.json["headers"]["x-github-event"] == "issues"
    assert "x-hub-signature-256" not in response.json["headers"]
    assert client.get("/api/inbound/inb_nope", headers=auth).status_code == 404


def test_replay_queues_the_event_again(
    client: FlaskClient, auth: dict[str, str], redis_conn: Redis
) -> None:
    body = stripe_body()
    event_id = post(client, "stripe", body, stripe_headers(body)).json["id"]

    response = client.post(f"/api/inbound/{event_id}/replay", headers=auth)

    assert response.status_code == 202
    assert response.json == {"id": event_id, "status": "queued"}
    assert queued_inbound(redis_conn) == [event_id, event_id]


def test_replay_of_an_unknown_event_is_404(client: FlaskClient, auth: dict[str, str]) -> None:
    response = client.post("/api/inbound/inb_nope/replay", headers=auth)
    assert response.status_code == 404
    assert response.json["code"] == "not_found"
