"""Payments known by several keys, and what is taken back from them: an invoice and the payment
intent that paid it count once, whichever is described first; refunds and lost disputes
subtract once, however often and in whatever order they are described."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from apex.db import insert
from apex.pipeline import attribution, identity
from apex.pipeline.records import PAYMENT, Identity, Payment, Refund
from apex.pipeline.tables import object_properties

LINK = "payment"  # the property of a payment key naming the key its money counts under
_MAX_HOPS = 4


def record_payment(conn: Connection, lead_id: str | None, payment: Payment) -> set[str]:
    """Count `payment` once under its canonical key (see records.Payment), moving what was
    counted under one of its aliases to it: the payment, and what was taken back from it (its
    refund and dispute parts, counted again under the canonical key). Returns the leads whose
    conversions changed.

    A payment described under a key linked to another (an invoice whose payments are known)
    adds no amount there, only its payer: the linked payments state what was paid, so an invoice
    paid by several payments counts their sum, whatever the order of the events.

    Race-safe: each key's link row is claimed (INSERT … ON CONFLICT DO NOTHING) and locked
    (FOR UPDATE on PostgreSQL; SQLite serialises writers) before it is read, so of a worker
    counting an invoice and one linking it to its payment intent, the second waits for the
    first's commit and sees what it did.
    """
    key = canonical(conn, payment.key, payment.at)
    if payment.amount <= 0:
        return attribution.remove_payment(conn, key)
    touched: set[str] = set()
    at = payment.at
    moved_back: list[str] = []
    for alias in dict.fromkeys(payment.aliases):
        if alias == key:
            continue
        linked = _claim(conn, alias, key, payment.at)
        if linked == alias:  # counted under itself so far: from now on it is `key`
            conn.execute(_link_row(alias).values(value=key, occurred_at=payment.at))
            linked = key
            moved_back.append(alias)
        taken = attribution.take_payment(conn, alias) if linked == key else None
        if taken is not None:  # what it counted moves here, its payer and time with it
            moved, paid_at = taken
            touched |= {moved} if moved else set()
            lead_id, at = lead_id or moved, min(at, paid_at)
    amount = payment.amount if key == payment.key else None
    touched |= attribution.record_payment(conn, lead_id, key, amount, payment.currency, at)
    for alias in moved_back:
        touched |= _move_taken_back(conn, lead_id, alias, key, payment)
    return touched


def record_refund(conn: Connection, lead_id: str | None, refund: Refund) -> set[str]:
    """Store this part of what was taken back from the payment `refund.key` and set the
    payment's refund conversion to the total (attribution.taken_back). Returns the leads whose
    conversions changed. Race-safe: the refund conversion is claimed and locked before the parts
    are read, so concurrent workers recording two refunds of one payment count both."""
    key = canonical(conn, refund.key, refund.at)
    attribution.lock_refund(conn, key, refund.currency, refund.at)
    subject = Identity(PAYMENT, key)
    # Zero-padded, so that of two descriptions at the same instant the larger amount wins.
    amount = f"{max(refund.amount, 0):019d}"
    identity.record_properties(conn, subject, [(refund.part or "refunded", amount)], refund.at)
    stated = identity.properties(conn, [subject]).get(subject, {})
    total = attribution.taken_back(stated)
    return attribution.record_refund(
        conn, lead_id, key, total, refund.currency, refund.at, refund.paid_at
    )


def canonical(conn: Connection, key: str, at: datetime) -> str:
    """The key the money of payment `key` counts under: `key` itself unless it was linked to
    another (an invoice to the intent that paid it). Claims `key` for itself when unlinked.
    Each link row on the way is locked until the transaction ends, so no concurrent worker
    re-points one of them (folds the key into another) before this one has written under it."""
    seen = [key]
    linked = _claim(conn, key, key, at)
    while linked != seen[-1] and linked not in seen and len(seen) < _MAX_HOPS:
        seen.append(linked)
        linked = _link(conn, linked) or linked
    return seen[-1]


def _claim(conn: Connection, key: str, target: str, at: datetime) -> str:
    """Link `key` to `target` unless it is linked already; the key it is linked to now, its
    row locked."""
    conn.execute(
        insert(conn, object_properties)
        .values(object_kind=PAYMENT, object_value=key, name=LINK, value=target, occurred_at=at)
        .on_conflict_do_nothing(index_elements=["object_kind", "object_value", "name"])
    )
    return _link(conn, key) or target


def _link(conn: Connection, key: str) -> str | None:
    """The key `key` is linked to, its row locked (FOR UPDATE: after waiting for a concurrent
    writer, PostgreSQL returns the row as that writer committed it)."""
    c = object_properties.c
    return conn.execute(
        sa.select(c.value)
        .where(c.object_kind == PAYMENT, c.object_value == key, c.name == LINK)
        .with_for_update()
    ).scalar_one_or_none()


def _link_row(key: str) -> sa.Update:
    c = object_properties.c
    return object_properties.update().where(
        c.object_kind == PAYMENT, c.object_value == key, c.name == LINK
    )


def _move_taken_back(
    conn: Connection, lead_id: str | None, alias: str, key: str, payment: Payment
) -> set[str]:
    """Move the refund and dispute parts stated under `alias` (a refund that named only its
    charge, before the charge named its intent) to `key`, drop the alias's refund conversion and
    set `key`'s to what the parts add up to there. Returns the leads whose conversions changed."""
    source, target = Identity(PAYMENT, alias), Identity(PAYMENT, key)
    parts = {
        name: version
        for name, version in identity.properties(conn, [source]).get(source, {}).items()
        if name != LINK
    }
    refund = attribution.take_refund(conn, alias)
    if not parts and refund is None:
        return set()
    c = object_properties.c
    conn.execute(
        object_properties.delete().where(
            c.object_kind == PAYMENT, c.object_value == alias, c.name != LINK
        )
    )
    currency = refund.currency if refund else payment.currency
    at = max([version.at for version in parts.values()] + ([refund.at] if refund else []))
    attribution.lock_refund(conn, key, currency, at)
    for name, version in sorted(parts.items()):
        identity.record_properties(conn, target, [(name, version.value)], version.at)
    stated = identity.properties(conn, [target]).get(target, {})
    touched = {refund.lead_id} if refund and refund.lead_id else set()
    owner = lead_id or (refund.lead_id if refund else None)
    paid_at = refund.paid_at if refund else payment.at
    total = attribution.taken_back(stated)
    return touched | attribution.record_refund(conn, owner, key, total, currency, at, paid_at)
