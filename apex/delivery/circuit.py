"""Endpoint health: a circuit per subscription.

Consecutive attempts that reached nobody (a timeout, a refused or reset connection, a name that
does not resolve) open it after `Rules.failures` of them. While it is open the endpoint's due
deliveries wait in the database (claims pass them over, the sweeper leaves them alone) and one
probe at a time is sent: the oldest due delivery, at intervals that double from
`Rules.first_probe` up to PROBE_MAX. Any HTTP answer, whatever its status, closes the circuit:
the endpoint is reachable again, and what it answers goes through the retry schedule as usual.
Closing releases the deliveries that waited.

An answer of any kind also resets the count, so an endpoint that answers 500 quickly never
opens its circuit: it holds no worker for long, and the retry schedule and the automatic
disabling (APEX_DISABLE_AFTER) deal with it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from apex.delivery.attempt import Outcome
from apex.models import subscriptions

CLOSED, OPEN = "closed", "open"
PROBE_MAX = 900  # seconds: probes of a long-dead endpoint are this far apart at most
# Errors of attempts that reached nobody (see apex.delivery.attempt). Not among them: a
# destination refused by policy, an egress proxy's failure, an attempt cut by a stopping worker.
UNREACHABLE = ("timeout:", "connection_error:", "destination_unresolved:")


@dataclass(frozen=True)
class Rules:
    failures: int = 5  # APEX_CIRCUIT_FAILURES: consecutive unreachable attempts that open it
    first_probe: int = 10  # APEX_CIRCUIT_PROBE: seconds from opening to the first probe


def unreachable(outcome: Outcome) -> bool:
    return outcome.status_code is None and (outcome.error or "").startswith(UNREACHABLE)


@dataclass(frozen=True)
class Tried:
    """One recorded attempt, as far as the circuit cares."""

    subscription_id: str
    at: datetime  # when it started
    outcome: Outcome
    probe: bool = False  # sent as an open circuit's probe


@dataclass
class Changes:
    """What a batch of attempts changed: circuits that closed (release their deliveries) and
    the probes to schedule (seconds from now) for circuits that opened or stay open."""

    closed: list[str] = field(default_factory=list)
    probes: dict[str, float] = field(default_factory=dict)


@dataclass
class Health:
    """A subscription's circuit as stored (the columns of the same names)."""

    circuit: str = CLOSED
    circuit_since: datetime | None = None
    circuit_reason: str | None = None
    unreachable_count: int = 0
    probe_at: datetime | None = None
    probe_interval: int | None = None

    def step(self, t: Tried, rules: Rules, now: datetime) -> None:
        """Take one attempt into account, recorded `now` (when the circuit changes, if it
        does: an attempt that started before that is not a probe)."""
        if t.outcome.status_code is not None:  # answered: reachable
            self.unreachable_count = 0
            if self.circuit == OPEN:
                self.__dict__.update(asdict(Health(circuit_since=now)))
            return
        if not unreachable(t.outcome):
            return
        self.unreachable_count += 1
        if self.circuit == CLOSED and self.unreachable_count >= rules.failures:
            self.circuit, self.circuit_since = OPEN, now
            self._next_probe(now, t, rules.first_probe)
        elif self.circuit == OPEN and t.probe:
            # A probe failed. Attempts that were under way when the circuit opened fail too,
            # but they say nothing new: were they to double the interval, ten deliveries in
            # flight would put the next probe minutes away.
            interval = min((self.probe_interval or rules.first_probe) * 2, PROBE_MAX)
            self._next_probe(now, t, interval)

    def _next_probe(self, now: datetime, t: Tried, interval: int) -> None:
        self.circuit_reason = t.outcome.error
        self.probe_interval = interval
        self.probe_at = now + timedelta(seconds=interval)


_HEALTH = [subscriptions.c[name] for name in Health.__dataclass_fields__]


def apply(conn: Connection, tried: list[Tried], rules: Rules, now: datetime) -> Changes:
    """Update the circuits of the subscriptions in `tried`, attempts taken in the order they
    started. The rows are locked in id order (concurrent recorders never deadlock) and
    written only when they change, so a batch of successes to healthy endpoints costs one
    SELECT."""
    changes = Changes()
    ids = sorted({t.subscription_id for t in tried})
    if not ids:
        return changes
    rows = conn.execute(
        sa.select(subscriptions.c.id, *_HEALTH)
        .where(subscriptions.c.id.in_(ids))
        .order_by(subscriptions.c.id)
        .with_for_update()
    ).all()
    for row in rows:
        before = Health(*row[1:])
        health = replace(before)
        for t in sorted((t for t in tried if t.subscription_id == row.id), key=lambda t: t.at):
            health.step(t, rules, now)
        if health == before:
            continue
        conn.execute(
            subscriptions.update().where(subscriptions.c.id == row.id).values(asdict(health))
        )
        if health.circuit == CLOSED and before.circuit == OPEN:
            changes.closed.append(row.id)
        elif health.probe_at is not None and health.probe_at != before.probe_at:
            changes.probes[row.id] = max((health.probe_at - now).total_seconds(), 0.0)
    return changes


def take_probe(conn: Connection, subscription_id: str, now: datetime, hold: timedelta) -> bool:
    """Whether this caller may send the next probe of an open circuit whose probe is due. The
    next probe time is moved `hold` ahead (the lease), so no other worker probes meanwhile;
    the probe's outcome sets the real one."""
    return bool(
        conn.execute(
            subscriptions.update()
            .where(
                subscriptions.c.id == subscription_id,
                subscriptions.c.circuit == OPEN,
                subscriptions.c.probe_at <= now,
            )
            .values(probe_at=now + hold)
        ).rowcount
    )


def next_probe(conn: Connection, subscription_id: str) -> datetime | None:
    """When an open circuit's next probe may go; None when the circuit is closed."""
    return conn.execute(
        sa.select(subscriptions.c.probe_at).where(
            subscriptions.c.id == subscription_id, subscriptions.c.circuit == OPEN
        )
    ).scalar_one_or_none()


def probes_due(conn: Connection, now: datetime) -> list[str]:
    """Open circuits whose next probe is due (the sweeper's safety net for lost probe jobs)."""
    return list(
        conn.execute(
            sa.select(subscriptions.c.id).where(
                subscriptions.c.circuit == OPEN,
                subscriptions.c.probe_at <= now,
                subscriptions.c.deleted_at.is_(None),
            )
        ).scalars()
    )


def open_ids() -> sa.Select[tuple[str]]:
    """The subscriptions whose circuit is open, as a subquery for claims and sweeps."""
    return sa.select(subscriptions.c.id).where(subscriptions.c.circuit == OPEN)
