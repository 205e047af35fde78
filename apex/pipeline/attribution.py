"""Attribution: touchpoints and conversions per lead, the first/last/linear models, revenue by
source and campaign. The models are pure; the store functions write the two tables."""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from apex.db import insert, reading
from apex.pipeline.records import Versioned, currency_code
from apex.pipeline.tables import conversions, fit, touchpoints

MODELS = ("first_touch", "last_touch", "linear")
WON_STAGE = "closedwon"  # HubSpot's default pipeline's won stage
DEFAULT_DEAL_CURRENCY = "usd"  # HubSpot deals without deal_currency_code
# Currencies whose minor unit is not a hundredth (ISO 4217, as Stripe lists them).
_EXPONENTS = {
    **dict.fromkeys("bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf".split(), 0),
    **dict.fromkeys("bhd jod kwd omr tnd".split(), 3),
}
# The properties of a source object that make it a touchpoint (HubSpot contacts, Stripe
# customers): created, the UTM parameters, HubSpot's analytics source.
TOUCH_PROPERTIES = ("created", "utm_source", "utm_campaign", "analytics_source")


@dataclass(frozen=True)
class Touch:
    source: str
    campaign: str | None
    at: datetime


_REFUND_SUFFIX = ":refund"  # a payment's refunds and lost disputes: one conversion, "<key>:refund"


@dataclass(frozen=True)
class Sale:
    """A conversion as the models see it: a payment or won deal (`counts`), or a refund
    (negative `amount`). `at` is when it was won: touches after it get no credit."""

    lead_id: str | None
    amount: int
    currency: str
    at: datetime
    counts: bool


@dataclass(frozen=True)
class Credit:
    """Revenue (minor units of `currency`) and conversions credited to a source and campaign.
    `source` None is revenue no touch explains; `campaign` None under by_source is all of them."""

    source: str | None
    campaign: str | None
    currency: str
    revenue: int
    conversions: float


@dataclass(frozen=True)
class Summary:
    """A lead's attribution: net revenue in its currency (that of its first conversion), net
    revenue per currency (amounts in different currencies are never added up), conversions
    (refunds do not count), first and last touch."""

    revenue: int
    currency: str | None
    conversions: int
    first_touch: Touch | None
    last_touch: Touch | None
    revenue_by_currency: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class DealTerms:
    """A won deal: worth `amount` minor units of `currency`, won at `at`, credited to `contact`
    (a HubSpot contact identity value)."""

    amount: int
    currency: str
    contact: str
    at: datetime


@dataclass(frozen=True)
class Report:
    model: str
    start: datetime | None
    end: datetime | None
    by_source: list[Credit]
    by_campaign: list[Credit]


# --- the models (pure) ---------------------------------------------------------------------


def _ordered(touches: Iterable[Touch]) -> list[Touch]:
    return sorted(touches, key=lambda t: (t.at, t.source, t.campaign or ""))


def credited(model: str, touches: Sequence[Touch], at: datetime) -> list[Touch]:
    """The touches `model` credits for a sale at `at`: of those at or before it, the first, the
    last, or all (linear). Raises ValueError for an unknown model."""
    before = [t for t in _ordered(touches) if t.at <= at]
    if model == "linear":
        return before
    if model == "first_touch":
        return before[:1]
    if model == "last_touch":
        return before[-1:]
    raise ValueError(f"unknown attribution model {model!r}; expected one of {', '.join(MODELS)}")


def split(amount: int, parts: int) -> list[int]:
    """`amount` in `parts` integers that differ by at most one and sum to it exactly; the first
    parts take the remainder."""
    quotient, remainder = divmod(abs(amount), parts)
    sign = -1 if amount < 0 else 1
    return [sign * (quotient + (1 if i < remainder else 0)) for i in range(parts)]


def credit(
    model: str, touches: Mapping[str, Sequence[Touch]], sales: Iterable[Sale]
) -> list[Credit]:
    """Credit each sale to its lead's touches under `model`; by source, campaign and currency,
    largest revenue first. Raises ValueError for an unknown model."""
    revenue: dict[tuple[str | None, str | None, str], int] = defaultdict(int)
    counted: dict[tuple[str | None, str | None, str], float] = defaultdict(float)
    for sale in sales:
        chosen = credited(model, touches.get(sale.lead_id or "", ()), sale.at)
        if not chosen:
            revenue[(None, None, sale.currency)] += sale.amount
            counted[(None, None, sale.currency)] += 1.0 if sale.counts else 0.0
            continue
        for touch, share in zip(chosen, split(sale.amount, len(chosen)), strict=True):
            key = (touch.source, touch.campaign, sale.currency)
            revenue[key] += share
            counted[key] += 1.0 / len(chosen) if sale.counts else 0.0
    credits = [
        Credit(source, campaign, currency, amount, round(counted[(source, campaign, currency)], 6))
        for (source, campaign, currency), amount in revenue.items()
    ]
    return sorted(credits, key=lambda c: (-c.revenue, c.source or "", c.campaign or "", c.currency))


def by_source(credits: Iterable[Credit]) -> list[Credit]:
    """The same credits summed over campaigns."""
    revenue: dict[tuple[str | None, str], int] = defaultdict(int)
    counted: dict[tuple[str | None, str], float] = defaultdict(float)
    for c in credits:
        revenue[(c.source, c.currency)] += c.revenue
        counted[(c.source, c.currency)] += c.conversions
    summed = [
        Credit(source, None, currency, amount, round(counted[(source, currency)], 6))
        for (source, currency), amount in revenue.items()
    ]
    return sorted(summed, key=lambda c: (-c.revenue, c.source or "", c.currency))


def summarize(touches: Iterable[Touch], sales: Iterable[Sale]) -> Summary:
    """One lead's Summary from its touches and sales."""
    ordered = _ordered(touches)
    by_time = sorted(sales, key=lambda s: (not s.counts, s.at, s.currency))
    currency = by_time[0].currency if by_time else None
    per_currency: dict[str, int] = {}
    for sale in by_time:
        per_currency[sale.currency] = per_currency.get(sale.currency, 0) + sale.amount
    return Summary(
        revenue=per_currency.get(currency, 0) if currency else 0,
        currency=currency,
        conversions=sum(1 for s in by_time if s.counts),
        first_touch=ordered[0] if ordered else None,
        last_touch=ordered[-1] if ordered else None,
        revenue_by_currency=dict(sorted(per_currency.items())),
    )


def minor_units(amount: str | None, currency: str) -> int | None:
    """A decimal amount in major units ("12000.50") as minor units of `currency`, or None if it
    is not a non-negative number."""
    try:
        value = Decimal((amount or "").replace(",", "").strip())
    except InvalidOperation:
        return None
    if not value.is_finite() or value < 0:
        return None
    scaled = value.scaleb(_EXPONENTS.get(currency.lower(), 2))
    return int(scaled.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def deal_terms(properties: Mapping[str, Versioned]) -> DealTerms | None:
    """The terms of a deal won (stage closedwon, a positive amount, an associated contact, not
    deleted), or None. With several contacts, the one associated first is credited."""
    stage, amount = properties.get("stage"), properties.get("amount")
    deleted = properties.get("deleted")
    if stage is None or stage.value != WON_STAGE or amount is None or (deleted and deleted.value):
        return None
    code = properties.get("currency")
    currency = currency_code(code.value if code else None) or DEFAULT_DEAL_CURRENCY
    minor = minor_units(amount.value, currency)
    contacts = sorted(
        (version.at, name.removeprefix("contact:"))
        for name, version in properties.items()
        if name.startswith("contact:") and version.value
    )
    if not minor or not contacts:
        return None
    return DealTerms(minor, currency, contacts[0][1], stage.at)


def taken_back(properties: Mapping[str, Versioned]) -> int:
    """What a payment lost, from its stored parts (see records.Refund): the larger of its
    running total of refunds ("refunded") and the sum of its refunds ("refund:<id>"), plus its
    lost disputes ("dispute:<id>"). Values that are not amounts count 0."""

    def amount(version: Versioned | None) -> int:
        value = version.value if version else None
        return int(value) if value and value.isdigit() else 0

    refunds = sum(amount(v) for name, v in properties.items() if name.startswith("refund:"))
    disputes = sum(amount(v) for name, v in properties.items() if name.startswith("dispute:"))
    return max(amount(properties.get("refunded")), refunds) + disputes


def touch_from_properties(default_source: str, properties: Mapping[str, Versioned]) -> Touch | None:
    """The acquisition touch of a source object (a HubSpot contact, a Stripe customer), or None.

    Source: utm_source, else HubSpot's analytics source (lower-cased), else `default_source`;
    campaign: utm_campaign. At: when the object was created, else its earliest such property.
    """
    present = {n: properties[n] for n in TOUCH_PROPERTIES if n in properties}
    present = {name: version for name, version in present.items() if version.value}
    if not present:
        return None
    utm_source, analytics = present.get("utm_source"), present.get("analytics_source")
    source = (
        (utm_source.value if utm_source else None)
        or (analytics.value.lower() if analytics and analytics.value else None)
        or default_source
    )
    campaign = present.get("utm_campaign")
    created = present.get("created")
    at = created.at if created else min(version.at for version in present.values())
    return Touch(source, campaign.value if campaign else None, at)


# --- the store -----------------------------------------------------------------------------


def record_touch(conn: Connection, lead_id: str, key: str, touch: Touch, replace: bool) -> None:
    """Store the touchpoint `key` of a lead. A touch described again is ignored, unless `replace`
    (a touch derived from properties that changed)."""
    statement = insert(conn, touchpoints).values(
        key=key,
        lead_id=lead_id,
        source=fit(touch.source, touchpoints.c.source),
        campaign=fit(touch.campaign, touchpoints.c.campaign),
        occurred_at=touch.at,
    )
    if replace:
        excluded = statement.excluded
        conn.execute(
            statement.on_conflict_do_update(
                index_elements=["key"],
                set_={
                    "lead_id": excluded.lead_id,
                    "source": excluded.source,
                    "campaign": excluded.campaign,
                    "occurred_at": excluded.occurred_at,
                },
            )
        )
    else:
        conn.execute(statement.on_conflict_do_nothing(index_elements=["key"]))


@functools.cache
def _payment_upsert(dialect: str) -> sa.Executable:
    """Count a payment (its row's values as parameters): built once, it runs for every
    payment event."""
    statement = insert(dialect, conversions)
    excluded, stored = statement.excluded, conversions.c
    return statement.on_conflict_do_update(
        index_elements=["key"],
        set_={
            "amount": sa.case(
                (excluded.amount > stored.amount, excluded.amount), else_=stored.amount
            ),
            "lead_id": sa.func.coalesce(stored.lead_id, excluded.lead_id),
            **{
                name: sa.case((excluded[name] < stored[name], excluded[name]), else_=stored[name])
                for name in ("occurred_at", "attributed_at")
            },
        },
    )


# A payment's refund conversion is credited where the payment is.
_REFUND_FOLLOWS = (
    conversions.update()
    .where(conversions.c.key == sa.bindparam("refund"))
    .values(
        lead_id=sa.func.coalesce(sa.bindparam("lead"), conversions.c.lead_id),
        attributed_at=sa.bindparam("at"),
    )
)


def record_payment(
    conn: Connection,
    lead_id: str | None,
    key: str,
    amount: int | None,
    currency: str,
    at: datetime,
) -> set[str]:
    """Count the payment `key` once, at the largest amount captured any description states
    (captures only grow) and the earliest time any states, so events applied in any order, or
    twice, leave the same conversion. A payment first described without a known payer gets the
    lead of the first description that names one; so does its refund conversion, which is also
    credited where the payment was. `amount` None states no amount, only the payer and time,
    of a payment counted already (nothing happens if it is not). Returns the leads whose
    conversions changed."""
    stored = conversions.c
    if amount is None:
        counted = conn.execute(
            sa.select(stored.key).where(stored.key == key, stored.kind == "payment")
        ).first()
        if counted is None:
            return set()
    conn.execute(
        _payment_upsert(conn.dialect.name),
        {
            "key": key,
            "lead_id": lead_id,
            "kind": "payment",
            "amount": amount or 0,
            "currency": currency,
            "occurred_at": at,
            "attributed_at": at,
        },
    )
    row = conn.execute(
        sa.select(stored.lead_id, stored.attributed_at).where(stored.key == key)
    ).one()
    conn.execute(
        _REFUND_FOLLOWS,
        {"refund": f"{key}{_REFUND_SUFFIX}", "lead": row.lead_id, "at": row.attributed_at},
    )
    return {row.lead_id} if row.lead_id else set()


def remove_payment(conn: Connection, key: str) -> set[str]:
    """Forget what was counted for the payment `key` (nothing was captured after all). Returns
    the lead it was counted for, if any."""
    taken = take_payment(conn, key)
    return {taken[0]} if taken and taken[0] else set()


def take_payment(conn: Connection, key: str) -> tuple[str | None, datetime] | None:
    """Delete the payment conversion `key` (its money is counted under another key now); the
    lead it was credited to, if any, and when it was paid; None if there was none."""
    row = conn.execute(
        sa.select(conversions.c.lead_id, conversions.c.occurred_at).where(
            conversions.c.key == key, conversions.c.kind == "payment"
        )
    ).one_or_none()
    if row is None:
        return None
    conn.execute(conversions.delete().where(conversions.c.key == key))
    return (str(row.lead_id) if row.lead_id else None), row.occurred_at


@dataclass(frozen=True)
class Refunded:
    """A refund conversion taken off a payment key: credited to `lead_id`, as of `at`, judged
    at `paid_at` (when the payment was made)."""

    lead_id: str | None
    currency: str
    at: datetime
    paid_at: datetime


def take_refund(conn: Connection, key: str) -> Refunded | None:
    """Delete the refund conversion of payment `key` (its parts are counted under another key
    now); what it was, None if there was none."""
    c = conversions.c
    row = conn.execute(
        sa.select(c.lead_id, c.currency, c.occurred_at, c.attributed_at).where(
            c.key == f"{key}{_REFUND_SUFFIX}", c.kind == "refund"
        )
    ).one_or_none()
    if row is None:
        return None
    conn.execute(conversions.delete().where(c.key == f"{key}{_REFUND_SUFFIX}"))
    lead_id = str(row.lead_id) if row.lead_id else None
    return Refunded(lead_id, row.currency, row.occurred_at, row.attributed_at)


def lock_refund(conn: Connection, key: str, currency: str, at: datetime) -> None:
    """Create (empty) and lock the refund conversion of payment `key`, so that concurrent
    workers recording parts of it take turns (FOR UPDATE on PostgreSQL; SQLite serialises
    writers)."""
    conn.execute(
        insert(conn, conversions)
        .values(
            key=f"{key}{_REFUND_SUFFIX}",
            lead_id=None,
            kind="refund",
            amount=0,
            currency=currency,
            occurred_at=at,
            attributed_at=at,
        )
        .on_conflict_do_nothing(index_elements=["key"])
    )
    conn.execute(
        sa.select(conversions.c.key)
        .where(conversions.c.key == f"{key}{_REFUND_SUFFIX}")
        .with_for_update()
    ).one()


def record_refund(
    conn: Connection,
    lead_id: str | None,
    key: str,
    refunded: int,
    currency: str,
    at: datetime,
    paid_at: datetime,
) -> set[str]:
    """Set what was taken back from the payment `key` to `refunded` (a total: see
    taken_back), as of the latest `at` seen; none when 0. Credited to the payment's lead, else
    `lead_id`, and judged at the payment's time, else `paid_at`. Returns the leads whose
    conversions changed."""
    refund_key = f"{key}{_REFUND_SUFFIX}"
    c = conversions.c
    paid = conn.execute(
        sa.select(c.lead_id, c.attributed_at).where(c.key == key, c.kind == "payment")
    ).one_or_none()
    previous = conn.execute(
        sa.select(c.lead_id, c.occurred_at, c.amount).where(c.key == refund_key)
    ).one_or_none()
    owner = (paid.lead_id if paid else None) or (previous.lead_id if previous else None) or lead_id
    touched = {owner} if owner else set()
    touched |= {previous.lead_id} if previous and previous.lead_id else set()
    if refunded <= 0:
        conn.execute(conversions.delete().where(c.key == refund_key))
        return touched
    latest = max(at, previous.occurred_at) if previous and previous.amount else at
    values = {
        "lead_id": owner,
        "amount": -refunded,
        "currency": currency,
        "occurred_at": latest,
        "attributed_at": paid.attributed_at if paid else paid_at,
    }
    statement = insert(conn, conversions).values(key=refund_key, kind="refund", **values)
    conn.execute(statement.on_conflict_do_update(index_elements=["key"], set_=values))
    return touched


def record_deal(
    conn: Connection, key: str, terms: DealTerms | None, lead_id: str | None
) -> set[str]:
    """Make the deal `key` a conversion on `terms`, or none if `terms` is None. It is credited to
    `lead_id`, else to the lead it was credited to (its contact was erased), else to no lead.
    Returns the leads whose conversions this changed (the old and the new)."""
    previous = conn.execute(
        sa.select(conversions.c.lead_id).where(conversions.c.key == key)
    ).scalar_one_or_none()
    touched = {previous} if previous else set()
    if terms is None:
        conn.execute(conversions.delete().where(conversions.c.key == key))
        return touched
    lead_id = lead_id or previous
    statement = insert(conn, conversions).values(
        key=key,
        lead_id=lead_id,
        kind="deal",
        amount=terms.amount,
        currency=terms.currency,
        occurred_at=terms.at,
        attributed_at=terms.at,
    )
    excluded = statement.excluded
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=["key"],
            set_={
                name: excluded[name]
                for name in ("lead_id", "amount", "currency", "occurred_at", "attributed_at")
            },
        )
    )
    return touched | ({lead_id} if lead_id else set())


def summaries(conn: Connection, lead_ids: Iterable[str]) -> dict[str, Summary]:
    """The Summary of each lead."""
    ids = sorted(set(lead_ids))
    touches = _touches(conn, ids)
    sales: dict[str, list[Sale]] = defaultdict(list)
    for sale in _sales(conn, conversions.c.lead_id.in_(ids)):
        sales[sale.lead_id or ""].append(sale)
    return {lead_id: summarize(touches.get(lead_id, []), sales[lead_id]) for lead_id in ids}


def report(engine: Engine, model: str, start: datetime | None, end: datetime | None) -> Report:
    """Revenue and conversions of [start, end) by source and by campaign under `model`.

    Raises ValueError for an unknown model.
    """
    if model not in MODELS:
        raise ValueError(f"unknown attribution model {model!r}")
    bounds: list[sa.ColumnElement[bool]] = [sa.true()]
    if start is not None:
        bounds.append(conversions.c.occurred_at >= start)
    if end is not None:
        bounds.append(conversions.c.occurred_at < end)
    condition = sa.and_(*bounds)
    with reading(engine) as conn:
        sales = _sales(conn, condition)
        touches = _touches(conn, sorted({s.lead_id for s in sales if s.lead_id}))
    credits = credit(model, touches, sales)
    return Report(model, start, end, by_source(credits), credits)


def _touches(conn: Connection, lead_ids: Sequence[str]) -> dict[str, list[Touch]]:
    found: dict[str, list[Touch]] = defaultdict(list)
    if not lead_ids:
        return found
    rows = conn.execute(
        sa.select(
            touchpoints.c.lead_id,
            touchpoints.c.source,
            touchpoints.c.campaign,
            touchpoints.c.occurred_at,
        ).where(touchpoints.c.lead_id.in_(lead_ids))
    )
    for lead_id, source, campaign, at in rows:
        found[lead_id].append(Touch(source, campaign, at))
    return found


def _sales(conn: Connection, condition: sa.ColumnElement[bool]) -> list[Sale]:
    """The conversions meeting `condition`. A payment's refunds and lost disputes take back at
    most what the payment counts (whatever `condition` says of the payment itself): money Apex
    never counted (an uncaptured charge, a payment from before it was installed) is not taken
    back, so neither a lead's nor the report's revenue ever goes below what was captured."""
    c = conversions.c
    rows = conn.execute(
        sa.select(c.key, c.lead_id, c.amount, c.currency, c.attributed_at, c.kind)
        .where(condition)
        .order_by(c.key)
    ).all()
    refunded = [key.removesuffix(_REFUND_SUFFIX) for key, *_, kind in rows if kind == "refund"]
    paid = dict(
        conn.execute(
            sa.select(c.key, c.amount).where(c.key.in_(refunded), c.kind == "payment")
        ).all()
    ) if refunded else {}  # fmt: skip
    sales = []
    for key, lead_id, amount, currency, at, kind in rows:
        if kind == "refund":
            amount = -min(-amount, paid.get(key.removesuffix(_REFUND_SUFFIX), 0))
            if amount == 0:
                continue
        sales.append(Sale(lead_id, amount, currency, at, kind != "refund"))
    return sales
