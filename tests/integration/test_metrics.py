"""GET /metrics through the Flask test client on the real Redis and database: the key, the text
format read back by prometheus_client's own parser, gauges computed per scrape, and the
multiprocess mode adding up what separate processes recorded."""

from __future__ import annotations

import base64
import subprocess
import sys
import textwrap
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis
from rq import Queue

from apex import metrics
from config import Settings
from tests.conftest import API_KEY
from tests.factories import subscription_body
from workers.jobs import INBOUND, QUEUES, READY_DELIVERIES

ROOT = Path(__file__).resolve().parents[2]

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def noop() -> None:
    """A job function for filling queues; never run."""


def scrape(client: FlaskClient) -> str:
    response = client.get("/metrics", headers={"x-api-key": API_KEY})
    assert response.status_code == 200, response.data
    return response.get_data(as_text=True)


def samples(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


# --- access ---------------------------------------------------------------------------------


def test_refuses_without_a_key(client: FlaskClient) -> None:
    response = client.get("/metrics")

    assert response.status_code == 401
    assert response.json is not None and response.json["code"] == "unauthorized"


def test_refuses_a_wrong_key(client: FlaskClient) -> None:
    assert client.get("/metrics", headers={"x-api-key": "nope"}).status_code == 401


@pytest.mark.parametrize(
    "headers",
    [{"x-api-key": API_KEY}, {"Authorization": f"Bearer {API_KEY}"}],
    ids=["x-api-key", "bearer"],  # Prometheus: `authorization: {credentials: KEY}` is Bearer
)
def test_answers_with_a_key_as_prometheus_sends_it(
    client: FlaskClient, headers: dict[str, str]
) -> None:
    assert client.get("/metrics", headers=headers).status_code == 200


def test_refuses_the_key_as_basic_credentials(client: FlaskClient) -> None:
    token = base64.b64encode(f"prometheus:{API_KEY}".encode()).decode()
    # HTTP Basic is the dashboard's browser login only: a browser resends it to every path.
    assert client.get("/metrics", headers={"Authorization": f"Basic {token}"}).status_code == 401


class TestPublic:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return replace(settings, metrics_public=True)

    def test_needs_no_key_when_public(self, client: FlaskClient) -> None:
        response = client.get("/metrics")

        assert response.status_code == 200
        assert "apex_queue_depth" in response.get_data(as_text=True)


# --- the format and the families ------------------------------------------------------------


def test_speaks_the_prometheus_text_format(client: FlaskClient) -> None:
    response = client.get("/metrics", headers={"x-api-key": API_KEY})

    assert response.mimetype == "text/plain"
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    families = {
        family.name: family.type
        for family in text_string_to_metric_families(response.get_data(as_text=True))
    }
    assert {
        "apex_inbound_requests": "counter",
        "apex_deliveries": "counter",
        "apex_delivery_latency_seconds": "histogram",
        "apex_delivery_attempt_duration_seconds": "histogram",
        "apex_sweeper_recoveries": "counter",
        "apex_queue_depth": "gauge",
        "apex_queue_failed_jobs": "gauge",
        "apex_ready_ids": "gauge",
        "apex_delivery_rows": "gauge",
        "apex_subscriptions": "gauge",
    }.items() <= families.items()


def test_counts_what_was_recorded(client: FlaskClient) -> None:
    before = scrape(client)
    delivered_at = datetime.now(UTC)
    published_at = delivered_at - timedelta(seconds=3)
    metrics.record_inbound("stripe", "accepted")
    metrics.record_inbound("stripe", "invalid_signature")
    metrics.record_delivery("delivered", 0.2, published_at, delivered_at)
    metrics.record_delivery("pending", 0.4, published_at, delivered_at)
    metrics.record_delivery("failed", 0.1, published_at, delivered_at)
    metrics.record_recoveries("deliveries", 4)
    metrics.record_recoveries("inbound", 0)
    after = scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("apex_inbound_requests_total", source="stripe", outcome="accepted") == 1
    assert delta("apex_inbound_requests_total", source="stripe", outcome="invalid_signature") == 1
    assert delta("apex_deliveries_total", outcome="delivered") == 1
    assert delta("apex_deliveries_total", outcome="retrying") == 1
    assert delta("apex_deliveries_total", outcome="failed") == 1
    assert delta("apex_delivery_attempt_duration_seconds_count") == 3
    assert delta("apex_delivery_attempt_duration_seconds_sum") == pytest.approx(0.7)
    assert delta("apex_delivery_latency_seconds_count") == 1  # delivered ones only
    assert delta("apex_delivery_latency_seconds_bucket", le="2.5") == 0
    assert delta("apex_delivery_latency_seconds_bucket", le="5.0") == 1
    assert delta("apex_sweeper_recoveries_total", kind="deliveries") == 4
    assert delta("apex_sweeper_recoveries_total", kind="inbound") == 0


# --- gauges read at scrape time -------------------------------------------------------------


def test_queue_depths_follow_the_queues(client: FlaskClient, redis_conn: Redis) -> None:
    empty = scrape(client)
    inbound = Queue(INBOUND, connection=redis_conn)
    for _ in range(3):
        inbound.enqueue(noop)
    redis_conn.rpush(READY_DELIVERIES.key, "dlv_1", "dlv_2", "dlv_3", "dlv_4", "dlv_5")
    failed = inbound.enqueue(noop)
    inbound.remove(failed)
    inbound.failed_job_registry.add(failed, exc_string="RuntimeError: for the test")
    filled = scrape(client)

    assert {name: value(empty, "apex_queue_depth", queue=name) for name in QUEUES} == dict.fromkeys(
        QUEUES, 0.0
    )
    assert value(filled, "apex_queue_depth", queue=INBOUND) == 3
    assert value(filled, "apex_queue_depth", queue="deliveries") == 0
    assert value(filled, "apex_queue_failed_jobs", queue=INBOUND) == 1
    assert value(empty, "apex_ready_ids", list="deliveries") == 0
    assert value(filled, "apex_ready_ids", list="deliveries") == 5


def test_counts_subscriptions_by_status(client: FlaskClient, auth: dict[str, str]) -> None:
    ids = []
    for _ in range(4):
        created = client.post("/api/webhooks", json=subscription_body(), headers=auth)
        assert created.status_code == 201, created.json
        assert created.json is not None
        ids.append(created.json["id"])
    paused = client.patch(f"/api/webhooks/{ids[0]}", json={"status": "paused"}, headers=auth)
    assert paused.status_code == 200, paused.json
    assert client.delete(f"/api/webhooks/{ids[1]}", headers=auth).status_code in (200, 204)

    text = scrape(client)

    assert value(text, "apex_subscriptions", status="active") == 2
    assert value(text, "apex_subscriptions", status="paused") == 1
    assert value(text, "apex_subscriptions", status="disabled") == 0


def test_still_answers_when_redis_is_down(app: Flask, client: FlaskClient) -> None:
    rt = app.extensions["apex"]
    app.extensions["apex"] = replace(rt, redis=Redis(host="127.0.0.1", port=1, socket_timeout=1))

    families = {family.name for family in text_string_to_metric_families(scrape(client))}

    assert "apex_queue_depth" not in families
    assert {"apex_subscriptions", "apex_deliveries", "apex_inbound_requests"} <= families


# --- multiprocess mode ----------------------------------------------------------------------

RECORD_IN_ANOTHER_PROCESS = textwrap.dedent(
    """
    from datetime import UTC, datetime, timedelta
    from apex import metrics
    now = datetime.now(UTC)
    metrics.record_delivery("delivered", 0.3, now - timedelta(seconds=1), now)
    metrics.record_inbound("github", "accepted")
    """
)


def test_adds_up_every_process_in_multiprocess_mode(
    client: FlaskClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "prometheus"  # not there yet: the first process makes it
    env = {"PROMETHEUS_MULTIPROC_DIR": str(directory), "PATH": "/usr/bin:/bin"}
    for _ in range(2):  # two worker processes, each with its own file
        subprocess.run(
            [sys.executable, "-c", RECORD_IN_ANOTHER_PROCESS], cwd=ROOT, env=env, check=True
        )
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(directory))

    text = scrape(client)

    assert len(list(directory.glob("*.db"))) >= 2
    assert value(text, "apex_deliveries_total", outcome="delivered") == 2
    assert value(text, "apex_delivery_latency_seconds_count") == 2
    assert value(text, "apex_inbound_requests_total", source="github", outcome="accepted") == 2
    assert value(text, "apex_queue_depth", queue=INBOUND) == 0  # computed gauges still there
