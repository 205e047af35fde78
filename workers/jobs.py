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
from apex.db import reading, utcnow
from apex.delivery import circuit, store
from apex.delivery.deliver import Recorded
from apex.delivery.limits import RENEW_EVERY, EndpointLimits
from apex.delivery.transport import Client
from config import Settings
from workers import context
from workers.dispatcher import DEFER, Dispatcher
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
RELEASE_LIMIT = 5000  # deliveries released at once when an endpoint's circuit closes

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


def schedule_wake(redis: Redis, subscription_id: str, delay: float) -> None:
    """Claim an endpoint's due deliveries again after `delay` seconds: one job per endpoint
    however many wait (a key marks the wake-up as scheduled until it runs)."""
    if redis.set(f"apex:endpoint:{subscription_id}:wake", "1", nx=True, ex=int(delay) + 30):
        _queue(redis, DELIVERIES).enqueue_in(
            timedelta(seconds=max(delay, 0.0)), wake, subscription_id, result_ttl=RESULT_TTL
        )


def schedule_probe(redis: Redis, subscription_id: str, delay: float) -> None:
    """Probe an endpoint whose circuit is open after `delay` seconds (one job per endpoint:
    scheduling it again moves it)."""
    _queue(redis, DELIVERIES).enqueue_in(
        timedelta(seconds=max(delay, 0.0)),
        probe,
        subscription_id,
        job_id=f"apex-probe-{subscription_id}",
        result_ttl=RESULT_TTL,
    )


def enqueue_recover(redis: Redis, subscription_id: str, since: datetime) -> str:
    job = _queue(redis, MAINTENANCE).enqueue(recover, subscription_id, since.isoformat())
    return str(job.id)


# --- jobs -----------------------------------------------------------------------------------


def _follow_up(recorded: Recorded) -> None:
    """Schedule the retries of a recorded batch, the probes of the circuits it opened (or kept
    open), and release the deliveries of those it closed."""
    ctx = context.current()
    for result in recorded.results:
        if result.retry_in is not None:
            schedule_delivery(ctx.redis, result.delivery_id, result.retry_in)
    for subscription_id, delay in recorded.circuits.probes.items():
        schedule_probe(ctx.redis, subscription_id, delay)
    for subscription_id in recorded.circuits.closed:
        with reading(ctx.engine) as conn:
            waiting = store.due_of(conn, subscription_id, utcnow(), RELEASE_LIMIT)
        enqueue_deliveries(ctx.redis, waiting)


def _defer(delays: dict[str, float]) -> None:
    redis = context.current().redis
    for subscription_id, delay in delays.items():
        schedule_wake(redis, subscription_id, delay)


def dispatcher() -> Dispatcher:
    global _dispatcher
    with _dispatcher_lock:
        if _dispatcher is not None and not _dispatcher.alive():
            log.error("delivery recorder thread died; starting a new dispatcher")
            _dispatcher = None
        if _dispatcher is None:
            ctx = context.current()
            # A slot outlives a silent holder (a dead worker) by a little more than an attempt.
            slot_ttl = ctx.settings.request_timeout + 1 + RENEW_EVERY
            limits = EndpointLimits(ctx.redis, slot_ttl)
            _dispatcher = Dispatcher(
                ctx.delivery,
                ctx.settings.delivery_concurrency,
                ctx.settings.endpoint_concurrency,
                limits,
                on_recorded=_follow_up,
                on_defer=_defer,
                client=lambda: _client(ctx.settings),
            )
        return _dispatcher


def _client(settings: Settings) -> Client:
    return Client.create(
        settings.allow_private_destinations,
        ca_bundle=settings.ca_bundle,
        egress_proxy=settings.egress_proxy,
        dns_timeout=settings.connect_timeout,
    )


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


def wake(subscription_id: str) -> int:
    """Claim the due deliveries of an endpoint that had no free slot; returns how many."""
    ctx = context.current()
    ctx.redis.delete(f"apex:endpoint:{subscription_id}:wake")  # a later give-back wakes again
    current = dispatcher()
    batch = current.wake_batch()
    with reading(ctx.engine) as conn:
        ids = store.due_of(conn, subscription_id, utcnow(), batch)
    if len(ids) == batch:  # more may wait: another wake-up once these had their turn
        schedule_wake(ctx.redis, subscription_id, DEFER)
    return current.submit(ids)


def probe(subscription_id: str) -> int:
    """Send one delivery to an endpoint whose circuit is open, if its probe is due and no other
    worker sends it: the oldest due delivery. Returns 1 if one was sent."""
    ctx = context.current()
    now = utcnow()
    with ctx.engine.begin() as conn:
        # RQ's scheduler keeps whole seconds: a job may run up to a second early.
        if not circuit.take_probe(conn, subscription_id, now + store.EARLY, ctx.delivery.lease):
            due = circuit.next_probe(conn, subscription_id)
            if due is not None and due > now:  # still early: come back then
                schedule_probe(ctx.redis, subscription_id, (due - now).total_seconds())
            return 0
        ids = store.due_of(conn, subscription_id, now, 1)
    return dispatcher().submit(ids, probe=True)


def sweep() -> dict[str, int]:
    """The safety net, every sweep interval: re-enqueue deliveries that are due but not queued,
    and those whose worker died mid-attempt (expired lease); restart a drain that died; probe
    open circuits whose probe job went missing."""
    ctx = context.current()
    now = utcnow()
    lost = store.lost(ctx.engine, now, timedelta(seconds=ctx.settings.requeue_after))
    enqueue_deliveries(ctx.redis, lost)
    restarted = READY_DELIVERIES.restart(ctx.redis, drain)
    with reading(ctx.engine) as conn:
        probes = circuit.probes_due(conn, now)
    for subscription_id in probes:
        _queue(ctx.redis, DELIVERIES).enqueue(probe, subscription_id, result_ttl=RESULT_TTL)
    metrics.record_recoveries("deliveries", len(lost))
    if lost or restarted or probes:
        log.info("sweep: re-enqueued %d deliveries, restarted %d drains, probes %d",
                 len(lost), restarted, len(probes))  # fmt: skip
    return {"deliveries": len(lost), "drains": restarted, "probes": len(probes)}


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
