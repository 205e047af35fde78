"""What a request needs from the running process: settings, database, Redis, the secret box."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app
from redis import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy.engine import Engine

from apex.db import make_engine
from apex.inbound.store import Receiver
from apex.secretbox import SecretBox
from config import Settings


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    engine: Engine
    redis: Redis
    box: SecretBox
    receiver: Receiver  # stores inbound webhooks, concurrent requests in one transaction


def build_runtime(settings: Settings) -> Runtime:
    """The web process's runtime: the database engine with the configured pool, and a Redis
    client that fails fast when Redis is down (what a request enqueues is already committed,
    and the sweeper enqueues it later). rediss:// URLs carry their TLS options (see
    config.settings). Connects to nothing yet; never raises for an unreachable service."""
    engine = make_engine(settings.database_url, settings.db_pool_size, settings.db_max_overflow)
    return Runtime(
        settings=settings,
        engine=engine,
        redis=Redis.from_url(
            settings.redis_url,
            socket_connect_timeout=2,
            socket_timeout=2,
            retry=Retry(NoBackoff(), 1),
        ),
        box=SecretBox(settings.secret_key),
        receiver=Receiver(engine),
    )


def runtime() -> Runtime:
    rt: Runtime = current_app.extensions["apex"]
    return rt
