"""Stripe: one object per event; several events may describe one payment."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from apex.pipeline.records import (
    Contact,
    Identity,
    Payment,
    Property,
    Record,
    Refund,
    Touchpoint,
    currency_code,
    normalise_email,
)
from apex.sources.reading import amount, dated, get, text, unique, unix_time

_EMAILS = (
    ("email",),
    ("customer_details", "email"),
    ("customer_email",),
    ("billing_details", "email"),
    ("receipt_email",),
)
_NAMES = (("name",), ("customer_details", "name"), ("customer_name",))
_NAMES_OF_PAYERS = (*_NAMES, ("billing_details", "name"))
_UTM = ("utm_source", "utm_medium", "utm_campaign")


def extract(event_type: str, payload: Any, received_at: datetime | None) -> list[Record]:
    obj = get(payload, "data", "object")
    if not isinstance(obj, Mapping):
        raise ValueError(f"Stripe event {event_type} has no data.object")
    handler = _HANDLERS.get(event_type)
    if handler is None:
        return []
    at = dated(unix_time(get(payload, "created")), received_at, f"Stripe event {event_type}")
    return handler(obj, at)


def _ref(obj: Any, name: str) -> str | None:
    """A reference to another Stripe object: its id, or the id of the expanded object."""
    return text(obj, name) if isinstance(get(obj, name), str) else text(obj, name, "id")


def _stripe_person(
    obj: Mapping[str, Any], at: datetime, customer: str | None, extra: tuple[Property, ...] = ()
) -> Contact | None:
    emails = [e for e in (normalise_email(get(obj, *path)) for path in _EMAILS) if e]
    ids = [Identity("stripe", customer)] if customer else []
    linked = unique([*ids, *(Identity("email", email) for email in emails)])
    if not linked:
        return None
    names = _NAMES if obj.get("object") == "customer" else _NAMES_OF_PAYERS
    name = next((n for n in (text(obj, *path) for path in names) if n), None)
    properties: tuple[Property, ...] = (("email", emails[0]),) if emails else ()
    properties += (("name", name),) if name else ()
    return Contact(linked[0], linked, at, properties + extra)


def _stripe_customer(obj: Mapping[str, Any], at: datetime) -> list[Record]:
    metadata = obj.get("metadata")
    utm = tuple((name, text(metadata, name)) for name in _UTM if text(metadata, name))
    person = _stripe_person(obj, at, text(obj, "id"), utm)
    return [person] if person else []


def _stripe_payment(
    obj: Mapping[str, Any], at: datetime, amount: int | None, refunded: int | None = None
) -> list[Record]:
    """The payer and the payment `obj` describes, keyed on its payment intent when there is one."""
    person = _stripe_person(obj, at, _ref(obj, "customer"))
    records: list[Record] = [person] if person else []
    currency = currency_code(text(obj, "currency"))
    if currency is None:
        return records
    identities = person.identities if person else ()
    key = f"stripe:{_payment_intent(obj) or text(obj, 'id')}"
    if amount is not None:
        records.append(Payment(key, identities, amount, currency, at))
    if refunded is not None:
        paid_at = unix_time(obj.get("created")) or at
        records.append(Refund(key, identities, refunded, currency, at, paid_at))
    return records


def _payment_intent(obj: Mapping[str, Any]) -> str | None:
    intent = _ref(obj, "payment_intent")
    if intent is not None:
        return intent
    # Invoices of newer API versions name their payments in `payments` (when expanded).
    for payment in get(obj, "payments", "data") or []:
        intent = _ref(get(payment, "payment"), "payment_intent")
        if intent is not None:
            return intent
    return None


def _stripe_checkout(obj: Mapping[str, Any], at: datetime) -> list[Record]:
    # Subscription checkouts are paid by their invoice: invoice.paid counts that money.
    paid = obj.get("mode") == "payment" and obj.get("payment_status") == "paid"
    records = _stripe_payment(obj, at, amount(obj, "amount_total") if paid else None)
    people = [r for r in records if isinstance(r, Contact)]
    if people:
        metadata = obj.get("metadata")
        records.append(
            Touchpoint(
                key=f"stripe:checkout:{text(obj, 'id')}",
                identities=people[0].identities,
                source=text(metadata, "utm_source") or "stripe",
                campaign=text(metadata, "utm_campaign") or text(metadata, "campaign"),
                at=unix_time(obj.get("created")) or at,
            )
        )
    return records


def _stripe_intent(obj: Mapping[str, Any], at: datetime) -> list[Record]:
    return _stripe_payment(obj, at, amount(obj, "amount_received", "amount"))


def _stripe_charge(obj: Mapping[str, Any], at: datetime) -> list[Record]:
    paid = obj.get("paid") is True or obj.get("status") == "succeeded"
    return _stripe_payment(obj, at, amount(obj, "amount_captured", "amount") if paid else None)


def _stripe_refund(obj: Mapping[str, Any], at: datetime) -> list[Record]:
    paid = obj.get("paid") is True or obj.get("status") == "succeeded"
    captured = amount(obj, "amount_captured", "amount") if paid else None
    return _stripe_payment(obj, at, captured, amount(obj, "amount_refunded"))


def _stripe_invoice(obj: Mapping[str, Any], at: datetime) -> list[Record]:
    return _stripe_payment(obj, at, amount(obj, "amount_paid"))


_HANDLERS: dict[str, Callable[[Mapping[str, Any], datetime], list[Record]]] = {
    "customer.created": _stripe_customer,
    "customer.updated": _stripe_customer,
    "checkout.session.completed": _stripe_checkout,
    "payment_intent.succeeded": _stripe_intent,
    "charge.succeeded": _stripe_charge,
    "invoice.paid": _stripe_invoice,
    "charge.refunded": _stripe_refund,
}
