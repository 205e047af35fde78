"""The operator web console at /console, integrators' portal pages at /portal/<token>, and the
start page at /: server-rendered pages over the same domain functions the API calls."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from flask import Flask, g

from apex.console import catalog, inbound, leads, signin, subscription, webhooks  # noqa: F401
from apex.console.money import money
from apex.console.start import start_bp
from apex.console.web import bp, portal_bp, sub_bp


def _ts(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else "—"


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


def _helpers() -> dict[str, Any]:
    return {
        "ts": _ts,
        "pretty": _pretty,
        "money": money,
        "csrf_token": g.get("csrf", ""),
        "scope": g.get("scope"),
    }


bp.register_blueprint(sub_bp, url_prefix="/webhooks/<sub_id>")
for _blueprint in (bp, portal_bp, start_bp):
    _blueprint.context_processor(_helpers)


def init_console(app: Flask) -> None:
    """Serve the console, the portal pages and the start page on `app` (from create_app)."""
    for blueprint in (bp, portal_bp, start_bp):
        app.register_blueprint(blueprint)
