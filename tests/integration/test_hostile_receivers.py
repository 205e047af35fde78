"""Delivery against receivers that behave like the worst in the wild, private PKI and an egress
proxy: every attempt ends at its wall-clock deadline, is recorded with what went wrong, and a
stopping worker exits in time."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient
from pytest_httpserver import HTTPServer

from apex.models import attempts as attempt_table
from apex.models import deliveries as delivery_table
from tests.delivery_helpers import attempt_once
from tests.integration.conftest import signal_group, wait_for
from tests.integration.egress import ConnectProxy, private_ca
from tests.integration.hostile import MODES, HostileReceiver
from tests.integration.receivers import Receiver, deliveries, publish, subscribe

TIMEOUT = 1.5  # APEX_REQUEST_TIMEOUT for these workers
LEASE = "10"  # longer than an attempt may last, so no success is ever superseded
BOUND_MS = (TIMEOUT + 1) * 1000  # the promise: no attempt lasts longer than this
SIGTERM_TIMEOUT = 4.0

# What each kind of receiver's attempts are recorded as.
EXPECTED = {
    "drip_headers": "timeout: waiting for the response headers",
    "drip_body": "timeout: reading the response body",
    "hang": "timeout: waiting for the response headers",
    "never_read": "timeout: ",  # a small body fits in the socket buffers (see the test below)
    "reset": "connection_error: ",
}


def recorded(client: FlaskClient) -> list[Any]:
    """Every attempt with its delivery's status, attempt count and subscription."""
    engine = client.application.extensions["apex"].engine
    query = sa.select(
        delivery_table.c.id,
        delivery_table.c.subscription_id,
        delivery_table.c.status,
        delivery_table.c.attempts,
        attempt_table.c.duration_ms,
        attempt_table.c.status_code,
        attempt_table.c.error,
    ).join(attempt_table, attempt_table.c.delivery_id == delivery_table.c.id)
    with engine.connect() as conn:
        return list(conn.execute(query).all())


@pytest.fixture
def hostile() -> Iterator[dict[str, HostileReceiver]]:
    with ExitStack() as stack:
        yield {mode: stack.enter_context(HostileReceiver.serving(mode)) for mode in MODES}


@pytest.mark.postgres
def test_every_attempt_to_a_hostile_receiver_ends_at_its_deadline(
    client: FlaskClient,
    auth: dict[str, str],
    processes: Callable[..., Any],
    hostile: dict[str, HostileReceiver],
    tmp_path: Path,
) -> None:
    subs = {
        mode: subscribe(client, auth, r.url, ["lead.created"])["id"] for mode, r in hostile.items()
    }
    mode_of = {sub: mode for mode, sub in subs.items()}
    processes(APEX_REQUEST_TIMEOUT=str(TIMEOUT), APEX_LEASE_SECONDS=LEASE)
    event = publish(client, auth, "lead.created")

    def two_attempts_each() -> list[Any]:
        rows = recorded(client)
        seen = {mode_of[row.subscription_id] for row in rows}
        retried = {mode_of[r.subscription_id] for r in rows if r.status_code is None}
        counts = {m: sum(mode_of[r.subscription_id] == m for r in rows) for m in EXPECTED}
        done = seen == set(MODES) and retried == set(EXPECTED) and min(counts.values()) >= 2
        return rows if done else []

    rows = wait_for(two_attempts_each, timeout=30)
    for row in rows:
        mode = mode_of[row.subscription_id]
        assert row.duration_ms <= BOUND_MS, (mode, row.duration_ms, row.error)
        if mode == "endless_body":  # the first KiB is all we read: a success, at once
            assert (row.status_code, row.status) == (200, "delivered")
        else:
            assert row.status_code is None and row.error.startswith(EXPECTED[mode]), (mode, row)
    # No attempt outlived its lease: each one updated its delivery (none superseded).
    for delivery_id in {row.id for row in rows}:
        mine = [row for row in recorded(client) if row.id == delivery_id]
        assert mine[0].attempts == len(mine), mine
    for mode, receiver in hostile.items():
        assert all(d <= TIMEOUT + 2 for d in receiver.durations()), (mode, receiver.durations())
        assert receiver.most_at_once[event["id"]] == 1, mode  # never in flight twice
    log = (tmp_path / "workers-0.log").read_text()
    assert "superseded" not in log


@pytest.mark.filterwarnings("ignore:Sending a large body directly")  # 8 MB; a delivery is 256 KiB
def test_a_receiver_that_never_reads_a_large_body_is_cut_while_sending() -> None:
    # Megabytes fill the socket buffers (a delivered event is at most 256 KiB, which fits):
    # the send itself blocks, and the deadline must end it too.
    with HostileReceiver.serving("never_read") as receiver:
        started = time.monotonic()
        outcome = attempt_once(receiver.url, b"x" * 8_000_000, 5, 1.0)
        elapsed = time.monotonic() - started
        wait_for(receiver.durations, timeout=5)  # the receiver saw the connection end

    assert outcome.error == "timeout: sending the request after 1 s"
    assert outcome.status_code is None
    assert elapsed < 2.0


def test_a_tls_handshake_that_never_completes_is_cut_at_the_deadline() -> None:
    with HostileReceiver.serving("hang") as receiver:  # takes the ClientHello, answers nothing
        url = receiver.url.replace("http://", "https://")
        started = time.monotonic()
        outcome = attempt_once(url, b"{}", 5, 1.0)
        elapsed = time.monotonic() - started

    assert outcome.error == "timeout: connecting or in the TLS handshake after 1 s"
    assert elapsed < 2.0


def test_a_lookup_that_never_answers_is_bounded_by_the_connect_timeout() -> None:
    release = threading.Event()

    def stuck(host: str, port: int) -> list[str]:
        release.wait(30)  # a resolver that does not answer (getaddrinfo cannot be interrupted)
        return ["127.0.0.1"]

    try:
        started = time.monotonic()
        url = "http://receiver.test/hook"
        outcome = attempt_once(url, b"{}", 0.5, 10.0, lookup=stuck, dns_timeout=0.5)
        elapsed = time.monotonic() - started
    finally:
        release.set()

    assert outcome.error == "timeout: resolving"
    assert elapsed < 1.5


def hashed_folder(ca_file: Path, folder: Path) -> Path:
    """An OpenSSL CA folder (c_rehash's layout: <subject hash>.0) holding `ca_file`."""
    subject_hash = subprocess.run(
        ["openssl", "x509", "-hash", "-noout", "-in", str(ca_file)],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    folder.mkdir()
    (folder / f"{subject_hash}.0").write_bytes(ca_file.read_bytes())
    return folder


@pytest.mark.parametrize(
    "given_by", ["APEX_CA_BUNDLE", "APEX_CA_BUNDLE folder", "SSL_CERT_FILE", None]
)
def test_https_receiver_on_a_private_ca(
    client: FlaskClient,
    auth: dict[str, str],
    processes: Callable[..., Any],
    tmp_path: Path,
    given_by: str | None,
) -> None:
    pki = private_ca(tmp_path, ["127.0.0.1"])
    server = HTTPServer(host="127.0.0.1", port=0, ssl_context=pki.server_context())
    server.start()
    try:
        receiver = Receiver(server, "/tls")
        sub = subscribe(client, auth, receiver.url, ["lead.created"])
        assert receiver.url.startswith("https://127.0.0.1:")
        env = {name: "" for name in ("APEX_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")}
        if given_by == "APEX_CA_BUNDLE folder":
            env["APEX_CA_BUNDLE"] = str(hashed_folder(pki.ca_file, tmp_path / "roots"))
        elif given_by:
            env[given_by] = str(pki.ca_file)
        processes(**env)
        publish(client, auth, "lead.created")
        first = wait_for(
            lambda: (log := deliveries(client, auth, sub["id"])[0]["attemptLog"]) and log[0]
        )
    finally:
        server.clear()
        server.stop()

    if given_by:
        assert first["statusCode"] == 200, first
        assert len(receiver.requests) == 1
    else:
        assert first["statusCode"] is None
        assert first["error"].startswith("connection_error: SSLError (certificate verify failed")
        assert receiver.requests == []


def test_egress_proxy_tunnels_to_the_hostname_and_tls_is_verified_end_to_end(
    client: FlaskClient, auth: dict[str, str], processes: Callable[..., Any], tmp_path: Path
) -> None:
    # receiver.test resolves nowhere on this machine: only the proxy knows where it is.
    pki = private_ca(tmp_path, ["receiver.test", "denied.test"])
    server = HTTPServer(host="127.0.0.1", port=0, ssl_context=pki.server_context())
    server.start()
    try:
        with ConnectProxy.serving(deny=frozenset({"denied.test"})) as proxy:
            receiver = Receiver(server, "/via-proxy")
            port = server.port
            good = subscribe(client, auth, f"https://receiver.test:{port}/via-proxy", ["*"])
            denied = subscribe(client, auth, f"https://denied.test:{port}/via-proxy", ["*"])
            literal = subscribe(client, auth, f"https://127.0.0.1:{port}/via-proxy", ["*"])
            processes(
                APEX_EGRESS_PROXY=proxy.url,
                APEX_CA_BUNDLE=str(pki.ca_file),
                APEX_ALLOW_PRIVATE_DESTINATIONS="0",
            )
            publish(client, auth, "lead.created")

            def first_attempt(sub: dict[str, Any]) -> Any:
                return wait_for(
                    lambda: (log := deliveries(client, auth, sub["id"])[0]["attemptLog"]) and log[0]
                )

            delivered, refused, private = (first_attempt(s) for s in (good, denied, literal))
    finally:
        server.clear()
        server.stop()

    assert delivered["statusCode"] == 200, delivered
    assert receiver.requests[0][1]["Host"] == f"receiver.test:{port}"
    assert refused["error"] == (
        f"egress_proxy_error: egress proxy refused CONNECT denied.test:{port}: 403 Forbidden"
    )
    assert private["error"].startswith("destination_refused")  # never handed to the proxy
    assert sorted(set(proxy.tunnels)) == [f"denied.test:{port}", f"receiver.test:{port}"]


def test_sigterm_stops_a_worker_busy_on_dripping_receivers_in_time(
    client: FlaskClient,
    auth: dict[str, str],
    processes: Callable[..., Any],
    hostile: dict[str, HostileReceiver],
) -> None:
    # Every slot busy on drips and the current job waiting for a slot for a third endpoint:
    # on SIGTERM the waiting deliveries are handed back and those in flight end at their
    # deadline (SIGTERM_TIMEOUT), so the worker is gone well within Heroku's 30 s.
    bad = [hostile["drip_headers"], hostile["drip_body"], hostile["hang"]]
    subs = [subscribe(client, auth, r.url, ["lead.created"])["id"] for r in bad]
    worker = processes(
        APEX_REQUEST_TIMEOUT=str(SIGTERM_TIMEOUT),
        APEX_LEASE_SECONDS="60",
        APEX_DELIVERY_CONCURRENCY="4",
        APEX_ENDPOINT_CONCURRENCY="2",
    )
    for _ in range(4):
        publish(client, auth, "lead.created")
    wait_for(lambda: sum(len(r.held) for r in bad) >= 4)  # all four slots are taken
    signalled = time.monotonic()
    signal_group(worker, signal.SIGTERM)
    worker.wait(40)
    stopped = time.monotonic() - signalled

    assert worker.returncode == 0
    assert stopped < SIGTERM_TIMEOUT + 2  # the deadline of what was in flight, then exit
    found = [d for sub in subs for d in deliveries(client, auth, sub)]
    assert {d["status"] for d in found} == {"pending"}  # cut or handed back: delivered later
    errors = [a["error"] for d in found for a in d["attemptLog"]]
    assert len(errors) == 4 and all(e.startswith("timeout: ") for e in errors), errors
