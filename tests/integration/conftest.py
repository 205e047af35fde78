"""Fixtures for tests that run the real worker and scheduler processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import IO, Any

import pytest
from redis import Redis

from config import Settings
from workers import context
from workers.context import WorkerContext
from workers.inbound import READY_INBOUND

ROOT = Path(__file__).resolve().parents[2]


def env_for(settings: Settings) -> dict[str, str]:
    """The environment a worker or scheduler process needs to share the test's services."""
    env = dict(os.environ)
    for name in ("HUBSPOT_ACCESS_TOKEN", "STRIPE_API_KEY", "GITHUB_TOKEN"):
        env.pop(name, None)  # never let a developer's real token reach a test worker
    optional = {
        "HUBSPOT_ACCESS_TOKEN": settings.hubspot_access_token,
        "HUBSPOT_API_BASE": settings.hubspot_api_base,
        "STRIPE_API_KEY": settings.stripe_api_key,
        "STRIPE_API_BASE": settings.stripe_api_base,
        "GITHUB_TOKEN": settings.github_token,
        "GITHUB_API_BASE": settings.github_api_base,
        "STRIPE_WEBHOOK_SECRET": ",".join(settings.stripe_webhook_secrets),
        "GITHUB_WEBHOOK_SECRET": ",".join(settings.github_webhook_secrets),
        "HUBSPOT_CLIENT_SECRET": ",".join(settings.hubspot_client_secrets),
        "APEX_CONNECTOR_SYNC_INTERVAL": str(settings.connector_sync_interval),
    }
    env.update({name: value for name, value in optional.items() if value})
    env.update(
        REDIS_URL=settings.redis_url,
        DATABASE_URL=settings.database_url,
        APEX_SECRET_KEY=settings.secret_key,
        APEX_ALLOW_HTTP="1" if settings.allow_http else "0",
        APEX_ALLOW_PRIVATE_DESTINATIONS="1" if settings.allow_private_destinations else "0",
        APEX_RETRY_SCHEDULE=",".join(map(str, settings.retry_schedule)),
        APEX_LEASE_SECONDS=str(settings.lease_seconds),
        APEX_REQUEUE_AFTER=str(settings.requeue_after),
        APEX_INBOUND_RETRY_SCHEDULE=",".join(map(str, settings.inbound_retry_schedule)),
        APEX_SWEEP_INTERVAL=str(settings.sweep_interval),
        APEX_REQUEST_TIMEOUT=str(settings.request_timeout),
        APEX_CONNECT_TIMEOUT=str(settings.connect_timeout),
        APEX_ENDPOINT_CONCURRENCY=str(settings.endpoint_concurrency),
        APEX_DELIVERY_CONCURRENCY=str(settings.delivery_concurrency),
        APEX_LOG_LEVEL="INFO",
        PYTHONUNBUFFERED="1",
    )
    return env


def signal_group(proc: subprocess.Popen[bytes], signum: int) -> None:
    """Signal a started process and every process of its group (as a dyno stop does)."""
    try:
        os.killpg(proc.pid, signum)
    except ProcessLookupError:
        pass


def queued_inbound(redis: Redis) -> list[str]:
    """Inbound event ids waiting on their ready list for a drain job."""
    return [i.decode() for i in redis.lrange(READY_INBOUND.key, 0, -1)]


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.1) -> Any:
    """Poll until `predicate()` is truthy; return its value. Fails the test on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Short timings so retries, leases and sweeps happen within a test."""
    return replace(
        settings, lease_seconds=8, requeue_after=2, sweep_interval=2, request_timeout=3.0
    )


@pytest.fixture
def processes(
    settings: Settings, tmp_path: Path
) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start `python -m workers` or `python -m workers.scheduled`; all are stopped at teardown."""
    started: list[subprocess.Popen[bytes]] = []
    logs: list[IO[bytes]] = []

    def start(module: str = "workers", **overrides: str) -> subprocess.Popen[bytes]:
        log = open(tmp_path / f"{module}-{len(started)}.log", "wb")  # noqa: SIM115
        logs.append(log)
        proc = subprocess.Popen(
            [sys.executable, "-m", module],
            cwd=ROOT,
            env={**env_for(settings), **overrides},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: the worker's scheduler child dies with it
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        signal_group(proc, signal.SIGTERM)
    for proc in started:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            pass
        signal_group(proc, signal.SIGKILL)  # anything of the group still alive
        proc.wait()
    for log in logs:
        log.close()


@pytest.fixture
def worker_context(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[WorkerContext]:
    """This process configured as a worker on the test's services, for jobs run in-process."""
    monkeypatch.setattr(context, "_current", None)  # restored afterwards
    ctx = context.configure(settings)
    yield ctx
    # A job may have built the context anew (context.current() after a reset): close both.
    for built in {id(ctx): ctx, id(context.current()): context.current()}.values():
        built.redis.close()
        built.engine.dispose()
