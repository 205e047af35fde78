"""The HTTP edge: the only Flask-aware package. init_api() wires every blueprint into an app."""

from __future__ import annotations

from flask import Flask, request
from flask_smorest import Api

from apex.api import (
    deliveries,
    docs,
    events,
    health,
    inbound,
    jobs,
    leads,
    metrics,
    portal,
    webhooks,
)
from apex.api.auth import authenticate_first
from apex.api.bodies import guard_input
from apex.api.dashboard import init_dashboard
from apex.api.errors import ErrorSchema, register_error_handlers
from apex.api.headers import init_security_headers
from apex.api.requestlog import init_request_log
from apex.api.throttle import init_throttle
from apex.console import init_console
from apex.errors import BadRequestError

BLUEPRINTS = [
    webhooks.blp,
    events.blp,
    deliveries.blp,
    inbound.blp,
    inbound.operator_blp,
    leads.leads_blp,
    leads.attribution_blp,
    leads.goals_blp,
    jobs.blp,
    portal.blp,
]


class ApexApi(Api):
    """flask-smorest's Api, documenting errors in the shape apex.api.errors renders."""

    ERROR_SCHEMA = ErrorSchema


def _require_json_body() -> None:
    """A body sent to the API must be JSON; an empty body reads as {} and fails validation."""
    if request.blueprint == "inbound":
        return  # platforms sign raw bytes in their own content types (GitHub may send a form)
    if request.method in ("POST", "PUT", "PATCH", "DELETE") and request.path.startswith("/api/"):
        has_body = bool(request.content_length) or request.headers.get("Transfer-Encoding")
        if has_body and not request.is_json:
            raise BadRequestError(
                f"Content-Type must be application/json, got {request.mimetype or 'none'!r}"
            )


def init_api(app: Flask) -> None:
    app.config.update(
        API_TITLE="Apex Webhooks",
        API_VERSION="1.0",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api",
        OPENAPI_JSON_PATH="openapi.json",
    )
    init_request_log(app)  # first, so every response (even a 401 from /rq) has its id
    init_security_headers(app)
    init_throttle(app)
    api = ApexApi(app)
    api.spec.components.security_scheme(
        "apiKey", {"type": "apiKey", "in": "header", "name": "x-api-key"}
    )
    api.spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})
    api.spec.options["security"] = [{"apiKey": []}, {"bearer": []}]
    for blueprint in BLUEPRINTS:
        api.register_blueprint(blueprint)
    docs.finish_document(api.spec)
    app.register_blueprint(health.bp)
    app.register_blueprint(docs.bp)
    app.register_blueprint(metrics.bp)
    init_dashboard(app)
    init_console(app)
    app.before_request(authenticate_first)  # a missing key is 401 before the body is judged
    app.before_request(_require_json_body)
    register_error_handlers(app)  # after Api(), so ours replace flask-smorest's
    app.wsgi_app = guard_input(app.wsgi_app)  # type: ignore[method-assign, assignment]
