"""Subscription management routes: the seed contract and the Svix/Stripe-style extras."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Blueprint as FlaskBlueprint
from flask import Response, current_app

from apex import subscriptions
from apex.api.auth import require_api_key
from apex.api.bodies import Blueprint
from apex.api.runtime import runtime
from apex.api.schemas import (
    DeletedSchema,
    RotatedSchema,
    RotateSecretSchema,
    SubscriptionCreateSchema,
    SubscriptionIdSchema,
    SubscriptionSchema,
    SubscriptionUpdateSchema,
    SubscriptionWithSecretSchema,
)
from apex.sources.registry import SOURCES

blp = Blueprint("webhooks", __name__, url_prefix="/api", description="Webhook subscriptions")
blp.before_request(require_api_key)


def subscription_options(sub_id: str) -> Response:
    """OPTIONS on a subscription. Flask would also list POST, which belongs to the platforms' door
    POST /api/webhooks/<source> of the same shape (and is only theirs for stripe, github and
    hubspot: any other id answers 404 there)."""
    response = current_app.make_default_options_response()
    methods = ["DELETE", "GET", "HEAD", "OPTIONS", "PATCH"]
    response.headers["Allow"] = ", ".join(
        sorted([*methods, "POST"] if sub_id in SOURCES else methods)
    )
    return response


# Through Flask's own add_url_rule, so it is not an operation of the document; first, so it
# answers OPTIONS before the automatic answer of the routes below.
FlaskBlueprint.add_url_rule(
    blp, "/webhooks/<sub_id>", "subscription_options", subscription_options, methods=["OPTIONS"]
)


@blp.route("/webhooks", methods=["GET"])
@blp.response(200, SubscriptionSchema(many=True))
def list_webhooks() -> list[subscriptions.Subscription]:
    """List subscriptions (never their secrets)."""
    return subscriptions.list_all(runtime().engine)


@blp.route("/webhooks", methods=["POST"])
@blp.arguments(SubscriptionCreateSchema)
@blp.response(201, SubscriptionWithSecretSchema)
def create_webhook(body: dict[str, Any]) -> dict[str, Any]:
    """Create a subscription. The response is the only one that ever shows its secret."""
    rt = runtime()
    sub, secret = subscriptions.create(rt.engine, rt.box, **body)
    return {**sub.__dict__, "secret": secret}


@blp.route("/webhooks", methods=["DELETE"])
@blp.arguments(SubscriptionIdSchema)
@blp.response(200, DeletedSchema)
def delete_webhook_by_body(body: dict[str, Any]) -> dict[str, Any]:
    """Delete a subscription named in the body; its pending deliveries are cancelled."""
    subscriptions.delete(runtime().engine, body["id"])
    return {"id": body["id"], "deleted": True}


@blp.route("/webhooks/<sub_id>", methods=["GET"])
@blp.response(200, SubscriptionSchema)
def get_webhook(sub_id: str) -> subscriptions.Subscription:
    return subscriptions.get(runtime().engine, sub_id)


@blp.route("/webhooks/<sub_id>", methods=["PATCH"])
@blp.arguments(SubscriptionUpdateSchema)
@blp.response(200, SubscriptionSchema)
def update_webhook(body: dict[str, Any], sub_id: str) -> subscriptions.Subscription:
    """Change url, events, description, limits (rateLimit, concurrency; null clears one), or
    pause/resume (status active|paused)."""
    return subscriptions.update(runtime().engine, sub_id, body)


@blp.route("/webhooks/<sub_id>", methods=["DELETE"])
@blp.response(200, DeletedSchema)
def delete_webhook(sub_id: str) -> dict[str, Any]:
    subscriptions.delete(runtime().engine, sub_id)
    return {"id": sub_id, "deleted": True}


@blp.route("/webhooks/<sub_id>/rotate-secret", methods=["POST"])
@blp.arguments(RotateSecretSchema, required=False)
@blp.response(200, RotatedSchema)
@blp.alt_response(409, description="Rotated recently: the overlap is still running (conflict)")
def rotate_secret(body: dict[str, Any], sub_id: str) -> dict[str, Any]:
    """Issue a new secret (shown once); the previous one keeps signing for the overlap period."""
    rt = runtime()
    overlap = timedelta(seconds=rt.settings.rotation_overlap)
    sub, secret, expires = subscriptions.rotate_secret(
        rt.engine, rt.box, sub_id, overlap, body.get("secret")
    )
    return {"id": sub.id, "secret": secret, "previous_secret_expires_at": expires}
