"""HubSpot's inbound schemes: signature v3 (HMAC, timestamped), legacy v1 and v2 (plain SHA-256)."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Sequence

from apex.errors import BadRequestError, InvalidSignatureError
from apex.sources.request import InboundEvent, RawRequest
from apex.sources.verification import (
    check_timestamp,
    hmac_sha256,
    matches_any,
    parse_json,
    parse_unix_time,
    require_header,
    required_string,
    usable_secrets,
)

NAME = "hubspot"
V3_SIGNATURE_HEADER = "X-HubSpot-Signature-v3"
TIMESTAMP_HEADER = "X-HubSpot-Request-Timestamp"  # unix milliseconds
LEGACY_SIGNATURE_HEADER = "X-HubSpot-Signature"
LEGACY_VERSION_HEADER = "X-HubSpot-Signature-Version"
TOLERANCE = 300  # seconds

# The escapes HubSpot decodes in the URI before signing v3, exactly as its docs list them;
# every other escape (%20, %7B, …) stays as sent.
_V3_URI_DECODED = {
    "%3A": ":",
    "%2F": "/",
    "%3F": "?",
    "%40": "@",
    "%21": "!",
    "%24": "$",
    "%27": "'",
    "%28": "(",
    "%29": ")",
    "%2A": "*",
    "%2C": ",",
    "%3B": ";",
}
_V3_URI_ESCAPE = re.compile("|".join(_V3_URI_DECODED))

# Together they identify one event of a batch: HubSpot says eventId alone is not unique.
# portalId (the tenant) tells apart the portals of a public app, but only it may be absent.
_KEY_FIELDS = ("portalId", "subscriptionId", "eventId", "objectId", "occurredAt")
_OPTIONAL_KEY_FIELDS = frozenset({"portalId"})


def verify(request: RawRequest, secrets: Sequence[str], now: float) -> list[InboundEvent]:
    """Verify a HubSpot delivery and return one event per element of its JSON array body.

    With `X-HubSpot-Signature-v3`: base64 HMAC-SHA256 of method + URI + body + timestamp, the URI
    being `request.url` with HubSpot's listed escapes decoded, and the millisecond timestamp within
    TOLERANCE of `now` either way. A bad v3 never falls back to the legacy header. Without it:
    `X-HubSpot-Signature` as `X-HubSpot-Signature-Version` says, v1 = hex SHA-256 of secret + body,
    v2 = hex SHA-256 of secret + method + URI + body (URI as sent). Any of `secrets` may match.

    Each event is keyed "portalId:subscriptionId:eventId:objectId:occurredAt" and typed by its
    subscriptionType. An empty array gives no events.

    Raises InvalidSignatureError (headers missing or malformed, unknown legacy version, no match,
    timestamp outside the tolerance), BadRequestError (the body is not a JSON array of objects
    carrying those fields), SourceNotConfiguredError (no usable secret).
    """
    keys = usable_secrets(secrets, NAME)
    if request.header(V3_SIGNATURE_HEADER) is not None:
        _verify_v3(request, keys, now)
    elif request.header(LEGACY_SIGNATURE_HEADER) is not None:
        _verify_legacy(request, keys)
    else:
        raise InvalidSignatureError(
            f"Missing {V3_SIGNATURE_HEADER} (or legacy {LEGACY_SIGNATURE_HEADER}) header"
        )
    batch = parse_json(request.body)
    if not isinstance(batch, list):
        raise BadRequestError("A HubSpot delivery must be a JSON array of events")
    return [_event(index, item) for index, item in enumerate(batch)]


def _verify_v3(request: RawRequest, keys: list[str], now: float) -> None:
    signature = require_header(request, V3_SIGNATURE_HEADER)
    timestamp = require_header(request, TIMESTAMP_HEADER)
    signed_at_ms = parse_unix_time(timestamp, TIMESTAMP_HEADER)
    uri = _V3_URI_ESCAPE.sub(lambda escape: _V3_URI_DECODED[escape[0]], request.url)
    message = (request.method.upper() + uri).encode() + request.body + timestamp.encode()
    expected = [base64.b64encode(hmac_sha256(key, message)).decode("ascii") for key in keys]
    if not matches_any(expected, [signature]):
        raise InvalidSignatureError(f"{V3_SIGNATURE_HEADER} does not match the request")
    check_timestamp(signed_at_ms / 1000, now, TOLERANCE, TIMESTAMP_HEADER)


def _verify_legacy(request: RawRequest, keys: list[str]) -> None:
    signature = require_header(request, LEGACY_SIGNATURE_HEADER)
    version = (request.header(LEGACY_VERSION_HEADER) or "").strip().lower()
    if version == "v1":
        signed = b""
    elif version == "v2":
        signed = (request.method.upper() + request.url).encode()
    else:
        raise InvalidSignatureError(f"{LEGACY_VERSION_HEADER} must be v1 or v2")
    signed += request.body
    expected = [hashlib.sha256(key.encode() + signed).hexdigest() for key in keys]
    if not matches_any(expected, [signature]):
        raise InvalidSignatureError(f"{LEGACY_SIGNATURE_HEADER} ({version}) does not match")


def _event(index: int, item: object) -> InboundEvent:
    what = f"HubSpot event {index}"
    if not isinstance(item, dict):
        raise BadRequestError(f"{what} is not a JSON object")
    return InboundEvent(
        source=NAME,
        dedupe_key=":".join(_key_part(item, field, what) for field in _KEY_FIELDS),
        type=required_string(item, "subscriptionType", what),
        payload=item,
    )


def _key_part(item: dict[str, object], field: str, what: str) -> str:
    value = item.get(field)
    if value is None and field in _OPTIONAL_KEY_FIELDS:
        return ""
    if isinstance(value, bool) or not isinstance(value, int | str) or value == "":
        raise BadRequestError(f"{what} has no {field!r} number or string")
    return str(value)
