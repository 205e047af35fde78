"""The one place that renders errors as JSON: ours, werkzeug's HTTP errors, an unreachable
database or Redis (503 with Retry-After: clients and platforms retry), a catch-all 500."""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy.exc as sa_exc
from flask import Flask, Response, jsonify
from marshmallow import Schema, fields
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from werkzeug.exceptions import HTTPException

from apex.db import unreachable
from apex.errors import ApexError, FieldError

log = logging.getLogger("apex.api")

# Werkzeug's status -> our stable code.
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_failed",
    429: "too_many_requests",
}


RETRY_AFTER = 5  # seconds a client is asked to wait when the database or Redis is unreachable


class FieldErrorSchema(Schema):
    field = fields.String()
    message = fields.String()


class ErrorSchema(Schema):
    """Every error response: a stable snake_case code, a human detail, field errors on 422."""

    code = fields.String(metadata={"example": "not_found"})
    detail = fields.String(metadata={"example": "No webhook wh_2x9"})
    errors = fields.List(fields.Nested(FieldErrorSchema))


def _render(
    status: int, code: str, detail: str, errors: list[FieldError] | None = None
) -> Response:
    body: dict[str, Any] = {"code": code, "detail": detail}
    if status == 422:
        body["errors"] = [{"field": e.field, "message": e.message} for e in errors or []]
    response = jsonify(body)
    response.status_code = status
    return response


def _field_errors(messages: Any, prefix: str = "") -> list[FieldError]:
    """Flatten marshmallow's nested messages ({"json": {"url": ["..."]}}) into field errors."""
    if isinstance(messages, dict):
        out: list[FieldError] = []
        for key, value in messages.items():
            name = str(key)
            if not prefix and name in ("json", "query", "form", "headers", "view_args"):
                out.extend(_field_errors(value, ""))
            else:
                out.extend(_field_errors(value, f"{prefix}.{name}" if prefix else name))
        return out
    if isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        return [FieldError(prefix or "_body", m) for m in messages]
    if isinstance(messages, list):
        return [e for m in messages for e in _field_errors(m, prefix)]
    return [FieldError(prefix or "_body", str(messages))]


def handle_apex_error(exc: ApexError) -> Response:
    if exc.status >= 500:
        log.warning("request failed: %s (%s)", exc.code, exc.detail)
    return _render(exc.status, exc.code, exc.detail, exc.errors)


def handle_http_exception(exc: HTTPException) -> Response:
    status = exc.code or 500
    data = getattr(exc, "data", None) or {}
    if status == 422 and "messages" in data:
        errors = _field_errors(data["messages"])
        detail = "; ".join(f"{e.field}: {e.message}" for e in errors) or "validation failed"
        response = _render(422, "validation_failed", detail, errors)
    elif status == 400 and "messages" in data:  # webargs could not parse the body
        response = _render(400, "bad_request", "Malformed JSON body: it does not parse as JSON")
    else:
        code = _HTTP_CODES.get(status, "http_error")
        response = _render(status, code, exc.description or exc.name)
    for name, value in exc.get_response().headers if status in (401, 405) else []:
        if name.lower() in ("allow", "www-authenticate"):
            response.headers[name] = value
    return response


def _unavailable(code: str, detail: str) -> Response:
    response = _render(503, code, detail)
    response.headers["Retry-After"] = str(RETRY_AFTER)
    return response


def handle_database_error(exc: sa_exc.SQLAlchemyError) -> Response:
    """The database unreachable (refused, restarting, dropped connection, pool exhausted) is a
    503 to retry; any other database error is a bug: 500."""
    if not unreachable(exc):
        return handle_unexpected(exc)
    cause = type(getattr(exc, "orig", None) or exc).__name__
    log.warning("request failed: database_unavailable (%s)", cause)
    return _unavailable("database_unavailable", "The database is unavailable; retry shortly.")


def handle_redis_unreachable(exc: RedisConnectionError | RedisTimeoutError) -> Response:
    log.warning("request failed: redis_unavailable (%s)", type(exc).__name__)
    return _unavailable("redis_unavailable", "The queue (Redis) is unavailable; retry shortly.")


def handle_unexpected(exc: Exception) -> Response:
    log.exception("unhandled error: %s", type(exc).__name__)
    return _render(500, "internal_error", "An internal error occurred; it has been logged.")


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(ApexError, handle_apex_error)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(sa_exc.SQLAlchemyError, handle_database_error)
    app.register_error_handler(RedisConnectionError, handle_redis_unreachable)
    app.register_error_handler(RedisTimeoutError, handle_redis_unreachable)
    app.register_error_handler(Exception, handle_unexpected)
