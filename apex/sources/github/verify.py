"""GitHub's inbound scheme: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>`."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import parse_qs

from apex.errors import BadRequestError, InvalidSignatureError
from apex.sources.request import InboundEvent, RawRequest
from apex.sources.verification import (
    content_key,
    hmac_sha256,
    matches_any,
    parse_json,
    require_header,
    usable_secrets,
)

NAME = "github"
SIGNATURE_HEADER = "X-Hub-Signature-256"
SHA1_SIGNATURE_HEADER = "X-Hub-Signature"  # legacy HMAC-SHA1, never accepted
EVENT_HEADER = "X-GitHub-Event"
DELIVERY_HEADER = "X-GitHub-Delivery"
HOOK_ID_HEADER = "X-GitHub-Hook-ID"
# What processing may need; the signatures are left behind.
KEPT_HEADERS = (
    EVENT_HEADER,
    DELIVERY_HEADER,
    HOOK_ID_HEADER,
    "X-GitHub-Hook-Installation-Target-Type",
    "X-GitHub-Hook-Installation-Target-ID",
)
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
MAX_EVENT_TYPE = 100  # the width of the stored type


def verify(request: RawRequest, secrets: Sequence[str], now: float) -> list[InboundEvent]:
    """Verify a GitHub delivery and return its one event, `ping` included.

    Any of `secrets` may have signed it. GitHub signs neither a timestamp nor its headers, so
    `now` is unused and the dedupe key is the SHA-256 of the signed payload's canonical JSON:
    changing the unsigned X-GitHub-Delivery, X-GitHub-Event or X-GitHub-Hook-ID of a captured
    delivery does not make it new, and GitHub's own redelivery (the same payload under the same
    delivery id) is a duplicate. The delivery id is kept in the stored headers for display.
    A hook configured with the form content type sends the JSON in the `payload` field.
    A verified payload that is JSON but not an object is stored `ignored` with the reason.

    Raises InvalidSignatureError (no X-Hub-Signature-256, even when the SHA-1 X-Hub-Signature is
    there, or no match), BadRequestError (the body is not JSON), SourceNotConfiguredError (no
    usable secret). Without X-GitHub-Event the event is stored `ignored`; X-GitHub-Delivery is
    optional (kept for display only).
    """
    keys = usable_secrets(secrets, NAME)
    if not request.header(SIGNATURE_HEADER) and request.header(SHA1_SIGNATURE_HEADER):
        raise InvalidSignatureError(
            f"Only the SHA-1 {SHA1_SIGNATURE_HEADER} was sent; {SIGNATURE_HEADER} is required"
        )
    signature = require_header(request, SIGNATURE_HEADER)
    expected = [f"sha256={hmac_sha256(key, request.body).hex()}" for key in keys]
    if not matches_any(expected, [signature]):
        raise InvalidSignatureError(f"{SIGNATURE_HEADER} does not match the body")

    event_type = (request.header(EVENT_HEADER) or "").strip()[:MAX_EVENT_TYPE]
    payload = _payload(request)
    ignored = None
    if not isinstance(payload, dict):
        ignored = f"A GitHub payload must be a JSON object, not {_kind(payload)}"
    elif not event_type:
        ignored = f"No {EVENT_HEADER} header: the payload's event type is unknown"
    return [
        InboundEvent(
            source=NAME,
            dedupe_key=content_key(payload),
            type=event_type or "unknown",
            payload=payload,
            headers=_kept_headers(request),
            ignored=ignored,
        )
    ]


def _payload(request: RawRequest) -> object:
    content_type = (request.header("Content-Type") or "").partition(";")[0].strip().lower()
    if content_type != FORM_CONTENT_TYPE:
        return parse_json(request.body)
    try:
        fields = parse_qs(request.body.decode("ascii"), keep_blank_values=True)
    except UnicodeDecodeError:
        raise BadRequestError("Body is not a URL-encoded form") from None
    values = fields.get("payload", [])
    if len(values) != 1:
        raise BadRequestError("A form-encoded GitHub delivery needs exactly one payload field")
    return parse_json(values[0])


def _kind(value: object) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return "a number"


def _kept_headers(request: RawRequest) -> dict[str, str]:
    kept = {name.lower(): request.header(name) for name in KEPT_HEADERS}
    return {name: value for name, value in kept.items() if value is not None}
