"""Stripe: one object per event; several events may describe one payment, which counts once.

A payment is keyed on its payment intent, else its charge; an invoice on the intent (or charge)
that paid it when it names one (API versions before 2025-03-31.basil: `payment_intent`,
`charge`; from basil: its expanded `payments` list, or the `invoice_payment.paid` event), else
on itself, with the link recorded when it is learnt (records.Payment.aliases). Amounts are
what was captured: an authorisation counts nothing until captured.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from apex.pipeline.records import (
    Contact,
    Identity,
    Notification,
    Payment,
    Property,
    Record,
    Refund,
    Touchpoint,
    currency_code,
    normalise_email,
)
from apex.sources.reading import dated, get, iso_time, text, unique, unix_time
from apex.sources.source import UnusableEventError

THIN = "v2.core.event"  # the `object` of a thin event notification

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
_LIVE_REFUNDS = ("succeeded", "pending", "requires_action")  # as charge.amount_refunded counts

Handler = Callable[[str, Mapping[str, Any], datetime], list[Record]]


def extract(event_type: str, payload: Any, received_at: datetime | None) -> list[Record]:
    """The records a Stripe event carries (see the module's docstring).

    A thin notification (`"object": "v2.core.event"`) is a records.Notification for the
    enricher to fetch. Raises UnusableEventError for an event without `data.object`, of a type
    Apex does not read, or that names no payer and no money; never any other exception.
    """
    if get(payload, "object") == THIN:
        return [_notification(event_type, payload)]
    obj = get(payload, "data", "object")
    if not isinstance(obj, Mapping):
        raise UnusableEventError(f"Stripe event {event_type} has no data.object")
    handler = _HANDLERS.get(event_type)
    if handler is None:
        raise UnusableEventError(
            _UNUSED.get(event_type, f"Stripe event {event_type} carries nothing Apex uses")
        )
    try:
        at = dated(unix_time(get(payload, "created")), received_at, f"Stripe event {event_type}")
    except ValueError as exc:
        raise UnusableEventError(str(exc)) from None
    records = handler(event_type, obj, at)
    if not records:
        raise UnusableEventError(
            f"Stripe event {event_type} names no payer (customer or email) and no money"
        )
    return records


def _notification(event_type: str, payload: Any) -> Notification:
    event_id = text(payload, "id") or ""
    return Notification(
        source="stripe",
        event_id=event_id,
        reason=f"Stripe thin event {event_type} ({event_id}) carries no data; "
        "set STRIPE_API_KEY to fetch it",
    )


def thin_event(event_type: str, related: Any, created: Any) -> dict[str, Any]:
    """The snapshot event a fetched thin v1 event stands for: `v1.charge.captured` about the
    charge `related` is a `charge.captured` event with it as data.object."""
    at = iso_time(created) if isinstance(created, str) else unix_time(created)
    return {
        "object": "event",
        "type": event_type.removeprefix("v1."),
        "created": int(at.timestamp()) if at else None,
        "data": {"object": related},
    }


# --- reading Stripe objects -----------------------------------------------------------------


def _ref(obj: Any, *path: str) -> str | None:
    """A reference to another Stripe object: its id, or the id of the expanded object."""
    value = get(obj, *path)
    return text(obj, *path) if isinstance(value, str) else text(value, "id")


def _cents(obj: Any, name: str) -> int | None:
    """A non-negative integer amount at `name` (minor units), else None."""
    value = get(obj, name)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**62:
        return value
    return None


def _person(
    obj: Mapping[str, Any], at: datetime, extra: tuple[Property, ...] = ()
) -> Contact | None:
    emails = [e for e in (normalise_email(get(obj, *path)) for path in _EMAILS) if e]
    customer = _ref(obj, "customer") if obj.get("object") != "customer" else text(obj, "id")
    ids = [Identity("stripe", customer)] if customer else []
    linked = unique([*ids, *(Identity("email", email) for email in emails)])
    if not linked:
        return None
    names = _NAMES if obj.get("object") == "customer" else _NAMES_OF_PAYERS
    name = next((n for n in (text(obj, *path) for path in names) if n), None)
    properties: tuple[Property, ...] = (("email", emails[0]),) if emails else ()
    properties += (("name", name),) if name else ()
    return Contact(linked[0], linked, at, properties + extra)


def _payer(obj: Mapping[str, Any], at: datetime) -> tuple[list[Record], tuple[Identity, ...]]:
    person = _person(obj, at)
    return ([person], person.identities) if person else ([], ())


def _key(obj: Any) -> str | None:
    """The key of the payment a charge, refund, dispute or intent belongs to."""
    if get(obj, "object") == "payment_intent":
        return f"stripe:{text(obj, 'id')}" if text(obj, "id") else None
    found = _ref(obj, "payment_intent") or _ref(obj, "charge")
    if found is None and get(obj, "object") == "charge":
        found = text(obj, "id")
    return f"stripe:{found}" if found else None


def _invoice_alias(obj: Any) -> tuple[str, ...]:
    invoice = _ref(obj, "invoice")
    return (f"stripe:{invoice}",) if invoice else ()


# --- one handler per object type ------------------------------------------------------------


def _customer(event_type: str, obj: Mapping[str, Any], at: datetime) -> list[Record]:
    metadata = obj.get("metadata")
    utm = tuple((name, text(metadata, name)) for name in _UTM if text(metadata, name))
    person = _person(obj, at, utm)
    return [person] if person else []


def _checkout(event_type: str, obj: Mapping[str, Any], at: datetime) -> list[Record]:
    records, identities = _payer(obj, at)
    currency = currency_code(text(obj, "currency"))
    # Subscription checkouts are paid by their invoice: invoice.paid counts that money.
    paid = obj.get("mode") == "payment" and obj.get("payment_status") == "paid"
    amount = _cents(obj, "amount_total") if paid else None
    intent = _ref(obj, "payment_intent")
    key = f"stripe:{intent}" if intent else f"stripe:{text(obj, 'id')}"
    if amount and currency:
        records.append(Payment(key, identities, amount, currency, at, _invoice_alias(obj)))
    if identities:
        metadata = obj.get("metadata")
        records.append(
            Touchpoint(
                key=f"stripe:checkout:{text(obj, 'id')}",
                identities=identities,
                source=text(metadata, "utm_source") or "stripe",
                campaign=text(metadata, "utm_campaign") or text(metadata, "campaign"),
                at=unix_time(obj.get("created")) or at,
            )
        )
    return records


def _intent(event_type: str, obj: Mapping[str, Any], at: datetime) -> list[Record]:
    """A payment intent counts what it received (`amount_received`); canceled with nothing
    received, it voids its payment."""
    records, identities = _payer(obj, at)
    key, currency = _key(obj), currency_code(text(obj, "currency"))
    received = _cents(obj, "amount_received") or 0
    if key is None or currency is None:
        return records
    if received > 0:
        records.append(Payment(key, identities, received, currency, at, _invoice_alias(obj)))
    elif event_type == "payment_intent.canceled":
        records.append(Payment(key, identities, 0, currency, at))
    return records


def _charge(event_type: str, obj: Mapping[str, Any], at: datetime) -> list[Record]:
    """A charge counts what was captured of it (`amount_captured`; `amount` on API versions
    without it) once it succeeded and was captured; an expired authorisation voids its
    payment; its running total of refunds (`amount_refunded`) is taken back."""
    records, identities = _payer(obj, at)
    key, currency = _key(obj), currency_code(text(obj, "currency"))
    if key is None or currency is None:
        return records
    succeeded = obj.get("status") == "succeeded" or (
        obj.get("paid") is True and obj.get("status") is None
    )
    captured_field = _cents(obj, "amount_captured")
    captured = captured_field if "amount_captured" in obj else _cents(obj, "amount")
    if obj.get("captured") is False:
        captured = 0
    charge_id = text(obj, "id")
    aliases = _invoice_alias(obj) + ((f"stripe:{charge_id}",) if charge_id else ())
    if succeeded and captured:
        records.append(Payment(key, identities, captured, currency, at, aliases))
    elif event_type == "charge.expired" and not captured:
        records.append(Payment(key, identities, 0, currency, at))
    refunded = _cents(obj, "amount_refunded")
    if refunded or (event_type == "charge.refunded" and refunded is not None):
        paid_at = unix_time(obj.get("created")) or at
        records.append(Refund(key, identities, refunded or 0, currency, at, paid_at))
    return records


def _refund(event_type: str, obj: Mapping[str, Any], at: datetime) -> list[Record]:
    """One refund: its amount while it stands (pending or succeeded), 0 once failed/canceled."""
    records, identities = _payer(obj, at)
    key, currency, refund_id = _key(obj), currency_code(text(obj, "currency")), text(obj, "id")
    amount = _cents(obj, "amount")
    if key is None or currency is None or refund_id is None or amount is None:
        return records
    standing = amount if obj.get("status") in _LIVE_REFUNDS else 0
    records.append(Refund(key, identities, standing, currency, at, at, f"refund:{refund_id}"))
    return records


def _dispute(event_type: str, obj: Mapping[str, Any], at: datetime) -> list[Record]:
    """A dispute takes back its amount once lost; any other status takes nothing (yet)."""
    key, currency, dispute_id = _key(obj), currency_code(text(obj, "currency")), text(obj, "id")
    amount = _cents(obj, "amount")
    if key is None or currency is None or dispute_id is None or amount is None:
        return []
    lost = amount if obj.get("status") == "lost" else 0
    return [Refund(key, (), lost, currency, at, at, f"dispute:{dispute_id}")]


def _invoice(event_type: str, obj: Mapping[str, Any], at: datetime) -> list[Record]:
    """A paid invoice counts `amount_paid`, under the payment(s) that paid it when it names
    them, else under itself until an invoice_payment links it (once linked, what its payments
    paid counts, not its own total: see payments.record_payment)."""
    records, identities = _payer(obj, at)
    invoice_id, currency = text(obj, "id"), currency_code(text(obj, "currency"))
    paid = _cents(obj, "amount_paid")
    if invoice_id is None or currency is None or not paid:
        return records
    alias = (f"stripe:{invoice_id}",)
    payments = [
        p for p in _list(get(obj, "payments", "data")) if get(p, "status") in (None, "paid")
    ]
    keyed: list[tuple[str, int]] = []
    for payment in payments:
        by, amount = paid_by(payment), _cents(payment, "amount_paid")
        keyed += [(by, amount)] if by and amount else []
    if keyed:  # basil, with `payments` expanded
        records += [Payment(key, identities, amount, currency, at, alias) for key, amount in keyed]
        return records
    legacy = _ref(obj, "payment_intent") or _ref(obj, "charge")  # before basil
    key = f"stripe:{legacy}" if legacy else alias[0]
    records.append(Payment(key, identities, paid, currency, at, alias if legacy else ()))
    return records


def _invoice_payment(event_type: str, obj: Mapping[str, Any], at: datetime) -> list[Record]:
    """From basil: the link between an invoice and the intent (or charge) that paid it, and
    the amount it paid."""
    invoice_id, currency = _ref(obj, "invoice"), currency_code(text(obj, "currency"))
    paid = _cents(obj, "amount_paid")
    key = paid_by(obj) or (f"stripe:{text(obj, 'id')}" if text(obj, "id") else None)
    if invoice_id is None or currency is None or not paid or key is None:
        return []
    if obj.get("status") not in (None, "paid"):
        return []
    return [Payment(key, (), paid, currency, at, (f"stripe:{invoice_id}",))]


def paid_by(invoice_payment: Any) -> str | None:
    """The payment key of what paid an invoice_payment: its intent, else its charge."""
    found = _ref(invoice_payment, "payment", "payment_intent") or _ref(
        invoice_payment, "payment", "charge"
    )
    return f"stripe:{found}" if found else None


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


_HANDLERS: dict[str, Handler] = {
    "customer.created": _customer,
    "customer.updated": _customer,
    "checkout.session.completed": _checkout,
    "checkout.session.async_payment_succeeded": _checkout,
    "payment_intent.succeeded": _intent,
    "payment_intent.canceled": _intent,
    "charge.succeeded": _charge,
    "charge.captured": _charge,
    "charge.updated": _charge,
    "charge.refunded": _charge,
    "charge.expired": _charge,
    "charge.refund.updated": _refund,
    "refund.created": _refund,
    "refund.updated": _refund,
    "refund.failed": _refund,
    "charge.dispute.created": _dispute,
    "charge.dispute.updated": _dispute,
    "charge.dispute.closed": _dispute,
    "charge.dispute.funds_withdrawn": _dispute,
    "charge.dispute.funds_reinstated": _dispute,
    "invoice.paid": _invoice,
    "invoice.payment_succeeded": _invoice,
    "invoice_payment.paid": _invoice_payment,
}

# Money events Apex reads elsewhere, and why these are left alone.
_UNUSED = {
    "payment_intent.amount_capturable_updated": "an authorisation: nothing is captured until "
    "payment_intent.succeeded or charge.captured",
    "payment_intent.created": "no money captured yet (payment_intent.succeeded counts it)",
    "payment_intent.processing": "no money captured yet (payment_intent.succeeded counts it)",
    "payment_intent.requires_action": "no money captured yet",
    "payment_intent.partially_funded": "no money captured yet",
    "payment_intent.payment_failed": "no money captured",
    "charge.pending": "no money captured yet (charge.succeeded counts it)",
    "charge.failed": "no money captured",
    "checkout.session.async_payment_failed": "no money captured",
    "checkout.session.expired": "no money captured",
    "invoice.payment_failed": "no money captured",
    "customer.deleted": "deleting a Stripe customer erases nothing in Apex: the lead keeps it",
}
_UNUSED = {event_type: f"Stripe event {event_type}: {why}" for event_type, why in _UNUSED.items()}
