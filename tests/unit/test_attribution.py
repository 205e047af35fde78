"""The attribution models and the pure derivations: touches, deal terms, money, lead summaries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from apex.pipeline.attribution import (
    Credit,
    DealTerms,
    Sale,
    Summary,
    Touch,
    by_source,
    credit,
    credited,
    deal_terms,
    minor_units,
    split,
    summarize,
    taken_back,
    touch_from_properties,
)
from apex.pipeline.records import Versioned

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def day(n: int) -> datetime:
    return T0 + timedelta(days=n)


GOOGLE = Touch("google", "spring", day(0))
NEWSLETTER = Touch("newsletter", None, day(2))
GITHUB = Touch("github", "acme/widget", day(9))  # after the sale on day 5
JOURNEY = [GITHUB, NEWSLETTER, GOOGLE]  # any order


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("first_touch", [GOOGLE]),
        ("last_touch", [NEWSLETTER]),
        ("linear", [GOOGLE, NEWSLETTER]),
    ],
)
def test_models_credit_the_touches_before_the_sale(model: str, expected: list[Touch]) -> None:
    assert credited(model, JOURNEY, day(5)) == expected


def test_a_sale_before_any_touch_credits_none() -> None:
    assert credited("linear", JOURNEY, day(-1)) == []


def test_rejects_an_unknown_model() -> None:
    with pytest.raises(ValueError, match="unknown attribution model"):
        credited("time_decay", JOURNEY, day(5))


@pytest.mark.parametrize(
    ("amount", "parts", "expected"),
    [
        (4900, 2, [2450, 2450]),
        (100, 3, [34, 33, 33]),
        (-100, 3, [-34, -33, -33]),
        (1, 3, [1, 0, 0]),
        (0, 2, [0, 0]),
    ],
)
def test_split_is_exact_in_minor_units(amount: int, parts: int, expected: list[int]) -> None:
    assert split(amount, parts) == expected
    assert sum(split(amount, parts)) == amount


SALES = [
    Sale("lead_a", 4900, "usd", day(5), counts=True),
    Sale("lead_a", -1500, "usd", day(5), counts=False),  # refund of that payment
    Sale("lead_b", 1000, "usd", day(3), counts=True),  # lead_b has no touches
]


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        (
            "first_touch",
            [
                Credit("google", "spring", "usd", 3400, 1.0),
                Credit(None, None, "usd", 1000, 1.0),
            ],
        ),
        (
            "last_touch",
            [
                Credit("newsletter", None, "usd", 3400, 1.0),
                Credit(None, None, "usd", 1000, 1.0),
            ],
        ),
        (
            "linear",
            [
                Credit("google", "spring", "usd", 1700, 0.5),
                Credit("newsletter", None, "usd", 1700, 0.5),
                Credit(None, None, "usd", 1000, 1.0),
            ],
        ),
    ],
)
def test_credits_revenue_net_of_refunds_by_source_and_campaign(
    model: str, expected: list[Credit]
) -> None:
    assert credit(model, {"lead_a": JOURNEY}, SALES) == expected


def test_by_source_sums_campaigns_and_keeps_currencies_apart() -> None:
    credits = [
        Credit("google", "spring", "usd", 100, 1.0),
        Credit("google", "autumn", "usd", 50, 0.5),
        Credit("google", "spring", "eur", 70, 1.0),
    ]
    assert by_source(credits) == [
        Credit("google", None, "usd", 150, 1.5),
        Credit("google", None, "eur", 70, 1.0),
    ]


@pytest.mark.parametrize(
    ("touches", "sales", "expected"),
    [
        ([], [], Summary(0, None, 0, None, None)),
        (
            JOURNEY,
            SALES[:2],
            Summary(3400, "usd", 1, GOOGLE, GITHUB, {"usd": 3400}),
        ),
        (
            [],
            [
                Sale("l", 100, "eur", day(1), True),
                Sale("l", 500, "usd", day(2), True),
                Sale("l", -50, "eur", day(3), False),
            ],
            Summary(50, "eur", 2, None, None, {"eur": 50, "usd": 500}),
        ),
    ],
    ids=["nothing yet", "revenue net of a refund", "currency of the first conversion"],
)
def test_summarizes_a_lead(touches: list[Touch], sales: list[Sale], expected: Summary) -> None:
    assert summarize(touches, sales) == expected


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        ("12000", "usd", 1_200_000),
        ("49.99", "eur", 4999),
        ("1,250.5", "usd", 125050),
        ("0.005", "usd", 1),
        ("5000", "jpy", 5000),
        ("1.234", "kwd", 1234),
        ("-5", "usd", None),
        ("twelve", "usd", None),
        ("", "usd", None),
        (None, "usd", None),
        ("NaN", "usd", None),
    ],
)
def test_converts_major_units_to_minor(amount: str | None, currency: str, expected: int) -> None:
    assert minor_units(amount, currency) == expected


WON = {
    "stage": Versioned("closedwon", day(4)),
    "amount": Versioned("120.50", day(3)),
    "contact:portal-1:7": Versioned("1", day(2)),
}


@pytest.mark.parametrize(
    ("properties", "expected"),
    [
        (WON, DealTerms(12050, "usd", "portal-1:7", day(4))),
        (
            {**WON, "currency": Versioned("EUR", day(1))},
            DealTerms(12050, "eur", "portal-1:7", day(4)),
        ),
        (
            {**WON, "currency": Versioned("US Dollar", day(1))},
            DealTerms(12050, "usd", "portal-1:7", day(4)),
        ),
        (
            {**WON, "contact:portal-1:3": Versioned("1", day(1))},
            DealTerms(12050, "usd", "portal-1:3", day(4)),
        ),
        ({**WON, "stage": Versioned("appointmentscheduled", day(6))}, None),
        ({**WON, "contact:portal-1:7": Versioned(None, day(6))}, None),
        ({**WON, "deleted": Versioned("1", day(7))}, None),
        ({**WON, "amount": Versioned(None, day(6))}, None),
        ({k: v for k, v in WON.items() if k != "amount"}, None),
    ],
    ids=[
        "won",
        "in the deal's currency",
        "not a currency code: the default",
        "several contacts: the first associated",
        "moved out of closed-won",
        "contact removed",
        "deleted",
        "amount cleared",
        "no amount yet",
    ],
)
def test_deal_terms(properties: dict[str, Versioned], expected: DealTerms | None) -> None:
    assert deal_terms(properties) == expected


@pytest.mark.parametrize(
    ("properties", "expected"),
    [
        ({}, None),
        ({"email": Versioned("a@b.co", day(1))}, None),
        ({"created": Versioned("hubspot", day(1))}, Touch("hubspot", None, day(1))),
        (
            {
                "created": Versioned("hubspot", day(1)),
                "analytics_source": Versioned("PAID_SEARCH", day(2)),
            },
            Touch("paid_search", None, day(1)),
        ),
        (
            {
                "analytics_source": Versioned("PAID_SEARCH", day(3)),
                "utm_source": Versioned("google", day(2)),
                "utm_campaign": Versioned("spring", day(4)),
            },
            Touch("google", "spring", day(2)),
        ),
        ({"utm_source": Versioned(None, day(2))}, None),
    ],
    ids=[
        "no properties",
        "no touch properties",
        "created: the source itself",
        "analytics source",
        "UTM wins, at the earliest",
        "cleared",
    ],
)
def test_touch_from_properties(properties: dict[str, Versioned], expected: Touch | None) -> None:
    assert touch_from_properties("hubspot", properties) == expected


def parts(**values: str | None) -> dict[str, Versioned]:
    return {name.replace("__", ":"): Versioned(value, day(1)) for name, value in values.items()}


@pytest.mark.parametrize(
    ("stated", "expected"),
    [
        ({}, 0),
        (parts(payment="stripe:pi_1"), 0),
        (parts(refunded="1500"), 1500),
        (parts(refund__re_1="1000", refund__re_2="500"), 1500),
        (parts(refunded="1500", refund__re_1="1000"), 1500),
        (parts(refunded="1000", refund__re_1="1000", refund__re_2="500"), 1500),
        (parts(refunded="1000", refund__re_1="0"), 1000),
        (parts(refunded="500", dispute__dp_1="4900"), 5400),
        (parts(dispute__dp_1="0", dispute__dp_2=None), 0),
        (parts(refunded="lots", refund__re_1="-5"), 0),
    ],
    ids=[
        "nothing",
        "only the link",
        "running total",
        "refunds summed",
        "refund included in the total",
        "total not yet updated",
        "a failed refund",
        "a lost dispute on top",
        "disputes not lost",
        "not amounts",
    ],
)
def test_a_payment_loses_its_refunds_once_and_its_lost_disputes(
    stated: dict[str, Versioned], expected: int
) -> None:
    assert taken_back(stated) == expected
