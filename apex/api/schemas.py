"""Subscription schemas: they validate requests and generate the OpenAPI document."""

from __future__ import annotations

from typing import Any

from flask import current_app
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from apex import subscriptions
from apex.api.fields import Text, Timestamp
from apex.catalog import CATALOG, WILDCARD
from apex.delivery import destinations
from apex.delivery.signing import parse_secret

# The document states the rules of url_problem() and parse_secret() as closely as a pattern can,
# so that what it calls valid is accepted and what it calls invalid is refused. What no pattern
# states: an xn-- label must be valid IDNA, a [bracketed] IPv6 host is accepted too, and the
# settings (http://, private hosts, APEX_ALLOWED_PORTS) narrow or widen what the pattern shows.
# Ports as destinations.Policy allows them with http:// allowed: 80, 443 and 1024-65535 (leading
# zeros are read as decimal by both URL parsers).
_PORT = (
    r"0*(80|443|102[4-9]|10[3-9][0-9]|1[1-9][0-9]{2}|[2-9][0-9]{3}|[1-5][0-9]{4}"
    r"|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
)
URL_DOC = {
    "maxLength": subscriptions.MAX_URL_LENGTH,
    # The scheme in any case; a host of labels of 1-63 letters, digits, - and _ (an optional
    # trailing dot); an allowed port or empty; then a path or query of printable ASCII without #.
    "pattern": r"^[Hh][Tt][Tt][Pp][Ss]?://([0-9A-Za-z_-]{1,63}\.)*[0-9A-Za-z_-]{1,63}\.?"
    rf"(:({_PORT})?)?"
    r"([/?][!\"$-~]*)?$",
    "description": "https:// (http:// too where APEX_ALLOW_HTTP=1), printable ASCII, an IDN host "
    "in punycode; port 443, 80 (with APEX_ALLOW_HTTP=1), 1024-65535 or one APEX_ALLOWED_PORTS "
    "adds; no credentials or #fragment; not a private address in any form (127.1, 0x7f000001, "
    "localhost.) unless APEX_ALLOW_PRIVATE_DESTINATIONS=1.",
    "example": "https://example.com/hooks/apex",
}
_EVENTS_DOC = {"uniqueItems": True, "example": ["lead.created"]}


def _event_type() -> fields.String:
    return fields.String(metadata={"enum": [WILDCARD, *CATALOG]})


SECRET_DOC = {
    # Canonical padded base64 of 24-64 bytes: 8-21 full groups, or a tail of 1 or 2 bytes whose
    # unused low bits are zero.
    "pattern": r"^whsec_((?:[A-Za-z0-9+/]{4}){8,21}(?:[A-Za-z0-9+/][AQgw]==)?"
    r"|(?:[A-Za-z0-9+/]{4}){8,20}[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=)$",
    "description": "whsec_ + canonical padded base64 of 24-64 bytes; generated when absent",
}


def _check_url(value: str) -> None:
    settings = current_app.extensions["apex"].settings
    problem = subscriptions.url_problem(
        value,
        settings.allow_http,
        settings.allow_private_destinations,
        policy=destinations.Policy.of(settings),
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


def _rate_limit() -> fields.Integer:
    return fields.Integer(
        strict=True,
        allow_none=True,
        data_key="rateLimit",
        validate=validate.Range(min=1, max=10_000),
        metadata={"description": "Requests per second to this endpoint over all workers; "
                  "null: unlimited (like Svix's throttleRate)."},
    )  # fmt: skip


def _concurrency() -> fields.Integer:
    return fields.Integer(
        strict=True,
        allow_none=True,
        validate=validate.Range(min=1, max=1000),
        metadata={"description": "Requests in flight to this endpoint over all workers, at most "
                  "APEX_ENDPOINT_CONCURRENCY; null: that default. 1 sends one at a time, oldest "
                  "due first (see the README on ordering)."},
    )  # fmt: skip


class HealthSchema(Schema):
    """The endpoint's circuit (apex.delivery.circuit)."""

    circuit = fields.String(data_key="state", metadata={"enum": ["closed", "open"]})
    circuit_since = Timestamp(data_key="since", allow_none=True)
    circuit_reason = fields.String(data_key="reason", allow_none=True)
    unreachable_count = fields.Integer(data_key="consecutiveFailures")
    probe_at = Timestamp(data_key="nextProbeAt", allow_none=True)


class SubscriptionSchema(Schema):
    id = fields.String(metadata={"example": "wh_2x9Yd"})
    url = fields.String(metadata={"example": "https://example.com/hooks/apex"})
    events = fields.List(_event_type(), metadata={"example": ["lead.created"]})
    status = fields.String(metadata={"enum": list(subscriptions.STATUSES)})
    description = fields.String()
    disabled_reason = fields.String(data_key="disabledReason", allow_none=True)
    created_at = Timestamp(data_key="createdAt")
    updated_at = Timestamp(data_key="updatedAt")
    rate_limit = fields.Integer(data_key="rateLimit", allow_none=True)
    concurrency = fields.Integer(allow_none=True)
    health = fields.Nested(HealthSchema)


class SubscriptionWithSecretSchema(SubscriptionSchema):
    secret = fields.String(metadata={"description": "Shown only in this response."})


class SubscriptionCreateSchema(Schema):
    url = fields.String(required=True, validate=_check_url, metadata=URL_DOC)
    events = fields.List(
        _event_type(),
        required=True,
        validate=[validate.Length(min=1), _check_events],
        metadata=_EVENTS_DOC,
    )
    secret = fields.String(validate=_check_secret, metadata=SECRET_DOC)
    description = Text(validate=validate.Length(max=500))
    rate_limit = _rate_limit()
    concurrency = _concurrency()


class SubscriptionUpdateSchema(Schema):
    url = fields.String(validate=_check_url, metadata=URL_DOC)
    events = fields.List(
        _event_type(), validate=[validate.Length(min=1), _check_events], metadata=_EVENTS_DOC
    )
    description = Text(validate=validate.Length(max=500))
    status = fields.String(validate=validate.OneOf(["active", "paused"]))
    rate_limit = _rate_limit()
    concurrency = _concurrency()

    @validates_schema
    def validate_not_empty(self, data: dict[str, Any], **_: Any) -> None:
        if not data:
            raise ValidationError(
                "name at least one of url, events, description, status, rateLimit, concurrency",
                "_body",
            )


class SubscriptionIdSchema(Schema):
    id = Text(required=True, validate=validate.Length(min=1, max=64))


class DeletedSchema(Schema):
    id = fields.String()
    deleted = fields.Boolean()


class RotateSecretSchema(Schema):
    secret = fields.String(validate=_check_secret, metadata=SECRET_DOC)


class RotatedSchema(Schema):
    id = fields.String()
    secret = fields.String()
    previous_secret_expires_at = Timestamp(data_key="previousSecretExpiresAt")
