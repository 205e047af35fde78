"""Publishing events and the event catalog."""

from __future__ import annotations

from typing import Any

from apex.api.auth import require_api_key
from apex.api.bodies import Blueprint
from apex.api.enqueue import enqueue_deliveries
from apex.api.event_schemas import EventTypeSchema, PublishedSchema, PublishSchema
from apex.api.runtime import runtime
from apex.catalog import CATALOG
from apex.errors import ConflictError
from apex.events import publish

blp = Blueprint("events", __name__, url_prefix="/api", description="Events")
blp.before_request(require_api_key)


@blp.route("/events", methods=["POST"])
@blp.arguments(PublishSchema)
@blp.response(202, PublishedSchema)
@blp.alt_response(409, description="This id was published with another type or data (conflict)")
def publish_event(body: dict[str, Any]) -> dict[str, Any]:
    """Publish an event to every subscription that wants it. `id` makes it idempotent."""
    published = publish(runtime().engine, body["type"], body["data"], body.get("id"))
    if published.differs:
        raise ConflictError(
            f"Event id {published.id} was already published with a different type or data"
        )
    enqueue_deliveries(published.pending)
    return {
        "id": published.id,
        "type": published.type,
        "deliveries": published.deliveries,
        "duplicate": not published.created,
    }


@blp.route("/event-types", methods=["GET"])
@blp.response(200, EventTypeSchema(many=True))
def event_types() -> list[dict[str, Any]]:
    """The catalog: every event type with its meaning and a sample payload."""
    return [
        {"type": t.name, "description": t.description, "sample": t.sample} for t in CATALOG.values()
    ]
