"""A self-contained API docs page rendered from the OpenAPI document (no CDN, works offline)."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, current_app, render_template_string

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


@bp.get("/api/docs")
def docs_page() -> str:
    spec: dict[str, Any] = current_app.extensions["flask-smorest"]["apis"][""][
        "ext_obj"
    ].spec.to_dict()
    return render_template_string(_PAGE, spec=spec, dumps=lambda v: json.dumps(v, indent=2))
