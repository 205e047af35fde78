"""Delivery log, test sends, manual retry and bulk recovery."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from apex import subscriptions
from apex.api.auth import require_api_key
from apex.api.bodies import Blueprint
from apex.api.enqueue import enqueue_deliveries
from apex.api.event_schemas import (
    DeliveryPageSchema,
    DeliveryQuerySchema,
    PublishedSchema,
    RecoveredSchema,
    RecoverSchema,
    RetriedSchema,
    TestSendSchema,
)
from apex.api.runtime import runtime
from apex.catalog import CATALOG
from apex.db import utcnow
from apex.delivery import store
from apex.errors import ConflictError
from apex.events import publish
from workers import jobs

blp = Blueprint("deliveries", __name__, url_prefix="/api", description="Deliveries")
blp.before_request(require_api_key)

# Above this many, recover runs as a background job.
INLINE_RECOVER_LIMIT = 500


@blp.route("/webhooks/<sub_id>/test", methods=["POST"])
@blp.arguments(TestSendSchema, required=False)
@blp.response(202, PublishedSchema)
def send_test(body: dict[str, Any], sub_id: str) -> dict[str, Any]:
    """Deliver the sample payload of an event type to this subscription only, now."""
    rt = runtime()
    subscriptions.get(rt.engine, sub_id)
    event_type = body["event"]
    published = publish(rt.engine, event_type, CATALOG[event_type].sample, only_subscription=sub_id)
    enqueue_deliveries(published.pending)
    return {"id": published.id, "type": event_type, "deliveries": published.deliveries}


@blp.route("/webhooks/<sub_id>/deliveries", methods=["GET"])
@blp.arguments(DeliveryQuerySchema, location="query")
@blp.response(200, DeliveryPageSchema)
def list_deliveries(query: dict[str, Any], sub_id: str) -> dict[str, Any]:
    """Deliveries of a subscription, newest first, each with every attempt."""
    rt = runtime()
    subscriptions.get(rt.engine, sub_id)
    rows, cursor = store.page(
        rt.engine, sub_id, query.get("status"), query["limit"], query.get("cursor")
    )
    return {"data": rows, "next_cursor": cursor}


@blp.route("/deliveries/<delivery_id>/retry", methods=["POST"])
@blp.response(202, RetriedSchema)
@blp.alt_response(409, description="In flight or cancelled: cannot be retried now (conflict)")
def retry_delivery(delivery_id: str) -> dict[str, Any]:
    """Deliver again now (a failed, skipped or delivered delivery)."""
    rt = runtime()
    store.get_delivery_subscription(rt.engine, delivery_id)
    requeued = store.requeue(rt.engine, [delivery_id], utcnow(), include_delivered=True)
    if not requeued:
        raise ConflictError(
            f"Delivery {delivery_id} is in flight or cancelled; it cannot be retried now"
        )
    enqueue_deliveries(requeued)
    return {"id": delivery_id, "status": "pending"}


@blp.route("/webhooks/<sub_id>/recover", methods=["POST"])
@blp.arguments(RecoverSchema)
@blp.response(202, RecoveredSchema)
def recover(body: dict[str, Any], sub_id: str) -> dict[str, Any]:
    """Redeliver every failed or skipped delivery created since `since`."""
    rt = runtime()
    subscriptions.get(rt.engine, sub_id)
    since: datetime = body["since"]
    ids = store.recoverable(rt.engine, sub_id, since)
    if len(ids) > INLINE_RECOVER_LIMIT:
        return {"requeued": None, "job_id": jobs.enqueue_recover(rt.redis, sub_id, since)}
    requeued = store.requeue(rt.engine, ids, utcnow())
    enqueue_deliveries(requeued)
    return {"requeued": len(requeued), "job_id": None}
