"""Retention at the database: what a pass deletes and what it keeps, its batches, hosts pruning
at once, and the periodic job run by a real worker; on SQLite and PostgreSQL."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY
from redis import Redis
from rq import Queue, SimpleWorker
from sqlalchemy.engine import Engine

from apex import retention
from apex.db import make_engine, utcnow
from apex.ids import new_id
from apex.models import attempts, deliveries, events, inbound_events, subscriptions
from config import Settings
from workers import retention as retention_job
from workers import scheduled
from workers.context import WorkerContext
from workers.jobs import MAINTENANCE

pytestmark = pytest.mark.postgres

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
POLICY = retention.Policy.of_days(30, 90)
SUBSCRIPTION, OTHER_SUBSCRIPTION = "wh_retention", "wh_retention_other"


def days_ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    subscribe(engine, SUBSCRIPTION, OTHER_SUBSCRIPTION)
    yield engine
    engine.dispose()


def subscribe(engine: Engine, *subscription_ids: str) -> None:
    with engine.begin() as conn:
        for subscription_id in subscription_ids:
            conn.execute(
                subscriptions.insert().values(
                    id=subscription_id,
                    url="https://example.com/hook",
                    events=["*"],
                    status="active",
                    secret="not-a-real-token",
                    created_at=days_ago(400),
                    updated_at=days_ago(400),
                )
            )


def event(engine: Engine, created: datetime) -> str:
    event_id = new_id("evt")
    with engine.begin() as conn:
        conn.execute(
            events.insert().values(
                id=event_id, type="lead.created", data={"id": "lead_x"}, created_at=created
            )
        )
    return event_id


def delivery(
    engine: Engine,
    status: str,
    updated: datetime,
    event_id: str | None = None,
    tries: int = 0,
    subscription: str = SUBSCRIPTION,
    **values: Any,
) -> str:
    """A delivery of `event_id` (else of an event of its own, created with it) last changed at
    `updated`, with `tries` recorded attempts."""
    event_id = event_id or event(engine, updated - timedelta(hours=1))
    delivery_id = new_id("dlv")
    with engine.begin() as conn:
        conn.execute(
            deliveries.insert().values(
                id=delivery_id,
                event_id=event_id,
                subscription_id=subscription,
                status=status,
                attempts=tries,
                created_at=updated - timedelta(hours=1),
                updated_at=updated,
                **values,
            )
        )
        if tries:
            conn.execute(
                attempts.insert(),
                [
                    {
                        "id": new_id("att"),
                        "delivery_id": delivery_id,
                        "attempted_at": updated - timedelta(minutes=n),
                        "duration_ms": 12,
                        "status_code": 500,
                        "response_body": "a response excerpt",
                    }
                    for n in range(tries)
                ],
            )
    return delivery_id


def inbound(engine: Engine, status: str, received: datetime, **values: Any) -> str:
    event_id = new_id("inb")
    with engine.begin() as conn:
        conn.execute(
            inbound_events.insert().values(
                id=event_id,
                source="stripe",
                dedupe_key=event_id,
                type="customer.created",
                payload={"id": event_id, "email": "jane@acme.io"},
                headers={},
                status=status,
                received_at=received,
                **values,
            )
        )
    return event_id


def ids(engine: Engine, table: sa.Table) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(sa.select(table.c.id)).scalars())


def attempts_of(engine: Engine, delivery_id: str) -> int:
    with engine.connect() as conn:
        query = sa.select(sa.func.count()).where(attempts.c.delivery_id == delivery_id)
        return int(conn.execute(query).scalar_one())


def prune(engine: Engine, **options: Any) -> retention.Pruned:
    pruned, finished = retention.prune(engine, NOW, POLICY, **options)
    assert finished
    return pruned


# --- what a pass deletes, what it keeps -----------------------------------------------------


def test_pending_and_leased_rows_survive_a_pass(engine: Engine) -> None:
    # However old: a delivery waiting in its retry window, one due now, one a worker holds.
    waiting = delivery(
        engine, "pending", days_ago(200), tries=3, next_attempt_at=NOW + timedelta(hours=1)
    )
    due = delivery(engine, "pending", days_ago(200), next_attempt_at=days_ago(150))
    leased = delivery(
        engine, "in_flight", days_ago(200), tries=1, lease_until=NOW + timedelta(minutes=5)
    )
    expired_lease = delivery(engine, "in_flight", days_ago(200), lease_until=days_ago(199))
    # An inbound event waiting for its retry, and one never processed (Redis lost it).
    retrying = inbound(
        engine, "queued", days_ago(100), attempts=2, next_attempt_at=NOW + timedelta(minutes=10)
    )
    lost = inbound(engine, "queued", days_ago(100), next_attempt_at=days_ago(100))
    kept_events = ids(engine, events)

    pruned = prune(engine)

    assert pruned == retention.Pruned()
    assert ids(engine, deliveries) == {waiting, due, leased, expired_lease}
    assert ids(engine, events) == kept_events  # each still has an unfinished delivery
    assert (attempts_of(engine, waiting), attempts_of(engine, leased)) == (3, 1)
    assert ids(engine, inbound_events) == {retrying, lost}


def test_a_pass_deletes_what_is_past_its_period_and_keeps_the_rest(engine: Engine) -> None:
    old_delivered = delivery(engine, "delivered", days_ago(31), tries=2)
    young_delivered = delivery(engine, "delivered", days_ago(29), tries=1)
    old_cancelled = delivery(engine, "cancelled", days_ago(31))
    young_failed = delivery(engine, "failed", days_ago(89), tries=4)
    old_failed = delivery(engine, "failed", days_ago(91), tries=4)
    young_skipped = delivery(engine, "skipped", days_ago(60))
    old_skipped = delivery(engine, "skipped", days_ago(91))
    # One event, two deliveries: the finished one goes, the event stays with the pending one.
    shared = event(engine, days_ago(45))
    shared_delivered = delivery(engine, "delivered", days_ago(44), event_id=shared, tries=1)
    shared_pending = delivery(
        engine,
        "pending",
        days_ago(44),
        event_id=shared,
        subscription=OTHER_SUBSCRIPTION,
        next_attempt_at=NOW + timedelta(hours=2),
    )
    unheard = event(engine, days_ago(31))  # no subscriber wanted it
    recent = event(engine, days_ago(10))
    with engine.connect() as conn:
        event_of = dict(conn.execute(sa.select(deliveries.c.id, deliveries.c.event_id)).all())
    processed_old = inbound(engine, "processed", days_ago(40), processed_at=days_ago(31))
    # Received long ago but replayed and processed lately: kept from its processing.
    processed_lately = inbound(engine, "processed", days_ago(40), processed_at=days_ago(29))
    ignored_old = inbound(engine, "ignored", days_ago(31), processed_at=days_ago(31))
    failed_young = inbound(engine, "failed", days_ago(89), attempts=6)
    failed_old = inbound(engine, "failed", days_ago(91), attempts=6)

    pruned = prune(engine)

    kept = {young_delivered, young_failed, young_skipped, shared_pending}
    assert ids(engine, deliveries) == kept
    assert ids(engine, events) == {event_of[d] for d in kept} | {shared, recent}
    assert unheard not in ids(engine, events)
    assert ids(engine, inbound_events) == {processed_lately, failed_young}
    assert not {processed_old, ignored_old, failed_old} & ids(engine, inbound_events)
    assert pruned == retention.Pruned(attempts=2 + 4 + 1, deliveries=5, events=5, inbound_events=3)
    with engine.connect() as conn:
        left = set(conn.execute(sa.select(attempts.c.delivery_id)).scalars())
    assert left == {young_delivered, young_failed}
    gone = {old_delivered, old_cancelled, old_failed, old_skipped, shared_delivered}
    assert not gone & ids(engine, deliveries)
    assert prune(engine) == retention.Pruned()  # a second pass finds nothing more


def test_the_periods_come_from_the_policy(engine: Engine) -> None:
    delivered = delivery(engine, "delivered", days_ago(8))
    failed = delivery(engine, "failed", days_ago(8))

    retention.prune(engine, NOW, retention.Policy.of_days(7, 9))
    assert ids(engine, deliveries) == {failed}
    assert delivered not in ids(engine, deliveries)
    retention.prune(engine, NOW, retention.Policy.of_days(7, 7))
    assert ids(engine, deliveries) == set()


# --- bounded batches ------------------------------------------------------------------------


def counts(engine: Engine) -> int:
    with engine.connect() as conn:
        return sum(
            int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())
            for table in (attempts, deliveries, events, inbound_events)
        )


def test_no_transaction_deletes_more_than_a_batch(engine: Engine) -> None:
    for _ in range(6):
        delivery(engine, "delivered", days_ago(40), tries=2)  # 3 rows each, its event a 4th
    heavy = delivery(engine, "failed", days_ago(100), tries=12)  # more attempts than a batch
    for _ in range(7):
        inbound(engine, "processed", days_ago(40), processed_at=days_ago(40))
    seen = [counts(engine)]

    def between_batches(pause: float) -> None:
        assert pause == 0.5
        seen.append(counts(engine))

    pruned = prune(engine, batch=5, pause=0.5, sleep=between_batches)

    seen.append(counts(engine))
    steps = [before - after for before, after in zip(seen, seen[1:], strict=False)]
    assert max(steps) <= 5, steps
    assert sum(steps) == pruned.total == 6 * 4 + 13 + 1 + 7
    assert len(steps) >= (pruned.total + 4) // 5  # one observation per transaction
    assert heavy not in ids(engine, deliveries)
    assert counts(engine) == 0


def test_a_pass_out_of_budget_stops_and_the_next_goes_on(engine: Engine) -> None:
    old = [delivery(engine, "delivered", days_ago(40)) for _ in range(3)]

    pruned, finished = retention.prune(engine, NOW, POLICY, budget=0)
    assert (pruned, finished) == (retention.Pruned(), False)
    assert ids(engine, deliveries) == set(old)

    assert prune(engine, budget=60).deliveries == 3


def test_hosts_pruning_at_once_delete_every_row_once(database_url: str, engine: Engine) -> None:
    for _ in range(40):
        delivery(engine, "delivered", days_ago(40), tries=1)
    for _ in range(30):
        inbound(engine, "ignored", days_ago(40), processed_at=days_ago(40))
    hosts = [make_engine(database_url) for _ in range(3)]
    results: list[retention.Pruned] = []
    errors: list[BaseException] = []
    start = threading.Barrier(len(hosts))

    def host(other: Engine) -> None:
        try:
            start.wait()
            results.append(retention.prune(other, NOW, POLICY, batch=7)[0])
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=host, args=(h,)) for h in hosts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for other in hosts:
        other.dispose()

    assert errors == []
    total = sum(results, retention.Pruned())
    assert total == retention.Pruned(attempts=40, deliveries=40, events=40, inbound_events=30)
    assert counts(engine) == 0


# --- the periodic job -----------------------------------------------------------------------


def pruned_metric(table: str) -> float:
    return REGISTRY.get_sample_value("apex_retention_pruned_rows_total", {"table": table}) or 0.0


def test_the_scheduler_runs_retention_on_the_maintenance_queue(settings: Settings) -> None:
    [(job_id, func, interval)] = [
        entry for entry in scheduled.periodic(settings) if entry[1] is retention_job.prune
    ]
    assert (job_id, interval) == ("apex-periodic-retention", retention_job.INTERVAL)


def test_the_job_prunes_and_reports_in_metrics_and_the_log(
    worker_context: WorkerContext,
    redis_conn: Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    engine = worker_context.engine
    subscribe(engine, SUBSCRIPTION)
    now = utcnow()
    finished = [delivery(engine, "delivered", now - timedelta(days=31), tries=2) for _ in range(2)]
    pending = delivery(engine, "pending", now - timedelta(days=31), next_attempt_at=now)
    before = {table: pruned_metric(table) for table in ("attempts", "deliveries", "events")}
    queue = Queue(MAINTENANCE, connection=redis_conn)
    job = queue.enqueue(retention_job.prune)

    with caplog.at_level(logging.INFO, logger="apex.jobs"):
        SimpleWorker([queue], connection=redis_conn).work(burst=True)

    assert job.get_status(refresh=True) == "finished"
    assert job.return_value() == {"attempts": 4, "deliveries": 2, "events": 2, "inbound_events": 0}
    assert ids(engine, deliveries) == {pending}
    assert not set(finished) & ids(engine, deliveries)
    assert pruned_metric("attempts") - before["attempts"] == 4
    assert pruned_metric("deliveries") - before["deliveries"] == 2
    assert pruned_metric("events") - before["events"] == 2
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("retention:")]
    assert logged == ["retention: pruned 4 attempts, 2 deliveries, 2 events, 0 inbound events"]
