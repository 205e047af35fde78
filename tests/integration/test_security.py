"""The web tier's security rules through the Flask test client on the real Redis: headers that
refuse framing and sniffing, API keys only as x-api-key or Bearer (Basic only under /rq),
authentication before any judgement of the body, and failed authentications throttled per
client address across app instances, failing open when Redis is down."""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import socket
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from flask import Flask, request
from flask.testing import FlaskClient
from redis import Redis
from werkzeug.routing import Rule

from apex.api.throttle import EXTENSION, KEY_PREFIX, AuthThrottle
from apex.errors import TooManyRequestsError
from apex.secretbox import generate_key
from app import create_app
from config import Settings
from launcher.embedded_redis import EmbeddedRedis
from tests.conftest import API_KEY

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 3
STRIPE_SECRET = "whsec_" + "s" * 32


def basic(password: str, username: str = "operator") -> dict[str, str]:
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def from_address(address: str, headers: dict[str, str] | None = None) -> dict[str, str]:
    """Headers of a request from `address`, as the one trusted proxy hop reports it."""
    return {"X-Forwarded-For": address, **(headers or {})}


def csp_directives(policy: str) -> dict[str, list[str]]:
    parts = (part.split() for part in policy.split(";") if part.strip())
    return {name: values for name, *values in parts}


# --- headers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/api/docs", {}),
        ("/rq/", basic(API_KEY)),
        ("/rq/", {}),
        ("/api/webhooks", {"x-api-key": API_KEY}),
        ("/api/webhooks", {}),
        ("/api/openapi.json", {}),
        ("/health", {}),
        ("/no/such/page", {}),
    ],
    ids=["docs", "dashboard", "dashboard-401", "api", "api-401", "openapi", "health", "404"],
)
def test_no_response_can_be_framed_or_sniffed(
    client: FlaskClient, path: str, headers: dict[str, str]
) -> None:
    response = client.get(path, headers=headers)

    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    policy = csp_directives(response.headers["Content-Security-Policy"])
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["default-src"] == ["'none'"]
    assert policy["base-uri"] == ["'none'"]


def test_the_dashboard_runs_exactly_its_own_inline_scripts(client: FlaskClient) -> None:
    response = client.get("/rq/", headers=basic(API_KEY))

    assert response.status_code == 200 and response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    inline = re.findall(r"<script(?![^>]* src=)[^>]*>(.*?)</script>", page, re.DOTALL)
    assert inline, "the dashboard page has inline scripts"
    expected = {
        "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"
        for text in inline
    }
    sources = csp_directives(response.headers["Content-Security-Policy"])["script-src"]
    assert set(sources) == {"'self'", "'unsafe-eval'"} | expected
    assert "'unsafe-inline'" not in sources


def test_the_api_docs_page_runs_only_scripts_served_by_apex(client: FlaskClient) -> None:
    response = client.get("/api/docs")

    assert response.status_code == 200
    assert csp_directives(response.headers["Content-Security-Policy"])["script-src"] == ["'self'"]
    page = response.get_data(as_text=True)
    assert not re.search(r"<script(?![^>]* src=)", page)  # no inline script
    assert re.findall(r'<script src="([^"]+)"', page) == [
        "/console/static/vendor/swagger-ui-bundle.js",
        "/console/static/docs.js",
    ]


# --- which credentials where -----------------------------------------------------------------


def test_basic_credentials_are_refused_on_the_api(client: FlaskClient) -> None:
    response = client.get("/api/webhooks", headers=basic(API_KEY))

    assert response.status_code == 401
    assert response.json is not None and response.json["code"] == "unauthorized"
    assert "only by the dashboard" in response.json["detail"]


@pytest.mark.parametrize(
    "headers",
    [{"x-api-key": API_KEY}, {"Authorization": f"Bearer {API_KEY}"}],
    ids=["x-api-key", "bearer"],
)
def test_the_api_takes_the_key_as_a_header_or_bearer_token(
    client: FlaskClient, headers: dict[str, str]
) -> None:
    assert client.get("/api/webhooks", headers=headers).status_code == 200


def test_the_dashboard_takes_basic_credentials(client: FlaskClient) -> None:
    assert client.get("/rq/", headers=basic(API_KEY)).status_code == 200


# --- authentication comes first --------------------------------------------------------------


def _keyed_writes(app: Flask) -> list[tuple[str, str]]:
    """Every (method, path) of the management API that takes a body, path arguments filled."""
    routes = []
    for rule in app.url_map.iter_rules():
        assert isinstance(rule, Rule)
        if not rule.rule.startswith("/api/") or rule.endpoint.startswith("inbound."):
            continue
        path = re.sub(r"<(?:[^:>]+:)?[^>]+>", "x_1", rule.rule)
        for method in sorted((rule.methods or set()) & {"POST", "PUT", "PATCH", "DELETE"}):
            routes.append((method, path))
    return routes


@pytest.mark.parametrize("key", [None, "wrong-key-" + "0" * 16], ids=["no-key", "wrong-key"])
def test_a_bad_key_is_401_before_the_body_is_judged(
    app: Flask, client: FlaskClient, key: str | None
) -> None:
    routes = _keyed_writes(app)
    assert ("POST", "/api/webhooks") in routes and len(routes) >= 5
    headers = {"x-api-key": key} if key else {}
    tried = 0

    for method, path in routes:
        for body, content_type in [("x", "text/plain"), ("{not json", "application/json")]:
            tried += 1  # each from an address of its own, so the throttle stays out of it
            response = client.open(
                path,
                method=method,
                data=body,
                content_type=content_type,
                headers=from_address(f"198.51.100.{tried}", headers),
            )
            assert response.status_code == 401, (method, path, content_type, response.json)


def test_with_the_key_a_non_json_body_is_then_400(client: FlaskClient) -> None:
    response = client.post(
        "/api/webhooks", data="x", content_type="text/plain", headers={"x-api-key": API_KEY}
    )

    assert response.status_code == 400


# --- the throttle ----------------------------------------------------------------------------


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return replace(
        settings, auth_failures_per_minute=LIMIT, stripe_webhook_secrets=(STRIPE_SECRET,)
    )


def fail(client: FlaskClient, times: int, address: str = "203.0.113.7") -> list[int]:
    return [
        client.get(
            "/api/webhooks", headers=from_address(address, {"x-api-key": "nope"})
        ).status_code
        for _ in range(times)
    ]


def test_too_many_failures_from_one_address_are_429_with_retry_after(
    client: FlaskClient,
) -> None:
    assert fail(client, LIMIT) == [401] * LIMIT

    refused = client.get("/api/webhooks", headers=from_address("203.0.113.7"))

    assert refused.status_code == 429
    assert refused.json is not None and refused.json["code"] == "too_many_requests"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["X-Frame-Options"] == "DENY"


def test_an_address_over_the_limit_is_refused_even_with_the_right_key(
    client: FlaskClient,
) -> None:
    # Checking the key first would tell a guesser which guess was right (200 vs 429).
    fail(client, LIMIT)

    response = client.get(
        "/api/webhooks", headers=from_address("203.0.113.7", {"x-api-key": API_KEY})
    )

    assert response.status_code == 429


def test_other_addresses_are_not_throttled(client: FlaskClient) -> None:
    fail(client, LIMIT + 1, address="203.0.113.7")

    assert fail(client, 1, address="203.0.113.8") == [401]
    ok = client.get("/api/webhooks", headers=from_address("203.0.113.8", {"x-api-key": API_KEY}))
    assert ok.status_code == 200


def test_ipv6_addresses_count_per_64_block(client: FlaskClient, redis_conn: Redis) -> None:
    for host in range(LIMIT):
        assert fail(client, 1, address=f"2001:db8:1:2::{host + 1:x}") == [401]

    assert fail(client, 1, address="2001:db8:1:2:ffff::1") == [429]
    assert fail(client, 1, address="2001:db8:1:3::1") == [401]
    assert redis_conn.get(KEY_PREFIX + "2001:db8:1:2::/64") == str(LIMIT).encode()


def test_only_the_hop_the_proxy_added_names_the_address(
    client: FlaskClient, redis_conn: Redis
) -> None:
    # The client may send any X-Forwarded-For; the one proxy (Heroku's router) appends the peer.
    for forged in range(LIMIT):
        assert fail(client, 1, address=f"10.0.0.{forged}, 203.0.113.7") == [401]

    assert fail(client, 1, address="203.0.113.7") == [429]
    assert redis_conn.get(KEY_PREFIX + "203.0.113.7") == str(LIMIT).encode()


def test_an_ipv4_mapped_ipv6_peer_counts_as_its_ipv4_address(
    client: FlaskClient, redis_conn: Redis
) -> None:
    assert fail(client, LIMIT, address="::ffff:203.0.113.7") == [401] * LIMIT

    assert fail(client, 1, address="203.0.113.7") == [429]
    assert fail(client, 1, address="::ffff:203.0.113.8") == [401]  # not one ::/64 for all
    assert redis_conn.get(KEY_PREFIX + "203.0.113.7") == str(LIMIT).encode()


def test_guesses_racing_past_the_check_are_refused_beyond_the_limit(
    app: Flask, redis_conn: Redis
) -> None:
    # Every guess passes refuse_if_over before any is counted, as parallel threads can.
    throttle: AuthThrottle = app.extensions[EXTENSION]
    guesses = LIMIT * 4
    checked = threading.Barrier(guesses)
    outcomes: list[str] = []

    def guess() -> None:
        throttle.refuse_if_over("203.0.113.7")
        checked.wait(10)
        try:
            throttle.record_failure("203.0.113.7")
            outcomes.append("401")
        except TooManyRequestsError:
            outcomes.append("429")

    threads = [threading.Thread(target=guess) for _ in range(guesses)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)

    assert sorted(outcomes) == ["401"] * LIMIT + ["429"] * (guesses - LIMIT)
    assert redis_conn.get(KEY_PREFIX + "203.0.113.7") == str(LIMIT).encode()
    assert 0 < redis_conn.ttl(KEY_PREFIX + "203.0.113.7") <= 60


def test_parallel_wrong_keys_get_at_most_the_limit_of_401s(app: Flask) -> None:
    guesses = LIMIT * 5
    start = threading.Barrier(guesses)
    codes: list[int] = []

    def guess(n: int) -> None:
        client = app.test_client()
        start.wait(10)
        codes.append(
            client.get(
                "/api/webhooks", headers=from_address("203.0.113.7", {"x-api-key": f"guess-{n}"})
            ).status_code
        )

    threads = [threading.Thread(target=guess, args=(n,)) for n in range(guesses)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert sorted(codes) == [401] * LIMIT + [429] * (guesses - LIMIT)


def test_successes_are_never_counted(client: FlaskClient) -> None:
    for _ in range(LIMIT * 5):
        ok = client.get(
            "/api/webhooks", headers=from_address("203.0.113.7", {"x-api-key": API_KEY})
        )
        assert ok.status_code == 200

    assert fail(client, LIMIT + 1) == [401] * LIMIT + [429]


def test_requests_without_a_key_are_not_counted(client: FlaskClient) -> None:
    # A browser sends each request of a Basic-protected page once without credentials first.
    for _ in range(LIMIT * 5):
        assert client.get("/rq/", headers=from_address("203.0.113.7")).status_code == 401

    assert fail(client, LIMIT + 1) == [401] * LIMIT + [429]


def test_the_count_is_shared_by_every_app_on_the_same_redis(
    client: FlaskClient, settings: Settings
) -> None:
    other_host = create_app(replace(settings, secret_key=generate_key()))
    try:
        other = other_host.test_client()
        assert fail(client, 2) == [401, 401]
        assert fail(other, 1) == [401]

        assert fail(client, 1) == [429]
        assert fail(other, 1) == [429]
    finally:
        other_host.extensions["apex"].engine.dispose()


def test_the_window_closes_and_the_address_may_try_again(
    client: FlaskClient, redis_conn: Redis
) -> None:
    fail(client, LIMIT)
    assert fail(client, 1) == [429]

    key = KEY_PREFIX + "203.0.113.7"
    assert 0 < redis_conn.ttl(key) <= 60
    redis_conn.pexpire(key, 1)
    deadline = time.monotonic() + 5
    while redis_conn.exists(key) and time.monotonic() < deadline:
        time.sleep(0.01)

    assert fail(client, 1) == [401]


def test_the_dashboard_counts_and_refuses_the_same_way(client: FlaskClient) -> None:
    for _ in range(LIMIT):
        assert (
            client.get("/rq/", headers=from_address("203.0.113.7", basic("nope"))).status_code
            == 401
        )

    assert (
        client.get("/rq/", headers=from_address("203.0.113.7", basic(API_KEY))).status_code == 429
    )
    assert fail(client, 1) == [429]  # one count for the API and the dashboard


def test_the_inbound_door_is_never_throttled(client: FlaskClient) -> None:
    codes = [
        (response.status_code, (response.json or {}).get("code"))
        for response in (
            client.post(
                "/api/webhooks/stripe",
                data=b'{"id": "evt_1"}',
                content_type="application/json",
                headers=from_address("203.0.113.7", {"Stripe-Signature": "t=1,v1=00"}),
            )
            for _ in range(LIMIT * 3)
        )
    ]

    assert codes == [(401, "invalid_signature")] * (LIMIT * 3)
    assert fail(client, 1) == [401], "bad signatures are not counted as failed API keys"


class TestNoProxy:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return replace(settings, trusted_proxies=0)

    def test_forwarded_headers_are_ignored_and_the_peer_is_counted(
        self, client: FlaskClient, redis_conn: Redis
    ) -> None:
        # Without a proxy in front, X-Forwarded-For is whatever the client wrote.
        for forged in range(LIMIT):
            assert fail(client, 1, address=f"198.51.100.{forged}") == [401]

        assert fail(client, 1, address="198.51.100.99") == [429]
        assert redis_conn.get(KEY_PREFIX + "127.0.0.1") == str(LIMIT).encode()
        assert not redis_conn.keys(KEY_PREFIX + "198.51.100.*")

    def test_forwarded_proto_and_host_are_ignored(self, app: Flask) -> None:
        app.add_url_rule("/test-url", "test_url", lambda: request.url)
        forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "forged.example"}

        seen = app.test_client().get("/test-url", headers=forwarded)

        assert seen.text == "http://localhost/test-url"


class TestTwoProxies:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return replace(settings, trusted_proxies=2)

    def test_the_second_hop_from_the_end_names_the_address(
        self, client: FlaskClient, redis_conn: Redis
    ) -> None:
        for forged in range(LIMIT):
            address = f"10.0.0.{forged}, 203.0.113.7, 192.0.2.1"
            assert fail(client, 1, address=address) == [401]

        assert fail(client, 1, address="203.0.113.7, 192.0.2.2") == [429]
        assert redis_conn.get(KEY_PREFIX + "203.0.113.7") == str(LIMIT).encode()


class TestOff:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return replace(settings, auth_failures_per_minute=0)

    def test_a_limit_of_0_never_throttles(self, client: FlaskClient, redis_conn: Redis) -> None:
        assert fail(client, 30) == [401] * 30
        assert not redis_conn.keys(KEY_PREFIX + "*")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TestRedisDown:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return replace(settings, redis_url=f"redis://127.0.0.1:{_closed_port()}/0")

    def test_fails_open_without_an_error(self, client: FlaskClient) -> None:
        assert fail(client, LIMIT * 3) == [401] * (LIMIT * 3)
        ok = client.get(
            "/api/webhooks", headers=from_address("203.0.113.7", {"x-api-key": API_KEY})
        )
        assert ok.status_code == 200


def test_a_redis_outage_is_logged_once_and_throttling_resumes_after_it(
    settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    redis = EmbeddedRedis(tmp_path / "redis", persist=False).start()
    app = create_app(replace(settings, redis_url=redis.url))
    try:
        # No pause after an error, so the throttle asks Redis again on the next request.
        app.extensions[EXTENSION] = AuthThrottle(app.extensions["apex"].redis, LIMIT, pause=0)
        client = app.test_client()
        assert fail(client, 2) == [401, 401]

        redis.stop()
        with caplog.at_level(logging.INFO, logger="apex.api.throttle"):
            assert fail(client, LIMIT * 3) == [401] * (LIMIT * 3)
            redis = EmbeddedRedis(tmp_path / "redis", port=redis.port, persist=False).start()
            assert fail(client, LIMIT + 1) == [401] * LIMIT + [429]

        lines = [r.getMessage() for r in caplog.records if r.name == "apex.api.throttle"]
        assert len(lines) == 2, lines
        assert "Redis unreachable" in lines[0] and "not throttling" in lines[0]
        assert "Redis reachable again" in lines[1]
    finally:
        redis.stop()
        app.extensions["apex"].engine.dispose()


# --- boot ------------------------------------------------------------------------------------


def test_a_short_configured_key_stops_the_web_process_with_one_line(tmp_path: Path) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "APEX_SECRET_KEY": generate_key(),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'apex.db'}",
        "APEX_API_KEYS": "apex_key_abc123",
    }
    done = subprocess.run(
        [sys.executable, "-c", "from app import create_app; create_app()"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("web: APEX_API_KEYS is malformed"), lines
    assert "apex_key_abc123" not in done.stderr


def test_weak_keys_boot_when_allowed(tmp_path: Path) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "APEX_SECRET_KEY": generate_key(),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'apex.db'}",
        "APEX_API_KEYS": "apex_key_abc123",
        "APEX_ALLOW_WEAK_KEYS": "1",
    }
    done = subprocess.run(
        [sys.executable, "-c", "from app import create_app; create_app()"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stderr
