"""The console and the portal links in a real browser: Playwright drives Debian's Chromium
(never a browser of its own) against the app on a real HTTP server on 127.0.0.1, a real worker
process delivering to a local receiver, and the real Redis and database."""

from __future__ import annotations

import re
import subprocess
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from playwright.sync_api import Browser, Page, expect, sync_playwright
from pytest_httpserver import HTTPServer
from standardwebhooks import Webhook
from werkzeug import Response
from werkzeug.serving import BaseWSGIServer, make_server

from apex.console.links import issue
from apex.db import utcnow
from apex.inbound import store
from apex.pipeline.tables import lead_identities, leads, object_properties
from apex.sources.request import InboundEvent
from tests.conftest import API_KEY
from tests.integration.receivers import Receiver, subscribe

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-dev-shm-usage",
    # Loopback only: no name resolves, and anything not on 127.0.0.1 goes to a dead proxy.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]
HOSTILE = '<script>window.__xss=1</script>"><img src=x onerror="window.__xss=2">'
WAIT = 30_000  # ms a delivery may take to show (a real worker, retries of 1, 2 and 3 s)


@pytest.fixture
def server(app: Flask) -> Iterator[str]:
    """The app on a real threaded HTTP server; yields its base URL."""
    httpd: BaseWSGIServer = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, name="http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}"
    finally:
        httpd.shutdown()
        thread.join(10)
        httpd.server_close()


@pytest.fixture
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield launched
        finally:
            launched.close()


def sign_in(page: Page, server: str, key: str = API_KEY) -> None:
    page.goto(f"{server}/console/")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()


def row(page: Page, delivery_id: str) -> Any:
    return page.locator(f"tr#{delivery_id}")


def wait_for_status(page: Page, delivery_id: str, status: str) -> None:
    """Reload the delivery log until the delivery shows `status` (the worker moves it)."""
    deadline = utcnow() + timedelta(milliseconds=WAIT)
    while utcnow() < deadline:
        page.reload()
        if row(page, delivery_id).get_attribute("data-status") == status:
            return
        page.wait_for_timeout(300)
    shown = page.locator("#deliveries").inner_text() if page.locator("#deliveries").count() else ""
    raise AssertionError(f"{delivery_id} never showed {status}: {shown[:3000]}")


def newest_delivery(page: Page) -> str:
    return str(page.locator("#deliveries tbody tr[data-status]").first.get_attribute("id"))


def test_an_operator_walks_a_subscription_through_its_life(
    server: str,
    browser: Browser,
    httpserver: HTTPServer,
    processes: Callable[..., subprocess.Popen[bytes]],
) -> None:
    processes("workers")
    receiver = Receiver(httpserver, "/hook")
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server)
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())

    sign_in(page, server)
    expect(page.get_by_role("heading", name="Subscriptions")).to_be_visible()
    cookie = next(c for c in context.cookies() if c["name"] == "apex_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["expires"] > 0

    # Create: the secret is shown once, and the copy button copies it.
    page.get_by_role("link", name="New subscription").click()
    page.get_by_label("Endpoint URL").fill(receiver.url)
    page.get_by_label("lead.created").check()
    page.get_by_label("Description").fill("CRM sync")
    page.get_by_role("button", name="Create subscription").click()
    expect(page.get_by_text("it is shown only once")).to_be_visible()
    page.get_by_role("button", name="Copy").click()
    expect(page.get_by_role("button", name="Copied")).to_be_visible()
    secret = page.evaluate("navigator.clipboard.readText()")
    assert secret.startswith("whsec_") and secret == page.locator("#secret").input_value()
    page.get_by_role("link", name="open the subscription").click()
    sub_page = page.url
    expect(page.locator("#status")).to_contain_text("active")
    expect(page.locator("#circuit")).to_contain_text("closed")

    # A test event reaches the receiver, signed with the copied secret; its attempt is logged.
    page.get_by_label("Send a test event").select_option("lead.created")
    page.get_by_role("button", name="Send test").click()
    expect(page.get_by_role("status")).to_contain_text("Test event")
    delivered = newest_delivery(page)
    wait_for_status(page, delivered, "delivered")
    expect(page.locator(f"tr#{delivered} + tr.attempts")).to_contain_text("HTTP 200")
    _, headers, body = receiver.requests[-1]
    assert Webhook(secret).verify(body, headers)["type"] == "lead.created"

    # The receiver fails: every attempt shows its status and the receiver's answer, inert.
    receiver.script = [Response(HOSTILE, status=500) for _ in range(10)]
    page.get_by_role("button", name="Send test").click()
    failing = newest_delivery(page)
    wait_for_status(page, failing, "failed")
    attempts = page.locator(f"tr#{failing} + tr.attempts tr.attempt")
    expect(attempts).to_have_count(4)
    expect(attempts.first).to_contain_text("HTTP 500")
    expect(attempts.first.locator("pre.response")).to_have_text(HOSTILE)
    page.get_by_label("Delivery status").select_option("failed")
    page.get_by_role("button", name="Show").click()
    expect(page.locator("#deliveries tbody tr[data-status]")).to_have_count(1)

    # Retry it once the receiver is back.
    receiver.script = []
    row(page, failing).get_by_role("button", name="Retry").click()
    expect(page.get_by_role("status")).to_contain_text("queued to be delivered again")
    wait_for_status(page, failing, "delivered")

    # Paused, a published event is skipped; recovered after resuming, it is delivered.
    page.get_by_role("button", name="Pause").click()
    expect(page.locator("#status")).to_contain_text("paused")
    page.get_by_role("link", name="Event types").click()
    page.get_by_role("button", name="Publish lead.created").click()
    expect(page.locator("#published")).to_contain_text("to 1 subscription")
    page.goto(sub_page)
    skipped = newest_delivery(page)
    expect(row(page, skipped)).to_have_attribute("data-status", "skipped")
    expect(row(page, skipped)).to_contain_text("subscription paused")
    page.get_by_role("button", name="Resume").click()
    page.get_by_role("button", name="Recover").click()
    expect(page.get_by_role("status")).to_contain_text("1 failed or skipped deliveries queued")
    wait_for_status(page, skipped, "delivered")
    assert page.evaluate("window.__xss") is None

    # Signing out ends the session, for a copy of the cookie too.
    stolen = next(c for c in context.cookies() if c["name"] == "apex_console")
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.goto(f"{server}/console/webhooks")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    other = browser.new_context()
    other.add_cookies([stolen])
    replayed = other.new_page()
    replayed.goto(f"{server}/console/webhooks")
    expect(replayed.get_by_role("heading", name="Sign in")).to_be_visible()
    other.close()
    context.close()


def portal_link(client: FlaskClient, auth: dict[str, str], sub_id: str) -> str:
    response = client.post(f"/api/webhooks/{sub_id}/portal-link", json={"ttl": 3600}, headers=auth)
    assert response.status_code == 201, response.json
    return str(response.json["url"])


def test_a_portal_link_opens_only_its_own_subscription_until_revoked(
    app: Flask,
    client: FlaskClient,
    auth: dict[str, str],
    server: str,
    browser: Browser,
) -> None:
    mine = subscribe(client, auth, "http://127.0.0.1:9999/mine", ["lead.created"])
    theirs = subscribe(client, auth, "http://127.0.0.1:9999/theirs", ["*"])
    client.post(f"/api/webhooks/{theirs['id']}/test", json={"event": "lead.created"}, headers=auth)
    their_delivery = client.get(f"/api/webhooks/{theirs['id']}/deliveries", headers=auth).json[
        "data"
    ][0]["id"]
    url = portal_link(client, auth, mine["id"]).replace("http://localhost", server)
    page = browser.new_page()
    page.on("dialog", lambda dialog: dialog.accept())

    page.goto(url)
    expect(page.get_by_role("heading", name="http://127.0.0.1:9999/mine")).to_be_visible()
    assert "theirs" not in page.content()
    expect(page.get_by_role("link", name="Edit")).to_have_count(0)
    expect(page.get_by_role("link", name="Subscriptions")).to_have_count(0)
    page.get_by_role("button", name="Send test").click()
    expect(page.get_by_role("status")).to_contain_text("Test event")
    page.get_by_role("button", name="Pause").click()
    expect(page.locator("#status")).to_contain_text("paused")

    # Nothing else is reachable with it: other console pages, another subscription's delivery.
    token_base = url.rstrip("/")
    for path in ("/edit", "/delete", "/event-types", "/inbound", "/leads/x", "/webhooks"):
        assert page.request.get(token_base + path).status == 404, path
    csrf = page.locator("input[name=csrf]").first.input_value()
    retried = page.request.post(
        f"{token_base}/deliveries/{their_delivery}/retry", form={"csrf": csrf}
    )
    assert retried.status == 404
    assert page.request.get(f"{server}/console/webhooks", max_redirects=0).status == 303

    # A link past its expiry opens nothing.
    rt = app.extensions["apex"]
    expired = issue(
        rt.engine, rt.settings.secret_key, mine["id"], 60, utcnow() - timedelta(hours=1)
    )
    page.goto(f"{server}/portal/{expired.token}/")
    expect(page.get_by_role("heading", name="This link is not valid")).to_be_visible()

    # Rotating the secret through the link shows the new secret once and ends the link.
    page.goto(url)
    page.get_by_role("button", name="Rotate secret").click()
    expect(page.get_by_text("it is shown only once")).to_be_visible()
    assert page.locator("#secret").input_value().startswith("whsec_")
    page.goto(url)
    expect(page.get_by_role("heading", name="This link is not valid")).to_be_visible()


def test_forms_from_another_site_and_hostile_values_change_nothing(
    app: Flask, client: FlaskClient, auth: dict[str, str], server: str, browser: Browser
) -> None:
    sub = subscribe(
        client, auth, 'http://127.0.0.1:9999/x?"><script>window.__xss=5</script>', ["*"]
    )
    client.patch(f"/api/webhooks/{sub['id']}", json={"description": HOSTILE}, headers=auth)
    seed_hostile_records(app)
    page = browser.new_page()
    violations: list[str] = []
    page.on(
        "console", lambda m: violations.append(m.text) if "Content Security" in m.text else None
    )
    sign_in(page, server)

    for path in (
        "/console/webhooks",
        f"/console/webhooks/{sub['id']}/",
        "/console/inbound",
        "/console/leads",
        "/console/attribution",
    ):
        page.goto(server + path)
        assert page.evaluate("window.__xss") is None, path
        assert page.locator("img").count() == 0, path
        assert page.evaluate("document.querySelectorAll('script:not([src])').length") == 0
        assert page.locator("a[href^='javascript:']").count() == 0, path
    page.goto(f"{server}/console/webhooks")
    expect(page.locator("#subscriptions")).to_contain_text('"><script>window.__xss=5</script>')
    expect(page.locator("#subscriptions")).to_contain_text(HOSTILE)
    page.goto(f"{server}/console/leads")
    page.get_by_role("link", name=re.compile("lead_")).first.click()
    expect(page.locator("#lead-name")).to_have_text("javascript:alert(1)" + HOSTILE)
    page.goto(f"{server}/console/inbound")
    page.get_by_role("link", name=re.compile("inb_")).first.click()
    expect(page.locator("#payload")).to_contain_text(HOSTILE.replace('"', '\\"'))
    assert page.evaluate("window.__xss") is None and page.locator("img").count() == 0

    # A page of another origin posting to the console (same site: the session cookie goes
    # along): it has no CSRF token and names another origin, so the subscription stays active.
    attack = (
        f'<form method="post" action="{server}/console/webhooks/{sub["id"]}/status">'
        '<input name="status" value="paused"></form><script>document.forms[0].submit()</script>'
    )
    with serve_page(attack) as other:
        page.goto(other)
        page.wait_for_load_state("networkidle")
    assert client.get(f"/api/webhooks/{sub['id']}", headers=auth).json["status"] == "active"
    assert violations == [], violations


def seed_hostile_records(app: Flask) -> None:
    """An inbound event and a lead whose fields carry markup, as a platform could send them."""
    engine, now = app.extensions["apex"].engine, utcnow()
    event = InboundEvent(
        source="github",
        dedupe_key="hostile-1",
        type="issues",
        payload={"title": HOSTILE, "url": "javascript:alert(1)"},
        headers={},
        ignored=HOSTILE,
    )
    store.receive(engine, [event], now)
    with engine.begin() as conn:
        conn.execute(sa.insert(leads).values(id="lead_hostile", created_at=now, updated_at=now))
        conn.execute(
            sa.insert(lead_identities).values(
                kind="email", value="evil@example.com", lead_id="lead_hostile", created_at=now
            )
        )
        conn.execute(
            sa.insert(object_properties).values(
                object_kind="email",
                object_value="evil@example.com",
                name="name",
                value="javascript:alert(1)" + HOSTILE,
                occurred_at=now,
            )
        )


class serve_page:  # noqa: N801 (a context manager used like a function)
    """A one-page site of another origin (another port) on a free port."""

    def __init__(self, html: str) -> None:
        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
            return Response(html, mimetype="text/html")(environ, start_response)

        self.httpd = make_server("127.0.0.1", 0, app, threaded=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        return f"http://127.0.0.1:{self.httpd.server_port}/"

    def __exit__(self, *_: object) -> None:
        self.httpd.shutdown()
        self.thread.join(10)
        self.httpd.server_close()
