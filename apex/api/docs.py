"""The OpenAPI document's finishing touches (error responses with examples), and the API docs
page: Swagger UI, served by Apex itself (no CDN, works offline)."""

from __future__ import annotations

import json
from typing import Any

from apispec import APISpec
from flask import Blueprint, current_app, render_template_string

from apex.sources.registry import SOURCES

DOOR = "/api/webhooks/{source}"

# The error answers every operation may give, by what the operation has.
_ERRORS = {
    "400": "Malformed JSON, a body over the nesting or number limits, or unreadable (bad_request)",
    "401": "Missing or invalid API key (unauthorized)",
    "404": "No such resource (not_found)",
    "413": "Body over 1 MiB (payload_too_large)",
    "422": "Invalid field values; `errors` names each field (validation_failed)",
    "429": "Too many failed authentications from this address; see Retry-After (too_many_requests)",
    "503": "The database or Redis is unreachable; see Retry-After",
}
# What each of those errors looks like on the wire.
_EXAMPLES: dict[str, dict[str, Any]] = {
    "400": {"code": "bad_request", "detail": "Malformed JSON body: it does not parse as JSON"},
    "401": {"code": "unauthorized", "detail": "Invalid API key"},
    "404": {"code": "not_found", "detail": "No webhook wh_2x9"},
    "413": {"code": "payload_too_large", "detail": "Body is 2097152 bytes; the limit is 1048576"},
    "422": {
        "code": "validation_failed",
        "detail": "url: must be an absolute https:// URL, got 'ftp://example.com'",
        "errors": [
            {"field": "url", "message": "must be an absolute https:// URL, got 'ftp://example.com'"}
        ],
    },
    "429": {
        "code": "too_many_requests",
        "detail": "Too many failed authentications from this address: retry in 42 s",
    },
    "503": {
        "code": "database_unavailable",
        "detail": "The database is unavailable; retry shortly.",
    },
}
_METHODS = ("get", "put", "post", "patch", "delete")

bp = Blueprint("docs", __name__)

# Swagger UI (vendored, served from the console's static folder) renders the document in the
# browser; without scripts the page still lists every operation.
_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ spec.info.title }} API reference</title>
<link rel="stylesheet" href="{{ url_for('console.static', filename='vendor/swagger-ui.css') }}">
<style>body{margin:0;font-family:system-ui,sans-serif}
noscript .op{margin:.3em 1em}noscript code{font-size:13px}</style>
</head><body>
<div id="swagger-ui" data-spec-url="{{ url_for('api-docs.openapi_json') }}"></div>
<noscript><h1>{{ spec.info.title }} {{ spec.info.version }}</h1>
<p>Machine-readable: <a href="{{ url_for('api-docs.openapi_json') }}">openapi.json</a>.</p>
{% for path, ops in spec.paths.items() %}{% for method, op in ops.items() if method != 'parameters' %}
<div class="op"><strong>{{ method|upper }}</strong> <code class="path">{{ path }}</code> {{ op.summary or '' }}</div>
{% endfor %}{% endfor %}</noscript>
<script src="{{ url_for('console.static', filename='vendor/swagger-ui-bundle.js') }}"></script>
<script src="{{ url_for('console.static', filename='docs.js') }}"></script>
</body></html>"""


def finish_document(spec: APISpec) -> None:
    """Complete what flask-smorest generates: the inbound door as its three concrete paths, and
    the documented error responses of every operation.

    The door's route `/api/webhooks/<source>` has the shape of `/api/webhooks/<id>`; two templated
    paths of one shape are ambiguous in OpenAPI, while concrete paths match before templated ones.
    """
    for name, description in _ERRORS.items():
        content = {"schema": {"$ref": "#/components/schemas/Error"}, "example": _EXAMPLES[name]}
        spec.components.response(
            f"E{name}", {"description": description, "content": {"application/json": content}}
        )
    paths: dict[str, dict[str, Any]] = spec._paths  # apispec keeps them here until to_dict()
    door = paths.pop(DOOR, None)
    for path, item in paths.items():
        for method in _METHODS:
            if method in item:
                _document_errors(item[method], has_path_params="{" in path)
    if door is not None:
        for source in sorted(SOURCES):
            operation = json.loads(json.dumps(door["post"]))
            operation["operationId"] = f"receive_{source}_webhook"
            paths[f"/api/webhooks/{source}"] = {"post": operation}
    update = spec.components.schemas.get("SubscriptionUpdate")
    if update is not None:
        update["minProperties"] = 1  # a PATCH names at least one change


def _document_errors(operation: dict[str, Any], has_path_params: bool) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    codes = ["401", "429", "503"]
    if has_path_params:
        codes.append("404")
    if "requestBody" in operation:
        codes += ["400", "413", "422"]
    if any(p.get("in") == "query" for p in operation.get("parameters", [])):
        codes.append("422")
    for code in codes:
        responses.setdefault(code, {"$ref": f"#/components/responses/E{code}"})


@bp.get("/api/docs")
def docs_page() -> str:
    spec: dict[str, Any] = current_app.extensions["flask-smorest"]["apis"][""][
        "ext_obj"
    ].spec.to_dict()
    return render_template_string(_PAGE, spec=spec, dumps=lambda v: json.dumps(v, indent=2))
