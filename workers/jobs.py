"""RQ job functions (thin: ids in, domain calls, follow-up enqueues) and the only enqueue calls."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from datetime import datetime, timedelta

from redis import Redis
from rq import Queue, get_current_job
from rq.job import Job

from apex import metrics
from apex.db import utcnow
from apex.delivery import store
from apex.delivery.deliver import Result
from workers import context
from workers.dispatcher import Dispatcher
from workers.readylist import ReadyList

log = logging.getLogger("apex.jobs")

DELIVERIES = "deliveries"
INBOUND = "inbound"
PIPELINE = "pipeline"
MAINTENANCE = "maintenance"
# The order a worker serves them in. The sweeps (maintenance) come first: they are short, and
# they are the safety net that must run however deep a backlog of deliveries grows.
QUEUES = (MAINTENANCE, DELIVERIES, INBOUND, PIPELINE)

RESULT_TTL = 60
RECOVER_BATCH = 500  # deliveries requeued per transaction by recover(), progress after each

# Deliveries to send now: claimed 200 per transaction by drain().
READY_DELIVERIES = ReadyList("deliveries", DELIVERIES, batch=200, help_backlog=2000)

_dispatcher: Dispatcher | None = None
_dispatcher_lock = threading.Lock()


# --- enqueueing -----------------------------------------------------------------------------


def _queue(redis: Redis, name: str) -> Queue:
    return Queue(name, connection=redis)


def enqueue_deliveries(redis: Redis, delivery_ids: Iterable[str]) -> int:
    """Queue deliveries for sending now (see workers.readylist). Returns how many."""
    return READY_DELIVERIES.push(redis, delivery_ids, drain)


def schedule_delivery(redis: Redis, delivery_id: str, delay: float) -> None:
    """Enqueue one delivery after `delay` seconds (RQ's scheduler; the row's next_attempt_at is
    the truth, so a lost schedule is found again by sweep())."""
    _queue(redis, DELIVERIES).enqueue_in(
        timedelta(seconds=max(delay, 0.0)), deliver, [delivery_id], result_ttl=RESULT_TTL
    )


def enqueue_recover(redis: Redis, subscription_id: str, since: datetime) -> str:
    job = _queue(redis, MAINTENANCE).enqueue(recover, subscription_id, since.isoformat())
    return str(job.id)


# --- jobs -----------------------------------------------------------------------------------


def _follow_up(results: list[Result]) -> None:
    redis = context.current().redis
    for result in results:
        if result.retry_in is not None:
            schedule_delivery(redis, result.delivery_id, result.retry_in)


def _defer(delivery_ids: list[str], delay: float) -> None:
    redis = context.current().redis
    for delivery_id in delivery_ids:
        schedule_delivery(redis, delivery_id, delay)


def dispatcher() -> Dispatcher:
    global _dispatcher
    with _dispatcher_lock:
        if _dispatcher is not None and not _dispatcher.alive():
            log.error("delivery recorder thread died; starting a new dispatcher")
            _dispatcher = None
        if _dispatcher is None:
            ctx = context.current()
            _dispatcher = Dispatcher(
                ctx.delivery,
                ctx.settings.delivery_concurrency,
                ctx.settings.endpoint_concurrency,
                on_results=_follow_up,
                on_defer=_defer,
            )
        return _dispatcher


def shutdown() -> None:
    """Finish every delivery this process has in flight (called on shutdown)."""
    global _dispatcher
    with _dispatcher_lock:
        current, _dispatcher = _dispatcher, None
    if current is not None:
        current.drain()


def deliver(delivery_ids: list[str]) -> int:
    """Hand deliveries to this process's dispatcher; returns how many were started.

    They run in the background on its pool; the job returns once all are in flight. A worker
    killed before they finish loses nothing: the lease expires and sweep() re-enqueues them.
    """
    return dispatcher().submit(delivery_ids)


def drain() -> int:
    """Start the deliveries on the ready list, a batch per transaction, for a while; returns
    how many it started."""
    return READY_DELIVERIES.drain(context.current().redis, dispatcher().submit, drain)


def sweep() -> dict[str, int]:
    """The safety net, every minute: re-enqueue deliveries that are due but not queued, and those
    whose worker died mid-attempt (expired lease)."""
    ctx = context.current()
    lost = store.lost(ctx.engine, utcnow(), timedelta(seconds=ctx.settings.requeue_after))
    enqueue_deliveries(ctx.redis, lost)
    metrics.record_recoveries("deliveries", len(lost))
    if lost:
        log.info("sweep: re-enqueued %d deliveries", len(lost))
    return {"deliveries": len(lost)}


def recover(subscription_id: str, since: str) -> int:
    """Redeliver every failed or skipped delivery of a subscription created since `since`."""
    ctx = context.current()
    ids = store.recoverable(ctx.engine, subscription_id, datetime.fromisoformat(since))
    job = get_current_job()
    _progress(job, 0, len(ids))
    requeued = 0
    for start in range(0, len(ids), RECOVER_BATCH):
        batch = store.requeue(ctx.engine, ids[start : start + RECOVER_BATCH], utcnow())
        enqueue_deliveries(ctx.redis, batch)
        requeued += len(batch)
        _progress(job, min(start + RECOVER_BATCH, len(ids)), len(ids))
    return requeued


def _progress(job: Job | None, done: int, total: int) -> None:
    """Record how far a long job got, for GET /api/jobs/<id> and the dashboard."""
    if job is not None:
        job.meta["progress"] = {"done": done, "total": total}
        job.save_meta()
