"""The three stages of delivering: claim a batch (database), send one (HTTP, no database), record
a batch (database). Each stage is safe to repeat; the lease makes a crash between them harmless."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from sqlalchemy.engine import Engine

from apex import metrics, subscriptions
from apex.db import utcnow
from apex.delivery import circuit, store
from apex.delivery.attempt import Deadlines, Outcome, attempt
from apex.delivery.backoff import Decision, decide
from apex.delivery.destinations import Policy, check
from apex.delivery.signing import sign
from apex.delivery.transport import Client
from apex.errors import DestinationRefusedError
from apex.events import body_of
from apex.secretbox import SecretBox

log = logging.getLogger("apex.delivery")


@dataclass(frozen=True)
class DeliveryContext:
    engine: Engine
    box: SecretBox
    schedule: tuple[int, ...]
    disable_after: timedelta
    lease: timedelta
    connect_timeout: float
    total_timeout: float
    clock: Callable[[], datetime] = utcnow
    rand: Callable[[], float] = field(default=random.random)
    # The destination rules checked before every attempt (destinations.Policy.of(settings)), so
    # turning APEX_ALLOW_HTTP off or narrowing the ports applies to existing subscriptions. None
    # leaves only the transport's check of resolved addresses (transport.VettedResolver).
    destinations: Policy | None = None
    circuit: circuit.Rules = field(default_factory=circuit.Rules)


@dataclass(frozen=True)
class Ready:
    """A claimed delivery with the secrets to sign it."""

    claimed: store.Claimed
    secrets: list[str]
    claimed_at: float = field(default_factory=time.monotonic)
    probe: bool = False  # claimed as its open circuit's probe


@dataclass(frozen=True)
class Attempted:
    ready: Ready
    at: datetime
    outcome: Outcome
    decision: Decision


@dataclass(frozen=True)
class Result:
    """The delivery's status after its attempt was recorded; `retry_in` is set when another
    attempt is due in that many seconds."""

    delivery_id: str
    status: str
    retry_in: float | None = None


@dataclass(frozen=True)
class Recorded:
    """A recorded batch: each attempt's Result, and what it changed of endpoints' circuits."""

    results: list[Result]
    circuits: circuit.Changes


def claim(ctx: DeliveryContext, delivery_ids: list[str], probe: bool = False) -> list[Ready]:
    """Lease the due deliveries among `delivery_ids` (a `probe` whatever its endpoint's
    circuit); deliveries of paused or disabled subscriptions are marked skipped instead.
    Returns those to send now."""
    with ctx.engine.begin() as conn:
        claimed = store.claim(conn, delivery_ids, ctx.clock(), ctx.lease, probe)
        inactive = [c for c in claimed if c.subscription_status != "active"]
        if inactive:
            store.skip(conn, inactive, ctx.clock())
        secrets: dict[str, list[str]] = {}
        ready = []
        for c in claimed:
            if c.subscription_status != "active":
                continue
            if c.subscription_id not in secrets:
                signing = subscriptions.signing_secrets(conn, ctx.box, c.subscription_id)
                secrets[c.subscription_id] = signing.active()
            ready.append(Ready(c, secrets[c.subscription_id], probe=probe))
    return ready


async def send(
    ctx: DeliveryContext, ready: Ready, client: Client, deadlines: Deadlines
) -> Attempted:
    """Sign and POST one delivery through `client` and decide what comes next (on the
    client's event loop). Touches no database; never raises: the receiver's behaviour, and a
    request that could not even be built, are outcomes to record (so the retry schedule and
    `failed` still apply)."""
    c = ready.claimed
    now = ctx.clock()
    try:
        body = body_of(c.event_id, c.event_type, c.event_created_at, c.data)
        refused = check(c.url, ctx.destinations) if ctx.destinations else None
        if refused:
            outcome = Outcome(
                None, f"{DestinationRefusedError.code}: {refused}"[:500], None, 0, None
            )
        else:
            headers = sign(ready.secrets, c.event_id, int(now.timestamp()), body)
            outcome = await attempt(
                client, c.url, body, headers, ctx.connect_timeout, ctx.total_timeout, now,
                deadlines,
            )  # fmt: skip
    except Exception as exc:
        log.exception("delivery %s: could not be sent", c.id)
        outcome = Outcome(None, f"internal_error: {type(exc).__name__}", None, 0, None)
    decision = decide(
        outcome.status_code, c.attempts + 1, ctx.schedule, ctx.rand, outcome.retry_after
    )
    return Attempted(ready, now, outcome, decision)


def record(ctx: DeliveryContext, done: list[Attempted]) -> Recorded:
    """Store a batch of attempts, their decisions and their endpoints' health in one
    transaction."""
    finished = [store.Finished(a.ready.claimed, a.outcome, a.decision, a.at) for a in done]
    tried = [
        circuit.Tried(a.ready.claimed.subscription_id, a.at, a.outcome, a.ready.probe) for a in done
    ]
    with ctx.engine.begin() as conn:
        # The circuits first: they lock the subscriptions' rows in id order.
        changes = circuit.apply(conn, tried, ctx.circuit, ctx.clock())
        statuses = store.record(conn, finished, ctx.disable_after)
    results = [
        Result(
            a.ready.claimed.id,
            status or "superseded",  # no longer ours: nothing to schedule
            a.decision.delay if status == "pending" else None,
        )
        for a, status in zip(done, statuses, strict=True)
    ]
    for a, r in zip(done, results, strict=True):
        c = a.ready.claimed
        log.info(
            "delivery %s event %s to %s: attempt %d -> %s (%s) in %d ms",
            c.id,
            c.event_id,
            c.subscription_id,
            c.attempts + 1,
            r.status,
            a.outcome.status_code or a.outcome.error,
            a.outcome.duration_ms,
        )
        finished_at = a.at + timedelta(milliseconds=a.outcome.duration_ms)
        metrics.record_delivery(
            r.status, a.outcome.duration_ms / 1000, c.event_created_at, finished_at
        )
    for sub_id in changes.closed:
        log.info("endpoint %s answers again: circuit closed", sub_id)
    for sub_id, delay in changes.probes.items():
        log.warning("endpoint %s unreachable: circuit open, next probe in %.0f s", sub_id, delay)
    metrics.record_circuits(len(changes.closed), len(changes.probes))
    return Recorded(results, changes)


def renew(ctx: DeliveryContext, ready: Ready) -> Ready | None:
    """Extend the lease of a delivery that waited for a slot; None if it is no longer ours."""
    until = ctx.clock() + ctx.lease
    with ctx.engine.begin() as conn:
        if not store.renew(conn, ready.claimed, until):
            return None
    return replace(
        ready, claimed=replace(ready.claimed, lease_until=until), claimed_at=time.monotonic()
    )


def release(ctx: DeliveryContext, delivery_ids: list[str], delay: timedelta) -> None:
    """Give claimed deliveries back untried, due again after `delay`."""
    with ctx.engine.begin() as conn:
        store.release(conn, delivery_ids, ctx.clock(), delay)
