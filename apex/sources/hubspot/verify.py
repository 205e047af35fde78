"""HubSpot's inbound schemes: signature v3 (HMAC, timestamped); legacy v1 and v2 (plain SHA-256,
replayable) only when the operator allows them; every element of a verified batch is stored."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping, Sequence

from apex.errors import InvalidSignatureError
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
# portalId (the tenant) and subscriptionId may be absent (captured deliveries lack the latter).
_KEY_PART = re.compile(r"[0-9A-Za-z_.-]{1,64}")
_KEY_LENGTH = 400  # inbound_events.dedupe_key: a longer natural key falls back to the content's
LEGACY_SETTING = "APEX_HUBSPOT_LEGACY_SIGNATURES"


def verify(
    request: RawRequest, secrets: Sequence[str], now: float, legacy_signatures: bool = False
) -> list[InboundEvent]:
    """Verify a HubSpot delivery and return one event per element of its JSON body.

    `X-HubSpot-Signature-v3`: base64 HMAC-SHA256 of method + URI + body + timestamp, the URI
    being `request.url` with HubSpot's listed escapes decoded, and the millisecond timestamp within
    TOLERANCE of `now` either way. Only with `legacy_signatures` (APEX_HUBSPOT_LEGACY_SIGNATURES)
    does a request without v3 fall back to `X-HubSpot-Signature` as `X-HubSpot-Signature-Version`
    says: v1 = hex SHA-256 of secret + body, v2 = hex SHA-256 of secret + method + URI + body (URI
    as sent). Neither carries a timestamp, so a captured request replays forever: off by default.
    A bad v3 never falls back. Any of `secrets` may match.

    Content never refuses a verified delivery: the body is a JSON array of events (a single
    value is taken as a batch of one). Each element is typed by its `subscriptionType` (or the
    `eventType` the docs' examples spell) and keyed "portalId:subscriptionId:eventId:object:
    occurredAt" (object: objectId, or fromObjectId>toObjectId) plus the property or association
    label it changed (see _natural_key), or by content_key() with attemptNumber counted as 0
    when it lacks eventId, occurredAt or an object id: a retry has the key of the original.
    An element that is not an object or has no type is returned `ignored` with the reason. An
    empty array gives no events.

    Raises InvalidSignatureError (headers missing or malformed, legacy scheme not allowed or
    unknown, no match, timestamp outside the tolerance), BadRequestError (the body is not JSON),
    SourceNotConfiguredError (no usable secret).
    """
    keys = usable_secrets(secrets, NAME)
    if request.header(V3_SIGNATURE_HEADER) is not None:
        _verify_v3(request, keys, now)
    elif request.header(LEGACY_SIGNATURE_HEADER) is not None and legacy_signatures:
        _verify_legacy(request, keys)
    elif request.header(LEGACY_SIGNATURE_HEADER) is not None:
        raise InvalidSignatureError(
            f"Missing {V3_SIGNATURE_HEADER} header; legacy {LEGACY_SIGNATURE_HEADER} (v1/v2, "
            f"replayable) is refused unless {LEGACY_SETTING}=1"
        )
    else:
        raise InvalidSignatureError(f"Missing {V3_SIGNATURE_HEADER} header")
    batch = parse_json(request.body)
    elements = batch if isinstance(batch, list) else [batch]
    return [_event(index, item) for index, item in enumerate(elements)]


def verify_with_legacy(
    request: RawRequest, secrets: Sequence[str], now: float
) -> list[InboundEvent]:
    """verify() that also accepts the legacy v1/v2 signatures (APEX_HUBSPOT_LEGACY_SIGNATURES=1)."""
    return verify(request, secrets, now, legacy_signatures=True)


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


def event_type(item: Mapping[str, object]) -> str | None:
    """An element's type: `subscriptionType`, else `eventType` (the docs' example spelling)."""
    for field in ("subscriptionType", "eventType"):
        value = item.get(field)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _event(index: int, item: object) -> InboundEvent:
    what = f"HubSpot element {index} of the batch"
    if not isinstance(item, dict):
        return InboundEvent(
            source=NAME,
            dedupe_key=content_key(item),
            type="unknown",
            payload=item,
            ignored=f"{what} is not a JSON object, not a HubSpot event",
        )
    subscription = event_type(item)
    return InboundEvent(
        source=NAME,
        dedupe_key=_natural_key(item, subscription) or _content_key(item),
        type=subscription or "unknown",
        payload=item,
        ignored=None if subscription else f"{what} has no subscriptionType (or eventType)",
    )


def _natural_key(item: Mapping[str, object], subscription: str | None) -> str | None:
    """portalId:subscriptionId:eventId:object:occurredAt, then what tells apart the changes one
    event may describe at once: `:propertyName` when there is no subscriptionId (a property
    subscription names its one property), and for an association change `:` its label (one
    subscription covers every label). None when the element lacks its eventId, occurredAt or
    object ids (or they, or the parts that tell changes apart, are not short numbers or names),
    or the key would be longer than inbound_events keeps."""
    event, occurred = _part(item.get("eventId")), _part(item.get("occurredAt"))
    source, sink = _part(item.get("fromObjectId")), _part(item.get("toObjectId"))
    association = source is not None and sink is not None
    target = f"{source}>{sink}" if association else _part(item.get("objectId"))
    if event is None or occurred is None or target is None:
        return None
    # Without a subscription id the type tells apart the two sides of one association change.
    subscription_id = _part(item.get("subscriptionId"))
    portal = _part(item.get("portalId")) or ""
    parts = [portal, subscription_id or subscription or "", event, target, occurred]
    if association:
        label = _association_label(item)
        if label is None:
            return None
        parts += [label] if label else []
    elif subscription_id is None and item.get("propertyName") is not None:
        name = _part(item.get("propertyName"))
        if name is None:
            return None
        parts.append(name)
    key = ":".join(parts)
    return key if len(key) <= _KEY_LENGTH else None


def _association_label(item: Mapping[str, object]) -> str | None:
    """An association change's label, "type/category/typeId/primary" (e.g.
    "/HUBSPOT_DEFINED/3/primary"), "" for a plain legacy one (no category, typeId or primary
    flag: its associationType, CONTACT_TO_DEAL, follows from the subscription and direction,
    and its key stays as it was), or None when a part is there but unreadable."""
    labels = []
    for field in ("associationType", "associationCategory", "associationTypeId"):
        value = item.get(field)
        label = "" if value is None else _part(value)
        if label is None:
            return None
        labels.append(label)
    primary = item.get("isPrimaryAssociation") in (True, "true", "TRUE", "True")
    labels.append("primary" if primary else "")
    return "/".join(labels) if any(labels[1:]) else ""


def _content_key(item: Mapping[str, object]) -> str:
    """content_key() of the element as HubSpot first sends it: a retry differs only in its
    attemptNumber, which counts as 0, so the retry is known as the same element."""
    if "attemptNumber" in item:
        item = {**item, "attemptNumber": 0}
    return content_key(item)


def _part(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | str):
        return None
    text = str(value)
    return text if _KEY_PART.fullmatch(text) else None
