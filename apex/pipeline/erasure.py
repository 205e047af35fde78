"""Erasure of a person (DELETE /api/leads/<id>, HubSpot privacyDeletion): their lead with its
identities, aliases, touchpoints and conversions, what sources said of them, and the stored
inbound payloads that name them (replaced by a tombstone with the reason)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from apex.errors import NotFoundError
from apex.models import inbound_events
from apex.pipeline import identity
from apex.pipeline.extract import extract
from apex.pipeline.records import (
    HUBSPOT_COMPANY,
    HUBSPOT_DEAL,
    LABEL,
    Erasure,
    Identity,
    Record,
    normalise_email,
)
from apex.pipeline.tables import (
    conversions,
    lead_aliases,
    lead_identities,
    leads,
    object_properties,
    touchpoints,
)
from apex.sources.reading import text
from apex.sources.source import UnusableEventError

TOMBSTONE = "erased"  # the key of the object that replaces an erased payload
PRIVACY_DELETION = "privacyDeletion"  # HubSpot's action for a GDPR deletion
_PAGE = 500  # inbound rows read, and tombstoned, per statement


@dataclass(frozen=True)
class Erased:
    """What an erasure removed: the lead (`lead_id`, the live one) and the ids merged into it,
    how many rows of each kind, and the inbound events whose payloads it tombstoned."""

    lead_id: str | None
    merged_ids: tuple[str, ...]
    identities: int
    properties: int
    touchpoints: int
    conversions: int
    inbound_event_ids: tuple[str, ...]


def erase_lead(engine: Engine, lead_id: str, now: datetime) -> Erased:
    """Erase the lead `lead_id` names (itself, or the lead it was merged into), in one
    transaction: see erase(). Raises NotFoundError when it names no lead (never was, or is
    erased already)."""
    with engine.begin() as conn:
        live = identity.lock_live(conn, lead_id)
        if live is None:
            raise NotFoundError(f"No lead {lead_id}")
        return erase(conn, live, now, f"lead {live} erased on request (DELETE /api/leads)")


def erase_subject(
    conn: Connection, subject: Identity, at: datetime, now: datetime, reason: str
) -> Erased:
    """Erase the person a source deleted (`subject`, at `at`): their lead if one is known (see
    erase()), else the payloads naming `subject`. `subject` is remembered as deleted at `at`,
    so that older news of it is ignored (see identity.erased_since)."""
    live = identity.lock_owner(conn, subject)
    if live is not None:
        erased = erase(conn, live, now, reason)
    else:
        tombstoned = _tombstone(conn, [subject], now, reason)
        erased = Erased(None, (), 0, 0, 0, 0, tuple(tombstoned))
    identity.record_properties(conn, subject, [(identity.ERASED, "1")], at)
    return erased


def erase(conn: Connection, lead_id: str, now: datetime, reason: str) -> Erased:
    """Remove the live lead `lead_id` (the caller holds its lock: identity.lock_live or
    lock_owner): its identities and their properties, the associations of HubSpot deals and
    companies with its contacts, its touchpoints, its conversions (payments, refunds, won deals:
    the revenue leaves the attribution report with the person), its aliases and the lead; and
    tombstone the inbound payloads that name one of its identities, with `reason`."""
    owned = _identities(conn, lead_id)
    pairs = [(i.kind, i.value) for i in owned]
    p = object_properties.c
    properties = 0
    if pairs:
        properties += conn.execute(
            object_properties.delete().where(
                identity.pairs_in(p.object_kind, p.object_value, pairs)
            )
        ).rowcount
    for contact in (i.value for i in owned if i.kind == "hubspot"):
        name = f"contact:{contact}"
        properties += conn.execute(
            object_properties.delete().where(
                p.object_kind.in_((HUBSPOT_DEAL, HUBSPOT_COMPANY)),
                sa.or_(p.name == name, p.name.startswith(name + LABEL, autoescape=True)),
            )
        ).rowcount
    gone_touchpoints = conn.execute(
        touchpoints.delete().where(touchpoints.c.lead_id == lead_id)
    ).rowcount
    gone_conversions = conn.execute(
        conversions.delete().where(conversions.c.lead_id == lead_id)
    ).rowcount
    conn.execute(lead_identities.delete().where(lead_identities.c.lead_id == lead_id))
    merged = tuple(
        conn.execute(
            lead_aliases.delete()
            .where(lead_aliases.c.lead_id == lead_id)
            .returning(lead_aliases.c.alias_id)
        ).scalars()
    )
    conn.execute(leads.delete().where(leads.c.id == lead_id))
    tombstoned = _tombstone(conn, owned, now, reason)
    return Erased(
        lead_id=lead_id,
        merged_ids=tuple(sorted(merged)),
        identities=len(owned),
        properties=properties,
        touchpoints=gone_touchpoints,
        conversions=gone_conversions,
        inbound_event_ids=tuple(tombstoned),
    )


def privacy_deletions(
    source: str,
    event_type: str,
    payload: Any,
    headers: Mapping[str, str],
    received_at: datetime | None,
) -> frozenset[Identity]:
    """The people a stored inbound event asks to be erased under privacy law: the subjects of
    the records extract() makes of its HubSpot `privacyDeletion` events (an Erasure record by
    itself does not say whether the contact was deleted or privacy-deleted). Never raises."""
    if source != "hubspot":
        return frozenset()
    batch = payload if isinstance(payload, list) else [payload]
    chosen = [event for event in batch if _action(event, event_type) == PRIVACY_DELETION]
    if not chosen:
        return frozenset()
    return frozenset(
        record.subject
        for record in _records(source, event_type, chosen, headers, received_at)
        if isinstance(record, Erasure)
    )


def _action(event: Any, event_type: str) -> str:
    """What a HubSpot event says happened ("creation", "privacyDeletion", ...), read as its
    extractor reads it."""
    subscription = text(event, "subscriptionType") or text(event, "eventType") or event_type
    return subscription.rpartition(".")[2]


def tombstone(reason: str, now: datetime) -> dict[str, Any]:
    """What an erased inbound payload is replaced by: it names no one, and no source reads
    anything from it (processing it again marks it ignored)."""
    at = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {TOMBSTONE: {"reason": reason, "at": at}}


# --- the stored inbound payloads that name someone ------------------------------------------


def _tombstone(
    conn: Connection, identities: Sequence[Identity], now: datetime, reason: str
) -> list[str]:
    """Replace the payloads of the inbound events that name one of `identities` by a tombstone;
    returns their ids. The database narrows the rows down by text (each identity's value in the
    payload's JSON), then each candidate is read as its source reads it (see _names)."""
    tokens = sorted({token for i in identities if (token := _token(i))})
    if not tokens:
        return []
    i = inbound_events.c
    written = sa.func.lower(sa.cast(i.payload, sa.Text))
    candidates = sa.or_(*(written.contains(token, autoescape=True) for token in tokens))
    found: list[str] = []
    after = ""
    while True:
        rows = conn.execute(
            sa.select(i.id, i.source, i.type, i.payload, i.headers, i.received_at)
            .where(candidates, i.id > after)
            .order_by(i.id)
            .limit(_PAGE)
        ).all()
        named = [row.id for row in rows if _names(row, identities)]
        if named:
            conn.execute(
                inbound_events.update()
                .where(i.id.in_(named))
                .values(payload=tombstone(reason, now))
            )
            found += named
        if len(rows) < _PAGE:
            return found
        after = rows[-1].id


def _token(subject: Identity) -> str:
    """The text a payload naming `subject` contains (lower-cased, as JSON writes it): the email,
    the Stripe or GitHub id, the HubSpot object id without its portal."""
    value = subject.value.rpartition(":")[2] if subject.kind == "hubspot" else subject.value
    return json.dumps(value)[1:-1].lower()


def _names(row: Any, identities: Sequence[Identity]) -> bool:
    """Whether an inbound event names one of `identities`: a string in it is one of their emails
    (normalised) or another of their ids, or a record its source reads from it names one."""
    wanted = set(identities)
    emails = {i.value for i in identities if i.kind == "email"}
    ids = {i.value for i in identities if i.kind != "email"}
    for value in _strings(row.payload):
        if value in ids or (emails and normalise_email(value) in emails):
            return True
    records = _records(row.source, row.type, row.payload, row.headers, row.received_at)
    return any(not wanted.isdisjoint(_named(record)) for record in records)


def _records(
    source: str,
    event_type: str,
    payload: Any,
    headers: Mapping[str, str],
    received_at: datetime | None,
) -> list[Record]:
    try:
        return extract(source, event_type, payload, headers, received_at)
    except (UnusableEventError, ValueError):  # nothing Apex reads, or a source no longer known
        return []


def _named(record: Record) -> set[Identity]:
    """The people a record names: its identities, its subject, and the HubSpot contacts a deal
    or company is associated with."""
    named: set[Identity] = set(getattr(record, "identities", ()))
    subject = getattr(record, "subject", None)
    if isinstance(subject, Identity):
        named.add(subject)
    for name, _ in getattr(record, "properties", ()):
        kind, _, key = name.partition(LABEL)[0].partition(":")
        if kind == "contact" and key:
            named.add(Identity("hubspot", key))
    return named


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _identities(conn: Connection, lead_id: str) -> list[Identity]:
    c = lead_identities.c
    rows = conn.execute(sa.select(c.kind, c.value).where(c.lead_id == lead_id).order_by(c.kind))
    return [Identity(kind, value) for kind, value in rows]
