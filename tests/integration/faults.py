"""Infrastructure a fault test may break: a private PostgreSQL cluster it stops and starts, and a
steady load of published events and signed inbound webhooks sent through the app meanwhile."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import threading
import uuid
from collections import Counter
from pathlib import Path

import sqlalchemy as sa
from flask import Flask

from launcher.embedded_redis import free_port
from tests.platforms import stripe_body, stripe_headers


def _pg_bin(name: str) -> str:
    """A PostgreSQL server binary: on PATH, else Debian's /usr/lib/postgresql/<version>/bin."""
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None
    )
    if found is None:
        raise RuntimeError(f"{name} not found: install the PostgreSQL server package")
    return found


class PrivatePostgres:
    """A throwaway PostgreSQL cluster (initdb in a temporary folder) on a free loopback port.

    initdb and the server refuse to run as root, so as root they run as the `postgres` user
    (`runuser -u postgres --`) in a folder that user owns."""

    def __init__(self) -> None:
        self.port = free_port(0)
        self.root = Path(tempfile.mkdtemp(prefix="apex-faults-pg-"))
        self.data = self.root / "data"
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self._as:
            shutil.chown(self.root, "postgres")
        self.running = False

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        subprocess.run([*self._as, *args], check=True, capture_output=True, timeout=60)

    def create(self) -> PrivatePostgres:
        self._run(
            _pg_bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
            "-E", "UTF8", "--no-sync",
        )  # fmt: skip
        return self.start()

    def start(self) -> PrivatePostgres:
        """Start the server and wait until it accepts connections."""
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
            " -c max_connections=200"
        )
        self._run(
            _pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.root / "server.log"),
            "-o", options, "-w", "start",
        )  # fmt: skip
        self.running = True
        return self

    def stop(self) -> None:
        """Stop the server at once (fast mode: open connections are cut)."""
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        self.running = False

    def destroy(self) -> None:
        if self.running:
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


class Load(threading.Thread):
    """Publishes an event and posts a signed Stripe webhook through `app`, a pair every `every`
    seconds, until `stop()`; records the ids it got accepted (202) and every status it saw."""

    def __init__(self, app: Flask, auth: dict[str, str], every: float = 0.1) -> None:
        super().__init__(name="load", daemon=True)
        self.app = app
        self.auth = auth
        self.every = every
        self.events: list[str] = []  # accepted published event ids
        self.inbound: list[str] = []  # accepted inbound event ids
        self.statuses: Counter[int] = Counter()
        # (status, code, Retry-After) of each answer that was not 202
        self.refusals: Counter[tuple[int, str | None, str | None]] = Counter()
        self._halt = threading.Event()
        self.lock = threading.Lock()

    def run(self) -> None:
        client = self.app.test_client()
        n = 0
        while not self._halt.is_set():
            n += 1
            published = client.post(
                "/api/events", json={"type": "lead.created", "data": {"n": n}}, headers=self.auth
            )
            data = stripe_body(event_id=f"evt_fault_{uuid.uuid4().hex}")
            received = client.post("/api/webhooks/stripe", data=data, headers=stripe_headers(data))
            with self.lock:
                for response, accepted in ((published, self.events), (received, self.inbound)):
                    self.statuses[response.status_code] += 1
                    if response.status_code == 202:
                        accepted.append(response.json["id"])
                    else:
                        body = response.json or {}
                        key = (
                            response.status_code,
                            body.get("code"),
                            response.headers.get("Retry-After"),
                        )
                        self.refusals[key] += 1
            self._halt.wait(self.every)

    def stop(self) -> None:
        self._halt.set()
        self.join(30)


def outcome(engine: sa.Engine) -> tuple[Counter[str], Counter[str]]:
    """Deliveries by status and inbound events by status, as the database has them."""
    counts: list[Counter[str]] = []
    with engine.connect() as conn:
        for table in ("deliveries", "inbound_events"):
            query = sa.text(f"SELECT status, count(*) FROM {table} GROUP BY status")
            counts.append(Counter({status: n for status, n in conn.execute(query)}))
    return counts[0], counts[1]
