"""Schemas for incoming webhooks: the answer to a platform and the operator's view of events."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from apex.api.fields import Text, Timestamp
from apex.inbound.store import STATUSES
from apex.sources.registry import SOURCES


class ReceivedSchema(Schema):
    received = fields.Boolean(metadata={"example": True})
    id = fields.String(
        allow_none=True,
        metadata={"description": "The first stored event; null for an empty HubSpot batch."},
    )
    duplicate = fields.Boolean(metadata={"description": "Only on 200: every event was known."})


class InboundEventSchema(Schema):
    id = fields.String(metadata={"example": "inb_2x9Yd"})
    source = fields.String(metadata={"enum": sorted(SOURCES)})
    dedupe_key = fields.String(data_key="dedupeKey")
    type = fields.String(metadata={"example": "customer.created"})
    status = fields.String(metadata={"enum": list(STATUSES)})
    attempts = fields.Integer()
    error = fields.String(allow_none=True)
    reason = fields.String(
        allow_none=True,
        metadata={"description": "Why an `ignored` event carries nothing Apex uses."},
    )
    result = fields.Raw(allow_none=True, metadata={"type": "object"})
    next_attempt_at = Timestamp(data_key="nextAttemptAt", allow_none=True)
    received_at = Timestamp(data_key="receivedAt")
    processed_at = Timestamp(data_key="processedAt", allow_none=True)


class InboundEventDetailSchema(InboundEventSchema):
    payload = fields.Raw(metadata={"description": "The verified event as the platform sent it."})
    headers = fields.Dict(keys=fields.String(), values=fields.String())


class InboundPageSchema(Schema):
    data = fields.List(fields.Nested(InboundEventSchema))
    next_cursor = fields.String(data_key="nextCursor", allow_none=True)


class InboundQuerySchema(Schema):
    source = fields.String(validate=validate.OneOf(sorted(SOURCES)))
    status = fields.String(validate=validate.OneOf(STATUSES))
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=250))
    cursor = Text(validate=validate.Length(min=1, max=64))


class ReplayedSchema(Schema):
    id = fields.String()
    status = fields.String()
