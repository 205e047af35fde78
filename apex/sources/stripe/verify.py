"""Stripe's inbound scheme: `Stripe-Signature: t=…,v1=…` over "{t}.{body}", 300 s tolerance."""

from __future__ import annotations

from collections.abc import Sequence

from apex.errors import InvalidSignatureError
from apex.sources.reading import get
from apex.sources.request import InboundEvent, RawRequest
from apex.sources.verification import (
    check_timestamp,
    content_key,
    hmac_sha256,
    matches_any,
    parse_json,
    parse_unix_time,
    require_header,
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

    Once the signature holds, content never refuses the delivery: a thin notification
    (`"object": "v2.core.event"`) is stored like any event (processing fetches it, or ignores it
    without STRIPE_API_KEY); a JSON body that is not an event with string `id` and `type` is
    stored `ignored` with the reason, keyed by content_key().

    Raises InvalidSignatureError (header missing or malformed, no matching v1, timestamp outside
    the tolerance), BadRequestError (the verified body is not JSON), SourceNotConfiguredError
    (no usable secret).
    """
    keys = usable_secrets(secrets, NAME)
    timestamp, signatures = _parse_header(require_header(request, SIGNATURE_HEADER))
    signed_payload = f"{timestamp}.".encode() + request.body
    expected = [hmac_sha256(key, signed_payload).hex() for key in keys]
    if not matches_any(expected, signatures):
        raise InvalidSignatureError(f"No {SCHEME} signature in {SIGNATURE_HEADER} matches the body")
    check_timestamp(timestamp, now, TOLERANCE, f"{SIGNATURE_HEADER} timestamp")

    event = parse_json(request.body)
    event_id = get(event, "id")
    event_type = get(event, "type")
    if isinstance(event_id, str) and event_id and isinstance(event_type, str) and event_type:
        return [InboundEvent(source=NAME, dedupe_key=event_id, type=event_type, payload=event)]
    what = "object" if isinstance(event, dict) else "JSON value"
    return [
        InboundEvent(
            source=NAME,
            dedupe_key=content_key(event),
            type=event_type if isinstance(event_type, str) and event_type else "unknown",
            payload=event,
            ignored=f"The Stripe {what} has no 'id' and 'type' strings: not a Stripe event",
        )
    ]


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
