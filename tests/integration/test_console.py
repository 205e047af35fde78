"""The console and portal links through the Flask test client: sessions, CSRF, the portal-link
API and what revokes a link, the recover job's progress, and the pages' security headers."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient

from apex import subscriptions
from apex.apikeys import create_key, revoke_key
from apex.console.links import open_link
from apex.db import utcnow
from apex.events import publish
from apex.secretbox import generate_key
from app import create_app
from config import Settings
from tests.conftest import API_KEY
from tests.integration.receivers import subscribe

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def sign_in(client: FlaskClient, key: str = API_KEY) -> str:
    """Sign in; returns the session's CSRF token."""
    form = client.get("/console/sign-in")
    token = CSRF.search(form.get_data(as_text=True))
    assert token is not None
    answer = client.post("/console/sign-in", data={"csrf": token.group(1), "api_key": key})
    assert answer.status_code == 303, answer.get_data(as_text=True)
    page = client.get("/console/webhooks")
    assert page.status_code == 200
    found = CSRF.search(page.get_data(as_text=True))
    assert found is not None
    return found.group(1)


def test_sign_in_needs_the_form_token_and_a_valid_key(client: FlaskClient) -> None:
    assert client.get("/console/webhooks").headers["Location"] == "/console/sign-in"
    forged = client.post("/console/sign-in", data={"csrf": "x", "api_key": API_KEY})
    assert forged.status_code == 401 and "apex_console=" not in forged.headers.get("Set-Cookie", "")
    form = client.get("/console/sign-in")
    token = CSRF.search(form.get_data(as_text=True))
    assert token is not None
    wrong = client.post("/console/sign-in", data={"csrf": token.group(1), "api_key": "nope"})
    assert wrong.status_code == 401 and "not valid" in wrong.get_data(as_text=True)

    sign_in(client)

    cookie = client.get_cookie("apex_console")
    assert cookie is not None and cookie.http_only and cookie.same_site == "Strict"
    assert API_KEY not in cookie.value  # sealed, not merely signed


def test_every_form_needs_its_token_and_this_origin(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    sub = subscribe(client, auth, "http://127.0.0.1:9999/a", ["*"])
    csrf = sign_in(client)
    action = f"/console/webhooks/{sub['id']}/status"

    missing = client.post(action, data={"status": "paused"})
    wrong = client.post(action, data={"status": "paused", "csrf": csrf + "x"})
    elsewhere = client.post(
        action, data={"status": "paused", "csrf": csrf}, headers={"Origin": "http://evil.test"}
    )
    nul = client.post(action, data={"status": "paused\x00", "csrf": csrf})

    assert [missing.status_code, wrong.status_code, elsewhere.status_code] == [403, 403, 403]
    assert nul.status_code == 400
    assert client.get(f"/api/webhooks/{sub['id']}", headers=auth).json["status"] == "active"
    done = client.post(action, data={"status": "paused", "csrf": csrf})
    assert done.status_code == 303
    assert client.get(f"/api/webhooks/{sub['id']}", headers=auth).json["status"] == "paused"


def test_revoking_the_key_ends_its_console_sessions(app: Flask, client: FlaskClient) -> None:
    engine = app.extensions["apex"].engine
    record, key = create_key(engine, "operator")
    sign_in(client, key)

    revoke_key(engine, record.id)

    assert client.get("/console/webhooks").headers["Location"] == "/console/sign-in"


def test_console_pages_send_the_security_headers(client: FlaskClient) -> None:
    sign_in(client)
    for path in ("/console/webhooks", "/console/event-types", "/", "/console/sign-in"):
        response = client.get(path)
        policy = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy, path
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert client.get("/console/webhooks").headers["Cache-Control"] == "no-store"
    start = client.get("/").get_data(as_text=True)
    for link in ("/console/webhooks", "/api/docs", "/rq/", "/metrics", "make apikey"):
        assert link in start


# --- portal links ----------------------------------------------------------------------------


def link_path(client: FlaskClient, auth: dict[str, str], sub_id: str, **body: int) -> str:
    response = client.post(f"/api/webhooks/{sub_id}/portal-link", json=body, headers=auth)
    assert response.status_code == 201, response.json
    return str(response.json["url"]).removeprefix("http://localhost")


def test_a_portal_link_lasts_an_hour_by_default_and_up_to_a_week(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    sub = subscribe(client, auth, "http://127.0.0.1:9999/a", ["*"])
    url = f"/api/webhooks/{sub['id']}/portal-link"

    default = client.post(url, headers=auth)
    week = client.post(url, json={"ttl": 7 * 86400}, headers=auth)

    assert default.status_code == 201 and week.status_code == 201
    assert re.fullmatch(r"http://localhost/portal/[\w.-]+/", default.json["url"])
    assert default.json["expiresAt"] < week.json["expiresAt"]
    for ttl in (59, 7 * 86400 + 1, "3600"):
        assert client.post(url, json={"ttl": ttl}, headers=auth).status_code == 422
    assert client.post(url).status_code == 401
    assert client.post("/api/webhooks/wh_nope/portal-link", headers=auth).status_code == 404


def test_rotating_the_secret_or_apex_secret_key_or_deleting_revokes_links(
    app: Flask, settings: Settings, client: FlaskClient, auth: dict[str, str]
) -> None:
    rotated = subscribe(client, auth, "http://127.0.0.1:9999/a", ["*"])
    deleted = subscribe(client, auth, "http://127.0.0.1:9999/b", ["*"])
    kept = subscribe(client, auth, "http://127.0.0.1:9999/c", ["*"])
    links = {s["id"]: link_path(client, auth, s["id"]) for s in (rotated, deleted, kept)}
    assert all(client.get(path).status_code == 200 for path in links.values())

    client.post(f"/api/webhooks/{rotated['id']}/rotate-secret", headers=auth)
    client.delete(f"/api/webhooks/{deleted['id']}", headers=auth)

    assert client.get(links[rotated["id"]]).status_code == 404
    assert client.get(links[deleted["id"]]).status_code == 404
    assert client.get(links[kept["id"]]).status_code == 200
    other_key = create_app(replace(settings, secret_key=generate_key()))
    assert other_key.test_client().get(links[kept["id"]]).status_code == 404
    token = links[kept["id"]].split("/")[2]
    engine, key = app.extensions["apex"].engine, settings.secret_key
    assert open_link(engine, key, token, utcnow()) is not None
    assert open_link(engine, key, token, utcnow() + timedelta(hours=1, seconds=1)) is None
    assert open_link(engine, key, token[:-2] + "xx", utcnow()) is None


def test_a_portal_link_reaches_nothing_of_another_subscription(
    app: Flask, client: FlaskClient, auth: dict[str, str]
) -> None:
    mine = subscribe(client, auth, "http://127.0.0.1:9999/a", ["*"])
    theirs = subscribe(client, auth, "http://127.0.0.1:9999/b", ["*"])
    engine = app.extensions["apex"].engine
    their_delivery = publish(engine, "lead.created", {}, only_subscription=theirs["id"])
    their_id = client.get(f"/api/webhooks/{theirs['id']}/deliveries", headers=auth).json["data"][0][
        "id"
    ]
    base = link_path(client, auth, mine["id"]).rstrip("/")
    csrf = CSRF.search(client.get(base + "/").get_data(as_text=True))
    assert csrf is not None and their_delivery.deliveries == 1

    retried = client.post(f"{base}/deliveries/{their_id}/retry", data={"csrf": csrf.group(1)})
    assert retried.status_code == 404
    assert client.post(f"{base}/test", data={"event": "lead.created"}).status_code == 403
    for path in ("/edit", "/delete", "/inbound", "/event-types", "/jobs/not-a-job"):
        assert client.get(base + path).status_code == 404, path
    assert client.get(base + "/").headers["Referrer-Policy"] == "no-referrer"


def test_a_large_recover_runs_as_a_job_whose_progress_the_page_polls(
    app: Flask, client: FlaskClient, auth: dict[str, str]
) -> None:
    sub = subscribe(client, auth, "http://127.0.0.1:9999/a", ["lead.created"])
    other = subscribe(client, auth, "http://127.0.0.1:9999/b", ["lead.created"])
    engine = app.extensions["apex"].engine
    subscriptions.update(engine, sub["id"], {"status": "paused"})
    for n in range(501):
        publish(engine, "lead.created", {"n": n}, only_subscription=sub["id"])
    subscriptions.update(engine, sub["id"], {"status": "active"})
    csrf = sign_in(client)

    answer = client.post(
        f"/console/webhooks/{sub['id']}/recover",
        data={"csrf": csrf, "since": (utcnow() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")},
    )

    assert answer.status_code == 303
    job_id = re.search(r"job=([\w-]+)", answer.headers["Location"])
    assert job_id is not None
    page = client.get(answer.headers["Location"]).get_data(as_text=True)
    assert f"/jobs/{job_id.group(1)}" in page and 'hx-trigger="load"' in page
    fragment = client.get(f"/console/webhooks/{sub['id']}/jobs/{job_id.group(1)}")
    assert fragment.status_code == 200
    assert 'hx-trigger="every 1s"' in fragment.get_data(as_text=True)
    assert "queued" in fragment.get_data(as_text=True)
    elsewhere = client.get(f"/console/webhooks/{other['id']}/jobs/{job_id.group(1)}")
    assert elsewhere.status_code == 404


@pytest.mark.parametrize("since", ["yesterday", "2025-13-01T00:00"])
def test_recover_refuses_a_date_it_cannot_read(
    client: FlaskClient, auth: dict[str, str], since: str
) -> None:
    sub = subscribe(client, auth, "http://127.0.0.1:9999/a", ["*"])
    csrf = sign_in(client)

    answer = client.post(
        f"/console/webhooks/{sub['id']}/recover", data={"csrf": csrf, "since": since}
    )

    assert answer.status_code == 422 and "not a date" in answer.get_data(as_text=True)
