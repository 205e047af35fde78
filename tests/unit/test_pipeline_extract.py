"""extract(): the records Stripe events carry (payloads as in the reference); GitHub's are in
test_github_extract.py, HubSpot's in test_hubspot_extract.py."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from apex.pipeline.extract import extract
from apex.pipeline.records import (
    Contact,
    Identity,
    Payment,
    Refund,
    Touchpoint,
    normalise_email,
)

RECEIVED = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
PORTAL = 48120977
JANE_HS = Identity("hubspot", "portal-48120977:90210554101")
JANE_EMAIL = Identity("email", "jane.doe@acme.io")
JANE_STRIPE = Identity("stripe", "cus_TAbcJaneDoe01")


def ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, UTC)


def unix(value: int) -> datetime:
    return datetime.fromtimestamp(value, UTC)


# HubSpot's are in test_hubspot_extract.py.


# --- Stripe ---------------------------------------------------------------------------------


def stripe(event_type: str, obj: dict[str, Any], created: int = 1761730500) -> dict[str, Any]:
    return {
        "id": "evt_1",
        "object": "event",
        "created": created,
        "type": event_type,
        "data": {"object": obj},
    }


CUSTOMER = {
    "id": "cus_TAbcJaneDoe01",
    "object": "customer",
    "email": "jane.doe@acme.io",
    "metadata": {"utm_source": "google"},
    "name": "Jane Doe",
}
CHECKOUT = {
    "id": "cs_test_a1B2c3D4e5F6g7H8",
    "object": "checkout.session",
    "amount_total": 4900,
    "created": 1761730400,
    "currency": "usd",
    "customer": "cus_TAbcJaneDoe01",
    "customer_details": {"email": "jane.doe@acme.io", "name": "Jane Doe"},
    "customer_email": None,
    "metadata": {"campaign": "spring_launch"},
    "mode": "payment",
    "payment_intent": "pi_3SAbcPayInt0001",
    "payment_status": "paid",
}
INTENT = {
    "id": "pi_3SAbcPayInt0001",
    "object": "payment_intent",
    "amount": 4900,
    "amount_received": 4900,
    "currency": "usd",
    "customer": "cus_TAbcJaneDoe01",
    "receipt_email": None,
    "status": "succeeded",
}
CHARGE = {
    "id": "ch_3SAbcCharge0001",
    "object": "charge",
    "amount": 4900,
    "amount_captured": 4900,
    "amount_refunded": 0,
    "billing_details": {"email": "jane.doe@acme.io", "name": "Jane Doe"},
    "created": 1761730496,
    "currency": "usd",
    "customer": "cus_TAbcJaneDoe01",
    "paid": True,
    "payment_intent": "pi_3SAbcPayInt0001",
    "receipt_email": "jane.doe@acme.io",
    "status": "succeeded",
}
INVOICE = {
    "id": "in_1SAbcInvoice0001",
    "object": "invoice",
    "amount_paid": 2900,
    "currency": "usd",
    "customer": "cus_TAbcJaneDoe01",
    "customer_email": "jane.doe@acme.io",
    "customer_name": "Jane Doe",
    "status": "paid",
}
JANE_PAYER = (JANE_STRIPE, JANE_EMAIL)
PAID_AT = unix(1761730500)
JANE_CONTACT = Contact(
    JANE_STRIPE, JANE_PAYER, PAID_AT, (("email", "jane.doe@acme.io"), ("name", "Jane Doe"))
)
ONE_PAYMENT = Payment("stripe:pi_3SAbcPayInt0001", JANE_PAYER, 4900, "usd", PAID_AT)


def test_extracts_a_stripe_customer_with_its_utm_metadata() -> None:
    assert extract("stripe", "customer.created", stripe("customer.created", CUSTOMER), {}) == [
        Contact(
            JANE_STRIPE,
            JANE_PAYER,
            PAID_AT,
            (("email", "jane.doe@acme.io"), ("name", "Jane Doe"), ("utm_source", "google")),
        )
    ]


def test_extracts_a_checkout_as_payer_payment_and_touchpoint() -> None:
    records = extract("stripe", "checkout.session.completed", stripe("x", CHECKOUT), {})
    assert records == [
        JANE_CONTACT,
        ONE_PAYMENT,
        Touchpoint(
            "stripe:checkout:cs_test_a1B2c3D4e5F6g7H8",
            JANE_PAYER,
            "stripe",
            "spring_launch",
            unix(1761730400),
        ),
    ]


@pytest.mark.parametrize(
    ("event_type", "obj"),
    [
        ("checkout.session.completed", CHECKOUT),
        ("payment_intent.succeeded", INTENT),
        ("charge.succeeded", CHARGE),
    ],
)
def test_three_descriptions_of_one_payment_share_its_key(
    event_type: str, obj: dict[str, Any]
) -> None:
    payments = [
        r
        for r in extract("stripe", event_type, stripe(event_type, obj), {})
        if isinstance(r, Payment)
    ]
    assert [(p.key, p.amount, p.currency) for p in payments] == [
        ("stripe:pi_3SAbcPayInt0001", 4900, "usd")
    ]


@pytest.mark.parametrize(
    ("obj", "key"),
    [
        (INVOICE, "stripe:in_1SAbcInvoice0001"),
        ({**INVOICE, "payment_intent": "pi_old"}, "stripe:pi_old"),
        (
            {**INVOICE, "payments": {"data": [{"payment": {"payment_intent": "pi_new"}}]}},
            "stripe:pi_new",
        ),
    ],
    ids=["invoice without intent", "older API", "expanded payments"],
)
def test_an_invoice_is_keyed_on_its_payment_intent_when_it_names_one(
    obj: dict[str, Any], key: str
) -> None:
    records = extract("stripe", "invoice.paid", stripe("invoice.paid", obj), {})
    assert [(r.key, r.amount) for r in records if isinstance(r, Payment)] == [(key, 2900)]


def test_a_refunded_charge_gives_its_payment_and_the_total_refunded() -> None:
    refunded = {**CHARGE, "amount_refunded": 1500, "refunded": False}
    records = extract("stripe", "charge.refunded", stripe("charge.refunded", refunded), {})
    assert records[1:] == [
        ONE_PAYMENT,
        Refund("stripe:pi_3SAbcPayInt0001", JANE_PAYER, 1500, "usd", PAID_AT, unix(1761730496)),
    ]


@pytest.mark.parametrize(
    ("event_type", "obj"),
    [
        ("checkout.session.completed", {**CHECKOUT, "mode": "subscription"}),
        ("checkout.session.completed", {**CHECKOUT, "payment_status": "unpaid"}),
        ("charge.succeeded", {**CHARGE, "paid": False, "status": "pending"}),
        ("invoice.paid", {**INVOICE, "amount_paid": 0}),
        ("charge.succeeded", {**CHARGE, "currency": "US dollars"}),
    ],
    ids=[
        "subscription checkout",
        "unpaid checkout",
        "unpaid charge",
        "free invoice",
        "no currency code",
    ],
)
def test_counts_no_payment_where_none_was_made(event_type: str, obj: dict[str, Any]) -> None:
    records = extract("stripe", event_type, stripe(event_type, obj), {})
    assert not [r for r in records if isinstance(r, Payment)]


def test_a_guest_payer_is_identified_by_email_alone() -> None:
    guest = {**INTENT, "customer": None, "receipt_email": "Guest@Example.com"}
    records = extract("stripe", "payment_intent.succeeded", stripe("x", guest), {})
    guest_email = Identity("email", "guest@example.com")
    assert records == [
        Contact(guest_email, (guest_email,), PAID_AT, (("email", "guest@example.com"),)),
        Payment("stripe:pi_3SAbcPayInt0001", (guest_email,), 4900, "usd", PAID_AT),
    ]


def test_an_expanded_customer_is_read_by_its_id() -> None:
    expanded = {**INTENT, "customer": {"id": "cus_TAbcJaneDoe01", "object": "customer"}}
    records = extract("stripe", "payment_intent.succeeded", stripe("x", expanded), {})
    assert records[0].identities == (JANE_STRIPE,)  # type: ignore[union-attr]


def test_ignores_stripe_events_it_has_no_use_for() -> None:
    assert extract("stripe", "customer.deleted", stripe("customer.deleted", CUSTOMER), {}) == []


def test_rejects_a_stripe_event_without_data_object() -> None:
    with pytest.raises(ValueError, match=r"data\.object"):
        extract("stripe", "charge.succeeded", {"id": "evt_1", "data": {}}, {})


def test_rejects_an_unknown_source() -> None:
    with pytest.raises(ValueError, match="unknown inbound source"):
        extract("gitlab", "push", {}, {})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (" Jane.Doe@ACME.io ", "jane.doe@acme.io"),
        ("not-an-email", None),
        ("a@localhost", None),
        ("", None),
        (None, None),
        (42, None),
    ],
)
def test_normalises_emails(value: object, expected: str | None) -> None:
    assert normalise_email(value) == expected
