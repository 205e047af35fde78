"""RQ jobs for incoming webhooks (process one stored event, sweep lost ones) and their enqueues."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import timedelta

from redis import Redis
from rq import Queue

from apex import connectors
from apex.db import utcnow
from apex.inbound import store
from apex.pipeline.run import run
from workers import context
from workers.jobs import INBOUND, RESULT_TTL, enqueue_deliveries

log = logging.getLogger("apex.jobs")

Summary = dict[str, int]

# --- enqueueing -----------------------------------------------------------------------------


def enqueue_inbound(redis: Redis, event_ids: Iterable[str]) -> int:
    """Enqueue one process_inbound job per stored event id, in one round trip.

    Returns the job count. Raises redis' errors: the caller decides whether Redis being down
    matters (the rows are stored, so sweep_inbound enqueues them later).
    """
    ids = list(event_ids)
    if not ids:
        return 0
    queue = Queue(INBOUND, connection=redis)
    with redis.pipeline() as pipe:
        queue.enqueue_many(
            [
                Queue.prepare_data(process_inbound, args=(event_id,), result_ttl=RESULT_TTL)
                for event_id in ids
            ],
            pipeline=pipe,
        )
        pipe.execute()
    return len(ids)


def schedule_inbound(redis: Redis, event_id: str, delay: timedelta) -> None:
    """Enqueue process_inbound for one event after `delay` (RQ's scheduler; the row's
    next_attempt_at is the truth, so a lost schedule is found again by sweep_inbound)."""
    Queue(INBOUND, connection=redis).enqueue_in(
        delay, process_inbound, event_id, result_ttl=RESULT_TTL
    )


# --- jobs -----------------------------------------------------------------------------------


def process_inbound(event_id: str) -> Summary | None:
    """Process one stored inbound event; returns what it extracted, or None when there was
    nothing to do (already processed, failed for good, held by another job, or unknown).

    On an exception the attempt is recorded on the row: a retry is scheduled per
    store.RETRY_DELAYS, or, past the last, the event is `failed` for good. The exception is then
    re-raised so RQ keeps it in its failed registry.
    """
    ctx = context.current()
    lease = timedelta(seconds=ctx.settings.lease_seconds)
    claimed = store.claim(ctx.engine, event_id, utcnow(), lease)
    if claimed is None:
        log.info("inbound %s: nothing to do (processed, not due or unknown)", event_id)
        return None
    try:
        result = run(
            ctx.engine,
            claimed.source,
            claimed.type,
            claimed.payload,
            claimed.headers,
            claimed.received_at,
            ctx.enrich,
        )
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        delay = store.mark_failed(ctx.engine, event_id, utcnow(), error, store.RETRY_DELAYS)
        if delay is None:
            log.warning(
                "inbound %s: attempt %d failed (%s); failed for good",
                event_id,
                claimed.attempts,
                type(exc).__name__,
            )
            enqueue_deliveries(
                ctx.redis, connectors.report_error(ctx.engine, claimed.source, event_id, error)
            )
        else:
            log.warning(
                "inbound %s: attempt %d failed (%s); retry in %d s",
                event_id,
                claimed.attempts,
                type(exc).__name__,
                delay.total_seconds(),
            )
            schedule_inbound(ctx.redis, event_id, delay)
        raise
    summary = result.counts()
    store.mark_processed(ctx.engine, event_id, utcnow(), summary)
    delivery_ids = list(result.delivery_ids)
    if not result.duplicate:
        counts = connectors.Counts(result.records, result.leads_created, result.leads_updated)
        connectors.count(ctx.engine, claimed.source, counts)
        delivery_ids += report_connectors()
    enqueue_deliveries(ctx.redis, delivery_ids)
    log.info("inbound %s: processed %s %s %s", event_id, claimed.source, claimed.type, summary)
    return summary


def report_connectors() -> list[str]:
    """Publish connector.synced for sources whose interval has passed; returns delivery ids.
    Also a periodic job, so the last batches of a quiet source are reported too."""
    ctx = context.current()
    interval = timedelta(seconds=ctx.settings.connector_sync_interval)
    return connectors.report_due(ctx.engine, utcnow(), interval)


def flush_connectors() -> int:
    """The periodic form of report_connectors(): publish and enqueue what is due."""
    delivery_ids = report_connectors()
    enqueue_deliveries(context.current().redis, delivery_ids)
    return len(delivery_ids)


def sweep_inbound() -> int:
    """The safety net: re-enqueue stored events that are due but not queued (Redis was down at
    receipt, a retry got lost, a worker died holding one). Returns how many it re-enqueued."""
    ctx = context.current()
    lost = store.lost(ctx.engine, utcnow(), timedelta(seconds=ctx.settings.requeue_after))
    enqueue_inbound(ctx.redis, lost)
    if lost:
        log.info("sweep: re-enqueued %d inbound events", len(lost))
    return len(lost)
