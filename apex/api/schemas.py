"""Subscription schemas: they validate requests and generate the OpenAPI document."""

from __future__ import annotations

from flask import current_app
from marshmallow import Schema, ValidationError, fields, validate

from apex import subscriptions
from apex.api.fields import Timestamp
from apex.delivery.signing import parse_secret


def _check_url(value: str) -> None:
    settings = current_app.extensions["apex"].settings
    problem = subscriptions.url_problem(
        value, settings.allow_http, settings.allow_private_destinations
    )
    if problem:
        raise ValidationError(problem)


def _check_events(value: list[str]) -> None:
    problem = subscriptions.events_problem(value)
    if problem:
        raise ValidationError(problem)


def _check_secret(value: str) -> None:
    try:
        parse_secret(value)
    except ValueError as exc:
        raise ValidationError(str(exc)) from None


class SubscriptionSchema(Schema):
    id = fields.String(metadata={"example": "wh_2x9Yd"})
    url = fields.String(metadata={"example": "https://example.com/hooks/apex"})
    events = fields.List(fields.String(), metadata={"example": ["lead.created"]})
    status = fields.String(metadata={"enum": list(subscriptions.STATUSES)})
    description = fields.String()
    disabled_reason = fields.String(data_key="disabledReason", allow_none=True)
    created_at = Timestamp(data_key="createdAt")
    updated_at = Timestamp(data_key="updatedAt")


class SubscriptionWithSecretSchema(SubscriptionSchema):
    secret = fields.String(metadata={"description": "Shown only in this response."})


class SubscriptionCreateSchema(Schema):
    url = fields.String(required=True, validate=_check_url)
    events = fields.List(fields.String(), required=True, validate=_check_events)
    secret = fields.String(
        validate=_check_secret,
        metadata={"description": "whsec_ + base64 of 24-64 bytes; generated when absent"},
    )
    description = fields.String(validate=validate.Length(max=500))


class SubscriptionUpdateSchema(Schema):
    url = fields.String(validate=_check_url)
    events = fields.List(fields.String(), validate=_check_events)
    description = fields.String(validate=validate.Length(max=500))
    status = fields.String(validate=validate.OneOf(["active", "paused"]))


class SubscriptionIdSchema(Schema):
    id = fields.String(required=True, validate=validate.Length(min=1, max=64))


class DeletedSchema(Schema):
    id = fields.String()
    deleted = fields.Boolean()


class RotateSecretSchema(Schema):
    secret = fields.String(validate=_check_secret)


class RotatedSchema(Schema):
    id = fields.String()
    secret = fields.String()
    previous_secret_expires_at = Timestamp(data_key="previousSecretExpiresAt")
