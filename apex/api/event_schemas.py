"""Schemas for events, deliveries and attempts."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates

from apex.api.fields import JsonObject, Text, Timestamp
from apex.catalog import CATALOG

DELIVERY_STATUSES = ["pending", "in_flight", "delivered", "failed", "skipped", "cancelled"]


def _check_type(value: str) -> None:
    if value not in CATALOG:
        raise ValidationError(f"unknown event type {value!r}; see GET /api/event-types")


class PublishSchema(Schema):
    type = fields.String(required=True, metadata={"enum": list(CATALOG)})
    data = JsonObject(
        required=True,
        metadata={
            "type": "object",
            "description": "A JSON object; its numbers must be finite (no NaN or Infinity).",
        },
    )
    id = fields.String(  # also the webhook-id header: Standard Webhooks forbids dots
        validate=validate.Regexp(
            r"^[A-Za-z0-9_-]{1,64}$", error="must be 1-64 letters, digits, '_' or '-'"
        ),
        metadata={"description": "makes publishing idempotent; sent as webhook-id"},
    )

    @validates("type")
    def validate_type(self, value: str, **_: Any) -> None:
        _check_type(value)


class PublishedSchema(Schema):
    id = fields.String()
    type = fields.String()
    deliveries = fields.Integer()
    duplicate = fields.Boolean()


class EventTypeSchema(Schema):
    type = fields.String()
    description = fields.String()
    sample = fields.Dict()


class TestSendSchema(Schema):
    event = fields.String(load_default="lead.created", metadata={"enum": list(CATALOG)})

    @validates("event")
    def validate_event(self, value: str, **_: Any) -> None:
        _check_type(value)


class AttemptSchema(Schema):
    attempted_at = Timestamp(data_key="attemptedAt")
    duration_ms = fields.Integer(data_key="durationMs")
    status_code = fields.Integer(data_key="statusCode", allow_none=True)
    error = fields.String(allow_none=True)
    response_body = fields.String(data_key="responseBody", allow_none=True)


class DeliverySchema(Schema):
    id = fields.String()
    event_id = fields.String(data_key="eventId")
    event_type = fields.String(data_key="eventType")
    subscription_id = fields.String(data_key="webhookId")
    status = fields.String(metadata={"enum": DELIVERY_STATUSES})
    attempts = fields.Integer()
    next_attempt_at = Timestamp(data_key="nextAttemptAt", allow_none=True)
    last_status_code = fields.Integer(data_key="lastStatusCode", allow_none=True)
    last_error = fields.String(data_key="lastError", allow_none=True)
    created_at = Timestamp(data_key="createdAt")
    delivered_at = Timestamp(data_key="deliveredAt", allow_none=True)
    attempt_log = fields.List(fields.Nested(AttemptSchema), data_key="attemptLog")


class DeliveryPageSchema(Schema):
    data = fields.List(fields.Nested(DeliverySchema))
    next_cursor = fields.String(data_key="nextCursor", allow_none=True)


class DeliveryQuerySchema(Schema):
    status = fields.String(
        validate=validate.OneOf([*DELIVERY_STATUSES, "retrying"]),
        metadata={"description": "a delivery status, or `retrying`: pending after at least one "
                  "failed attempt (what a failing endpoint's deliveries are until they give up)"},
    )  # fmt: skip
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=250))
    cursor = Text(validate=validate.Length(min=1, max=64))


class RecoverSchema(Schema):
    since = Timestamp(required=True, unix_seconds=True)


class RecoveredSchema(Schema):
    requeued = fields.Integer(allow_none=True)
    job_id = fields.String(data_key="jobId", allow_none=True)


class RetriedSchema(Schema):
    id = fields.String()
    status = fields.String()
