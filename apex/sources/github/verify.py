"""GitHub's inbound scheme: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>`."""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import parse_qs

from apex.errors import BadRequestError, InvalidSignatureError
from apex.sources.request import InboundEvent, RawRequest
from apex.sources.verification import (
    hmac_sha256,
    matches_any,
    parse_json_object,
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


def verify(request: RawRequest, secrets: Sequence[str], now: float) -> list[InboundEvent]:
    """Verify a GitHub delivery and return its one event, `ping` included.

    Any of `secrets` may have signed it. GitHub signs no timestamp, so `now` is unused; replays are
    caught by the dedupe key, "<hook id>:<delivery id>" (the delivery id alone without a hook id),
    since GitHub keeps the delivery id on redelivery but may reuse it across hooks.
    A hook configured with the form content type sends the JSON in the `payload` field.

    Raises InvalidSignatureError (no X-Hub-Signature-256, even when the SHA-1 X-Hub-Signature is
    there, or no match), BadRequestError (missing X-GitHub-Event or X-GitHub-Delivery, or the
    payload is not a JSON object), SourceNotConfiguredError (no usable secret).
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

    event_type = require_header(request, EVENT_HEADER, BadRequestError)
    delivery_id = require_header(request, DELIVERY_HEADER, BadRequestError)
    hook_id = (request.header(HOOK_ID_HEADER) or "").strip()
    return [
        InboundEvent(
            source=NAME,
            dedupe_key=f"{hook_id}:{delivery_id}" if hook_id else delivery_id,
            type=event_type,
            payload=_payload(request),
            headers=_kept_headers(request),
        )
    ]


def _payload(request: RawRequest) -> dict[str, object]:
    content_type = (request.header("Content-Type") or "").partition(";")[0].strip().lower()
    if content_type != FORM_CONTENT_TYPE:
        return parse_json_object(request.body, "A GitHub payload")
    try:
        fields = parse_qs(request.body.decode("ascii"), keep_blank_values=True)
    except UnicodeDecodeError:
        raise BadRequestError("Body is not a URL-encoded form") from None
    values = fields.get("payload", [])
    if len(values) != 1:
        raise BadRequestError("A form-encoded GitHub delivery needs exactly one payload field")
    return parse_json_object(values[0], "A GitHub payload")


def _kept_headers(request: RawRequest) -> dict[str, str]:
    kept = {name.lower(): request.header(name) for name in KEPT_HEADERS}
    return {name: value for name, value in kept.items() if value is not None}
