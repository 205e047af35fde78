"""The per-process state of a worker: settings, database engine, Redis, delivery context."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import timedelta

from redis import Redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.retry import Retry
from sqlalchemy.engine import Engine

from apex.db import make_engine
from apex.delivery.circuit import Rules
from apex.delivery.deliver import DeliveryContext
from apex.delivery.destinations import Policy
from apex.pipeline.enrich import Enricher, build_enricher
from apex.redischeck import check_at_boot
from apex.secretbox import SecretBox
from config import Settings, load_settings

# Seconds a Redis command may take before it fails with TimeoutError. Without it a Redis that
# stops answering (a network partition drops packets) holds a command, and a SIGTERM waiting
# on it, until TCP gives up (~15 min). Longer than any blocking command we send: RQ's BLPOP
# waits workers.__main__.DEQUEUE_TIMEOUT (5 s).
SOCKET_TIMEOUT = 15


def redis_client(url: str, process: str = "worker") -> Redis:
    """A Redis client for a background process, once Redis is checked fit (apex.redischeck: a
    certificate that does not verify, refused credentials or an evicting maxmemory-policy stop
    the boot with one line, "<process>: …"; an unreachable Redis is only logged, and waited out
    like any outage). Each command rides out a blip of a few seconds
    (a refused or dropped connection: it reconnects with jittered backoff) before raising;
    longer outages reach the caller, whose loop waits them out (see workers.__main__ and
    workers.scheduled). A command without an answer within SOCKET_TIMEOUT raises TimeoutError
    and is not retried: a Redis that has gone quiet for that long is down, not blipping, and a
    retry would only multiply the time a shutdown waits on it."""
    check_at_boot(url, process)
    return Redis.from_url(
        url,
        socket_connect_timeout=5,
        socket_timeout=SOCKET_TIMEOUT,
        socket_keepalive=True,
        retry=Retry(
            ExponentialWithJitterBackoff(base=0.1, cap=1.0),
            retries=6,
            supported_errors=(RedisConnectionError,),
        ),
    )


@dataclass(frozen=True)
class WorkerContext:
    settings: Settings
    engine: Engine
    redis: Redis
    box: SecretBox
    delivery: DeliveryContext
    enrich: Enricher | None = None


_lock = threading.Lock()
_current: WorkerContext | None = None


def build(settings: Settings) -> WorkerContext:
    engine = make_engine(settings.database_url, settings.db_pool_size, settings.db_max_overflow)
    box = SecretBox(settings.secret_key)
    delivery = DeliveryContext(
        engine=engine,
        box=box,
        schedule=settings.retry_schedule,
        disable_after=timedelta(seconds=settings.disable_after),
        lease=timedelta(seconds=settings.lease_seconds),
        connect_timeout=settings.connect_timeout,
        total_timeout=settings.request_timeout,
        destinations=Policy.of(settings),
        circuit=Rules(settings.circuit_failures, settings.circuit_probe),
    )
    redis = redis_client(settings.redis_url)
    return WorkerContext(settings, engine, redis, box, delivery, build_enricher(settings))


def configure(settings: Settings) -> WorkerContext:
    """Set this process's context (the worker's entry point and tests call this first)."""
    global _current
    with _lock:
        _current = build(settings)
        return _current


def current() -> WorkerContext:
    """This process's context, built from the environment on first use."""
    global _current
    with _lock:
        if _current is None:
            _current = build(load_settings())
        return _current
