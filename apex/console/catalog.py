"""The event types with their descriptions and sample payloads, and publishing one by hand."""

from __future__ import annotations

from typing import Any

from flask import request
from werkzeug.wrappers import Response

from apex.api.enqueue import enqueue_deliveries
from apex.api.event_schemas import PublishSchema
from apex.api.runtime import runtime
from apex.catalog import CATALOG
from apex.console.forms import load
from apex.console.web import bp, render
from apex.errors import ApexError
from apex.events import publish
from apex.jsonlimits import parse


def _page(http_status: int = 200, **context: Any) -> Response:
    return render("console/event_types.html", http_status, catalog=CATALOG, **context)


@bp.get("/event-types")
def event_types() -> Response:
    return _page()


@bp.post("/events")
def publish_event() -> Response:
    """Publish an event to every subscription that wants it (as POST /api/events does)."""
    form = {"type": request.form.get("type", ""), "data": request.form.get("data", "")}
    try:
        data = parse(form["data"])
    except ApexError as exc:
        return _page(422, form=form, errors={"data": exc.detail})
    body: dict[str, Any] = {"type": form["type"], "data": data}
    if request.form.get("id", "").strip():
        body["id"] = request.form["id"].strip()
    valid, errors = load(PublishSchema(), body)
    if valid is None:
        return _page(422, form=form, errors=errors)
    try:
        published = publish(runtime().engine, valid["type"], valid["data"], valid.get("id"))
    except ApexError as exc:  # too large, unknown type
        return _page(exc.status, form=form, errors={"data": exc.detail})
    if published.differs:
        return _page(409, form=form, errors={"id": "this id was published with other data"})
    enqueue_deliveries(published.pending)
    return _page(202, form=form, published=published)
