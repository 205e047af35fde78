"""The OpenAPI document's finishing touches, and a self-contained API docs page rendered from it
(no CDN, works offline)."""

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
_METHODS = ("get", "put", "post", "patch", "delete")

bp = Blueprint("docs", __name__)

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ spec.info.title }} API</title>
<style>
body{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;padding:0 1em;color:#222}
.op{border:1px solid #ddd;border-radius:6px;margin:1em 0;padding:.6em 1em}
.m{display:inline-block;min-width:4.5em;font-weight:bold;text-transform:uppercase}
.get{color:#0a7}.post{color:#06c}.patch{color:#a60}.delete{color:#c22}
pre{background:#f6f6f6;padding:.6em;overflow:auto;font-size:12px}
</style></head><body>
<h1>{{ spec.info.title }} <small>{{ spec.info.version }}</small></h1>
<p>Authenticate with <code>x-api-key: &lt;key&gt;</code> or <code>Authorization: Bearer &lt;key&gt;</code>.
Machine-readable: <a href="{{ url_for('api-docs.openapi_json') }}">openapi.json</a>.</p>
{% for path, ops in spec.paths.items() %}{% for method, op in ops.items() if method != 'parameters' %}
<div class="op" id="{{ op.operationId or (method ~ path) }}"><span class="m {{ method }}">{{ method }}</span>
<code class="path">{{ path }}</code> {{ op.summary or '' }}
{% if op.description %}<p>{{ op.description }}</p>{% endif %}
{% if op.requestBody %}<details><summary>Request body</summary><pre>{{ dumps(op.requestBody) }}</pre></details>{% endif %}
<details><summary>Responses</summary><pre>{{ dumps(op.responses) }}</pre></details></div>
{% endfor %}{% endfor %}
<h2>Schemas</h2>
{% for name, schema in spec.components.schemas.items() %}<details><summary>{{ name }}</summary>
<pre>{{ dumps(schema) }}</pre></details>{% endfor %}
</body></html>"""


def finish_document(spec: APISpec) -> None:
    """Complete what flask-smorest generates: the inbound door as its three concrete paths, and
    the documented error responses of every operation.

    The door's route `/api/webhooks/<source>` has the shape of `/api/webhooks/<id>`; two templated
    paths of one shape are ambiguous in OpenAPI, while concrete paths match before templated ones.
    """
    for name, description in _ERRORS.items():
        spec.components.response(
            f"E{name}",
            {
                "description": description,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            },
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
