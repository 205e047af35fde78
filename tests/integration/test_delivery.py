"""Outgoing delivery end to end: API -> database -> Redis -> worker process -> local receiver."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient
from pytest_httpserver import HTTPServer
from redis import Redis
from standardwebhooks import Webhook
from werkzeug import Request, Response

from apex.models import attempts as attempt_table
from apex.models import deliveries as delivery_table
from tests.integration.conftest import signal_group, wait_for
from tests.integration.receivers import Receiver, deliveries, publish, subscribe

pytestmark = pytest.mark.postgres


def test_signed_delivery_verifies_with_standardwebhooks(
    client: FlaskClient, auth: dict[str, str], httpserver: HTTPServer, processes: Callable[..., Any]
) -> None:
    receiver = Receiver(httpserver, "/hook")
    sub = subscribe(client, auth, receiver.url, ["lead.created"])
    processes()
    event = publish(client, auth, "lead.created")
    assert event["deliveries"] == 1
    wait_for(lambda: receiver.requests)
    _, headers, body = receiver.requests[0]
    lowered = {k.lower(): v for k, v in headers.items()}
    payload = Webhook(sub["secret"]).verify(body, lowered)
    assert payload["id"] == event["id"] and payload["type"] == "lead.created"
    assert payload["data"] == {"n": 1}
    assert lowered["webhook-id"] == event["id"]
    assert "Apex" in lowered["user-agent"]
    assert lowered["content-type"] == "application/json"
    log = wait_for(
        lambda: [d for d in deliveries(client, auth, sub["id"]) if d["status"] == "delivered"]
    )
    assert log[0]["attemptLog"][0]["statusCode"] == 200
    assert log[0]["attemptLog"][0]["responseBody"] == "ok"


def test_fan_out_respects_subscribed_types_and_wildcard(
    client: FlaskClient, auth: dict[str, str], httpserver: HTTPServer, processes: Callable[..., Any]
) -> None:
    leads = Receiver(httpserver, "/leads")
    goals = Receiver(httpserver, "/goals")
    everything = Receiver(httpserver, "/all")
    subscribe(client, auth, leads.url, ["lead.created"])
    subscribe(client, auth, goals.url, ["goal.reached"])
    subscribe(client, auth, everything.url, ["*"])
    processes()
    assert publish(client, auth, "lead.created")["deliveries"] == 2
    assert publish(client, auth, "connector.synced")["deliveries"] == 1
    wait_for(lambda: len(everything.requests) == 2 and len(leads.requests) == 1)
    time.sleep(0.5)
    assert len(goals.requests) == 0 and len(leads.requests) == 1


def test_retries_with_growing_gaps_and_the_same_webhook_id(
    client: FlaskClient, auth: dict[str, str], httpserver: HTTPServer, processes: Callable[..., Any]
) -> None:
    receiver = Receiver(httpserver, "/flaky", [Response("no", 500), Response("busy", 503)])
    sub = subscribe(client, auth, receiver.url, ["lead.created"])
    processes(APEX_RETRY_SCHEDULE="1,4")
    event = publish(client, auth, "lead.created")
    wait_for(lambda: len(receiver.requests) == 3, timeout=30)
    times = [t for t, _, _ in receiver.requests]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    # about 1 s, then about 4 s (+-20 % jitter; RQ's scheduler may run a job up to 1 s early)
    assert gaps[0] < 2.2 <= gaps[1] < 5.8
    assert {h["Webhook-Id"] for _, h, _ in receiver.requests} == {event["id"]}
    delivered = wait_for(
        lambda: [d for d in deliveries(client, auth, sub["id"]) if d["status"] == "delivered"]
    )
    assert [a["statusCode"] for a in delivered[0]["attemptLog"]] == [500, 503, 200]


def test_exhausted_schedule_ends_failed(
    client: FlaskClient, auth: dict[str, str], httpserver: HTTPServer, processes: Callable[..., Any]
) -> None:
    receiver = Receiver(httpserver, "/down", [Response("x", 500)] * 10)
    sub = subscribe(client, auth, receiver.url, ["lead.created"])
    processes()
    publish(client, auth, "lead.created")
    failed = wait_for(
        lambda: [d for d in deliveries(client, auth, sub["id"]) if d["status"] == "failed"],
        timeout=30,
    )
    assert failed[0]["attempts"] == 4  # the first attempt + one per schedule step (1, 2, 3)


def test_410_gone_disables_the_subscription(
    client: FlaskClient, auth: dict[str, str], httpserver: HTTPServer, processes: Callable[..., Any]
) -> None:
    receiver = Receiver(httpserver, "/gone", [Response("bye", 410)])
    sub = subscribe(client, auth, receiver.url, ["lead.created"])
    processes()
    publish(client, auth, "lead.created")
    got = wait_for(
        lambda: (
            (w := client.get(f"/api/webhooks/{sub['id']}", headers=auth).json)["status"]
            == "disabled"
            and w
        )
    )
    assert "410" in got["disabledReason"]
    # later events are recorded as skipped, never sent
    publish(client, auth, "lead.created")
    time.sleep(1)
    assert len(receiver.requests) == 1
    statuses = sorted(d["status"] for d in deliveries(client, auth, sub["id"]))
    assert statuses == ["failed", "skipped"]


def test_redirects_are_not_followed(
    client: FlaskClient, auth: dict[str, str], httpserver: HTTPServer, processes: Callable[..., Any]
) -> None:
    target = Receiver(httpserver, "/target")
    moved = Receiver(httpserver, "/moved", [Response("", 301, {"Location": target.url})] * 10)
    sub = subscribe(client, auth, moved.url, ["lead.created"])
    processes()
    publish(client, auth, "lead.created")
    wait_for(lambda: len(moved.requests) >= 2, timeout=15)
    assert target.requests == []
    first = deliveries(client, auth, sub["id"])[0]["attemptLog"][0]
    assert first["statusCode"] == 301


def test_retry_after_is_a_floor(
    client: FlaskClient, auth: dict[str, str], httpserver: HTTPServer, processes: Callable[..., Any]
) -> None:
    receiver = Receiver(httpserver, "/limited", [Response("slow down", 429, {"Retry-After": "4"})])
    subscribe(client, auth, receiver.url, ["lead.created"])
    processes()
    publish(client, auth, "lead.created")
    wait_for(lambda: len(receiver.requests) == 2, timeout=20)
    gap = receiver.requests[1][0] - receiver.requests[0][0]
    assert gap >= 3.9  # the schedule alone would have waited about 1 s


def test_rotated_secret_signs_with_both(
    client: FlaskClient, auth: dict[str, str], httpserver: HTTPServer, processes: Callable[..., Any]
) -> None:
    receiver = Receiver(httpserver, "/rotating")
    sub = subscribe(client, auth, receiver.url, ["lead.created"])
    rotated = client.post(f"/api/webhooks/{sub['id']}/rotate-secret", headers=auth).json
    processes()
    publish(client, auth, "lead.created")
    wait_for(lambda: receiver.requests)
    _, headers, body = receiver.requests[0]
    lowered = {k.lower(): v for k, v in headers.items()}
    assert len(lowered["webhook-signature"].split(" ")) == 2
    for secret in (sub["secret"], rotated["secret"]):
        assert Webhook(secret).verify(body, lowered)["type"] == "lead.created"


def test_publish_with_an_id_is_idempotent(
    client: FlaskClient, auth: dict[str, str], httpserver: HTTPServer, processes: Callable[..., Any]
) -> None:
    receiver = Receiver(httpserver, "/once")
    subscribe(client, auth, receiver.url, ["goal.reached"])
    processes()
    first = publish(client, auth, "goal.reached", id="evt_goal_42")
    again = publish(client, auth, "goal.reached", id="evt_goal_42")
    assert first["id"] == again["id"] == "evt_goal_42"
    assert (first["duplicate"], again["duplicate"]) == (False, True)
    wait_for(lambda: receiver.requests)
    time.sleep(1)
    assert len(receiver.requests) == 1


def test_paused_subscription_gets_skipped_deliveries_that_recover_replays(
    client: FlaskClient, auth: dict[str, str], httpserver: HTTPServer, processes: Callable[..., Any]
) -> None:
    receiver = Receiver(httpserver, "/paused")
    sub = subscribe(client, auth, receiver.url, ["lead.created"])
    client.patch(f"/api/webhooks/{sub['id']}", json={"status": "paused"}, headers=auth)
    processes()
    publish(client, auth, "lead.created")
    assert [d["status"] for d in deliveries(client, auth, sub["id"])] == ["skipped"]
    client.patch(f"/api/webhooks/{sub['id']}", json={"status": "active"}, headers=auth)
    recovered = client.post(
        f"/api/webhooks/{sub['id']}/recover", json={"since": "2000-01-01T00:00:00Z"}, headers=auth
    )
    assert recovered.status_code == 202 and recovered.json["requeued"] == 1
    wait_for(lambda: receiver.requests)


def test_test_send_and_manual_retry(
    client: FlaskClient, auth: dict[str, str], httpserver: HTTPServer, processes: Callable[..., Any]
) -> None:
    receiver = Receiver(httpserver, "/manual")
    sub = subscribe(client, auth, receiver.url, ["lead.created"])
    processes()
    sent = client.post(
        f"/api/webhooks/{sub['id']}/test", json={"event": "goal.reached"}, headers=auth
    )
    assert sent.status_code == 202
    wait_for(lambda: receiver.requests)
    delivered = wait_for(
        lambda: [d for d in deliveries(client, auth, sub["id"]) if d["status"] == "delivered"]
    )
    retried = client.post(f"/api/deliveries/{delivered[0]['id']}/retry", headers=auth)
    assert retried.status_code == 202
    wait_for(lambda: len(receiver.requests) == 2)
    assert receiver.requests[0][1]["Webhook-Id"] == receiver.requests[1][1]["Webhook-Id"]
    assert client.post("/api/deliveries/dlv_nope/retry", headers=auth).status_code == 404


def test_delete_cancels_pending_deliveries(
    client: FlaskClient, auth: dict[str, str], httpserver: HTTPServer
) -> None:
    receiver = Receiver(httpserver, "/deleted")
    sub = subscribe(client, auth, receiver.url, ["lead.created"])
    publish(client, auth, "lead.created")  # no worker running: the delivery stays pending
    assert client.delete(f"/api/webhooks/{sub['id']}", headers=auth).status_code == 200
    engine = client.application.extensions["apex"].engine
    with engine.connect() as conn:
        rows = conn.execute(sa.select(delivery_table.c.status, delivery_table.c.last_error)).all()
    assert [tuple(r) for r in rows] == [("cancelled", "subscription deleted")]


def test_private_destination_is_refused_and_recorded(
    client: FlaskClient, auth: dict[str, str], httpserver: HTTPServer, processes: Callable[..., Any]
) -> None:
    receiver = Receiver(httpserver, "/private")
    sub = subscribe(client, auth, receiver.url, ["lead.created"])
    processes(APEX_ALLOW_PRIVATE_DESTINATIONS="0")
    publish(client, auth, "lead.created")
    attempt = wait_for(
        lambda: (log := deliveries(client, auth, sub["id"])[0]["attemptLog"]) and log[0]
    )
    assert attempt["statusCode"] is None
    assert attempt["error"].startswith("destination_refused")
    # The rule (localhost is this machine; a name resolving to 127.0.0.1 is loopback), never
    # the address a name resolves to.
    assert "this machine" in attempt["error"] or "loopback" in attempt["error"]
    assert "127.0.0.1" not in attempt["error"]
    assert receiver.requests == []


def test_worker_killed_mid_delivery_delivers_after_restart(
    client: FlaskClient, auth: dict[str, str], httpserver: HTTPServer, processes: Callable[..., Any]
) -> None:
    arrived = threading.Event()
    seen: list[float] = []

    def slow_then_ok(request: Request) -> Response:
        seen.append(time.monotonic())
        if len(seen) == 1:
            arrived.set()
            time.sleep(2.5)  # the worker is killed while this request is in flight
        return Response("ok", 200)

    httpserver.expect_request("/slow", method="POST").respond_with_handler(slow_then_ok)
    sub = subscribe(client, auth, httpserver.url_for("/slow"), ["lead.created"])
    worker = processes()
    processes("workers.scheduled")
    publish(client, auth, "lead.created")
    assert arrived.wait(15)
    signal_group(worker, signal.SIGKILL)  # the worker and its scheduler child, mid-request
    worker.wait()
    processes()  # a fresh worker; the lease (3 s) expires and the sweeper brings it back
    delivered = wait_for(
        lambda: [d for d in deliveries(client, auth, sub["id"]) if d["status"] == "delivered"],
        timeout=40,
    )
    assert len(seen) >= 2
    assert delivered[0]["attemptLog"][-1]["statusCode"] == 200


def test_flushall_loses_nothing_while_processes_run(
    client: FlaskClient,
    auth: dict[str, str],
    httpserver: HTTPServer,
    processes: Callable[..., Any],
    redis_conn: Redis,
) -> None:
    receiver = Receiver(httpserver, "/flushed", [Response("later", 500)])
    sub = subscribe(client, auth, receiver.url, ["lead.created"])
    processes()
    processes("workers.scheduled")
    publish(client, auth, "lead.created")
    wait_for(lambda: receiver.requests)  # first attempt failed; its retry now waits in Redis
    redis_conn.flushdb()
    delivered = wait_for(
        lambda: [d for d in deliveries(client, auth, sub["id"]) if d["status"] == "delivered"],
        timeout=40,
    )
    assert delivered[0]["attempts"] == 2


def test_a_hanging_endpoint_does_not_stall_a_healthy_one(
    client: FlaskClient, auth: dict[str, str], processes: Callable[..., Any]
) -> None:
    server = HTTPServer(host="127.0.0.1", threaded=True)
    server.start()
    try:
        released: list[float] = []
        healthy: list[float] = []

        def hang(request: Request) -> Response:
            time.sleep(5)  # longer than the worker's 3 s timeout
            released.append(time.monotonic())
            return Response("late", 200)

        def ok(request: Request) -> Response:
            healthy.append(time.monotonic())
            return Response("ok", 200)

        server.expect_request("/hang", method="POST").respond_with_handler(hang)
        server.expect_request("/ok", method="POST").respond_with_handler(ok)
        subscribe(client, auth, server.url_for("/hang"), ["lead.created"])
        subscribe(client, auth, server.url_for("/ok"), ["lead.created"])
        processes()
        for _ in range(12):  # more than the hanging endpoint's share of the pool
            publish(client, auth, "lead.created")
        wait_for(lambda: len(healthy) == 12 and released, timeout=30)
        # every healthy delivery arrived while the first hanging request was still held
        assert max(healthy) < min(released)
    finally:
        server.clear()
        server.stop()


def test_response_bodies_with_nul_bytes_are_recorded(
    client: FlaskClient, auth: dict[str, str], httpserver: HTTPServer, processes: Callable[..., Any]
) -> None:
    receiver = Receiver(httpserver, "/nul", [Response(b"ok\x00then", 200)])
    sub = subscribe(client, auth, receiver.url, ["lead.created"])
    processes()
    publish(client, auth, "lead.created")
    delivered = wait_for(
        lambda: [d for d in deliveries(client, auth, sub["id"]) if d["status"] == "delivered"]
    )
    assert delivered[0]["attemptLog"][0]["responseBody"] == "ok\ufffdthen"


def test_a_delivery_cancelled_while_in_flight_stays_cancelled(
    client: FlaskClient, auth: dict[str, str], httpserver: HTTPServer, processes: Callable[..., Any]
) -> None:
    arrived = threading.Event()

    def slow(request: Request) -> Response:
        arrived.set()
        time.sleep(1.5)  # the subscription is deleted meanwhile
        return Response("ok", 200)

    httpserver.expect_request("/slow-cancel", method="POST").respond_with_handler(slow)
    sub = subscribe(client, auth, httpserver.url_for("/slow-cancel"), ["lead.created"])
    processes()
    publish(client, auth, "lead.created")
    assert arrived.wait(15)
    assert client.delete(f"/api/webhooks/{sub['id']}", headers=auth).status_code == 200
    engine = client.application.extensions["apex"].engine

    def recorded() -> Any:
        with engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(attempt_table)).scalar()

    wait_for(recorded)  # the attempt itself is kept in the log
    with engine.connect() as conn:
        row = conn.execute(sa.select(delivery_table.c.status, delivery_table.c.attempts)).one()
    assert tuple(row) == ("cancelled", 0)


def test_switching_http_off_refuses_the_next_attempt_of_an_http_subscription(
    client: FlaskClient, auth: dict[str, str], httpserver: HTTPServer, processes: Callable[..., Any]
) -> None:
    receiver = Receiver(httpserver, "/plain")
    sub = subscribe(client, auth, receiver.url, ["lead.created"])  # made while http was allowed
    processes(APEX_ALLOW_HTTP="0")
    publish(client, auth, "lead.created")

    def first_attempt() -> dict[str, Any] | None:
        log = deliveries(client, auth, sub["id"])[0]["attemptLog"]
        return log[0] if log else None

    attempt = wait_for(first_attempt)
    assert attempt["error"].startswith("destination_refused: "), attempt
    assert "APEX_ALLOW_HTTP=1" in attempt["error"]
    assert receiver.requests == []


def test_deliveries_still_retrying_are_listed_under_retrying(
    client: FlaskClient, auth: dict[str, str], httpserver: HTTPServer, processes: Callable[..., Any]
) -> None:
    # A newcomer looked for a failing endpoint's deliveries under status=failed, where they
    # appear only once their retries run out; `retrying` lists them meanwhile.
    failing = Receiver(httpserver, "/failing", [Response("no", status=500)] * 10)
    sub = subscribe(client, auth, failing.url, ["lead.created"])["id"]
    event = publish(client, auth, "lead.created")

    def listed(status: str) -> list[Any]:
        reply = client.get(f"/api/webhooks/{sub}/deliveries?status={status}", headers=auth)
        assert reply.status_code == 200
        return list(reply.json["data"])

    assert listed("retrying") == [] and len(listed("pending")) == 1  # not tried yet
    processes()
    retrying = wait_for(lambda: listed("retrying"))
    assert retrying[0]["eventId"] == event["id"] and retrying[0]["lastStatusCode"] == 500
    assert listed("failed") == []
