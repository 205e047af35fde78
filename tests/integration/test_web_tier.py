"""The web tier as deployed (gunicorn -c config/gunicorn.py): slow clients get 408 at the read
deadline (one answer only), clients that do not read their answers are cut off at the write
deadline, and neither keeps a normal request waiting; a connection carries at most 100
requests; a bad setting stops gunicorn's master."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pytest
import requests

from config import Settings
from launcher.embedded_redis import free_port
from tests.integration.conftest import ROOT, env_for, wait_for
from tests.platforms import STRIPE_SECRET, stripe_body, stripe_headers

GUNICORN = [
    str(Path(sys.executable).parent / "gunicorn"),
    "-c",
    "config/gunicorn.py",
    "app:create_app()",
]
INBOUND = "/api/webhooks/stripe"


class Web:
    """One gunicorn started with our config on a free port."""

    def __init__(self, env: dict[str, str], log: IO[bytes]) -> None:
        self.port = free_port(0)
        self.base = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            GUNICORN,
            cwd=ROOT,
            env={**env, "PORT": str(self.port), "GUNICORN_CMD_ARGS": ""},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_for(self._healthy, timeout=30)

    def _healthy(self) -> bool:
        assert self.process.poll() is None, "gunicorn exited"
        try:
            return requests.get(self.base + "/health", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def web(settings: Settings, tmp_path: Path) -> Iterator[Callable[..., Web]]:
    """Start gunicorn with our config and `overrides` of the environment; stopped at teardown."""
    started: list[Web] = []
    logs: list[IO[bytes]] = []

    def start(**overrides: str) -> Web:
        log = (tmp_path / f"web-{len(started)}.log").open("wb")
        logs.append(log)
        env = {**env_for(settings), "STRIPE_WEBHOOK_SECRET": STRIPE_SECRET, **overrides}
        server = Web(env, log)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
    for log in logs:
        log.close()


class SlowClient:
    """Trickles a request one byte at a time (headers, or body after whole headers) from its own
    thread until the server answers or closes; `reply` is then what it got."""

    def __init__(self, port: int, part: str) -> None:
        head = f"POST {INBOUND} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        head += "Content-Length: 1000\r\n\r\n"
        self._first, self._trickle = (
            (head.encode(), b"{" + b" " * 999) if part == "body" else (b"", head.encode())
        )
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.trickling = threading.Event()  # the first bytes are out
        self.done = threading.Event()
        self.reply = b""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        sock = self.sock
        try:
            if self._first:
                sock.sendall(self._first)
            for byte in self._trickle:
                sock.sendall(bytes([byte]))
                self.trickling.set()
                sock.settimeout(0.2)  # the pause between bytes
                try:
                    chunk = sock.recv(65536)
                except TimeoutError:
                    if self._stop.is_set():
                        return
                    continue
                self.reply = chunk
                sock.settimeout(5)
                while chunk:  # the rest of the answer, up to the server's close
                    chunk = sock.recv(65536)
                    self.reply += chunk
                return
        except OSError:
            pass
        finally:
            self.trickling.set()
            self.done.set()

    @property
    def status(self) -> int | None:
        parts = self.reply.split(b" ", 2)
        return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None

    @property
    def json(self) -> dict[str, str]:
        return dict(json.loads(self.reply.split(b"\r\n\r\n", 1)[1]))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.sock.close()


@pytest.fixture
def slow_clients() -> Iterator[Callable[[int, str], SlowClient]]:
    clients: list[SlowClient] = []

    def open_one(port: int, part: str) -> SlowClient:
        client = SlowClient(port, part)
        clients.append(client)
        client.trickling.wait(10)
        return client

    yield open_one
    for client in clients:
        client.close()


def signed_webhook(base: str, event_id: str) -> requests.Response:
    data = stripe_body(event_id)
    return requests.post(base + INBOUND, data=data, headers=stripe_headers(data), timeout=20)


@pytest.mark.parametrize("part", ["headers", "body"])
def test_trickling_client_gets_408_json_while_a_normal_request_is_answered(
    web: Callable[..., Web], slow_clients: Callable[[int, str], SlowClient], part: str
) -> None:
    server = web(APEX_CLIENT_TIMEOUT="2")
    slow = slow_clients(server.port, part)

    answer = signed_webhook(server.base, "evt_web_tier_normal_1")
    slow_answered_before = slow.done.is_set()

    assert answer.status_code == 202
    assert not slow_answered_before  # the normal request did not wait for the slow one
    assert slow.done.wait(15)
    assert slow.status == 408
    assert slow.json["code"] == "request_timeout"
    assert b"Connection: close" in slow.reply
    if part == "body":  # the app was serving it: its answer carries the request id
        assert b"X-Request-ID: req_" in slow.reply


def test_more_slow_clients_than_workers_and_threads_leave_a_normal_request_answered(
    web: Callable[..., Web], slow_clients: Callable[[int, str], SlowClient]
) -> None:
    # With the sync workers of old, 2 such clients held both workers for 30 s.
    server = web(WEB_CONCURRENCY="1", WEB_THREADS="8", APEX_CLIENT_TIMEOUT="60")
    slow = [slow_clients(server.port, ("headers", "body")[i % 2]) for i in range(6)]

    answers = [signed_webhook(server.base, f"evt_web_tier_busy_{n}") for n in range(3)]

    assert [a.status_code for a in answers] == [202, 202, 202]
    assert not any(client.done.is_set() for client in slow)  # still trickling, still held


def test_a_worker_with_every_thread_taken_leaves_new_connections_to_one_with_a_free_thread(
    web: Callable[..., Web], slow_clients: Callable[[int, str], SlowClient]
) -> None:
    # 4 threads in all, 3 held: whichever worker holds 2 must not take the normal request.
    server = web(WEB_CONCURRENCY="2", WEB_THREADS="2", APEX_CLIENT_TIMEOUT="60")
    slow = [slow_clients(server.port, "headers") for _ in range(3)]

    answers = [signed_webhook(server.base, f"evt_web_tier_free_{n}") for n in range(4)]

    assert [a.status_code for a in answers] == [202, 202, 202, 202]
    assert not any(client.done.is_set() for client in slow)


def test_a_chunked_inbound_body_over_the_limit_is_still_refused(web: Callable[..., Web]) -> None:
    server = web(APEX_MAX_INBOUND_BODY="1000")

    def chunks() -> Iterator[bytes]:
        for _ in range(4):
            yield b"x" * 500

    answer = requests.post(
        server.base + INBOUND,
        data=chunks(),
        headers={"Content-Type": "application/json", "Stripe-Signature": "t=1,v1=00"},
        timeout=20,
    )

    assert answer.status_code == 413


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"REDIS_URL": ""}, "web: REDIS_URL is required but not set"),
        ({"APEX_SECRET_KEY": "bad"}, "web: APEX_SECRET_KEY is malformed"),
        ({"APEX_CLIENT_TIMEOUT": "-1"}, "web: APEX_CLIENT_TIMEOUT is malformed"),
    ],
)
def test_a_bad_setting_stops_gunicorns_master_with_the_message(
    settings: Settings, change: dict[str, str], message: str
) -> None:
    env = {**env_for(settings), "PORT": str(free_port(0)), "GUNICORN_CMD_ARGS": "", **change}

    done = subprocess.run(GUNICORN, cwd=ROOT, env=env, capture_output=True, timeout=60)

    assert done.returncode != 0
    assert message in done.stderr.decode()
    assert "Booting worker" not in done.stderr.decode()  # stopped before forking any worker


def pipelining_reader_that_never_reads(port: int, request: bytes, times: int) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)  # fills after a few KB
    sock.connect(("127.0.0.1", port))
    sock.sendall(request * times)
    return sock


def read_until_closed(sock: socket.socket) -> tuple[bytes, str]:
    """Everything the server sends, and how it ended: "eof", "reset", or "open" (still silent
    after 30 s)."""
    sock.settimeout(30)
    got = b""
    try:
        for _ in range(100_000):  # bounded: a few MB at most come back
            chunk = sock.recv(65536)
            if not chunk:
                return got, "eof"
            got += chunk
    except ConnectionResetError:
        return got, "reset"
    except TimeoutError:
        pass
    return got, "open"


def test_clients_that_never_read_their_answers_are_cut_off_and_a_normal_request_is_answered(
    web: Callable[..., Web], tmp_path: Path
) -> None:
    # Each connection pipelines ~7 MB of answers (100 x the 71 KB OpenAPI document) and reads
    # none: its thread blocks in a write once the socket buffers are full. More such clients
    # than threads held this worker for good before writes had a deadline.
    server = web(WEB_CONCURRENCY="1", WEB_THREADS="4", APEX_CLIENT_TIMEOUT="2")
    request = b"GET /api/openapi.json HTTP/1.1\r\nHost: test\r\n\r\n"
    slow = [pipelining_reader_that_never_reads(server.port, request, 100) for _ in range(6)]
    try:
        answer = requests.get(server.base + "/health", timeout=60)

        assert answer.status_code == 200
        assert answer.json()["status"] == "ok"
        endings = [read_until_closed(sock)[1] for sock in slow]
        assert "open" not in endings, endings
    finally:
        for sock in slow:
            sock.close()
    log = (tmp_path / "web-0.log").read_text(errors="replace")
    assert "response not taken within 2s -> connection reset" in log


def test_a_connection_carries_at_most_100_requests(web: Callable[..., Web]) -> None:
    server = web(APEX_CLIENT_TIMEOUT="60")
    request = b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n"
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    try:
        sock.sendall(request * 150)
        reply, ending = read_until_closed(sock)
    finally:
        sock.close()

    heads = re.findall(rb"HTTP/1\.1 .*?\r\n\r\n", reply, re.DOTALL)
    assert ending == "eof"
    assert [head.split(b" ")[1] for head in heads] == [b"200"] * 100
    assert all(b"Connection: keep-alive" in head for head in heads[:-1])
    assert b"Connection: close" in heads[-1]


@pytest.mark.parametrize(
    "partial",
    [
        b"GET /health HTTP/1.1\r\nHost: test\r\n",
        b"GET /health HTTP/1.1\r\nHost: te",
        b"GET /hea",
    ],
    ids=["after-a-header", "mid-header", "mid-request-line"],
)
def test_headers_cut_off_by_the_deadline_get_one_answer_408(
    web: Callable[..., Web], partial: bytes
) -> None:
    server = web(APEX_CLIENT_TIMEOUT="1")
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    try:
        sock.sendall(partial)
        reply, ending = read_until_closed(sock)
    finally:
        sock.close()

    assert ending == "eof"
    assert reply.count(b"HTTP/1.") == 1, reply
    assert reply.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert json.loads(reply.split(b"\r\n\r\n", 1)[1])["code"] == "request_timeout"
