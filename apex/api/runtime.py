"""What a request needs from the running process: settings, database, Redis, the secret box."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app
from redis import Redis
from sqlalchemy.engine import Engine

from apex.secretbox import SecretBox
from config import Settings


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    engine: Engine
    redis: Redis
    box: SecretBox


def runtime() -> Runtime:
    rt: Runtime = current_app.extensions["apex"]
    return rt
