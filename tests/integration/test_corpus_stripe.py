"""Stripe's own fixtures as traffic: one event per event type the `stripe` package lists, its
data.object the fixture of that type's object from Stripe's OpenAPI `fixtures3.json`, and one
thin notification per thin event type the package lists; each signed as Stripe signs, posted
through the app, processed by a real RQ worker, on SQLite and PostgreSQL. Every one is answered
2xx and ends `processed` or `ignored` with a reason, never `failed` or still queued.

The fixtures are `../shared/corpus/stripe-fixtures3.json` beside the checkout (CI copies shared/
there); a missing file fails the module."""

from __future__ import annotations

import json
import typing
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import stripe as stripe_sdk
from redis import Redis
from rq import Queue, SimpleWorker
from stripe.events import _event_classes as thin_event_classes

from apex.inbound import store
from apex.secretbox import generate_key
from app import create_app
from config import Settings
from tests.conftest import API_KEY, database_kinds, fresh_database
from tests.platforms import STRIPE_SECRET, body, stripe_headers
from workers import context
from workers.jobs import INBOUND

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT.parent / "shared" / "corpus" / "stripe-fixtures3.json"

# Event types whose object is not named by the type's leading segments.
OBJECT_OF = {
    "application_fee.refund": "fee_refund",
    "billing.alert": "billing.alert_triggered",
}


def load_fixtures() -> dict[str, Any]:
    if not FIXTURES.is_file():
        pytest.fail(
            f"Stripe's fixtures are missing: expected {FIXTURES} (a copy of shared/corpus beside "
            "the checkout; see shared/corpus/README.md)",
            pytrace=False,
        )
    resources: dict[str, Any] = json.loads(FIXTURES.read_text())["resources"]
    return resources


def event_types() -> list[str]:
    """Every event type `stripe.Event.type` lists (its Literal)."""
    hint = typing.get_type_hints(stripe_sdk.Event)["type"]
    return list(typing.get_args(hint))


def thin_event_types() -> list[str]:
    """Every thin event type the package has a notification class for."""
    return sorted(thin_event_classes._V2_EVENT_NOTIFICATION_CLASS_LOOKUP)


def object_type(event_type: str, resources: dict[str, Any]) -> str | None:
    """The fixture an event type's data.object is: the type without its action
    (`checkout.session`), without its leading segments (`charge.dispute` → `dispute`), joined
    (`source.transaction` → `source_transaction`) or dotted (`issuing_card` → `issuing.card`);
    OBJECT_OF where Stripe names it otherwise. None when fixtures3.json has no such object."""
    prefix = event_type.rsplit(".", 1)[0]
    if prefix in OBJECT_OF:
        return OBJECT_OF[prefix]
    parts = prefix.split(".")
    candidates = [prefix, *(".".join(parts[i:]) for i in range(1, len(parts))), "_".join(parts)]
    head, underscore, tail = parts[0].partition("_")
    if underscore:
        candidates.append(".".join([head, tail, *parts[1:]]))
    return next((c for c in candidates if c in resources), None)


@dataclass(frozen=True)
class Case:
    name: str
    event: dict[str, Any]
    fixture: str | None  # the fixture used as data.object (None: thin, or none exists)


def snapshot_cases(resources: dict[str, Any]) -> list[Case]:
    cases = []
    for number, event_type in enumerate(event_types()):
        fixture = object_type(event_type, resources)
        # A type with no fixture gets the least object of that type: still an event to answer.
        obj = resources[fixture] if fixture else {"id": f"obj_{number}", "object": event_type}
        event = {
            "id": f"evt_corpus_{number:04d}",
            "object": "event",
            "api_version": "2025-03-31.basil",
            "type": event_type,
            "created": 1764500000 + number,
            "livemode": False,
            "data": {"object": obj},
        }
        cases.append(Case(event_type, event, fixture))
    return cases


def thin_cases() -> list[Case]:
    cases = []
    for number, event_type in enumerate(thin_event_types()):
        event = {
            "id": f"evt_thin_{number:04d}",
            "object": "v2.core.event",
            "type": event_type,
            "created": "2026-11-30T10:00:00.000Z",
            "livemode": False,
            "related_object": {
                "id": f"obj_{number}",
                "type": event_type.split(".")[1],
                "url": f"/v1/objects/obj_{number}",
            },
        }
        cases.append(Case(f"thin {event_type}", event, None))
    return cases


RESOURCES = load_fixtures()  # a missing file fails collection, with its path: never a skip
CASES = snapshot_cases(RESOURCES) + thin_cases()


def test_the_fixtures_and_the_event_types_are_there() -> None:
    resources = load_fixtures()  # fails, with the path, when the file is missing
    types = event_types()
    assert len(types) > 200 and "invoice_payment.paid" in types
    assert len(thin_event_types()) > 100 and "v1.charge.captured" in thin_event_types()
    covered = [t for t in types if object_type(t, resources)]
    assert len(covered) >= len(types) - 12  # only apps.install.* and three_d_secure.* lack one


# --- one app, one database per database kind, every case posted and processed ---------------


@dataclass
class Outcome:
    responses: dict[str, int]
    rows: dict[str, store.StoredEvent]


@pytest.fixture(scope="module", params=database_kinds())
def outcome(
    request: pytest.FixtureRequest,
    redis_server_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Outcome]:
    with fresh_database(request.param, tmp_path_factory.mktemp("stripe-corpus")) as url:
        yield from _outcome(url, redis_server_url, request.param)


def _outcome(url: str, redis_server_url: str, kind: str) -> Iterator[Outcome]:
    redis = Redis.from_url(redis_server_url)
    redis.flushdb()
    settings = Settings(
        redis_url=redis_server_url,
        secret_key=generate_key(),
        database_url=url,
        api_keys=(API_KEY,),
        allow_http=True,
        allow_private_destinations=True,
        stripe_webhook_secrets=(STRIPE_SECRET,),
    )
    app = create_app(settings)
    previous = context._current
    ctx = context.configure(replace(settings, inbound_retry_schedule=(3600,)))
    try:
        client = app.test_client()
        responses: dict[str, int] = {}
        ids: dict[str, str] = {}
        for case in CASES:
            data = body(case.event)
            response = client.post("/api/webhooks/stripe", data=data, headers=stripe_headers(data))
            responses[case.name] = response.status_code
            if response.is_json and "id" in (response.json or {}):
                ids[case.name] = response.json["id"]
        SimpleWorker([Queue(INBOUND, connection=redis)], connection=redis).work(burst=True)
        engine = app.extensions["apex"].engine
        rows = {name: store.get(engine, event_id) for name, event_id in ids.items()}
        yield Outcome(responses, rows)
        counts = Counter(row.status for row in rows.values())
        print(f"\nStripe corpus on {kind}: {dict(sorted(counts.items()))}")
    finally:
        for built in {id(ctx): ctx, id(context.current()): context.current()}.values():
            built.redis.close()
            built.engine.dispose()
        context._current = previous
        app.extensions["apex"].engine.dispose()
        redis.close()


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_every_stripe_event_is_answered_2xx_and_processed_or_ignored_with_a_reason(
    outcome: Outcome, case: Case
) -> None:
    assert 200 <= outcome.responses[case.name] < 300
    row = outcome.rows[case.name]
    assert row.status in ("processed", "ignored"), (row.status, row.error)
    if row.status == "ignored":
        assert row.reason and row.reason.strip()


@pytest.mark.parametrize("case", CASES[:3] + thin_cases()[:3], ids=lambda case: case.name)
def test_the_events_built_are_what_the_stripe_package_parses(case: Case) -> None:
    data = body(case.event).decode()
    header = stripe_headers(data.encode())["Stripe-Signature"]
    if case.event["object"] == "event":
        event = stripe_sdk.Webhook.construct_event(data, header, STRIPE_SECRET)
        assert event.type == case.event["type"]
    else:
        client = stripe_sdk.StripeClient("sk_test_unused")
        notification = client.parse_event_notification(data, header, STRIPE_SECRET)
        assert notification.type == case.event["type"]
