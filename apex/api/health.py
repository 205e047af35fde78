"""GET /health: is Redis reachable, is the database reachable."""

from __future__ import annotations

import threading
from typing import Any

import sqlalchemy as sa
from flask import Blueprint
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from apex.api.runtime import runtime
from apex.db import reading

bp = Blueprint("health", __name__)

# Set when the process has been told to stop (gunicorn's SIGTERM, see config/gunicorn.py), so a
# load balancer stops sending new work while in-flight requests finish.
shutting_down = threading.Event()


@bp.get("/health")
def health() -> tuple[dict[str, Any], int]:
    """200 `{"status": "ok", "checks": {"redis": "ok", "database": "ok"}}` when both answer;
    503 with status `degraded` and the one that does not answer marked `down`; 503
    `shutting_down` once the process has been told to stop. Never raises."""
    if shutting_down.is_set():
        unchecked = {"redis": "unchecked", "database": "unchecked"}
        return {"status": "shutting_down", "checks": unchecked}, 503
    rt = runtime()
    checks = {"redis": "ok", "database": "ok"}
    try:
        rt.redis.ping()
    except RedisError:
        checks["redis"] = "down"
    try:
        with reading(rt.engine) as conn:
            conn.execute(sa.text("SELECT 1"))
    except SQLAlchemyError:
        checks["database"] = "down"
    if all(value == "ok" for value in checks.values()):
        return {"status": "ok", "checks": checks}, 200
    return {"status": "degraded", "checks": checks}, 503
