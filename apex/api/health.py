"""GET /health: is Redis reachable, is the database reachable."""

from __future__ import annotations

import threading
from typing import Any

import sqlalchemy as sa
from flask import Blueprint
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from apex.api.runtime import runtime

bp = Blueprint("health", __name__)

# Set when the process has been told to stop (gunicorn's SIGTERM, see config/gunicorn.py), so a
# load balancer stops sending new work while in-flight requests finish.
shutting_down = threading.Event()


@bp.get("/health")
def health() -> tuple[dict[str, Any], int]:
    rt = runtime()
    if shutting_down.is_set():
        return {"status": "shutting_down", "redis": "unchecked", "database": "unchecked"}, 503
    checks = {"redis": "ok", "database": "ok"}
    try:
        rt.redis.ping()
    except RedisError as exc:
        checks["redis"] = f"unreachable: {type(exc).__name__}"
    try:
        with rt.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except SQLAlchemyError as exc:
        checks["database"] = f"unreachable: {type(exc).__name__}"
    healthy = all(v == "ok" for v in checks.values())
    return {"status": "ok" if healthy else "unavailable", **checks}, 200 if healthy else 503
