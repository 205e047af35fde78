"""Endpoint limits and health with real worker processes: the concurrency cap and the rate limit
hold over several workers (they live in Redis), `concurrency: 1` sends one at a time in order,
and an unreachable endpoint's circuit opens, parks its deliveries and closes on a probe."""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient
from pytest_httpserver import HTTPServer
from redis import Redis
from rq import Queue
from rq.job import Job
from werkzeug import Request, Response

from apex.delivery.limits import EndpointLimits, Slot
from apex.models import attempts as attempt_table
from apex.models import deliveries as delivery_table
from tests.integration.conftest import wait_for
from tests.integration.receivers import publish, subscribe
from workers.jobs import DELIVERIES

pytestmark = pytest.mark.postgres


class CountingReceiver:
    """A threaded receiver that holds each request `hold` seconds and records when each
    started, in what order, and the most it held at once."""

    def __init__(self, server: HTTPServer, path: str, hold: float = 0.0) -> None:
        self.hold = hold
        self.started: list[float] = []
        self.ids: list[str] = []
        self.most_at_once = 0
        self._at_once = 0
        self._lock = threading.Lock()
        self.url = server.url_for(path)
        server.expect_request(path, method="POST").respond_with_handler(self.handle)

    def handle(self, request: Request) -> Response:
        with self._lock:
            self.started.append(time.monotonic())
            self.ids.append(request.headers["webhook-id"])
            self._at_once += 1
            self.most_at_once = max(self.most_at_once, self._at_once)
        time.sleep(self.hold)
        with self._lock:
            self._at_once -= 1
        return Response("ok")


@pytest.fixture
def threaded_server() -> Iterator[HTTPServer]:
    server = HTTPServer(threaded=True)
    server.start()
    yield server
    server.clear()
    server.stop()


def create(client: FlaskClient, auth: dict[str, str], url: str, **limits: Any) -> str:
    body = {"url": url, "events": ["lead.created"], **limits}
    response = client.post("/api/webhooks", json=body, headers=auth)
    assert response.status_code == 201, response.json
    assert all(response.json[k] == v for k, v in limits.items()), response.json
    return str(response.json["id"])


def test_the_concurrency_cap_holds_over_three_worker_processes(
    client: FlaskClient,
    auth: dict[str, str],
    threaded_server: HTTPServer,
    processes: Callable[..., Any],
) -> None:
    # Each worker alone would put up to 8 requests in flight (16 threads, APEX_ENDPOINT_
    # CONCURRENCY 8 per process before); the cap is 2 for all three together.
    receiver = CountingReceiver(threaded_server, "/slow", hold=0.4)
    subscribe(client, auth, receiver.url, ["lead.created"])
    for _ in range(3):
        processes(APEX_ENDPOINT_CONCURRENCY="2")
    events = [publish(client, auth, "lead.created")["id"] for _ in range(24)]
    wait_for(lambda: set(receiver.ids) >= set(events), timeout=60)
    assert receiver.most_at_once == 2  # reached, never passed
    assert Counter(receiver.ids).most_common(1)[0][1] == 1  # each sent once


def test_a_subscription_rate_limit_holds_over_three_worker_processes(
    client: FlaskClient,
    auth: dict[str, str],
    threaded_server: HTTPServer,
    processes: Callable[..., Any],
) -> None:
    receiver = CountingReceiver(threaded_server, "/rated")
    create(client, auth, receiver.url, rateLimit=4)
    for _ in range(3):
        processes()
    events = [publish(client, auth, "lead.created")["id"] for _ in range(16)]
    wait_for(lambda: set(receiver.ids) >= set(events), timeout=60)
    starts = sorted(receiver.started)
    # Requests start at least 1/4 s apart at the sender; network jitter may bunch two of them
    # at the receiver, so count per 1 s window: 4, and one more for the jitter at its edges.
    busiest = max(sum(t <= s < t + 1.0 for s in starts) for t in starts)
    assert busiest <= 5, busiest
    assert starts[-1] - starts[0] >= (len(starts) - 1) / 4 * 0.9


def test_a_worker_waits_for_slots_another_worker_holds_instead_of_giving_work_back(
    client: FlaskClient,
    auth: dict[str, str],
    threaded_server: HTTPServer,
    processes: Callable[..., Any],
    redis_conn: Redis,
) -> None:
    receiver = CountingReceiver(threaded_server, "/held")
    sub_id = create(client, auth, receiver.url, concurrency=2)
    # "Another worker" (this test) holds both slots of the endpoint for a moment.
    elsewhere = EndpointLimits(redis_conn, slot_ttl=30)
    held = [elsewhere.acquire(sub_id, 2, None) for _ in range(2)]
    assert all(isinstance(slot, Slot) for slot in held)
    processes()
    events = [publish(client, auth, "lead.created")["id"] for _ in range(10)]
    time.sleep(1.0)  # the worker has claimed them by now, and found no slot
    assert receiver.ids == []
    for slot in held:
        elsewhere.release(slot)  # type: ignore[arg-type]
    wait_for(lambda: set(receiver.ids) >= set(events), timeout=30)
    # Given back to the database, they would have been claimed again by a wake-up job.
    assert wake_ups(redis_conn) == []
    assert receiver.most_at_once <= 2


def wake_ups(redis: Redis) -> list[str]:
    """The wake-up jobs RQ has queued, scheduled, started or finished: each means deliveries
    were given back to the database for want of a slot or of room."""
    queue = Queue(DELIVERIES, connection=redis)
    job_ids = [
        *queue.job_ids,
        *queue.scheduled_job_registry.get_job_ids(),
        *queue.finished_job_registry.get_job_ids(),
        *queue.started_job_registry.get_job_ids(),
    ]
    jobs = [job for job in Job.fetch_many(job_ids, connection=redis) if job is not None]
    assert jobs  # the drains that claimed the deliveries are among them: the lookup works
    return [job.id for job in jobs if job.func_name.endswith(".wake")]


def test_a_burst_after_a_quiet_spell_waits_in_the_worker_behind_its_lanes(
    client: FlaskClient,
    auth: dict[str, str],
    threaded_server: HTTPServer,
    processes: Callable[..., Any],
    redis_conn: Redis,
) -> None:
    receiver = CountingReceiver(threaded_server, "/burst", hold=0.05)
    create(client, auth, receiver.url, concurrency=2)
    processes()
    first = publish(client, auth, "lead.created")["id"]
    wait_for(lambda: first in receiver.ids)
    time.sleep(1.5)  # quiet: nothing has finished lately, yet the endpoint answered quickly
    events = [publish(client, auth, "lead.created")["id"] for _ in range(30)]
    wait_for(lambda: set(receiver.ids) >= set(events), timeout=30)
    # An endpoint merely idle still counts as answering: the burst queues behind its two
    # lanes instead of going back to the database but for the few a hanging one may keep.
    assert wake_ups(redis_conn) == []


def test_concurrency_one_sends_one_at_a_time_oldest_first(
    client: FlaskClient,
    auth: dict[str, str],
    threaded_server: HTTPServer,
    processes: Callable[..., Any],
) -> None:
    receiver = CountingReceiver(threaded_server, "/ordered", hold=0.05)
    create(client, auth, receiver.url, concurrency=1)
    processes()
    events = [publish(client, auth, "lead.created")["id"] for _ in range(12)]
    wait_for(lambda: set(receiver.ids) >= set(events), timeout=60)
    assert receiver.most_at_once == 1
    assert receiver.ids == events


def test_limits_are_validated_and_can_be_changed_or_cleared(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    for bad in ({"rateLimit": 0}, {"rateLimit": 1.5}, {"rateLimit": True}, {"concurrency": 0},
                {"concurrency": "2"}, {"rateLimit": 10**6}):  # fmt: skip
        body = {"url": "https://example.com/hook", "events": ["lead.created"], **bad}
        response = client.post("/api/webhooks", json=body, headers=auth)
        assert response.status_code == 422, (bad, response.json)
    sub = create(client, auth, "https://example.com/hook", rateLimit=3, concurrency=2)
    changed = client.patch(f"/api/webhooks/{sub}", json={"rateLimit": None}, headers=auth)
    assert changed.status_code == 200
    assert (changed.json["rateLimit"], changed.json["concurrency"]) == (None, 2)
    shown = client.get(f"/api/webhooks/{sub}", headers=auth).json
    assert shown["health"] == {"state": "closed", "since": None, "reason": None,
                               "consecutiveFailures": 0, "nextProbeAt": None}  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _attempts_of(client: FlaskClient, sub_id: str) -> list[Any]:
    engine = client.application.extensions["apex"].engine
    query = (
        sa.select(delivery_table.c.id, delivery_table.c.status, attempt_table.c.status_code)
        .join(attempt_table, attempt_table.c.delivery_id == delivery_table.c.id)
        .where(delivery_table.c.subscription_id == sub_id)
    )
    with engine.connect() as conn:
        return list(conn.execute(query).all())


def test_an_unreachable_endpoint_opens_its_circuit_and_a_probe_closes_it(
    client: FlaskClient,
    auth: dict[str, str],
    threaded_server: HTTPServer,
    processes: Callable[..., Any],
) -> None:
    port = _free_port()  # nothing listens: every attempt is a refused connection
    dead = subscribe(client, auth, f"http://127.0.0.1:{port}/back", ["lead.created"])["id"]
    healthy = CountingReceiver(threaded_server, "/healthy")
    subscribe(client, auth, healthy.url, ["lead.created"])
    # Retries enough that no delivery runs out of them while probes fail.
    processes(
        APEX_CIRCUIT_FAILURES="3", APEX_CIRCUIT_PROBE="1", APEX_RETRY_SCHEDULE="1,1,1,1,1,1,1,1"
    )
    events = [publish(client, auth, "lead.created")["id"] for _ in range(10)]

    def health() -> dict[str, Any]:
        return dict(client.get(f"/api/webhooks/{dead}", headers=auth).json["health"])

    opened = wait_for(lambda: health()["state"] == "open" and health(), timeout=30)
    assert opened["reason"].startswith("connection_error: ")
    assert opened["consecutiveFailures"] >= 3 and opened["nextProbeAt"]
    metrics = client.get("/metrics", headers=auth).get_data(as_text=True)
    assert 'apex_endpoint_circuits{state="open"} 1.0' in metrics
    wait_for(lambda: set(healthy.ids) >= set(events), timeout=30)  # the others go on
    # While open, only probes go: with a retry schedule of 1, 2, 3 s ten deliveries would
    # make ~20 more attempts in these 4 s; probes 1 s, then 2 s apart make at most 3.
    before = len(_attempts_of(client, dead))
    time.sleep(4)
    during = len(_attempts_of(client, dead)) - before
    assert during <= 3, during
    rows = client.get(f"/api/webhooks/{dead}/deliveries?limit=50", headers=auth).json["data"]
    assert sum(d["status"] == "pending" for d in rows) >= 8  # parked, not failed

    back = HTTPServer(port=port, threaded=True)
    back.start()
    try:
        revived = CountingReceiver(back, "/back")
        wait_for(lambda: set(revived.ids) >= set(events), timeout=40)
        wait_for(lambda: health()["state"] == "closed", timeout=10)
        delivered = {r.id for r in _attempts_of(client, dead) if r.status_code == 200}
        assert len(delivered) == 10
        assert Counter(revived.ids).most_common(1)[0][1] == 1
    finally:
        back.clear()
        back.stop()
