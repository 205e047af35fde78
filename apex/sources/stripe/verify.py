"""Stripe's inbound scheme: `Stripe-Signature: t=…,v1=…` over "{t}.{body}", 300 s tolerance."""

from __future__ import annotations

from collections.abc import Sequence

from apex.errors import BadRequestError, InvalidSignatureError
from apex.sources.request import InboundEvent, RawRequest
from apex.sources.verification import (
    check_timestamp,
    hmac_sha256,
    matches_any,
    parse_json_object,
    parse_unix_time,
    require_header,
    required_string,
    usable_secrets,
)

NAME = "stripe"
SIGNATURE_HEADER = "Stripe-Signature"
SCHEME = "v1"  # Stripe's only real scheme; v0 and anything else are ignored, as stripe-python does
TOLERANCE = 300  # seconds, stripe.Webhook.DEFAULT_TOLERANCE


def verify(request: RawRequest, secrets: Sequence[str], now: float) -> list[InboundEvent]:
    """Verify a Stripe delivery and return its one event, keyed by the Stripe event id.

    The scheme of `stripe.WebhookSignature.verify_header`, which reads `time.time()` itself and so
    cannot take `now`: any `v1` signed with any of `secrets` passes. Unlike stripe-python, a
    timestamp more than TOLERANCE seconds in the future is refused too.

    Raises InvalidSignatureError (header missing or malformed, no matching v1, timestamp outside
    the tolerance), BadRequestError (verified body is not a JSON event with string `id` and `type`,
    or is a thin v2 notification), SourceNotConfiguredError (no usable secret).
    """
    keys = usable_secrets(secrets, NAME)
    timestamp, signatures = _parse_header(require_header(request, SIGNATURE_HEADER))
    signed_payload = f"{timestamp}.".encode() + request.body
    expected = [hmac_sha256(key, signed_payload).hex() for key in keys]
    if not matches_any(expected, signatures):
        raise InvalidSignatureError(f"No {SCHEME} signature in {SIGNATURE_HEADER} matches the body")
    check_timestamp(timestamp, now, TOLERANCE, f"{SIGNATURE_HEADER} timestamp")

    event = parse_json_object(request.body, "A Stripe event")
    if event.get("object") == "v2.core.event":
        # Thin notifications carry no snapshot; stripe.Webhook.construct_event refuses them too.
        raise BadRequestError("Thin v2 event notifications are not supported")
    event_id = required_string(event, "id", "The Stripe event")
    event_type = required_string(event, "type", "The Stripe event")
    return [InboundEvent(source=NAME, dedupe_key=event_id, type=event_type, payload=event)]


def _parse_header(header: str) -> tuple[int, list[str]]:
    """The first `t` and every `v1` of a `Stripe-Signature` value; raises InvalidSignatureError."""
    timestamps: list[str] = []
    signatures: list[str] = []
    for item in header.split(","):
        # As Stripe's libraries read it: a value ends at the next "=", if any.
        key, _, value = item.partition("=")
        value = value.partition("=")[0]
        if key == "t":
            timestamps.append(value)
        elif key == SCHEME:
            signatures.append(value)
    if not timestamps:
        raise InvalidSignatureError(f"{SIGNATURE_HEADER} has no t= timestamp")
    if not signatures:
        raise InvalidSignatureError(f"{SIGNATURE_HEADER} has no {SCHEME} signature")
    return parse_unix_time(timestamps[0], f"{SIGNATURE_HEADER} t"), signatures
