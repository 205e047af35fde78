"""Fault injection on the real processes: a private Redis stopped for 1 s, 10 s and 60 s, and a
private PostgreSQL restarted, while events are published and signed inbound webhooks arrive.
Every process keeps running, the API never answers 500 (503 with Retry-After while the database
is down), and everything accepted is delivered to the local receiver or processed."""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from pytest_httpserver import HTTPServer
from redis import Redis
from rq import Queue, Worker
from rq.job import JobStatus

from apex.db import make_engine
from apex.models import deliveries as delivery_table
from apex.models import metadata
from config import Settings
from launcher.embedded_redis import EmbeddedRedis
from tests.integration.conftest import signal_group, wait_for
from tests.integration.faults import Load, PrivatePostgres, outcome
from tests.integration.receivers import Receiver, subscribe
from tests.platforms import STRIPE_SECRET, stripe_body, stripe_headers
from workers.context import SOCKET_TIMEOUT
from workers.jobs import MAINTENANCE

LOAD_EVERY = 0.2  # seconds between two (publish, inbound webhook) pairs
RECOVERY_TIMEOUT = 90.0  # seconds for everything accepted to be delivered and processed


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return replace(settings, stripe_webhook_secrets=(STRIPE_SECRET,), retry_schedule=(1, 1, 2, 2))


def start_all(processes: Callable[..., subprocess.Popen[bytes]]) -> list[subprocess.Popen[bytes]]:
    return [processes(), processes("workers.scheduled")]


def alive(procs: list[subprocess.Popen[bytes]]) -> list[bool]:
    return [proc.poll() is None for proc in procs]


def settled(engine: sa.Engine, load: Load, receiver: Receiver) -> bool:
    """Every delivery delivered and received, every accepted event among them, every inbound
    event processed."""
    by_status, inbound = outcome(engine)
    with engine.connect() as conn:
        delivered = set(conn.execute(sa.select(delivery_table.c.event_id)).scalars())
    with receiver.lock:
        received = {headers["Webhook-Id"] for _, headers, _ in receiver.requests}
    return (
        set(by_status) == {"delivered"}
        and set(load.events) <= delivered <= received
        and inbound == {"processed": len(load.inbound)}
    )


def report(label: str, engine: sa.Engine, load: Load, procs: list[subprocess.Popen[bytes]]) -> None:
    by_status, inbound = outcome(engine)
    print(
        f"\nFAULT {label}: processes alive {alive(procs)}; deliveries {dict(by_status)}"
        f" ({len(load.events)} published); inbound {dict(inbound)} ({len(load.inbound)} accepted);"
        f" answers {dict(load.statuses)}; refusals {dict(load.refusals)}"
    )


def log_of(tmp_path: Path, module: str) -> str:
    return "".join(path.read_text() for path in tmp_path.glob(f"{module}-*.log"))


# --- Redis -----------------------------------------------------------------------------------


class TestRedisOutage:
    @pytest.fixture
    def private_redis(self, tmp_path: Path) -> Iterator[EmbeddedRedis]:
        """A Redis of this test's own, without persistence: a restart loses every queue."""
        server = EmbeddedRedis(tmp_path / "redis", persist=False).start()
        yield server
        server.stop()

    @pytest.fixture
    def redis_conn(self, private_redis: EmbeddedRedis) -> Iterator[Redis]:
        conn = Redis.from_url(private_redis.url)
        yield conn
        conn.close()

    @pytest.fixture
    def settings(self, settings: Settings, private_redis: EmbeddedRedis) -> Settings:
        return replace(settings, redis_url=private_redis.url)

    @pytest.mark.parametrize("seconds", [1, 10, 60])
    def test_every_process_rides_out_redis_down_and_nothing_is_lost(
        self,
        seconds: int,
        app: Flask,
        client: FlaskClient,
        auth: dict[str, str],
        httpserver: HTTPServer,
        processes: Callable[..., subprocess.Popen[bytes]],
        private_redis: EmbeddedRedis,
        redis_conn: Redis,
        tmp_path: Path,
    ) -> None:
        receiver = Receiver(httpserver, "/hook")
        subscribe(client, auth, receiver.url, ["*"])
        procs = start_all(processes)
        engine = app.extensions["apex"].engine
        load = Load(app, auth, every=LOAD_EVERY)
        load.start()
        try:
            wait_for(lambda: len(receiver.requests) >= 5)  # deliveries and inbound are flowing
            # Redis goes away while the worker runs a job: RQ's loop cannot finish that job
            # and, once its retries give up, quits ("found an unhandled exception").
            blocking = Queue(MAINTENANCE, connection=redis_conn).enqueue(time.sleep, 3)
            wait_for(lambda: blocking.get_status() == JobStatus.STARTED)

            private_redis.stop()
            health = client.get("/health")
            assert health.status_code == 503
            assert health.json["checks"] == {"redis": "down", "database": "ok"}
            job = client.get(f"/api/jobs/{blocking.id}", headers=auth)  # a route that needs Redis
            assert (job.status_code, job.json["code"]) == (503, "redis_unavailable")
            assert job.headers["Retry-After"] == "5"
            time.sleep(seconds)
            private_redis.start()
            time.sleep(2)  # load goes on after Redis is back
        finally:
            load.stop()

        wait_for(lambda: settled(engine, load, receiver), timeout=RECOVERY_TIMEOUT, interval=0.5)
        report(f"redis down {seconds} s", engine, load, procs)
        assert alive(procs) == [True, True]
        assert set(load.statuses) == {202}  # accepted while Redis was down too
        assert client.get("/health").json["status"] == "ok"
        if seconds >= 10:  # longer than redis-py's retries ride out: logged once each way
            if seconds >= 60:  # longer than RQ's own retries while it finishes the job
                assert "work loop ended without a stop request" in log_of(tmp_path, "workers")
            for module, logger in (
                ("workers", "apex.worker"),
                ("workers.scheduled", "apex.scheduler"),
            ):
                log = log_of(tmp_path, module)
                assert log.count(f"{logger}: Redis unreachable (") == 1, log
                assert log.count(f"{logger}: Redis reachable again") == 1, log

    def test_sigterm_while_redis_is_down_still_stops_every_process(
        self,
        processes: Callable[..., subprocess.Popen[bytes]],
        private_redis: EmbeddedRedis,
        redis_conn: Redis,
        tmp_path: Path,
    ) -> None:
        procs = start_all(processes)
        wait_for(lambda: redis_conn.keys("rq:scheduler_instance:*") and Worker.all(redis_conn))
        private_redis.stop()
        wait_for(lambda: "Redis unreachable" in log_of(tmp_path, "workers.scheduled"))
        for proc in procs:
            signal_group(proc, signal.SIGTERM)  # a dyno stop, Redis still away
        assert [proc.wait(30) for proc in procs] == [0, 0]
        assert "worker stopped" in log_of(tmp_path, "workers")
        assert "scheduler stopped" in log_of(tmp_path, "workers.scheduled")


class BlackHole:
    """A TCP port that accepts connections and reads what is sent, but never answers: a Redis
    behind a network partition that drops its replies."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self.talkers = 0  # connections that sent a command
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        connections: list[socket.socket] = []
        talked: set[int] = set()
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                pass
            else:
                conn.setblocking(False)
                connections.append(conn)
            for number, conn in enumerate(connections):
                try:
                    if conn.recv(65536):
                        talked.add(number)
                except OSError:
                    pass  # nothing sent (BlockingIOError) or the client left
            self.talkers = len(talked)
        for conn in connections:
            conn.close()
        self.listener.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


class TestRedisBlackHole:
    @pytest.fixture
    def black_hole(self) -> Iterator[BlackHole]:
        hole = BlackHole()
        yield hole
        hole.close()

    @pytest.fixture
    def settings(self, settings: Settings, black_hole: BlackHole) -> Settings:
        return replace(settings, redis_url=f"redis://127.0.0.1:{black_hole.port}/0")

    def test_sigterm_stops_every_process_while_redis_never_answers(
        self,
        processes: Callable[..., subprocess.Popen[bytes]],
        black_hole: BlackHole,
        tmp_path: Path,
    ) -> None:
        procs = start_all(processes)
        wait_for(lambda: black_hole.talkers >= 2)  # each waits on a reply that never comes
        time.sleep(0.5)
        for proc in procs:
            signal_group(proc, signal.SIGTERM)
        # Each command gives up after the client's socket timeout (without one it waits for
        # TCP, ~15 min); neither process then waits on Redis again before exiting.
        assert [proc.wait(SOCKET_TIMEOUT + 10) for proc in procs] == [0, 0]
        assert "worker stopped" in log_of(tmp_path, "workers")
        assert "scheduler stopped" in log_of(tmp_path, "workers.scheduled")


# --- PostgreSQL ------------------------------------------------------------------------------


class TestDatabaseRestart:
    @pytest.fixture
    def private_postgres(self) -> Iterator[PrivatePostgres]:
        server = PrivatePostgres().create()
        try:
            yield server
        finally:
            server.destroy()

    @pytest.fixture
    def settings(self, settings: Settings, private_postgres: PrivatePostgres) -> Settings:
        engine = make_engine(private_postgres.url)
        metadata.create_all(engine)
        engine.dispose()
        return replace(settings, database_url=private_postgres.url)

    def test_api_answers_503_while_postgres_restarts_and_nothing_is_lost(
        self,
        app: Flask,
        client: FlaskClient,
        auth: dict[str, str],
        httpserver: HTTPServer,
        processes: Callable[..., subprocess.Popen[bytes]],
        private_postgres: PrivatePostgres,
        tmp_path: Path,
    ) -> None:
        receiver = Receiver(httpserver, "/hook")
        subscribe(client, auth, receiver.url, ["*"])
        procs = start_all(processes)
        engine = app.extensions["apex"].engine
        load = Load(app, auth, every=LOAD_EVERY)
        load.start()
        try:
            wait_for(lambda: len(receiver.requests) >= 5)

            private_postgres.stop()
            event = {"type": "lead.created", "data": {"n": 0}}
            data = stripe_body(event_id="evt_fault_while_down")
            for response in (
                client.post("/api/events", json=event, headers=auth),
                client.post("/api/webhooks/stripe", data=data, headers=stripe_headers(data)),
                client.get("/api/webhooks", headers=auth),
            ):
                assert response.status_code == 503, response.json
                assert response.json["code"] == "database_unavailable"
                assert response.headers["Retry-After"] == "5"
            health = client.get("/health")
            assert health.status_code == 503
            assert health.json["checks"] == {"redis": "ok", "database": "down"}
            time.sleep(4)  # the load keeps knocking; the sweepers run and fail
            private_postgres.start()

            # The pool replaces connections the restart cut: the first request succeeds.
            first = client.post("/api/events", json=event, headers=auth)
            assert first.status_code == 202, first.json
            time.sleep(2)
        finally:
            load.stop()

        load.events.append(first.json["id"])
        wait_for(lambda: settled(engine, load, receiver), timeout=RECOVERY_TIMEOUT, interval=0.5)
        report("postgres restart", engine, load, procs)
        assert alive(procs) == [True, True]
        assert set(load.statuses) == {202, 503}  # never a 500
        assert set(load.refusals) == {(503, "database_unavailable", "5")}
        # A job that failed on the database paused the worker until it answered, said so once,
        # and once again when it was back. (A job may also ride the restart out: an inbound
        # event's outcome waits a while for the database rather than fail.)
        log = log_of(tmp_path, "workers")
        paused = log.count("apex.worker: database unreachable (")
        assert paused <= 1, log
        assert log.count("apex.worker: database reachable again") == paused, log
