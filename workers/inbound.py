"""RQ jobs for incoming webhooks (process one stored event, sweep lost ones) and their enqueues."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from datetime import timedelta

from redis import Redis
from rq import Queue

from apex.db import utcnow
from apex.inbound import store
from workers import context
from workers.jobs import INBOUND, RESULT_TTL

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
        summary = summarize(claimed.source, claimed.type, claimed.payload)
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
    store.mark_processed(ctx.engine, event_id, utcnow(), summary)
    log.info("inbound %s: processed %s %s %s", event_id, claimed.source, claimed.type, summary)
    return summary


def sweep_inbound() -> int:
    """The safety net: re-enqueue stored events that are due but not queued (Redis was down at
    receipt, a retry got lost, a worker died holding one). Returns how many it re-enqueued."""
    ctx = context.current()
    lost = store.lost(ctx.engine, utcnow(), timedelta(seconds=ctx.settings.requeue_after))
    enqueue_inbound(ctx.redis, lost)
    if lost:
        log.info("sweep: re-enqueued %d inbound events", len(lost))
    return len(lost)


# --- extraction (the pipeline issue replaces this with apex.pipeline) ------------------------


def summarize(source: str, event_type: str, payload: object) -> Summary:
    """Count the contacts, deals, payments and other activity an event carries.

    Raises ValueError for a source it does not know or a payload without the shape its source
    promises (e.g. a Stripe event without a `data.object`).
    """
    summary = {"contacts": 0, "deals": 0, "payments": 0, "activity": 0}
    if not isinstance(payload, Mapping):
        raise ValueError(f"a {source} payload must be a JSON object")
    if source == "stripe":
        data = payload.get("data")
        if not isinstance(data, Mapping) or not isinstance(data.get("object"), Mapping):
            raise ValueError(f"Stripe event {event_type} has no data.object")
        summary[_stripe_kind(event_type)] += 1
    elif source == "github":
        if event_type != "ping":
            summary["activity"] += 1
            if isinstance(payload.get("sender"), Mapping):
                summary["contacts"] += 1
    elif source == "hubspot":
        summary[_hubspot_kind(event_type, payload)] += 1
    else:
        raise ValueError(f"unknown inbound source {source!r}")
    return summary


_STRIPE_PAYMENT_PREFIXES = ("charge.", "payment_intent.", "invoice.", "checkout.session.")
_HUBSPOT_OBJECT_TYPES = {"0-1": "contacts", "0-3": "deals"}  # HubSpot's objectTypeId values


def _stripe_kind(event_type: str) -> str:
    if event_type.startswith("customer.") and not event_type.startswith("customer.subscription."):
        return "contacts"
    if event_type.startswith("customer.subscription."):
        return "deals"
    if event_type.startswith(_STRIPE_PAYMENT_PREFIXES):
        return "payments"
    return "activity"


def _hubspot_kind(event_type: str, payload: Mapping[str, object]) -> str:
    if event_type.startswith("contact."):
        return "contacts"
    if event_type.startswith("deal."):
        return "deals"
    if event_type.startswith("object."):  # generic subscriptions name the type by id
        return _HUBSPOT_OBJECT_TYPES.get(str(payload.get("objectTypeId")), "activity")
    return "activity"
