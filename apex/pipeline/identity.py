"""Leads and who they are: stitching identities into leads (create, attach, merge), what sources
say about their objects (newest wins per property), erasure, and the lead the API and events show.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from apex.db import insert, reading
from apex.errors import NotFoundError
from apex.ids import new_id
from apex.pagination import newest_first, split_page
from apex.pipeline import attribution
from apex.pipeline.records import (
    HUBSPOT_COMPANY,
    IDENTITY_KINDS,
    Identity,
    Property,
    Versioned,
    fold_links,
    normalise_email,
)
from apex.pipeline.tables import (
    conversions,
    fit,
    lead_aliases,
    lead_identities,
    leads,
    object_properties,
    touchpoints,
)

ERASED = "erased"  # the property that marks an object deleted at its source
LOCKED = "locked"  # the property row lock_properties() locks (its value is always None)
_MAX_ROUNDS = 20


@dataclass(frozen=True)
class Stitched:
    """The lead some identities belong to; `merged` are the published leads merged into it."""

    lead_id: str
    created: bool
    merged: tuple[str, ...]


@dataclass(frozen=True)
class Profile:
    email: str | None
    name: str | None
    company: str | None


@dataclass(frozen=True)
class Lead:
    id: str
    email: str | None
    name: str | None
    company: str | None
    identities: tuple[Identity, ...]
    summary: attribution.Summary
    created_at: datetime
    updated_at: datetime


# --- stitching -----------------------------------------------------------------------------


def stitch(conn: Connection, identities: Iterable[Identity], now: datetime) -> Stitched | None:
    """The lead these identities (one person's) belong to, after making them all its own.

    No identity known: a new lead. Known to one lead: that lead. Known to several: they are
    merged into the oldest, the others' ids kept as aliases. Race-safe: identities are claimed
    with INSERT … ON CONFLICT DO NOTHING on their primary key and the leads involved are locked
    (FOR UPDATE on PostgreSQL; SQLite serialises writers), so concurrent workers never make two
    leads of one person; a claim lost to another worker is merged in. Returns None for no
    identities. Raises RuntimeError if identities keep changing hands (never in practice).
    """
    keys = sorted(set(identities))
    if not keys:
        return None
    created: str | None = None
    merged: list[str] = []
    for _ in range(_MAX_ROUNDS):
        owners = _lock(conn, _owners(conn, keys))
        established = [lead_id for lead_id in owners if lead_id != created]
        if established:
            target = established[0]
        else:
            target = created = created or _new_lead(conn, now)
        _claim(conn, keys, target, now)
        after = _owners(conn, keys)
        if not after <= set(owners) | {target}:
            continue  # another worker claimed one meanwhile: lock its lead too, then merge
        # A lead made in an earlier round that lost every claim is dropped the same way.
        others = sorted((after | ({created} if created else set())) - {target})
        if others:
            announced = [lead_id for lead_id in others if lead_id != created]
            _merge(conn, target, others, announced, now)
            merged += announced
        return Stitched(target, created == target, tuple(merged))
    raise RuntimeError(f"identities {keys} kept changing hands")


def owner_of(conn: Connection, identity: Identity) -> str | None:
    """The lead an identity belongs to, or None."""
    return conn.execute(
        sa.select(lead_identities.c.lead_id).where(
            lead_identities.c.kind == identity.kind, lead_identities.c.value == identity.value
        )
    ).scalar_one_or_none()


def resolve(conn: Connection, lead_id: str) -> str | None:
    """The live lead `lead_id` names: itself, or the lead it was merged into; else None."""
    if conn.execute(sa.select(leads.c.id).where(leads.c.id == lead_id)).first():
        return lead_id
    return conn.execute(
        sa.select(lead_aliases.c.lead_id).where(lead_aliases.c.alias_id == lead_id)
    ).scalar_one_or_none()


def lock_owner(conn: Connection, subject: Identity) -> str | None:
    """The lead `subject` belongs to, locked until the transaction ends (a merge that moves it
    meanwhile is followed to the survivor); None if it belongs to none."""
    lead_id = owner_of(conn, subject)
    while lead_id is not None and not _lock(conn, {lead_id}):
        lead_id = owner_of(conn, subject)  # merged away meanwhile: the survivor
    return lead_id


def lock_live(conn: Connection, lead_id: str) -> str | None:
    """The live lead `lead_id` names (see resolve()), locked until the transaction ends (a
    merge that moves it meanwhile is followed to the survivor); None if it names none."""
    live = resolve(conn, lead_id)
    while live is not None and not _lock(conn, {live}):
        live = resolve(conn, lead_id)  # merged away meanwhile: the survivor
    return live


def pairs_in(
    kind: sa.ColumnElement[str], value: sa.ColumnElement[str], pairs: Iterable[tuple[str, str]]
) -> sa.ColumnElement[bool]:
    """(kind, value) is one of `pairs`: one IN per kind, which SQLite searches an index of
    (kind, value) with; a row-value IN it answers by scanning the whole table."""
    return sa.or_(*(sa.and_(kind == k, value.in_(vs)) for k, vs in _by_kind(pairs)))


def _by_kind(pairs: Iterable[tuple[str, str]]) -> list[tuple[str, list[str]]]:
    by_kind: defaultdict[str, list[str]] = defaultdict(list)
    for k, v in pairs:
        by_kind[k].append(v)
    return sorted(by_kind.items())


def _pairs_params(pairs: Iterable[tuple[str, str]]) -> tuple[int, dict[str, Any]]:
    """The parameters of a query made by _matching(): how many kinds, and their values."""
    grouped = _by_kind(pairs)
    params: dict[str, Any] = {}
    for i, (k, vs) in enumerate(grouped):
        params[f"kind_{i}"], params[f"values_{i}"] = k, vs
    return len(grouped), params


def _matching(
    kind: sa.ColumnElement[str], value: sa.ColumnElement[str], kinds: int
) -> sa.ColumnElement[bool]:
    """pairs_in() with the pairs as parameters (see _pairs_params), so that a query built
    once per number of kinds serves every call: stitching runs a few per event."""
    return sa.or_(
        *(
            sa.and_(
                kind == sa.bindparam(f"kind_{i}"),
                value.in_(sa.bindparam(f"values_{i}", expanding=True)),
            )
            for i in range(kinds)
        )
    )


@functools.cache
def _owners_query(kinds: int) -> sa.Select[Any]:
    c = lead_identities.c
    return sa.select(c.lead_id).where(_matching(c.kind, c.value, kinds)).distinct()


def _owners(conn: Connection, keys: Sequence[Identity]) -> set[str]:
    kinds, params = _pairs_params((key.kind, key.value) for key in keys)
    return set(conn.execute(_owners_query(kinds), params).scalars())


def _lock(conn: Connection, lead_ids: set[str]) -> list[str]:
    """Lock these leads (in id order, so workers queue rather than deadlock); the ones that
    still exist, oldest first."""
    if not lead_ids:
        return []
    rows = conn.execute(
        sa.select(leads.c.id, leads.c.created_at)
        .where(leads.c.id.in_(sorted(lead_ids)))
        .order_by(leads.c.id)
        .with_for_update()
    ).all()
    return [row.id for row in sorted(rows, key=lambda row: (row.created_at, row.id))]


def _new_lead(conn: Connection, now: datetime) -> str:
    lead_id = new_id("lead")
    conn.execute(leads.insert().values(id=lead_id, created_at=now, updated_at=now))
    return lead_id


def _claim(conn: Connection, keys: Sequence[Identity], lead_id: str, now: datetime) -> None:
    rows = [
        {"kind": key.kind, "value": key.value, "lead_id": lead_id, "created_at": now}
        for key in keys
    ]
    conn.execute(_statement(conn, "claim"), rows)


def _merge(
    conn: Connection, target: str, others: list[str], announced: list[str], now: datetime
) -> None:
    """Move everything of `others` to `target` and delete them; `announced` (those subscribers
    have heard of) stay resolvable as aliases."""
    for table in (lead_identities, touchpoints, conversions, lead_aliases):
        conn.execute(table.update().where(table.c.lead_id.in_(others)).values(lead_id=target))
    if announced:
        conn.execute(
            lead_aliases.insert(),
            [{"alias_id": alias, "lead_id": target, "merged_at": now} for alias in announced],
        )
    conn.execute(leads.delete().where(leads.c.id.in_(others)))


# --- properties ----------------------------------------------------------------------------


def lock_properties(conn: Connection, subject: Identity, at: datetime) -> None:
    """Lock `subject`'s properties until the transaction ends, so that concurrent workers that
    write some and decide on all of them (a deal's terms) take turns and the later one reads
    what the earlier wrote. The lock is a row of its own, property LOCKED (value None), created
    once (FOR UPDATE on PostgreSQL; SQLite serialises writers)."""
    c = object_properties.c
    conn.execute(
        insert(conn, object_properties)
        .values(object_kind=subject.kind, object_value=subject.value, name=LOCKED, occurred_at=at)
        .on_conflict_do_nothing(index_elements=["object_kind", "object_value", "name"])
    )
    conn.execute(
        sa.select(c.name)
        .where(c.object_kind == subject.kind, c.object_value == subject.value, c.name == LOCKED)
        .with_for_update()
    ).one()


def record_properties(
    conn: Connection, subject: Identity, properties: Iterable[Property], at: datetime
) -> None:
    """Store what a source said about `subject` at `at`. Per property the newest `at` wins (on a
    tie, the greater value), so events applied in any order, or twice, leave the same state."""
    values = dict(properties)
    if not values:
        return
    rows = [
        {
            "object_kind": subject.kind,
            "object_value": subject.value,
            "name": name,
            "value": value,
            "occurred_at": at,
        }
        for name, value in sorted(values.items())
    ]
    conn.execute(_statement(conn, "properties"), rows)


@functools.cache
def _statements(dialect: str) -> dict[str, sa.Executable]:
    """The pipeline's hottest writes, built once per database kind and run over rows (one
    statement compiled once, not a multi-row VALUES compiled per call)."""
    claim = insert(dialect, lead_identities).on_conflict_do_nothing(
        index_elements=["kind", "value"]
    )
    upsert = insert(dialect, object_properties)
    excluded, stored = upsert.excluded, object_properties.c
    # Per property the newest `at` wins; on a tie, the greater value.
    newer = sa.or_(
        excluded.occurred_at > stored.occurred_at,
        sa.and_(
            excluded.occurred_at == stored.occurred_at,
            sa.func.coalesce(excluded.value, "") > sa.func.coalesce(stored.value, ""),
        ),
    )
    properties = upsert.on_conflict_do_update(
        index_elements=["object_kind", "object_value", "name"],
        set_={"value": excluded.value, "occurred_at": excluded.occurred_at},
        where=newer,
    )
    return {"claim": claim, "properties": properties}


def _statement(conn: Connection, name: str) -> sa.Executable:
    return _statements(conn.dialect.name)[name]


def properties(
    conn: Connection, subjects: Iterable[Identity]
) -> dict[Identity, dict[str, Versioned]]:
    """The stored properties of each subject (objects with none are left out), each object's
    labelled associations with another folded into one (see records.fold_links)."""
    pairs = sorted({(s.kind, s.value) for s in subjects})
    found: dict[Identity, dict[str, Versioned]] = defaultdict(dict)
    if not pairs:
        return found
    kinds, params = _pairs_params(pairs)
    rows = conn.execute(_properties_query(kinds), params)
    for kind, value, name, stored, at in rows:
        found[Identity(kind, value)][name] = Versioned(stored, at)
    for subject, stated in found.items():
        found[subject] = fold_links(stated)
    return found


@functools.cache
def _properties_query(kinds: int) -> sa.Select[Any]:
    c = object_properties.c
    return sa.select(c.object_kind, c.object_value, c.name, c.value, c.occurred_at).where(
        _matching(c.object_kind, c.object_value, kinds)
    )


def erased_since(conn: Connection, subject: Identity, at: datetime) -> bool:
    """True if the source deleted `subject` at or after `at`: older news of it is void."""
    erased = properties(conn, [subject]).get(subject, {}).get(ERASED)
    return erased is not None and erased.value is not None and erased.at >= at


def erase(conn: Connection, subject: Identity, at: datetime, now: datetime) -> str | None:
    """Erase the person `subject` identifies: every identity and property of their lead, and its
    email, name and company. The lead stays, anonymous, with its touchpoints and conversions, so
    revenue totals hold. `subject` is remembered as deleted at `at` so older events about it
    are ignored. Returns the lead erased, or None if none was known."""
    lead_id = lock_owner(conn, subject)
    if lead_id is not None:
        owned = [(i.kind, i.value) for i in _identity_rows(conn, [lead_id])[lead_id]]
        c = object_properties.c
        conn.execute(
            object_properties.delete().where(pairs_in(c.object_kind, c.object_value, owned))
        )
        conn.execute(lead_identities.delete().where(lead_identities.c.lead_id == lead_id))
        conn.execute(
            leads.update()
            .where(leads.c.id == lead_id)
            .values(email=None, name=None, company=None, erased_at=now)
        )
    record_properties(conn, subject, [(ERASED, "1")], at)
    return lead_id


def profile(
    identities: Sequence[Identity], stated: Mapping[Identity, Mapping[str, Versioned]]
) -> Profile:
    """A lead's email, name and company: per field, the newest value any of its objects states.
    A name is "name", or "first_name last_name" as of the newer of the two. A company is the
    "company" an object states, or the name of a company it is associated with (a HubSpot
    contact's "company:<key>" link, if `stated` holds that company). Without an email property,
    the first email identity."""
    objects = [stated.get(identity, {}) for identity in identities]
    emails = sorted(i.value for i in identities if i.kind == "email")
    return Profile(
        email=_newest(o.get("email") for o in objects) or (emails[0] if emails else None),
        name=_newest(_name(o) for o in objects),
        company=_newest(c for o in objects for c in _companies(o, stated)),
    )


def _companies(
    stated: Mapping[str, Versioned], everything: Mapping[Identity, Mapping[str, Versioned]]
) -> list[Versioned | None]:
    """The company an object states, and the names of the live companies it is linked to."""
    found = [stated.get("company")]
    for link in _company_links([stated]):
        company = everything.get(link, {})
        deleted = company.get("deleted")
        if deleted is None or not deleted.value:
            found.append(company.get("name"))
    return found


def _company_links(objects: Iterable[Mapping[str, Versioned]]) -> list[Identity]:
    """The companies these objects are associated with now ("company:<key>" set, not removed)."""
    return [
        Identity(HUBSPOT_COMPANY, name.removeprefix("company:"))
        for stated in objects
        for name, version in sorted(stated.items())
        if name.startswith("company:") and version.value
    ]


def _name(stated: Mapping[str, Versioned]) -> Versioned | None:
    full = stated.get("name")
    parts = [stated.get("first_name"), stated.get("last_name")]
    present = [part for part in parts if part is not None and part.value]
    if not present:
        return full
    joined = Versioned(" ".join(p.value for p in present if p.value), max(p.at for p in present))
    return joined if full is None or not full.value or joined.at > full.at else full


def _newest(versions: Iterable[Versioned | None]) -> str | None:
    present = [v for v in versions if v is not None and v.value]
    return max(present, key=lambda v: (v.at, v.value or "")).value if present else None


# --- the lead as the API and events show it ------------------------------------------------


def lead_data(lead: Lead, merged_ids: Sequence[str] = ()) -> dict[str, Any]:
    """The SPEC's lead shape (`revenue` in `currency`, the lead's first; `revenueByCurrency`
    every currency it paid in, never added up); with `merged_ids`, plus "mergedLeadIds"
    (lead.updated after a merge)."""
    summary = lead.summary
    data: dict[str, Any] = {
        "id": lead.id,
        "email": lead.email,
        "name": lead.name,
        "company": lead.company,
        "identities": [{"kind": i.kind, "value": i.value} for i in lead.identities],
        "revenue": summary.revenue,
        "currency": summary.currency,
        "revenueByCurrency": dict(summary.revenue_by_currency),
        "conversions": summary.conversions,
        "firstTouch": _touch_data(summary.first_touch),
        "lastTouch": _touch_data(summary.last_touch),
        "createdAt": _timestamp(lead.created_at),
        "updatedAt": _timestamp(lead.updated_at),
    }
    if merged_ids:
        data["mergedLeadIds"] = list(merged_ids)
    return data


def settle(conn: Connection, lead_ids: Iterable[str], now: datetime) -> list[tuple[Lead, bool]]:
    """Recompute the cached email, name, company and first-touch source of these leads (those
    still live), and stamp `updated_at` = now on those whose shape changed since last settled.
    Returns each lead with whether it changed (a new lead always has)."""
    loaded = load(conn, lead_ids)
    query = sa.select(leads.c.id, leads.c.shape_digest).where(leads.c.id.in_(list(loaded)))
    digests = {lead_id: digest for lead_id, digest in conn.execute(query)}
    settled: list[tuple[Lead, bool]] = []
    for lead_id, lead in sorted(loaded.items()):
        digest = _digest(lead)
        changed = digest != digests.get(lead_id)
        if changed:
            lead = replace(lead, updated_at=now)
        first = lead.summary.first_touch
        conn.execute(
            leads.update()
            .where(leads.c.id == lead_id)
            .values(
                email=fit(lead.email, leads.c.email),
                name=fit(lead.name, leads.c.name),
                company=fit(lead.company, leads.c.company),
                source=first.source if first else None,
                shape_digest=digest,
                updated_at=lead.updated_at,
            )
        )
        settled.append((lead, changed))
    return settled


def load(conn: Connection, lead_ids: Iterable[str]) -> dict[str, Lead]:
    """The live leads among `lead_ids`, their profile computed from what their sources say."""
    ids = sorted(set(lead_ids))
    if not ids:
        return {}
    rows = conn.execute(
        sa.select(leads.c.id, leads.c.created_at, leads.c.updated_at).where(leads.c.id.in_(ids))
    ).all()
    owned = _identity_rows(conn, [row.id for row in rows])
    stated = properties(conn, [i for found in owned.values() for i in found])
    stated.update(properties(conn, _company_links(stated.values())))
    summaries = attribution.summaries(conn, [row.id for row in rows])
    loaded: dict[str, Lead] = {}
    for row in rows:
        identities = owned[row.id]
        person = profile(identities, stated)
        loaded[row.id] = Lead(
            id=row.id,
            email=person.email,
            name=person.name,
            company=person.company,
            identities=identities,
            summary=summaries[row.id],
            created_at=row.created_at,
            updated_at=row.updated_at,
        )
    return loaded


def get(engine: Engine, lead_id: str) -> Lead:
    """A lead by its id or the id of a lead merged into it. Raises NotFoundError."""
    with reading(engine) as conn:
        live = resolve(conn, lead_id)
        found = load(conn, [live]) if live else {}
    if not found:
        raise NotFoundError(f"No lead {lead_id}")
    return next(iter(found.values()))


def page(
    engine: Engine, email: str | None, source: str | None, limit: int, cursor: str | None
) -> tuple[list[Lead], str | None]:
    """Leads newest first, optionally those with an email identity or a first-touch source;
    and the cursor of the next page (the last id shown, or None at the end). An email that is
    not an address matches nothing. Raises NotFoundError for an unknown cursor."""
    query = sa.select(leads.c.id)
    if email is not None:
        owned = sa.select(lead_identities.c.lead_id).where(
            lead_identities.c.kind == "email",
            lead_identities.c.value == (normalise_email(email) or ""),
        )
        query = query.where(leads.c.id.in_(owned))
    if source is not None:
        query = query.where(leads.c.source == source)
    with reading(engine) as conn:
        query = newest_first(conn, query, leads.c.created_at, leads.c.id, limit, cursor)
        ids, next_cursor = split_page(list(conn.execute(query).scalars()), limit, str)
        loaded = load(conn, ids)
    return [loaded[i] for i in ids if i in loaded], next_cursor


def _identity_rows(conn: Connection, lead_ids: Sequence[str]) -> dict[str, tuple[Identity, ...]]:
    """Each lead's identities, in the order a lead lists them (email, hubspot, stripe, github)."""
    found: dict[str, list[Identity]] = {lead_id: [] for lead_id in lead_ids}
    if lead_ids:
        c = lead_identities.c
        for lead_id, kind, value in conn.execute(
            sa.select(c.lead_id, c.kind, c.value).where(c.lead_id.in_(lead_ids))
        ):
            found[lead_id].append(Identity(kind, value))
    order = {kind: index for index, kind in enumerate(IDENTITY_KINDS)}
    return {
        lead_id: tuple(sorted(ids, key=lambda i: (order.get(i.kind, len(order)), i.kind, i.value)))
        for lead_id, ids in found.items()
    }


def _digest(lead: Lead) -> str:
    shape = lead_data(lead)
    del shape["updatedAt"]
    return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()


def _touch_data(touch: attribution.Touch | None) -> dict[str, Any] | None:
    if touch is None:
        return None
    return {"source": touch.source, "campaign": touch.campaign, "at": _timestamp(touch.at)}


def _timestamp(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
