"""Schemas for leads, attribution and goals: they validate requests and generate the OpenAPI
document. A lead is dumped from identity.lead_data(), the dict lead events carry too."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from apex.api.fields import Text, Timestamp
from apex.pipeline.attribution import MODELS
from apex.pipeline.goals import METRICS
from apex.pipeline.records import IDENTITY_KINDS

MAX_TARGET = 2**63 - 1  # the BIGINT column
_TIMESTAMP = {"type": "string", "format": "date-time", "example": "2025-01-10T08:00:00Z"}


class IdentitySchema(Schema):
    kind = fields.String(metadata={"enum": list(IDENTITY_KINDS)})
    value = fields.String(metadata={"example": "ada@example.com"})


class TouchSchema(Schema):
    source = fields.String(metadata={"example": "google"})
    campaign = fields.String(allow_none=True, metadata={"example": "spring-launch"})
    at = fields.String(metadata=_TIMESTAMP)


class LeadSchema(Schema):
    """A lead, exactly as the data of lead.created and lead.updated."""

    id = fields.String(metadata={"example": "lead_2x9Yd"})
    email = fields.String(allow_none=True)
    name = fields.String(allow_none=True)
    company = fields.String(allow_none=True)
    identities = fields.List(fields.Nested(IdentitySchema))
    revenue = fields.Integer(metadata={"description": "Net of refunds, in minor units"})
    currency = fields.String(allow_none=True, metadata={"example": "usd"})
    revenueByCurrency = fields.Dict(
        keys=fields.String(),
        values=fields.Integer(),
        metadata={
            "description": "Net revenue in each currency the lead paid in (never added up); "
            "`revenue` is the entry of `currency`",
            "example": {"usd": 4900, "eur": 1000},
        },
    )
    conversions = fields.Integer()
    firstTouch = fields.Nested(TouchSchema, allow_none=True)
    lastTouch = fields.Nested(TouchSchema, allow_none=True)
    createdAt = fields.String(metadata=_TIMESTAMP)
    updatedAt = fields.String(metadata=_TIMESTAMP)


class RemovedSchema(Schema):
    identities = fields.Integer(metadata={"description": "Emails and source ids of the person"})
    properties = fields.Integer(metadata={"description": "What sources said of them"})
    touchpoints = fields.Integer()
    conversions = fields.Integer(
        metadata={"description": "Payments, refunds and won deals: no longer in attribution"}
    )
    inbound_payloads = fields.Integer(
        data_key="inboundPayloads",
        metadata={"description": "Stored inbound payloads naming them, now tombstones"},
    )


class ErasedSchema(Schema):
    """What DELETE /api/leads/<id> removed."""

    id = fields.String(metadata={"description": "The id asked for", "example": "lead_2x9Yd"})
    lead_id = fields.String(
        data_key="leadId",
        metadata={"description": "The lead erased: the id asked for or its survivor"},
    )
    deleted = fields.Boolean()
    merged_ids = fields.List(
        fields.String(),
        data_key="mergedLeadIds",
        metadata={"description": "Ids of leads merged into it, which no longer resolve either"},
    )
    removed = fields.Nested(RemovedSchema)
    inbound_event_ids = fields.List(
        fields.String(),
        data_key="inboundEventIds",
        metadata={"description": "The inbound events whose payloads were tombstoned"},
    )


class LeadQuerySchema(Schema):
    email = Text(metadata={"description": "Leads with this email identity"})
    source = Text(metadata={"description": "Leads whose first touch has this source"})
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=250))
    cursor = Text(validate=validate.Length(min=1, max=64))


class LeadPageSchema(Schema):
    data = fields.List(fields.Nested(LeadSchema))
    next_cursor = fields.String(data_key="nextCursor", allow_none=True)


class AttributionQuerySchema(Schema):
    model = fields.String(load_default="first_touch", validate=validate.OneOf(MODELS))
    start = Timestamp(data_key="from", metadata={"description": "Conversions at or after"})
    end = Timestamp(data_key="to", metadata={"description": "Conversions before"})

    @validates_schema
    def validate_period(self, data: dict[str, Any], **_: Any) -> None:
        if "start" in data and "end" in data and data["start"] >= data["end"]:
            raise ValidationError("must be later than from", "to")


class CreditSchema(Schema):
    source = fields.String(allow_none=True, metadata={"description": "null: no touch before"})
    campaign = fields.String(allow_none=True)
    currency = fields.String(metadata={"example": "usd"})
    revenue = fields.Integer(metadata={"description": "Net of refunds, in minor units"})
    conversions = fields.Float(metadata={"description": "Fractional under the linear model"})


class SourceCreditSchema(CreditSchema):
    class Meta:
        exclude = ("campaign",)


class AttributionSchema(Schema):
    model = fields.String(metadata={"enum": list(MODELS)})
    start = Timestamp(data_key="from", allow_none=True)
    end = Timestamp(data_key="to", allow_none=True)
    by_source = fields.List(fields.Nested(SourceCreditSchema), data_key="bySource")
    by_campaign = fields.List(fields.Nested(CreditSchema), data_key="byCampaign")


class GoalCreateSchema(Schema):
    name = Text(required=True, validate=validate.Length(min=1, max=200))
    metric = fields.String(required=True, validate=validate.OneOf(METRICS))
    target = fields.Integer(
        required=True,
        strict=True,
        validate=validate.Range(min=1, max=MAX_TARGET),
        metadata={"description": "For revenue, in minor units"},
    )
    source = Text(
        allow_none=True,
        validate=validate.Length(min=1, max=200),
        metadata={"description": "Count only leads whose first touch has this source"},
    )


class GoalSchema(Schema):
    id = fields.String(metadata={"example": "goal_2x9Yd"})
    name = fields.String()
    metric = fields.String(metadata={"enum": list(METRICS)})
    target = fields.Integer()
    source = fields.String(allow_none=True)
    value = fields.Integer(metadata={"description": "The metric now"})
    progress = fields.Method("_progress", metadata={"type": "number", "example": 0.42})
    reached = fields.Method("_reached", metadata={"type": "boolean"})
    reached_at = Timestamp(data_key="reachedAt", allow_none=True)
    created_at = Timestamp(data_key="createdAt")

    def _progress(self, goal: Any) -> float:
        return round(min(1.0, goal.value / max(goal.target, 1)), 4)

    def _reached(self, goal: Any) -> bool:
        return goal.reached_at is not None
