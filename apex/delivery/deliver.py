"""deliver(): load, sign, POST, record. One attempt of one delivery, safe to run twice."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import requests
from sqlalchemy.engine import Engine

from apex import subscriptions
from apex.db import utcnow
from apex.delivery import store
from apex.delivery.attempt import attempt
from apex.delivery.backoff import decide
from apex.delivery.signing import sign
from apex.events import body_of
from apex.secretbox import SecretBox

log = logging.getLogger("apex.delivery")


@dataclass(frozen=True)
class DeliveryContext:
    engine: Engine
    box: SecretBox
    session: requests.Session
    schedule: tuple[int, ...]
    disable_after: timedelta
    lease: timedelta
    connect_timeout: float
    total_timeout: float
    clock: Callable[[], datetime] = utcnow
    rand: Callable[[], float] = field(default=random.random)


@dataclass(frozen=True)
class Result:
    """`status` is the delivery's status after this call, or None if there was nothing to do;
    `retry_in` is set when another attempt is due in that many seconds."""

    delivery_id: str
    status: str | None
    retry_in: float | None = None
    subscription_id: str | None = None


def deliver(ctx: DeliveryContext, delivery_id: str) -> Result:
    """Attempt one delivery if it is due and not held by another worker.

    The receiver's behaviour (errors, timeouts, refusals) is recorded, never raised; database
    and programming errors propagate.
    """
    with ctx.engine.begin() as conn:
        claimed = store.claim(conn, delivery_id, ctx.clock(), ctx.lease)
        if claimed is None:
            return Result(delivery_id, None)
        status = store.subscription_status(conn, claimed.subscription_id)
        if status != "active":
            store.skip(conn, claimed, f"subscription {status}", ctx.clock())
            return Result(delivery_id, "skipped", subscription_id=claimed.subscription_id)
        secrets = subscriptions.signing_secrets(conn, ctx.box, claimed.subscription_id)
    now = ctx.clock()
    body = body_of(claimed.event_id, claimed.event_type, claimed.event_created_at, claimed.data)
    headers = sign(secrets.active(), claimed.event_id, int(now.timestamp()), body)
    outcome = attempt(
        ctx.session, claimed.url, body, headers, ctx.connect_timeout, ctx.total_timeout, now
    )
    decision = decide(
        outcome.status_code, claimed.attempts + 1, ctx.schedule, ctx.rand, outcome.retry_after
    )
    done = ctx.clock()
    with ctx.engine.begin() as conn:
        new_status = store.record(conn, claimed, outcome, decision, done, ctx.disable_after)
    log.info(
        "delivery %s event %s to %s: attempt %d -> %s (%s) in %d ms",
        delivery_id,
        claimed.event_id,
        claimed.subscription_id,
        claimed.attempts + 1,
        new_status,
        outcome.status_code or outcome.error,
        outcome.duration_ms,
    )
    retry_in = decision.delay if new_status == "pending" else None
    return Result(delivery_id, new_status, retry_in, claimed.subscription_id)
