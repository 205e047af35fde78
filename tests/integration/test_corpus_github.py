"""Every example of @octokit/webhooks-examples (installed by `make test` from tests/corpora),
signed as GitHub signs it, is answered 2xx through the app and ends `processed` or `ignored`
with a reason when the worker's own code processes it, on SQLite and PostgreSQL; a captured
delivery sent again under other unsigned headers is a duplicate."""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis

import apex.pipeline.tables  # noqa: F401  (registers the pipeline's tables on metadata)
from apex.inbound import store
from apex.models import inbound_events
from apex.secretbox import generate_key
from app import create_app
from config import Settings
from tests.conftest import database_kinds, fresh_database
from tests.platforms import GITHUB_SECRET, github_headers
from workers import context
from workers import inbound as inbound_jobs

pytestmark = pytest.mark.postgres

CORPORA = Path(__file__).resolve().parents[1] / "corpora"
PACKAGE = CORPORA / "node_modules" / "@octokit" / "webhooks-examples"
VERSION = json.loads((CORPORA / "package.json").read_text())["dependencies"][
    "@octokit/webhooks-examples"
]


def load_examples() -> list[tuple[str, int, dict[str, Any]]]:
    """(event, index, payload) of every example; a missing package is an error, never a skip."""
    index = PACKAGE / "api.github.com" / "index.json"
    if not index.is_file():
        raise RuntimeError(
            f"The GitHub corpus is not installed ({index.relative_to(CORPORA.parent.parent)} is"
            " missing): run `make test`, or `npm ci --prefix tests/corpora`"
        )
    installed = json.loads((PACKAGE / "package.json").read_text())["version"]
    if installed != VERSION:
        raise RuntimeError(
            f"@octokit/webhooks-examples {installed} is installed, {VERSION} is pinned:"
            " run `npm ci --prefix tests/corpora`"
        )
    events = json.loads(index.read_text())
    return [
        (event["name"], n, example)
        for event in events
        for n, example in enumerate(event["examples"])
    ]


EXAMPLES = load_examples()

# What Apex makes of each example (the README's table): events whose every example names a
# person; per event, the actions that do where others do not; everything else is ignored.
PROCESSED = {
    "commit_comment",
    "deployment_review",
    "discussion",
    "discussion_comment",
    "gollum",
    "issue_comment",
    "issues",
    "marketplace_purchase",
    "member",
    "pull_request",
    "pull_request_review",
    "pull_request_review_comment",
    "pull_request_review_thread",
    "push",
    "sponsorship",
    "watch",
}
PROCESSED_ACTIONS = {
    "membership": {"added"},
    "organization": {"member_added", "member_invited"},
    "star": {"created"},
}
# workflow_run examples name a commit author by email in the first only (the others: noreply).
PROCESSED_EXAMPLES = {("workflow_run", 0)}


def expected_status(event: str, n: int, payload: dict[str, Any]) -> str:
    if event in PROCESSED or (event, n) in PROCESSED_EXAMPLES:
        return "processed"
    if payload.get("action") in PROCESSED_ACTIONS.get(event, ()):
        return "processed"
    return "ignored"


@pytest.fixture(scope="module", params=database_kinds())
def corpus_app(
    request: pytest.FixtureRequest,
    redis_server_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Flask]:
    """One app, database and worker context for the module (hundreds of examples): each test
    clears the inbound events first, so none sees another's deliveries."""
    with fresh_database(request.param, tmp_path_factory.mktemp("corpus")) as url:
        yield from _corpus_app(url, redis_server_url)


def _corpus_app(url: str, redis_server_url: str) -> Iterator[Flask]:
    conn = Redis.from_url(redis_server_url)
    conn.flushdb()
    conn.close()
    settings = Settings(
        redis_url=redis_server_url,
        secret_key=generate_key(),
        database_url=url,
        api_keys=("corpus-test-key-" + secrets.token_hex(8),),
        allow_http=True,
        allow_private_destinations=True,
        github_webhook_secrets=(GITHUB_SECRET,),
    )
    application = create_app(settings)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(context, "_current", None)
        ctx = context.configure(settings)
        try:
            yield application
        finally:
            ctx.redis.close()
            ctx.engine.dispose()
            application.extensions["apex"].engine.dispose()


@pytest.fixture
def client(corpus_app: Flask) -> FlaskClient:
    with corpus_app.extensions["apex"].engine.begin() as conn:
        conn.execute(inbound_events.delete())
    return corpus_app.test_client()


def deliver(
    client: FlaskClient, event: str, data: bytes, delivery: str | None = None, **headers: str
) -> Any:
    signed = github_headers(data, event=event, delivery=delivery or str(uuid.uuid4()))
    return client.post("/api/webhooks/github", data=data, headers={**signed, **headers})


def rows(app: Flask) -> list[store.StoredEvent]:
    return store.page(app.extensions["apex"].engine, "github", None, 100, None)[0]


@pytest.mark.parametrize(
    ("event", "n", "payload"),
    EXAMPLES,
    ids=[f"{event}-{n}-{payload.get('action') or 'event'}" for event, n, payload in EXAMPLES],
)
def test_every_example_is_accepted_and_processed_or_ignored_with_a_reason(
    corpus_app: Flask, client: FlaskClient, event: str, n: int, payload: dict[str, Any]
) -> None:
    response = deliver(client, event, json.dumps(payload).encode())

    assert response.status_code == 202, response.json
    event_id = response.json["id"]
    inbound_jobs.process_inbound(event_id)
    row = store.get(corpus_app.extensions["apex"].engine, event_id)
    assert (row.type, row.status, row.error) == (event, expected_status(event, n, payload), None)
    if row.status == "processed":
        assert row.result["records"] >= 1
    else:
        assert row.reason and row.reason.startswith("GitHub"), row.reason


def test_the_corpus_is_the_pinned_one_whole() -> None:
    assert VERSION == "7.6.1"
    assert len(EXAMPLES) == 329
    assert len({event for event, _, _ in EXAMPLES}) == 58


# --- replays (issue 10): GitHub signs the body only -----------------------------------------

STAR = next(p for e, _, p in EXAMPLES if e == "star" and p["action"] == "created")


@pytest.mark.parametrize(
    "headers",
    [
        {"X-GitHub-Hook-ID": "987654"},
        {"X-GitHub-Event": "fork"},
        {"X-GitHub-Hook-ID": "1", "X-GitHub-Event": "watch"},
    ],
    ids=["other_hook", "other_event", "all_headers"],
)
def test_a_captured_delivery_under_other_unsigned_headers_is_a_duplicate(
    corpus_app: Flask, client: FlaskClient, headers: dict[str, str]
) -> None:
    data = json.dumps(STAR).encode()
    first = deliver(client, "star", data)
    assert first.status_code == 202
    stored = rows(corpus_app)

    # A new delivery id and whatever else is unsigned: still the same signed body.
    again = deliver(client, headers.get("X-GitHub-Event", "star"), data, **headers)

    assert again.status_code == 200
    assert again.json == {"received": True, "duplicate": True}
    assert rows(corpus_app) == stored


def test_githubs_own_redelivery_is_a_duplicate(corpus_app: Flask, client: FlaskClient) -> None:
    data = json.dumps(STAR).encode()
    delivery = str(uuid.uuid4())
    assert deliver(client, "star", data, delivery).status_code == 202

    redelivered = deliver(client, "star", data, delivery)

    assert redelivered.status_code == 200
    assert len(rows(corpus_app)) == 1


def test_the_same_payload_reserialised_or_form_encoded_is_a_duplicate(
    corpus_app: Flask, client: FlaskClient
) -> None:
    assert deliver(client, "star", json.dumps(STAR).encode()).status_code == 202
    compact = json.dumps(STAR, separators=(",", ":"), sort_keys=True).encode()
    form = ("payload=" + quote(json.dumps(STAR))).encode()

    assert deliver(client, "star", compact).status_code == 200
    form_headers = {"Content-Type": "application/x-www-form-urlencoded"}
    assert deliver(client, "star", form, **form_headers).status_code == 200
    assert len(rows(corpus_app)) == 1


def test_two_different_bodies_are_two_events(corpus_app: Flask, client: FlaskClient) -> None:
    later = {**STAR, "starred_at": "2030-01-01T00:00:00Z"}
    assert deliver(client, "star", json.dumps(STAR).encode()).status_code == 202
    assert deliver(client, "star", json.dumps(later).encode()).status_code == 202
    assert len(rows(corpus_app)) == 2
