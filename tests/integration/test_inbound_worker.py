"""process_inbound and sweep_inbound run by a real rq SimpleWorker on the real Redis, on events
received through the HTTP surface, on both databases."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis
from rq import Queue, SimpleWorker
from rq.registry import ScheduledJobRegistry

from apex.db import utcnow
from apex.inbound import store
from config import Settings
from tests.integration.conftest import queued_inbound
from tests.platforms import STRIPE_SECRET, stripe_body, stripe_headers
from workers import context
from workers import inbound as inbound_jobs
from workers.context import WorkerContext

pytestmark = pytest.mark.postgres


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # A sweeper that waits a minute: the tests move its clock instead of sleeping.
    return replace(settings, stripe_webhook_secrets=(STRIPE_SECRET,), requeue_after=60)


def with_retries(ctx: WorkerContext, delays: tuple[int, ...]) -> None:
    """Reconfigure this process's worker context with another inbound retry schedule."""
    context.configure(replace(ctx.settings, inbound_retry_schedule=delays))


# A new Stripe customer: one record, one new lead.
PROCESSED = {"records": 1, "leadsCreated": 1, "leadsUpdated": 0}


def receive(client: FlaskClient, body: bytes) -> str:
    """Post a Stripe event as Stripe signs it; returns the stored event's id."""
    response = client.post("/api/webhooks/stripe", data=body, headers=stripe_headers(body))
    assert response.status_code == 202, response.json
    return str(response.json["id"])


def work(redis_conn: Redis, with_scheduler: bool = False) -> None:
    worker = SimpleWorker([Queue("inbound", connection=redis_conn)], connection=redis_conn)
    worker.work(burst=True, with_scheduler=with_scheduler)


def row(app: Flask, event_id: str) -> store.StoredEvent:
    return store.get(app.extensions["apex"].engine, event_id)


def close_to(value: datetime | None, expected: datetime) -> bool:
    return value is not None and abs(value - expected) < timedelta(seconds=5)


class Outage:
    """The pipeline failing while `down`, as a flaky downstream step would."""

    def __init__(self) -> None:
        self.down = True
        self.real = inbound_jobs.run

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.down:
            raise RuntimeError("enrichment service unreachable")
        return self.real(*args, **kwargs)


@pytest.fixture
def outage(monkeypatch: pytest.MonkeyPatch) -> Outage:
    failing = Outage()
    monkeypatch.setattr(inbound_jobs, "run", failing)
    return failing


# --- processing -----------------------------------------------------------------------------


def test_worker_processes_a_received_event_and_records_its_summary(
    client: FlaskClient, app: Flask, redis_conn: Redis, worker_context: WorkerContext
) -> None:
    event_id = receive(client, stripe_body())
    [job] = Queue("inbound", connection=redis_conn).get_jobs()

    work(redis_conn)

    stored = row(app, event_id)
    assert stored.status == "processed"
    assert stored.result == PROCESSED
    assert stored.attempts == 1 and stored.error is None
    assert close_to(stored.processed_at, utcnow())
    job.refresh()
    assert job.get_status() == "finished"
    assert job.return_value() == 1  # the drain job processed one event


def test_running_the_job_again_is_a_no_op(
    client: FlaskClient, app: Flask, redis_conn: Redis, worker_context: WorkerContext
) -> None:
    event_id = receive(client, stripe_body())
    work(redis_conn)
    before = row(app, event_id)

    inbound_jobs.enqueue_inbound(redis_conn, [event_id])
    work(redis_conn)

    assert row(app, event_id) == before
    assert inbound_jobs.process_inbound("inb_unknown") is None


def test_an_event_held_by_another_job_is_left_alone(
    client: FlaskClient, app: Flask, worker_context: WorkerContext
) -> None:
    event_id = receive(client, stripe_body())
    lease = timedelta(seconds=inbound_jobs.INBOUND_LEASE_SECONDS)  # as process_inbound holds it
    assert store.claim(worker_context.engine, [event_id], utcnow(), lease)

    assert inbound_jobs.process_inbound(event_id) is None
    assert row(app, event_id).status == "queued"


# --- failure, retry, replay -----------------------------------------------------------------


def test_a_failure_is_recorded_and_retried_with_backoff(
    client: FlaskClient,
    app: Flask,
    redis_conn: Redis,
    worker_context: WorkerContext,
    outage: Outage,
) -> None:
    event_id = receive(client, stripe_body())

    work(redis_conn)

    stored = row(app, event_id)
    assert stored.status == "queued"
    assert stored.attempts == 1
    assert stored.error == "RuntimeError: enrichment service unreachable"
    first_retry = worker_context.settings.inbound_retry_schedule[0]
    assert close_to(stored.next_attempt_at, utcnow() + timedelta(seconds=first_retry))
    queue = Queue("inbound", connection=redis_conn)
    assert ScheduledJobRegistry(queue=queue).count == 1  # the retry, in 10 s


def test_a_failure_past_the_last_retry_ends_failed_and_visible(
    client: FlaskClient,
    app: Flask,
    auth: dict[str, str],
    redis_conn: Redis,
    worker_context: WorkerContext,
    outage: Outage,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with_retries(worker_context, (0,))  # one immediate retry, then give up
    event_id = receive(client, stripe_body())

    work(redis_conn)  # attempt 1 fails; the retry is scheduled now
    assert row(app, event_id).status == "queued"
    work(redis_conn, with_scheduler=True)  # RQ's scheduler enqueues it; attempt 2 fails

    stored = row(app, event_id)
    assert (stored.status, stored.attempts) == ("failed", 2)
    assert stored.next_attempt_at is None
    listed = client.get("/api/inbound?status=failed", headers=auth).json["data"]
    assert [(e["id"], e["error"]) for e in listed] == [
        (event_id, "RuntimeError: enrichment service unreachable")
    ]
    inbound_jobs.enqueue_inbound(redis_conn, [event_id])
    work(redis_conn)  # failed for good: a stray job changes nothing
    assert row(app, event_id) == stored


def test_replay_reprocesses_a_failed_event(
    client: FlaskClient,
    app: Flask,
    auth: dict[str, str],
    redis_conn: Redis,
    worker_context: WorkerContext,
    outage: Outage,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with_retries(worker_context, ())
    event_id = receive(client, stripe_body())
    work(redis_conn)
    assert row(app, event_id).status == "failed"

    outage.down = False
    response = client.post(f"/api/inbound/{event_id}/replay", headers=auth)
    work(redis_conn)

    assert response.status_code == 202
    stored = row(app, event_id)
    assert (stored.status, stored.attempts, stored.error) == ("processed", 1, None)
    assert stored.result == PROCESSED


def test_replay_reprocesses_a_processed_event(
    client: FlaskClient,
    app: Flask,
    auth: dict[str, str],
    redis_conn: Redis,
    worker_context: WorkerContext,
) -> None:
    event_id = receive(client, stripe_body())
    work(redis_conn)
    first = row(app, event_id).processed_at
    assert first is not None

    client.post(f"/api/inbound/{event_id}/replay", headers=auth)
    assert row(app, event_id).status == "queued"
    work(redis_conn)

    stored = row(app, event_id)
    assert stored.status == "processed"
    assert stored.processed_at is not None and stored.processed_at >= first


# --- the sweeper ----------------------------------------------------------------------------


def test_sweep_enqueues_an_event_stored_while_redis_was_down(
    app: Flask, redis_conn: Redis, worker_context: WorkerContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = app.extensions["apex"]
    app.extensions["apex"] = replace(rt, redis=Redis(port=1, socket_connect_timeout=0.2))
    event_id = receive(app.test_client(), stripe_body())
    queue = Queue("inbound", connection=redis_conn)
    assert queue.count == 0

    assert inbound_jobs.sweep_inbound() == 0  # not yet: it might still be on its way
    later = utcnow() + timedelta(seconds=worker_context.settings.requeue_after + 1)
    with monkeypatch.context() as clock:
        clock.setattr(inbound_jobs, "utcnow", lambda: later)
        assert inbound_jobs.sweep_inbound() == 1
        assert inbound_jobs.sweep_inbound() == 0  # marked enqueued
    assert queued_inbound(redis_conn) == [event_id]

    work(redis_conn)

    assert row(app, event_id).status == "processed"


def test_sweep_leaves_processed_and_waiting_events_alone(
    client: FlaskClient,
    app: Flask,
    redis_conn: Redis,
    worker_context: WorkerContext,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    processed = receive(client, stripe_body("evt_done"))
    work(redis_conn)
    with monkeypatch.context() as patched:
        patched.setattr(inbound_jobs, "run", Outage())
        waiting = receive(client, stripe_body("evt_waiting"))
        work(redis_conn)  # fails; its retry is 10 s away
    assert row(app, processed).status == "processed"
    assert row(app, waiting).status == "queued"

    soon = utcnow() + timedelta(seconds=5)
    monkeypatch.setattr(inbound_jobs, "utcnow", lambda: soon)

    assert inbound_jobs.sweep_inbound() == 0
