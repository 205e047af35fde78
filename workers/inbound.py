"""RQ jobs for incoming webhooks (process one stored event, sweep lost ones) and their enqueues."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import TypeVar

from redis import Redis
from rq import Queue
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from apex import connectors, metrics
from apex.db import unreachable, utcnow
from apex.inbound import store
from apex.pipeline.run import RunResult, run
from apex.sources.source import UnusableEventError
from workers import context
from workers.jobs import INBOUND, RESULT_TTL, enqueue_deliveries
from workers.readylist import ReadyList

T = TypeVar("T")

log = logging.getLogger("apex.jobs")

Summary = dict[str, int]

INBOUND_LEASE_SECONDS = 300
CLAIM_BATCH = 5  # events claimed together: five lookups at their slowest fit in the lease
RECORD_PATIENCE = 30.0  # seconds an event's outcome waits for the database to come back
READY_INBOUND = ReadyList("inbound", INBOUND, batch=20, help_backlog=200)

# --- enqueueing -----------------------------------------------------------------------------


def enqueue_inbound(redis: Redis, event_ids: Iterable[str]) -> int:
    """Queue stored events for processing now (see workers.readylist). Returns how many.

    Raises redis' errors: the caller decides whether Redis being down matters (the rows are
    stored, so sweep_inbound enqueues them later).
    """
    return READY_INBOUND.push(redis, event_ids, drain_inbound)


def schedule_inbound(redis: Redis, event_id: str, delay: timedelta) -> None:
    """Enqueue process_inbound for one event after `delay` (RQ's scheduler; the row's
    next_attempt_at is the truth, so a lost schedule is found again by sweep_inbound)."""
    Queue(INBOUND, connection=redis).enqueue_in(
        delay, process_inbound, event_id, result_ttl=RESULT_TTL
    )


# --- jobs -----------------------------------------------------------------------------------


def drain_inbound() -> int:
    """Process the events on the ready list for a while; returns how many it processed."""
    return READY_INBOUND.drain(context.current().redis, _process_each, drain_inbound)


def _process_each(event_ids: list[str]) -> int:
    """Process events, claimed CLAIM_BATCH at a time (one transaction per claim)."""
    processed = 0
    for start in range(0, len(event_ids), CLAIM_BATCH):
        for claimed in _claim(event_ids[start : start + CLAIM_BATCH]):
            try:
                processed += _process(claimed) is not None
            except Exception:
                # _process recorded the failure on the row and scheduled its retry (or, if it
                # could not, the row stays due for sweep_inbound); carry on with the others.
                log.exception("inbound %s: processing failed", claimed.id)
    return processed


def _claim(event_ids: list[str]) -> list[store.Claimed]:
    ctx = context.current()
    # Enrichment may wait on a source's API (about 40 s per lookup at worst): hold the events
    # long enough that the sweeper does not hand one to a second worker meanwhile (were it to,
    # processing it twice changes nothing: see apex.pipeline.run).
    lease = timedelta(seconds=max(ctx.settings.lease_seconds, INBOUND_LEASE_SECONDS))
    claimed = store.claim(ctx.engine, event_ids, utcnow(), lease)
    for event_id in set(event_ids) - {c.id for c in claimed}:
        log.info("inbound %s: nothing to do (processed, not due or unknown)", event_id)
    return claimed


def _patiently(record: Callable[[], T]) -> T:
    """Store an event's outcome, waiting up to RECORD_PATIENCE seconds for a database that is
    away (a restart): an outcome not stored leaves the event leased, untried, for
    INBOUND_LEASE_SECONDS. Other errors, and a longer outage, raise."""
    deadline = time.monotonic() + RECORD_PATIENCE
    delay = 0.25
    while True:
        try:
            return record()
        except SQLAlchemyError as exc:
            if not unreachable(exc) or time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 4.0)


def process_inbound(event_id: str) -> Summary | None:
    """Process one stored inbound event; returns what it extracted, or None when there was
    nothing to do (already processed, failed for good, held by another job, or unknown) or the
    event carries nothing Apex uses (then it is marked `ignored` with the reason, never retried).

    On an exception the attempt is recorded on the row: a retry is scheduled per
    APEX_INBOUND_RETRY_SCHEDULE or, past the last, the event is `failed` for good (and
    connector.error is published). The exception is then re-raised, so that a job of its own
    lands in RQ's failed registry; drain_inbound() logs it and goes on with the next event.
    """
    claimed = _claim([event_id])
    return _process(claimed[0]) if claimed else None


def _process(claimed: store.Claimed) -> Summary | None:
    """process_inbound() of an event this job claimed."""
    ctx = context.current()
    event_id = claimed.id

    def finish(conn: Connection, result: RunResult) -> None:
        # With the run's changes: the event is processed, and counted, once or not at all.
        store.mark_processed(conn, event_id, utcnow(), result.counts())
        if not result.duplicate:
            counts = connectors.Counts(result.records, result.leads_created, result.leads_updated)
            connectors.count(conn, claimed.source, counts)

    try:
        result = run(
            ctx.engine,
            claimed.source,
            claimed.type,
            claimed.payload,
            claimed.headers,
            claimed.received_at,
            ctx.enrich,
            finish,
        )
    except UnusableEventError as exc:
        reason = str(exc)
        _patiently(lambda: store.mark_ignored(ctx.engine, event_id, utcnow(), reason))
        log.info("inbound %s: ignored %s %s (%s)", event_id, claimed.source, claimed.type, exc)
        return None
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        schedule = ctx.settings.inbound_retry_schedule
        report: list[str] = []
        if claimed.attempts > len(schedule):
            # Published before the row is marked failed (its id makes it idempotent), so a
            # crash in between leaves the event queued and it is tried, and reported, again.
            report = connectors.report_error(ctx.engine, claimed.source, event_id, error)
        delay = _patiently(
            lambda: store.mark_failed(ctx.engine, event_id, utcnow(), error, schedule)
        )
        if delay is None:
            log.warning(
                "inbound %s: attempt %d failed (%s); failed for good",
                event_id,
                claimed.attempts,
                type(exc).__name__,
            )
            enqueue_deliveries(ctx.redis, report)
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
    delivery_ids = list(result.delivery_ids)
    if not result.duplicate:
        delivery_ids += report_connectors()
    enqueue_deliveries(ctx.redis, delivery_ids)
    summary = result.counts()
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
    READY_INBOUND.restart(ctx.redis, drain_inbound)  # a drain that died with ids waiting
    metrics.record_recoveries("inbound", len(lost))
    if lost:
        log.info("sweep: re-enqueued %d inbound events", len(lost))
    return len(lost)
