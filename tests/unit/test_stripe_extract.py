"""extract(): the records Stripe events carry, in both invoice shapes (before and from API
version 2025-03-31.basil), captured money only, refunds and disputes as parts, thin events."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from apex.pipeline.extract import extract
from apex.pipeline.records import (
    Contact,
    Identity,
    Notification,
    Payment,
    Refund,
    Touchpoint,
)
from apex.sources.source import UnusableEventError
from apex.sources.stripe.extract import thin_event

JANE_EMAIL = Identity("email", "jane.doe@acme.io")
JANE_STRIPE = Identity("stripe", "cus_TAbcJaneDoe01")


def unix(value: int) -> datetime:
    return datetime.fromtimestamp(value, UTC)


def stripe(event_type: str, obj: dict[str, Any], created: int = 1761730500) -> dict[str, Any]:
    return {
        "id": "evt_1",
        "object": "event",
        "created": created,
        "type": event_type,
        "data": {"object": obj},
    }


def records_of(event_type: str, obj: dict[str, Any]) -> list[Any]:
    return extract("stripe", event_type, stripe(event_type, obj), {})


def payments_of(event_type: str, obj: dict[str, Any]) -> list[tuple[str, int, tuple[str, ...]]]:
    return [
        (r.key, r.amount, r.aliases) for r in records_of(event_type, obj) if isinstance(r, Payment)
    ]


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
    "captured": True,
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
INVOICE_PAYMENT = {
    "id": "inpay_1SAbc0001",
    "object": "invoice_payment",
    "amount_paid": 2900,
    "amount_requested": 2900,
    "currency": "usd",
    "invoice": "in_1SAbcInvoice0001",
    "is_default": True,
    "payment": {"type": "payment_intent", "payment_intent": "pi_3SAbcPayInt0001"},
    "status": "paid",
}
REFUND = {
    "id": "re_1SAbc0001",
    "object": "refund",
    "amount": 1000,
    "charge": "ch_3SAbcCharge0001",
    "currency": "usd",
    "payment_intent": "pi_3SAbcPayInt0001",
    "status": "succeeded",
}
DISPUTE = {
    "id": "dp_1SAbc0001",
    "object": "dispute",
    "amount": 4900,
    "charge": "ch_3SAbcCharge0001",
    "currency": "usd",
    "payment_intent": "pi_3SAbcPayInt0001",
    "status": "lost",
}
JANE_PAYER = (JANE_STRIPE, JANE_EMAIL)
PAID_AT = unix(1761730500)
JANE_CONTACT = Contact(
    JANE_STRIPE, JANE_PAYER, PAID_AT, (("email", "jane.doe@acme.io"), ("name", "Jane Doe"))
)
PI = "stripe:pi_3SAbcPayInt0001"
IN = "stripe:in_1SAbcInvoice0001"
CH = "stripe:ch_3SAbcCharge0001"


def test_extracts_a_stripe_customer_with_its_utm_metadata() -> None:
    assert records_of("customer.created", CUSTOMER) == [
        Contact(
            JANE_STRIPE,
            JANE_PAYER,
            PAID_AT,
            (("email", "jane.doe@acme.io"), ("name", "Jane Doe"), ("utm_source", "google")),
        )
    ]


def test_extracts_a_checkout_as_payer_payment_and_touchpoint() -> None:
    assert records_of("checkout.session.completed", CHECKOUT) == [
        JANE_CONTACT,
        Payment(PI, JANE_PAYER, 4900, "usd", PAID_AT),
        Touchpoint(
            "stripe:checkout:cs_test_a1B2c3D4e5F6g7H8",
            JANE_PAYER,
            "stripe",
            "spring_launch",
            unix(1761730400),
        ),
    ]


@pytest.mark.parametrize(
    ("event_type", "obj", "aliases"),
    [
        ("checkout.session.completed", CHECKOUT, ()),
        ("checkout.session.async_payment_succeeded", CHECKOUT, ()),
        ("payment_intent.succeeded", INTENT, ()),
        ("charge.succeeded", CHARGE, (CH,)),
        ("charge.captured", CHARGE, (CH,)),
        ("charge.updated", CHARGE, (CH,)),
        ("invoice.paid", {**INVOICE, "amount_paid": 4900, "payment_intent": INTENT["id"]}, (IN,)),
        (
            "invoice.payment_succeeded",
            {**INVOICE, "amount_paid": 4900, "payment_intent": INTENT["id"]},
            (IN,),
        ),
        ("invoice_payment.paid", {**INVOICE_PAYMENT, "amount_paid": 4900}, (IN,)),
    ],
)
def test_every_description_of_one_payment_shares_its_key(
    event_type: str, obj: dict[str, Any], aliases: tuple[str, ...]
) -> None:
    assert payments_of(event_type, obj) == [(PI, 4900, aliases)]


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (INVOICE, [(IN, 2900, ())]),
        ({**INVOICE, "payment_intent": "pi_old"}, [("stripe:pi_old", 2900, (IN,))]),
        ({**INVOICE, "charge": "ch_old"}, [("stripe:ch_old", 2900, (IN,))]),
        (
            {
                **INVOICE,
                "payments": {
                    "data": [
                        {**INVOICE_PAYMENT, "amount_paid": 900},
                        {
                            **INVOICE_PAYMENT,
                            "amount_paid": 2000,
                            "payment": {"type": "charge", "charge": {"id": "ch_2"}},
                        },
                        {**INVOICE_PAYMENT, "status": "canceled"},
                    ]
                },
            },
            [(PI, 900, (IN,)), ("stripe:ch_2", 2000, (IN,))],
        ),
    ],
    ids=["basil, payments not expanded", "before basil", "before basil, charge", "basil"],
)
def test_an_invoice_counts_under_what_paid_it_when_it_names_it(
    obj: dict[str, Any], expected: list[tuple[str, int, tuple[str, ...]]]
) -> None:
    for event_type in ("invoice.paid", "invoice.payment_succeeded"):
        assert payments_of(event_type, obj) == expected


def test_an_invoice_payment_links_its_invoice_to_the_intent_or_charge() -> None:
    by_charge = {**INVOICE_PAYMENT, "payment": {"type": "charge", "charge": "ch_9"}}
    out_of_band = {**INVOICE_PAYMENT, "payment": {"type": "out_of_band_payment"}}
    assert payments_of("invoice_payment.paid", INVOICE_PAYMENT) == [(PI, 2900, (IN,))]
    assert payments_of("invoice_payment.paid", by_charge) == [("stripe:ch_9", 2900, (IN,))]
    assert payments_of("invoice_payment.paid", out_of_band) == [
        ("stripe:inpay_1SAbc0001", 2900, (IN,))
    ]


@pytest.mark.parametrize(
    ("event_type", "obj", "expected"),
    [
        ("charge.succeeded", {**CHARGE, "captured": False, "amount_captured": 0}, []),
        ("charge.captured", {**CHARGE, "amount_captured": 3000}, [(PI, 3000, (CH,))]),
        ("charge.succeeded", {**CHARGE, "amount_captured": None}, []),
        (
            "charge.succeeded",
            {k: v for k, v in CHARGE.items() if k != "amount_captured"},
            [(PI, 4900, (CH,))],
        ),
        ("payment_intent.succeeded", {**INTENT, "amount_received": 0}, []),
        ("payment_intent.succeeded", {**INTENT, "amount_received": 1200}, [(PI, 1200, ())]),
        ("payment_intent.canceled", {**INTENT, "amount_received": 0}, [(PI, 0, ())]),
        (
            "charge.expired",
            {**CHARGE, "captured": False, "amount_captured": 0, "status": "failed"},
            [(PI, 0, ())],
        ),
        ("charge.succeeded", {**CHARGE, "paid": False, "status": "pending"}, []),
        ("checkout.session.completed", {**CHECKOUT, "mode": "subscription"}, []),
        ("checkout.session.completed", {**CHECKOUT, "payment_status": "unpaid"}, []),
        ("invoice.paid", {**INVOICE, "amount_paid": 0}, []),
        ("charge.succeeded", {**CHARGE, "currency": "US dollars"}, []),
        ("charge.succeeded", {**CHARGE, "amount_captured": True}, []),
        ("charge.succeeded", {**CHARGE, "amount_captured": "4900"}, []),
    ],
    ids=[
        "uncaptured authorisation",
        "partial capture",
        "captured amount unknown",
        "API version without amount_captured",
        "nothing received",
        "partly received",
        "canceled intent voids",
        "expired authorisation voids",
        "unpaid charge",
        "subscription checkout",
        "unpaid checkout",
        "free invoice",
        "no currency code",
        "boolean amount",
        "string amount",
    ],
)
def test_counts_only_money_captured(
    event_type: str, obj: dict[str, Any], expected: list[tuple[str, int, tuple[str, ...]]]
) -> None:
    assert payments_of(event_type, obj) == expected


def test_a_refunded_charge_gives_its_payment_and_the_running_total_refunded() -> None:
    refunded = {**CHARGE, "amount_refunded": 1500, "refunded": False}
    assert records_of("charge.refunded", refunded)[1:] == [
        Payment(PI, JANE_PAYER, 4900, "usd", PAID_AT, (CH,)),
        Refund(PI, JANE_PAYER, 1500, "usd", PAID_AT, unix(1761730496)),
    ]


@pytest.mark.parametrize(
    ("event_type", "obj", "amount"),
    [
        ("refund.created", REFUND, 1000),
        ("refund.updated", {**REFUND, "status": "pending"}, 1000),
        ("charge.refund.updated", {**REFUND, "status": "canceled"}, 0),
        ("refund.failed", {**REFUND, "status": "failed"}, 0),
    ],
)
def test_a_refund_is_one_part_of_what_its_payment_loses(
    event_type: str, obj: dict[str, Any], amount: int
) -> None:
    assert records_of(event_type, obj) == [
        Refund(PI, (), amount, "usd", PAID_AT, PAID_AT, "refund:re_1SAbc0001")
    ]


@pytest.mark.parametrize(("status", "amount"), [("lost", 4900), ("won", 0), ("needs_response", 0)])
def test_a_dispute_takes_its_amount_back_once_lost(status: str, amount: int) -> None:
    for event_type in ("charge.dispute.closed", "charge.dispute.funds_withdrawn"):
        assert records_of(event_type, {**DISPUTE, "status": status}) == [
            Refund(PI, (), amount, "usd", PAID_AT, PAID_AT, "dispute:dp_1SAbc0001")
        ]


def test_a_refund_of_a_charge_without_intent_is_keyed_on_the_charge() -> None:
    [refund] = records_of("refund.created", {**REFUND, "payment_intent": None})
    assert refund.key == CH


def test_a_guest_payer_is_identified_by_email_alone() -> None:
    guest = {**INTENT, "customer": None, "receipt_email": "Guest@Example.com"}
    guest_email = Identity("email", "guest@example.com")
    assert records_of("payment_intent.succeeded", guest) == [
        Contact(guest_email, (guest_email,), PAID_AT, (("email", "guest@example.com"),)),
        Payment(PI, (guest_email,), 4900, "usd", PAID_AT),
    ]


def test_an_expanded_customer_is_read_by_its_id() -> None:
    expanded = {**INTENT, "customer": {"id": "cus_TAbcJaneDoe01", "object": "customer"}}
    assert records_of("payment_intent.succeeded", expanded)[0].identities == (JANE_STRIPE,)


@pytest.mark.parametrize(
    ("event_type", "obj", "reason"),
    [
        ("customer.deleted", CUSTOMER, "erases nothing"),
        ("payment_intent.amount_capturable_updated", INTENT, "an authorisation"),
        ("plan.created", {"id": "plan_1"}, "carries nothing Apex uses"),
        (
            "charge.succeeded",
            {
                **CHARGE,
                "customer": None,
                "billing_details": None,
                "receipt_email": None,
                "currency": None,
            },
            "no payer",
        ),
        ("invoice_payment.paid", {**INVOICE_PAYMENT, "amount_paid": None}, "no payer"),
    ],
)
def test_ignores_what_it_has_no_use_for_with_the_reason(
    event_type: str, obj: dict[str, Any], reason: str
) -> None:
    with pytest.raises(UnusableEventError, match=reason):
        records_of(event_type, obj)


@pytest.mark.parametrize(
    "payload",
    [
        {"id": "evt_1", "type": "charge.succeeded", "data": {}},
        {"id": "evt_1", "type": "charge.succeeded"},
        {"id": "evt_1", "type": "charge.succeeded", "data": {"object": None}},
        {"id": "evt_1", "type": "charge.succeeded", "data": {"object": "ch_1"}},
    ],
    ids=["empty data", "no data", "null object", "string object"],
)
def test_ignores_a_stripe_event_without_data_object_at_once(payload: dict[str, Any]) -> None:
    with pytest.raises(UnusableEventError, match=r"data\.object"):
        extract("stripe", "charge.succeeded", payload, {})


def test_ignores_an_event_with_no_time_when_none_was_given() -> None:
    with pytest.raises(UnusableEventError, match="no time"):
        extract("stripe", "charge.succeeded", {**stripe("x", CHARGE), "created": "soon"}, {})


def test_a_thin_event_is_a_notification_to_fetch() -> None:
    thin = {
        "id": "evt_test_65R9",
        "object": "v2.core.event",
        "type": "v1.charge.captured",
        "created": "2026-11-30T10:00:00.000Z",
        "related_object": {"id": "ch_1", "type": "charge", "url": "/v1/charges/ch_1"},
    }
    [notification] = extract("stripe", "v1.charge.captured", thin, {})
    assert isinstance(notification, Notification)
    assert (notification.event_id, notification.fetched) == ("evt_test_65R9", None)
    assert "STRIPE_API_KEY" in notification.reason


def test_a_fetched_thin_v1_event_reads_as_its_snapshot_event() -> None:
    event = thin_event("v1.charge.captured", CHARGE, "2025-10-29T09:35:00Z")
    assert event["type"] == "charge.captured"
    assert extract("stripe", event["type"], event, {}) == records_of("charge.captured", CHARGE)
