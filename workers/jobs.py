"""RQ job functions (thin: ids in, domain calls, follow-up enqueues) and the only enqueue calls."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from datetime import datetime, timedelta

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

BATCH = 50  # delivery ids per job: RQ's per-job cost is paid once per batch
RESULT_TTL = 60

_dispatcher: Dispatcher | None = None
_dispatcher_lock = threading.Lock()


# --- enqueueing -----------------------------------------------------------------------------


def _queue(redis: Redis, name: str) -> Queue:
    return Queue(name, connection=redis)


def enqueue_deliveries(redis: Redis, delivery_ids: Iterable[str]) -> int:
    """Enqueue deliveries in batches of BATCH ids, in one round trip. Returns the job count."""
    ids = list(delivery_ids)
    if not ids:
        return 0
    queue = _queue(redis, DELIVERIES)
    batches = [ids[i : i + BATCH] for i in range(0, len(ids), BATCH)]
    with redis.pipeline() as pipe:
        queue.enqueue_many(
            [Queue.prepare_data(deliver, args=(b,), result_ttl=RESULT_TTL) for b in batches],
            pipeline=pipe,
        )
        pipe.execute()
    return len(batches)


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


def _follow_up(result: Result) -> None:
    if result.retry_in is not None:
        schedule_delivery(context.current().redis, result.delivery_id, result.retry_in)


def _defer(delivery_id: str, delay: float) -> None:
    schedule_delivery(context.current().redis, delivery_id, delay)


def dispatcher() -> Dispatcher:
    global _dispatcher
    with _dispatcher_lock:
        if _dispatcher is None:
            ctx = context.current()
            _dispatcher = Dispatcher(
                ctx.delivery,
                ctx.settings.delivery_concurrency,
                ctx.settings.endpoint_concurrency,
                on_result=_follow_up,
                on_defer=_defer,
            )
        return _dispatcher


def drain() -> None:
    """Finish every delivery this process has in flight (called on shutdown)."""
    global _dispatcher
    with _dispatcher_lock:
        current, _dispatcher = _dispatcher, None
    if current is not None:
        current.drain()


def deliver(delivery_ids: list[str]) -> int:
    """Hand deliveries to this process's dispatcher; returns how many were handed over.

    Each runs in the background on the pool; the job returns once all are in flight. A worker
    killed before they finish loses nothing: the lease expires and sweep() re-enqueues them.
    """
    pool = dispatcher()
    for delivery_id in delivery_ids:
        pool.submit(delivery_id)
    return len(delivery_ids)


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
