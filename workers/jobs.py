"""RQ job functions (thin: ids in, domain calls, follow-up enqueues) and the only enqueue calls."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import cast

from redis import Redis
from rq import Queue

from apex.db import utcnow
from apex.delivery import store
from apex.delivery.deliver import Result
from workers import context
from workers.dispatcher import Dispatcher

log = logging.getLogger("apex.jobs")

DELIVERIES = "deliveries"
INBOUND = "inbound"
PIPELINE = "pipeline"
MAINTENANCE = "maintenance"
QUEUES = (DELIVERIES, INBOUND, PIPELINE, MAINTENANCE)

RESULT_TTL = 60

READY = "apex:deliveries:ready"  # ids to send now, in order
DRAINING = "apex:deliveries:draining"  # set while a drain job is queued or running
HELPING = "apex:deliveries:helping"  # set while a second drain job is being added
DRAIN_FLAG_TTL = 30  # a drain job that died lets another start after this
DRAIN_BATCH = 200  # ids claimed per transaction
DRAIN_SLICE = 5.0  # seconds a drain job runs before yielding the worker to other queues
HELP_BACKLOG = 2000  # a longer list than this asks another worker process to help

_dispatcher: Dispatcher | None = None
_dispatcher_lock = threading.Lock()


# --- enqueueing -----------------------------------------------------------------------------


def _queue(redis: Redis, name: str) -> Queue:
    return Queue(name, connection=redis)


def enqueue_deliveries(redis: Redis, delivery_ids: Iterable[str]) -> int:
    """Queue deliveries for sending now. Returns how many were queued.

    Ids go on a Redis list that drain() jobs empty in batches, so RQ's per-job cost is paid per
    batch rather than per delivery; a drain job is enqueued when none is running.
    """
    ids = list(delivery_ids)
    if not ids:
        return 0
    with redis.pipeline(transaction=False) as pipe:
        pipe.rpush(READY, *ids)
        pipe.set(DRAINING, "1", nx=True, ex=DRAIN_FLAG_TTL)
        _, start_drain = pipe.execute()
    if start_drain:
        _queue(redis, DELIVERIES).enqueue(drain, result_ttl=RESULT_TTL)
    return len(ids)


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
    """Send what is on the ready list, a batch at a time, for up to DRAIN_SLICE seconds; then
    re-enqueue itself if more is waiting. Returns how many deliveries it started."""
    redis = context.current().redis
    pool = dispatcher()
    started = 0
    deadline = time.monotonic() + DRAIN_SLICE
    while time.monotonic() < deadline:
        redis.expire(DRAINING, DRAIN_FLAG_TTL)
        batch = redis.lpop(READY, DRAIN_BATCH)
        if not batch:
            redis.delete(DRAINING)
            # A publisher may have pushed after our pop and seen the flag still set.
            if redis.llen(READY) and redis.set(DRAINING, "1", nx=True, ex=DRAIN_FLAG_TTL):
                continue
            return started
        started += pool.submit([i.decode() for i in cast(list[bytes], batch)])
        if redis.llen(READY) > HELP_BACKLOG and redis.set(HELPING, "1", nx=True, ex=5):
            _queue(redis, DELIVERIES).enqueue(drain, result_ttl=RESULT_TTL)
    _queue(redis, DELIVERIES).enqueue(drain, result_ttl=RESULT_TTL)
    return started


def sweep() -> dict[str, int]:
    """The safety net, every minute: re-enqueue deliveries that are due but not queued, and those
    whose worker died mid-attempt (expired lease)."""
    ctx = context.current()
    lost = store.lost(ctx.engine, utcnow(), timedelta(seconds=ctx.settings.requeue_after))
    enqueue_deliveries(ctx.redis, lost)
    if lost:
        log.info("sweep: re-enqueued %d deliveries", len(lost))
    return {"deliveries": len(lost)}


def recover(subscription_id: str, since: str) -> int:
    """Redeliver every failed or skipped delivery of a subscription created since `since`."""
    ctx = context.current()
    ids = store.recoverable(ctx.engine, subscription_id, datetime.fromisoformat(since))
    requeued = store.requeue(ctx.engine, ids, utcnow())
    enqueue_deliveries(ctx.redis, requeued)
    return len(requeued)
