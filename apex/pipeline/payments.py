"""Payments known by several keys, and what is taken back from them: an invoice and the payment
intent that paid it count once, whichever is described first; refunds and lost disputes
subtract once, however often and in whatever order they are described."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from apex.pipeline import attribution, identity
from apex.pipeline.records import PAYMENT, Identity, Payment, Refund
from apex.pipeline.tables import insert, object_properties

LINK = "payment"  # the property of a payment key naming the key its money counts under
_MAX_HOPS = 4


def record_payment(conn: Connection, lead_id: str | None, payment: Payment) -> set[str]:
    """Count `payment` once under its canonical key (see records.Payment), moving what was
    counted under one of its aliases to it. Returns the leads whose conversions changed.

    Race-safe: each key's link row is claimed with INSERT … ON CONFLICT DO NOTHING before it is
    read, so a worker counting an invoice and one linking that invoice to its payment intent
    queue on that row (PostgreSQL) and the second sees what the first did.
    """
    key = canonical(conn, payment.key, payment.at)
    if payment.amount <= 0:
        return attribution.remove_payment(conn, key)
    touched: set[str] = set()
    at = payment.at
    for alias in dict.fromkeys(payment.aliases):
        if alias == key:
            continue
        linked = _claim(conn, alias, key, payment.at)
        if linked == alias:  # counted under itself so far: from now on it is `key`
            conn.execute(_link_row(alias).values(value=key, occurred_at=payment.at))
            linked = key
        taken = attribution.take_payment(conn, alias) if linked == key else None
        if taken is not None:  # what it counted moves here, its payer and time with it
            moved, paid_at = taken
            touched |= {moved} if moved else set()
            lead_id, at = lead_id or moved, min(at, paid_at)
    touched |= attribution.record_payment(conn, lead_id, key, payment.amount, payment.currency, at)
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
    another (an invoice to the intent that paid it). Claims `key` for itself when unlinked."""
    seen = [key]
    linked = _claim(conn, key, key, at)
    while linked != seen[-1] and linked not in seen and len(seen) < _MAX_HOPS:
        seen.append(linked)
        linked = _link(conn, linked) or linked
    return seen[-1]


def _claim(conn: Connection, key: str, target: str, at: datetime) -> str:
    """Link `key` to `target` unless it is linked already; the key it is linked to now."""
    conn.execute(
        insert(conn, object_properties)
        .values(object_kind=PAYMENT, object_value=key, name=LINK, value=target, occurred_at=at)
        .on_conflict_do_nothing(index_elements=["object_kind", "object_value", "name"])
    )
    return _link(conn, key) or target


def _link(conn: Connection, key: str) -> str | None:
    c = object_properties.c
    return conn.execute(
        sa.select(c.value).where(c.object_kind == PAYMENT, c.object_value == key, c.name == LINK)
    ).scalar_one_or_none()


def _link_row(key: str) -> sa.Update:
    c = object_properties.c
    return object_properties.update().where(
        c.object_kind == PAYMENT, c.object_value == key, c.name == LINK
    )
