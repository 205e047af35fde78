"""run(): process an inbound event once: extract → enrich → stitch → attribute → goals → publish."""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, OperationalError

from apex.db import insert, reading, utcnow
from apex.events import publish, publish_in
from apex.pipeline import attribution, erasure, goals, identity, payments
from apex.pipeline.extract import extract
from apex.pipeline.records import (
    HUBSPOT_COMPANY,
    HUBSPOT_DEAL,
    Company,
    Contact,
    Deal,
    Erasure,
    Identity,
    Notification,
    Payment,
    Record,
    Refund,
    Touchpoint,
)
from apex.pipeline.tables import pipeline_runs
from apex.sources.source import UnusableEventError

Enrich = Callable[[Record], Record]
"""Completes a record from the source's API (e.g. a GitHub user's public email); may raise."""

T = TypeVar("T")

_ATTEMPTS = 5  # transactions lost to a concurrent worker (deadlock, unique race) are retried
_RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})  # serialization failure, deadlock


@dataclass(frozen=True)
class RunResult:
    """What run() did. `delivery_ids` are the deliveries to enqueue; `duplicate` means the event
    had been processed before (the counts are the first run's, and only deliveries that run
    planned but did not get to publish are new)."""

    records: int
    leads_created: int
    leads_updated: int
    event_ids: tuple[str, ...]
    delivery_ids: tuple[str, ...]
    duplicate: bool

    def counts(self) -> dict[str, int]:
        """The counts as connector.synced reports them."""
        return {
            "records": self.records,
            "leadsCreated": self.leads_created,
            "leadsUpdated": self.leads_updated,
        }


@dataclass(frozen=True)
class _Planned:
    counts: Mapping[str, int]
    outbox: list[dict[str, Any]]  # the events planned (stored: those an older run left unpublished)
    duplicate: bool
    delivery_ids: tuple[str, ...] = ()  # of the events published with the changes


Finish = Callable[[Connection, RunResult], None]
"""Work to commit with the run's changes (the caller's bookkeeping: the event processed)."""


def run(
    engine: Engine,
    source: str,
    event_type: str,
    payload: Any,
    headers: Mapping[str, str],
    received_at: datetime,
    enrich: Enrich | None = None,
    finish: Finish | None = None,
) -> RunResult:
    """Turn one inbound event into leads, touchpoints, conversions and published events.

    Publishes lead.created, lead.updated (when a lead's visible data changed; with
    `mergedLeadIds` after a merge) and goal.reached, with ids derived from the event. The
    changes, the events they publish, and `finish` commit in one transaction, keyed by a digest
    of (source, type, payload): processing the event again changes and publishes nothing (then
    `finish` runs in a transaction of its own). Concurrent runs are safe (see identity.stitch,
    goals.evaluate).

    Raises UnusableEventError (from extract or the enricher, or for a notification no enricher
    fetched) for an event Apex has no use for, whatever else `enrich` raises, and database
    errors; the database is then left as it was, so the caller may retry.
    """
    key = run_key(source, event_type, payload)
    with reading(engine) as conn:
        done = _stored(conn, key)
    if done is None:
        records = extract(source, event_type, payload, headers, received_at)
        if enrich is not None:
            records = [enrich(record) for record in records]
        records = _fetched(records)
        privacy = erasure.privacy_deletions(source, event_type, payload, headers, received_at)

        def process(conn: Connection) -> _Planned:
            planned = _process(conn, key, source, event_type, records, utcnow(), privacy)
            if finish is not None:
                finish(conn, _result(planned))
            return planned

        return _result(_transaction(engine, process))
    result = _result(_publish(engine, key, done))
    if finish is not None:
        _transaction(engine, lambda conn: finish(conn, result))
    return result


def run_key(source: str, event_type: str, payload: Any) -> str:
    """The digest an inbound event is known by: the same event, however often received, has
    the same key."""
    canonical = json.dumps([source, event_type, payload], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


# --- one transaction: stitch → attribute → goals → plan the events -------------------------


@dataclass
class _Changes:
    """The leads this run touched, created, and merged into each other."""

    touched: set[str] = field(default_factory=set)
    created: set[str] = field(default_factory=set)
    merged: list[str] = field(default_factory=list)

    def stitched(self, stitched: identity.Stitched | None) -> str | None:
        if stitched is None:
            return None
        self.touched.add(stitched.lead_id)
        if stitched.created:
            self.created.add(stitched.lead_id)
        self.merged.extend(stitched.merged)
        return stitched.lead_id


def _process(
    conn: Connection,
    key: str,
    source: str,
    event_type: str,
    records: list[Record],
    now: datetime,
    privacy: frozenset[Identity] = frozenset(),
) -> _Planned:
    claimed = conn.execute(
        insert(conn, pipeline_runs)
        .values(key=key, source=source, event_type=event_type, counts={}, processed_at=now)
        .on_conflict_do_nothing(index_elements=["key"])
        .returning(pipeline_runs.c.key)
    ).first()
    if claimed is None:  # a concurrent run of the same event got there first
        stored = _stored(conn, key)
        assert stored is not None
        return stored
    changes = _Changes()
    for record in records:
        _apply(conn, record, privacy, now, changes)
    settled = identity.settle(conn, _live(conn, changes.touched), now)
    reached = goals.evaluate(conn, now)
    outbox = _plan(conn, key, settled, changes, reached)
    counts = {
        "records": len(records),
        "leadsCreated": sum(1 for event in outbox if event["type"] == "lead.created"),
        "leadsUpdated": sum(1 for event in outbox if event["type"] == "lead.updated"),
    }
    conn.execute(pipeline_runs.update().where(pipeline_runs.c.key == key).values(counts=counts))
    delivery_ids = [
        delivery
        for event in outbox
        for delivery in publish_in(conn, event["type"], event["data"], event["id"])
    ]
    return _Planned(counts, outbox, duplicate=False, delivery_ids=tuple(delivery_ids))


def _apply(
    conn: Connection,
    record: Record,
    privacy: frozenset[Identity],
    now: datetime,
    changes: _Changes,
) -> None:
    """Apply one record; an Erasure of a subject in `privacy` (a privacy deletion) removes the
    person as DELETE /api/leads/<id> does, any other only their personal data."""
    if isinstance(record, Contact):
        _apply_contact(conn, record, now, changes)
    elif isinstance(record, Touchpoint):
        lead_id = changes.stitched(identity.stitch(conn, record.identities, now))
        if lead_id is not None:
            touch = attribution.Touch(record.source, record.campaign, record.at)
            attribution.record_touch(conn, lead_id, record.key, touch, replace=False)
    elif isinstance(record, Payment):
        lead_id = changes.stitched(identity.stitch(conn, record.identities, now))
        changes.touched |= payments.record_payment(conn, lead_id, record)
    elif isinstance(record, Refund):
        lead_id = changes.stitched(identity.stitch(conn, record.identities, now))
        changes.touched |= payments.record_refund(conn, lead_id, record)
    elif isinstance(record, Deal):
        _apply_deal(conn, record, changes)
    elif isinstance(record, Company):
        _apply_company(conn, record, changes)
    elif isinstance(record, Erasure) and record.subject in privacy:
        reason = "the person erased on a HubSpot privacyDeletion"
        erasure.erase_subject(conn, record.subject, record.at, now, reason)
    elif isinstance(record, Erasure):
        erased = identity.erase(conn, record.subject, record.at, now)
        changes.touched.update([erased] if erased else [])


def _apply_contact(conn: Connection, record: Contact, now: datetime, changes: _Changes) -> None:
    if identity.erased_since(conn, record.subject, record.at):
        return  # older news of a person since deleted
    lead_id = changes.stitched(identity.stitch(conn, record.identities, now))
    identity.record_properties(conn, record.subject, record.properties, record.at)
    names = {name for name, _ in record.properties}
    if lead_id is None or not names & set(attribution.TOUCH_PROPERTIES):
        return
    stated = identity.properties(conn, [record.subject]).get(record.subject, {})
    touch = attribution.touch_from_properties(record.subject.kind, stated)
    if touch is not None:
        key = f"{record.subject.kind}:{record.subject.value}"
        attribution.record_touch(conn, lead_id, key, touch, replace=True)


def _apply_company(conn: Connection, record: Company, changes: _Changes) -> None:
    """Store what HubSpot says of a company; the leads of its contacts (those associated now
    or before) are settled again, so they show its name as it is now."""
    company = Identity(HUBSPOT_COMPANY, record.key)
    identity.record_properties(conn, company, record.properties, record.at)
    stated = identity.properties(conn, [company]).get(company, {})
    contacts = [name.removeprefix("contact:") for name in stated if name.startswith("contact:")]
    for contact in sorted(contacts):
        owner = identity.owner_of(conn, Identity("hubspot", contact))
        changes.touched.update([owner] if owner else [])


def _apply_deal(conn: Connection, record: Deal, changes: _Changes) -> None:
    deal = Identity(HUBSPOT_DEAL, record.key)
    # Locked first: a worker writing another of its properties (the stage, a contact) waits
    # and then reads this one's too, so the deal's terms are decided on all of them.
    identity.lock_properties(conn, deal, record.at)
    identity.record_properties(conn, deal, record.properties, record.at)
    terms = attribution.deal_terms(identity.properties(conn, [deal]).get(deal, {}))
    lead_id = identity.owner_of(conn, Identity("hubspot", terms.contact)) if terms else None
    changes.touched |= attribution.record_deal(conn, f"hubspot:deal:{record.key}", terms, lead_id)


def _fetched(records: list[Record]) -> list[Record]:
    """The records with each Notification replaced by what its enricher fetched. Raises
    UnusableEventError with the notification's reason when none fetched it."""
    flat: list[Record] = []
    for record in records:
        if not isinstance(record, Notification):
            flat.append(record)
        elif record.fetched is None:
            raise UnusableEventError(record.reason)
        else:
            flat.extend(record.fetched)
    return flat


def _live(conn: Connection, lead_ids: set[str]) -> set[str]:
    """The live leads these ids name now (merges move ids to their survivors)."""
    return {live for live in (identity.resolve(conn, i) for i in lead_ids) if live}


def _plan(
    conn: Connection,
    key: str,
    settled: list[tuple[identity.Lead, bool]],
    changes: _Changes,
    reached: list[goals.Goal],
) -> list[dict[str, Any]]:
    """The events to publish: lead.created for new leads, lead.updated for changed or merged
    ones, goal.reached for goals reached."""
    merged_into: dict[str, list[str]] = {}
    for merged_id in changes.merged:
        survivor = identity.resolve(conn, merged_id)
        if survivor and merged_id not in changes.created:  # never announced: not news
            merged_into.setdefault(survivor, []).append(merged_id)
    outbox: list[dict[str, Any]] = []
    for lead, changed in settled:
        merged_ids = merged_into.get(lead.id, [])
        if lead.id in changes.created:
            event_type, data = "lead.created", identity.lead_data(lead)
        elif changed or merged_ids:
            event_type, data = "lead.updated", identity.lead_data(lead, merged_ids)
        else:
            continue
        outbox.append({"id": _event_id(key, event_type, lead.id), "type": event_type, "data": data})
    for goal in reached:  # keyed by the goal alone: it is reached once, whichever event did it
        outbox.append(
            {
                "id": _event_id("goal.reached", goal.id),
                "type": "goal.reached",
                "data": goals.reached_data(goal),
            }
        )
    return outbox


def _event_id(*parts: str) -> str:
    return "evt_" + hashlib.sha256(":".join(parts).encode()).hexdigest()[:32]


# --- after commit: publish -------------------------------------------------------------------


def _stored(conn: Connection, key: str) -> _Planned | None:
    row = conn.execute(
        sa.select(pipeline_runs.c.counts, pipeline_runs.c.outbox).where(pipeline_runs.c.key == key)
    ).one_or_none()
    if row is None:
        return None
    return _Planned(dict(row.counts), list(row.outbox or []), duplicate=True)


def _publish(engine: Engine, key: str, planned: _Planned) -> _Planned:
    """A stored run's events that an older version planned and crashed before publishing
    (it published after the commit): published now (an id twice is a no-op), then forgotten."""
    if not planned.outbox:
        return planned
    delivery_ids: list[str] = []
    for event in planned.outbox:
        published = publish(engine, event["type"], event["data"], event_id=event["id"])
        delivery_ids.extend(published.pending)
    with engine.begin() as conn:
        conn.execute(pipeline_runs.update().where(pipeline_runs.c.key == key).values(outbox=None))
    return replace(planned, delivery_ids=tuple(delivery_ids))


def _result(planned: _Planned) -> RunResult:
    return RunResult(
        records=planned.counts.get("records", 0),
        leads_created=planned.counts.get("leadsCreated", 0),
        leads_updated=planned.counts.get("leadsUpdated", 0),
        event_ids=tuple(event["id"] for event in planned.outbox),
        delivery_ids=planned.delivery_ids,
        duplicate=planned.duplicate,
    )


def _transaction(engine: Engine, work: Callable[[Connection], T]) -> T:
    """Run `work` in a transaction; retried from scratch when it lost a race to a concurrent
    transaction (a deadlock, a serialization failure, a unique or foreign key violation)."""
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            with engine.begin() as conn:
                return work(conn)
        except (IntegrityError, OperationalError) as exc:
            if attempt == _ATTEMPTS or not _lost_race(exc):
                raise
            time.sleep(random.uniform(0, 0.05 * attempt))
    raise AssertionError("unreachable")


def _lost_race(exc: IntegrityError | OperationalError) -> bool:
    if isinstance(exc, IntegrityError):
        return True
    return getattr(exc.orig, "sqlstate", None) in _RETRYABLE_SQLSTATES
