"""Destination rules through the API (422 naming `url`) and at delivery time (a recorded refused
attempt once a setting is switched off), on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from pytest_httpserver import HTTPServer

from apex.delivery import deliver
from apex.delivery.attempt import Deadlines
from apex.delivery.destinations import Policy
from apex.models import deliveries as delivery_table
from config import Settings
from tests.delivery_helpers import sending
from tests.factories import subscription_body
from tests.integration.receivers import Receiver, deliveries, publish, subscribe
from workers import context

pytestmark = pytest.mark.postgres


def _settings(app: Flask, **changes: Any) -> None:
    rt = app.extensions["apex"]
    app.extensions["apex"] = replace(rt, settings=replace(rt.settings, **changes))


def _url_errors(response: Any) -> list[str]:
    assert response.status_code == 422, response.json
    assert response.json["code"] == "validation_failed"
    return [e["message"] for e in response.json["errors"] if e["field"] == "url"]


BAD = [
    # (url, words of the message)
    ("https://127.1/h", "loopback"),
    ("https://0x7f000001/h", "loopback"),
    ("https://2130706433/h", "loopback"),
    ("https://0177.0.0.1/h", "loopback"),
    ("https://0/h", "unspecified"),
    ("https://localhost./h", "this machine"),
    ("https://LOCALHOST/h", "this machine"),
    ("https://\u217cocalhost/h", "reads as 'localhost'"),
    ("https://169.254.43518/latest", "cloud metadata"),
    ("https://[::ffff:127.0.0.1]/h", "IPv4-mapped"),
    ("https://exa mple.com/h", "printable ASCII"),
    ("https://example.com\x00/h", "printable ASCII"),
    ("https://exa\tmple.com/h", "printable ASCII"),
    ("https://example.com\r\n/h", "printable ASCII"),
    ("https://%6cocalhost/h", "only letters, digits"),
    ("https://a..b/h", "empty label"),
    ("https://xn--ocalhost-lb6d/h", "not valid IDNA"),
    ("https://example.com:22/h", "got port 22"),
    ("https://example.com:25/h", "got port 25"),
    ("https://example.com:0/h", "got port 0"),
    ("http://example.com/h", "APEX_ALLOW_HTTP=1"),
]


@pytest.mark.parametrize(("url", "words"), BAD)
def test_each_bad_destination_is_422_naming_url(
    client: FlaskClient, auth: dict[str, str], app: Flask, url: str, words: str
) -> None:
    _settings(app, allow_http=False, allow_private_destinations=False)
    created = client.post("/api/webhooks", json=subscription_body(url=url), headers=auth)
    messages = _url_errors(created)
    assert len(messages) == 1 and words in messages[0], messages

    good = client.post("/api/webhooks", json=subscription_body(), headers=auth)
    assert good.status_code == 201
    patched = client.patch(f"/api/webhooks/{good.json['id']}", json={"url": url}, headers=auth)
    assert _url_errors(patched) == messages
    assert client.get("/api/webhooks", headers=auth).json[0]["url"] == subscription_body()["url"]


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/hooks",
        "https://example.com.:8443/hooks",
        "https://example.com:6379/h",
        "https://EXAMPLE.com:443/hooks",
        "https://xn--bcher-kva.de/hooks",
        "https://hooks_1.example.com/x",
        "https://134744072/hooks",  # 8.8.8.8 written as one number: public
        "https://[2606:4700:4700::1111]/hooks",
    ],
)
def test_public_hosts_and_ports_are_accepted(
    client: FlaskClient, auth: dict[str, str], app: Flask, url: str
) -> None:
    _settings(app, allow_http=False, allow_private_destinations=False)
    created = client.post("/api/webhooks", json=subscription_body(url=url), headers=auth)
    assert created.status_code == 201, created.json
    assert created.json["url"] == url


def test_an_international_host_is_told_its_punycode(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    response = client.post(
        "/api/webhooks", json=subscription_body(url="https://b\u00fccher.de/h"), headers=auth
    )
    assert "reads as 'xn--bcher-kva.de'" in _url_errors(response)[0]


def test_allowed_ports_widen_the_defaults(
    client: FlaskClient, auth: dict[str, str], app: Flask
) -> None:
    _settings(app, allowed_ports=((22, 22),))
    body = subscription_body(url="https://example.com:22/h")
    assert client.post("/api/webhooks", json=body, headers=auth).status_code == 201
    body = subscription_body(url="https://example.com:23/h")
    assert (
        "443, 80, 1024-65535, 22"
        in _url_errors(client.post("/api/webhooks", json=body, headers=auth))[0]
    )


# --- at delivery time: the rules of today, for subscriptions made before -------------------


@pytest.fixture
def delivery_for(settings: Settings) -> Iterator[Any]:
    """Run the delivery stages (claim, send, record) in this process, as a worker built from
    `settings` with `changes` would, with the destination policy of those settings."""
    built: list[context.WorkerContext] = []

    def run(client: FlaskClient, policy: bool = True, **changes: Any) -> list[deliver.Result]:
        now = replace(settings, **changes)
        ctx = context.build(now)
        built.append(ctx)
        # Without `policy` only the transport checks what a name resolves to.
        delivery = replace(ctx.delivery, destinations=Policy.of(now) if policy else None)
        engine = client.application.extensions["apex"].engine
        with engine.connect() as conn:
            ids = list(conn.execute(sa.select(delivery_table.c.id)).scalars())
        ready = deliver.claim(delivery, ids)
        with sending(now.allow_private_destinations) as sender:
            sent = [
                sender.loop.run(deliver.send(delivery, r, sender.client, Deadlines()))
                for r in ready
            ]
        return deliver.record(delivery, sent).results

    yield run
    for ctx in built:
        ctx.redis.close()
        ctx.engine.dispose()


def test_switching_http_off_refuses_the_next_attempt_of_an_existing_subscription(
    client: FlaskClient, auth: dict[str, str], httpserver: HTTPServer, delivery_for: Any
) -> None:
    receiver = Receiver(httpserver, "/plain")
    sub = subscribe(client, auth, receiver.url, ["lead.created"])  # http://, allowed then
    publish(client, auth, "lead.created")

    results = delivery_for(client, allow_http=False)

    assert [r.status for r in results] == ["pending"]  # the normal failure path: a retry
    assert results[0].retry_in is not None
    [row] = deliveries(client, auth, sub["id"])
    [attempt] = row["attemptLog"]
    assert attempt["statusCode"] is None
    assert attempt["error"].startswith("destination_refused: ")
    assert "APEX_ALLOW_HTTP=1" in attempt["error"]
    assert receiver.requests == []


def test_a_port_no_longer_allowed_is_refused_at_delivery(
    client: FlaskClient, auth: dict[str, str], app: Flask, delivery_for: Any
) -> None:
    _settings(app, allowed_ports=((22, 22),))
    sub = subscribe(client, auth, "https://example.com:22/h", ["lead.created"])
    publish(client, auth, "lead.created")

    delivery_for(client)  # APEX_ALLOWED_PORTS unset now

    [attempt] = deliveries(client, auth, sub["id"])[0]["attemptLog"]
    assert attempt["error"].startswith("destination_refused: must use port 443")


@pytest.mark.parametrize("policy_checks", [True, False])
def test_a_refusal_at_delivery_never_tells_the_resolved_address(
    client: FlaskClient,
    auth: dict[str, str],
    httpserver: HTTPServer,
    delivery_for: Any,
    settings: Settings,
    policy_checks: bool,
) -> None:
    receiver = Receiver(httpserver, "/private")
    assert receiver.url.startswith("http://localhost:")
    sub = subscribe(client, auth, receiver.url, ["lead.created"])
    publish(client, auth, "lead.created")

    # Without the policy, only the transport's check of what the name resolves to (its resolver).
    delivery_for(client, policy=policy_checks, allow_private_destinations=False)

    [attempt] = deliveries(client, auth, sub["id"])[0]["attemptLog"]
    assert attempt["error"].startswith("destination_refused: ")
    assert "APEX_ALLOW_PRIVATE_DESTINATIONS=1" in attempt["error"]
    for address in ("127.0.0.1", "::1"):
        assert address not in attempt["error"]
    assert receiver.requests == []
