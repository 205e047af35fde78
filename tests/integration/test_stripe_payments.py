"""Stripe payments known by several keys, at the database: what an alias counted (refunds and
disputes too) moves with it, an invoice paid by several payments counts its total once, and
workers racing on a link row never count under a key being folded away; SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from apex.db import make_engine
from apex.pipeline import attribution
from apex.pipeline import run as pipeline
from apex.pipeline.tables import conversions
from tests.platforms import stripe

pytestmark = pytest.mark.postgres

RECEIVED = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
T0 = 1764252000
CUSTOMER = "cus_1"


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def process(engine: Engine, event: dict[str, Any]) -> None:
    pipeline.run(engine, "stripe", event["type"], event, {}, RECEIVED)


def counted(engine: Engine) -> list[tuple[str, str, int, str | None]]:
    c = conversions.c
    with engine.connect() as conn:
        rows = conn.execute(sa.select(c.key, c.kind, c.amount, c.lead_id).order_by(c.key))
        return [(row.key, row.kind, row.amount, row.lead_id) for row in rows]


def charge(refunded: int = 0) -> dict[str, Any]:
    return {
        "id": "ch_1",
        "object": "charge",
        "payment_intent": "pi_1",
        "customer": CUSTOMER,
        "currency": "usd",
        "amount": 5000,
        "amount_captured": 5000,
        "amount_refunded": refunded,
        "captured": True,
        "status": "succeeded",
        "created": T0,
    }


def refund(name: str, amount: int) -> dict[str, Any]:
    """A refund that names its charge only (no payment intent), as older refunds do."""
    return {
        "id": f"re_{name}",
        "object": "refund",
        "charge": "ch_1",
        "payment_intent": None,
        "amount": amount,
        "currency": "usd",
        "status": "succeeded",
    }


def lost_dispute(amount: int) -> dict[str, Any]:
    return {
        "id": "dp_1",
        "object": "dispute",
        "charge": "ch_1",
        "payment_intent": None,
        "amount": amount,
        "currency": "usd",
        "status": "lost",
    }


CHARGE_STORY = {
    "refund.created": (refund("1", 2000), T0 + 100),
    "charge.dispute.closed": (lost_dispute(1000), T0 + 200),
    "charge.succeeded": (charge(), T0 + 1),
    "charge.refunded": (charge(refunded=2000), T0 + 101),
}


@pytest.mark.parametrize(
    "order", list(itertools.permutations(CHARGE_STORY)), ids=lambda o: ",".join(o)
)
def test_refunds_and_disputes_named_by_the_charge_move_with_it_to_its_intent(
    engine: Engine, order: tuple[str, ...]
) -> None:
    """$50 less a $20 refund and a $10 lost dispute nets $20, whether the refund and dispute
    (naming the charge alone) arrive before or after the charge names its intent."""
    for event_type in order:
        obj, created = CHARGE_STORY[event_type]
        process(engine, stripe(event_type, obj, created=created))

    rows = counted(engine)
    assert [(key, kind, amount) for key, kind, amount, _ in rows] == [
        ("stripe:pi_1", "payment", 5000),
        ("stripe:pi_1:refund", "refund", -3000),
    ]
    [(*_, paid_by), (*_, refunded_to)] = rows
    assert paid_by is not None and refunded_to == paid_by


def invoice_story() -> dict[str, tuple[dict[str, Any], int]]:
    def invoice_payment(name: str, amount: int) -> dict[str, Any]:
        return {
            "id": f"inpay_{name}",
            "object": "invoice_payment",
            "invoice": "in_1",
            "currency": "usd",
            "amount_paid": amount,
            "status": "paid",
            "payment": {"type": "payment_intent", "payment_intent": f"pi_{name}"},
        }

    invoice = {
        "id": "in_1",
        "object": "invoice",
        "customer": CUSTOMER,
        "currency": "usd",
        "amount_paid": 10000,
        "status": "paid",
    }
    return {
        "in_1": (invoice, T0 + 10),
        "inpay_A": (invoice_payment("A", 6000), T0 + 5),
        "inpay_B": (invoice_payment("B", 4000), T0 + 8),
    }


@pytest.mark.parametrize(
    "order", list(itertools.permutations(invoice_story())), ids=lambda o: ",".join(o)
)
def test_a_basil_invoice_paid_by_two_payments_counts_its_total_once_in_any_order(
    engine: Engine, order: tuple[str, ...]
) -> None:
    story = invoice_story()
    for name in order:
        obj, created = story[name]
        event_type = "invoice.paid" if name == "in_1" else "invoice_payment.paid"
        process(engine, stripe(event_type, obj, created=created))
        process(engine, stripe(event_type, obj, created=created))  # described twice

    assert [(key, amount) for key, _, amount, _ in counted(engine)] == [
        ("stripe:pi_A", 6000),
        ("stripe:pi_B", 4000),
    ]


def waiting_for_a_lock(engine: Engine, other: threading.Thread) -> None:
    """Return once `other` finished or, on PostgreSQL, some session waits for a lock (bounded).
    SQLite writers begin IMMEDIATE: `other` waits for the caller's commit anyway."""
    if engine.dialect.name != "postgresql":
        return
    with engine.connect() as conn:
        for _ in range(2000):
            waiting = conn.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
            conn.rollback()  # pg_stat_activity is a snapshot taken once per transaction
            if waiting or not other.is_alive():
                return
            other.join(0.01)
    raise AssertionError("the other worker neither finished nor waited for a lock")


def paused_before(
    monkeypatch: pytest.MonkeyPatch, name: str, engine: Engine, other: dict[str, Any]
) -> Callable[[], None]:
    """Make the first call of attribution.`name` (a write under the key a worker resolved)
    first start a second worker processing `other` and wait until it finished or waits for a
    lock, then write. Returns a function that joins the second worker and re-raises its
    failure."""
    real = getattr(attribution, name)
    failures: list[BaseException] = []
    threads: list[threading.Thread] = []

    def worker_b() -> None:
        try:
            process(engine, other)
        except BaseException as exc:  # reported in the test's thread
            failures.append(exc)

    def pausing(*args: Any, **kwargs: Any) -> Any:
        if not threads:
            threads.append(threading.Thread(target=worker_b))
            threads[0].start()
            waiting_for_a_lock(engine, threads[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(attribution, name, pausing)

    def joined() -> None:
        assert threads, f"attribution.{name} was never called"
        threads[0].join(60)
        assert not threads[0].is_alive()
        if failures:
            raise failures[0]

    return joined


def test_an_invoice_counted_while_another_worker_links_it_to_its_intent_counts_once(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Worker A counts invoice.payment_succeeded under the invoice's key it resolved; worker B
    links the invoice to its intent meanwhile. One of them must wait for the other on the
    invoice's link row, or the money counts under both keys. (No payer: the workers would
    also queue on the payer's lead, hiding the race.)"""
    invoice = {
        "id": "in_1",
        "object": "invoice",
        "currency": "usd",
        "amount_paid": 4900,
        "status": "paid",
    }
    link = {
        "id": "inpay_1",
        "object": "invoice_payment",
        "invoice": "in_1",
        "currency": "usd",
        "amount_paid": 4900,
        "status": "paid",
        "payment": {"type": "payment_intent", "payment_intent": "pi_1"},
    }
    process(engine, stripe("invoice.paid", invoice, created=T0))
    joined = paused_before(
        monkeypatch, "record_payment", engine, stripe("invoice_payment.paid", link, T0 + 2)
    )

    process(engine, stripe("invoice.payment_succeeded", invoice, created=T0 + 1))
    joined()

    assert [(key, amount) for key, _, amount, _ in counted(engine)] == [("stripe:pi_1", 4900)]


def test_a_refund_recorded_while_another_worker_folds_its_charge_counts_under_the_intent(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Worker A records a second refund of the charge under the charge's key it resolved;
    worker B folds the charge into its intent meanwhile. A must not write under the key B
    folded away (a refund conversion left under the charge, counted twice or lost)."""
    process(engine, stripe("refund.created", refund("1", 2000), created=T0 + 100))
    joined = paused_before(
        monkeypatch, "lock_refund", engine, stripe("charge.succeeded", charge(), created=T0 + 1)
    )

    process(engine, stripe("refund.created", refund("2", 1000), created=T0 + 110))
    joined()

    assert [(key, amount) for key, _, amount, _ in counted(engine)] == [
        ("stripe:pi_1", 5000),
        ("stripe:pi_1:refund", -3000),
    ]


def revenue(engine: Engine) -> tuple[int, int]:
    """(the report's revenue over every source, the leads' revenue), both in usd."""
    report = attribution.report(engine, "linear", None, None)
    reported = sum(credit.revenue for credit in report.by_source if credit.currency == "usd")
    with engine.connect() as conn:
        leads = {row.lead_id for row in conn.execute(sa.select(conversions.c.lead_id)) if row[0]}
        summaries = attribution.summaries(conn, leads)
    per_lead = sum(summary.revenue_by_currency.get("usd", 0) for summary in summaries.values())
    return reported, per_lead


@pytest.mark.parametrize("order", ["refund first", "charge first"])
def test_a_refund_takes_back_at_most_what_its_payment_counts(engine: Engine, order: str) -> None:
    uncaptured = {**charge(), "captured": False, "amount_captured": 0, "status": "succeeded"}
    events = [
        stripe("charge.refunded", {**uncaptured, "amount_refunded": 5000}, id="evt_r"),
        stripe("charge.succeeded", uncaptured, id="evt_c"),
    ]
    for event in events if order == "refund first" else events[::-1]:
        process(engine, event)
    # Money never captured is neither counted nor taken back: nothing, not -5000.
    assert revenue(engine) == (0, 0)

    process(engine, stripe("charge.captured", {**charge(), "amount_captured": 3000}, id="evt_k"))
    process(engine, stripe("refund.created", refund("big", 4000), id="evt_big"))
    assert revenue(engine) == (0, 0)  # 3000 captured, at most 3000 taken back


def test_a_refund_of_a_payment_apex_never_saw_is_not_negative_revenue(engine: Engine) -> None:
    orphan = {**refund("orphan", 777), "charge": "ch_never"}
    process(engine, stripe("refund.created", orphan, id="evt_orphan"))
    assert revenue(engine) == (0, 0)
