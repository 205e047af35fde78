"""apex.inbound.hubspot.verify: signature v3, legacy v1/v2, and the batched array body."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from apex.errors import BadRequestError, InvalidSignatureError, SourceNotConfiguredError
from apex.sources.hubspot import verify as hubspot
from apex.sources.request import RawRequest

VECTORS = json.loads((Path(__file__).parents[1] / "data" / "hubspot_vectors.json").read_text())[
    "vectors"
]
SECRET = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"
OLD_SECRET = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"
URL = "https://apex.example.com/api/webhooks/hubspot"
NOW = 1_764_165_660.0
NOW_MS = int(NOW * 1000)
BATCH = [
    {
        "eventId": 4082117301,
        "subscriptionId": 2841001,
        "portalId": 48120977,
        "appId": 3310452,
        "occurredAt": 1764165600123,
        "subscriptionType": "contact.creation",
        "attemptNumber": 0,
        "objectId": 90210554101,
        "changeFlag": "CREATED",
        "changeSource": "FORM",
    },
    {
        "eventId": 1950336821,
        "subscriptionId": 2841002,
        "portalId": 48120977,
        "appId": 3310452,
        "occurredAt": 1764165600123,
        "subscriptionType": "contact.propertyChange",
        "attemptNumber": 0,
        "objectId": 90210554101,
        "propertyName": "email",
        "propertyValue": "jane.doe@acme.io",
        "changeSource": "FORM",
    },
]
BODY = json.dumps(BATCH).encode()


def sign_v3(body: bytes, timestamp: int | str, secret: str = SECRET, url: str = URL) -> str:
    """HubSpot v3 for a URL that needs no decoding; the vectors pin the algorithm."""
    message = f"POST{url}".encode() + body + str(timestamp).encode()
    return base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()


def sign_legacy(version: str, body: bytes, secret: str = SECRET, url: str = URL) -> str:
    signed = b"" if version == "v1" else f"POST{url}".encode()
    return hashlib.sha256(secret.encode() + signed + body).hexdigest()


def v3_request(
    body: bytes = BODY, *, timestamp: int | str = NOW_MS, signature: str | None = None
) -> RawRequest:
    headers = {
        "x-hubspot-signature-v3": sign_v3(body, timestamp) if signature is None else signature,
        "x-hubspot-request-timestamp": str(timestamp),
        "content-type": "application/json",
    }
    return RawRequest(method="POST", url=URL, headers=headers, body=body)


def legacy_request(
    version: str | None, body: bytes = BODY, *, signature: str | None = None
) -> RawRequest:
    if signature is None:
        signature = sign_legacy(version or "v1", body)
    headers = {"x-hubspot-signature": signature}
    if version is not None:
        headers["x-hubspot-signature-version"] = version
    return RawRequest(method="POST", url=URL, headers=headers, body=body)


def vector_request(vector: dict[str, Any], body: str | None = None) -> RawRequest:
    if vector["version"] == "v3":
        headers = {
            "x-hubspot-signature-v3": vector["signature"],
            "x-hubspot-request-timestamp": vector["timestamp"],
        }
    else:
        headers = {
            "x-hubspot-signature": vector["signature"],
            "x-hubspot-signature-version": vector["version"],
        }
    raw_body = (vector["body"] if body is None else body).encode()
    return RawRequest(method=vector["method"], url=vector["uri"], headers=headers, body=raw_body)


def vector_now(vector: dict[str, Any]) -> float:
    return int(vector.get("timestamp", NOW_MS)) / 1000


@pytest.mark.parametrize("vector", VECTORS, ids=[vector["name"] for vector in VECTORS])
def test_published_vector_passes_signature_check(vector: dict[str, Any]) -> None:
    raw = vector_request(vector)

    if vector["expect"] == "events":
        events = hubspot.verify(raw, [vector["client_secret"]], vector_now(vector))
        assert [event.payload for event in events] == json.loads(vector["body"])
    else:
        # Failing on the body shows the signature was accepted.
        reason = "not valid JSON" if vector["expect"] == "not_json" else "JSON array"
        with pytest.raises(BadRequestError, match=reason):
            hubspot.verify(raw, [vector["client_secret"]], vector_now(vector))


@pytest.mark.parametrize("vector", VECTORS, ids=[vector["name"] for vector in VECTORS])
def test_rejects_published_vector_with_tampered_body(vector: dict[str, Any]) -> None:
    raw = vector_request(vector, body=vector["body"] + " ")

    with pytest.raises(InvalidSignatureError, match="does not match"):
        hubspot.verify(raw, [vector["client_secret"]], vector_now(vector))


@pytest.mark.parametrize("vector", VECTORS, ids=[vector["name"] for vector in VECTORS])
def test_rejects_published_vector_with_wrong_secret(vector: dict[str, Any]) -> None:
    with pytest.raises(InvalidSignatureError, match="does not match"):
        hubspot.verify(vector_request(vector), [OLD_SECRET], vector_now(vector))


def test_v3_signs_the_uri_with_listed_escapes_decoded() -> None:
    (vector,) = [vector for vector in VECTORS if vector["name"] == "reference_v3_encoded_uri"]
    signed_as_sent = sign_v3(vector["body"].encode(), vector["timestamp"], url=vector["uri"])
    raw = RawRequest(
        method="POST",
        url=vector["uri"],
        headers={
            "x-hubspot-signature-v3": signed_as_sent,
            "x-hubspot-request-timestamp": vector["timestamp"],
        },
        body=vector["body"].encode(),
    )

    with pytest.raises(InvalidSignatureError):
        hubspot.verify(raw, [SECRET], vector_now(vector))


def test_returns_one_event_per_array_element() -> None:
    events = hubspot.verify(v3_request(), [SECRET], NOW)

    assert [(event.source, event.type, event.payload) for event in events] == [
        ("hubspot", "contact.creation", BATCH[0]),
        ("hubspot", "contact.propertyChange", BATCH[1]),
    ]
    assert [event.dedupe_key for event in events] == [
        "48120977:2841001:4082117301:90210554101:1764165600123",
        "48120977:2841002:1950336821:90210554101:1764165600123",
    ]
    assert all(event.headers == {} for event in events)


def test_dedupe_key_tells_apart_events_sharing_an_event_id() -> None:
    twins = [dict(BATCH[0], objectId=1), dict(BATCH[0], objectId=2), dict(BATCH[0], portalId=7)]
    body = json.dumps(twins).encode()

    events = hubspot.verify(v3_request(body), [SECRET], NOW)

    assert len({event.dedupe_key for event in events}) == 3


def test_dedupe_key_tolerates_missing_portal_id() -> None:
    event = {key: value for key, value in BATCH[0].items() if key != "portalId"}
    body = json.dumps([event]).encode()

    (verified,) = hubspot.verify(v3_request(body), [SECRET], NOW)

    assert verified.dedupe_key == ":2841001:4082117301:90210554101:1764165600123"


def test_accepts_empty_batch() -> None:
    assert hubspot.verify(v3_request(b"[]"), [SECRET], NOW) == []


@pytest.mark.parametrize(
    ("signed_at_ms", "accepted"),
    [
        (NOW_MS - 300_000, True),
        (NOW_MS + 300_000, True),
        (NOW_MS - 300_001, False),
        (NOW_MS - 10 * 60_000, False),
        (NOW_MS + 300_001, False),
        (NOW_MS + 60 * 60_000, False),
        (int(NOW), False),
    ],
    ids=[
        "at_tolerance_in_past",
        "at_tolerance_in_future",
        "just_older_than_tolerance",
        "ten_minutes_old",
        "just_beyond_tolerance_in_future",
        "one_hour_in_future",
        "seconds_instead_of_milliseconds",
    ],
)
def test_rejects_signature_older_or_newer_than_tolerance(signed_at_ms: int, accepted: bool) -> None:
    raw = v3_request(timestamp=signed_at_ms)

    if accepted:
        assert hubspot.verify(raw, [SECRET], NOW)
    else:
        with pytest.raises(InvalidSignatureError, match="tolerance"):
            hubspot.verify(raw, [SECRET], NOW)


@pytest.mark.parametrize(
    ("secrets", "raw"),
    [
        ([SECRET, OLD_SECRET], v3_request()),
        ([OLD_SECRET, SECRET], v3_request()),
        ([OLD_SECRET, SECRET], legacy_request("v1")),
        ([OLD_SECRET, SECRET], legacy_request("v2")),
        (["", SECRET], v3_request()),
    ],
    ids=["v3_first", "v3_second", "v1_second", "v2_second", "blank_secret_skipped"],
)
def test_accepts_signature_from_any_rolling_secret(secrets: list[str], raw: RawRequest) -> None:
    assert hubspot.verify(raw, secrets, NOW)


@pytest.mark.parametrize("version", ["v1", "v2", "V2"])
def test_accepts_legacy_signature_when_v3_is_absent(version: str) -> None:
    assert len(hubspot.verify(legacy_request(version), [SECRET], NOW)) == 2


def test_v2_signature_covers_method_and_uri_but_v1_does_not() -> None:
    v1 = replace(legacy_request("v1"), method="PUT", url=URL + "?moved=1")
    v2 = replace(legacy_request("v2"), method="PUT", url=URL + "?moved=1")

    assert hubspot.verify(v1, [SECRET], NOW)
    with pytest.raises(InvalidSignatureError):
        hubspot.verify(v2, [SECRET], NOW)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (RawRequest("POST", URL, {}, BODY), "Missing X-HubSpot-Signature-v3"),
        (v3_request(signature=""), "Missing X-HubSpot-Signature-v3"),
        (
            RawRequest("POST", URL, {"x-hubspot-signature-v3": sign_v3(BODY, NOW_MS)}, BODY),
            "Missing X-HubSpot-Request-Timestamp",
        ),
        (v3_request(timestamp=""), "Missing X-HubSpot-Request-Timestamp"),
        (v3_request(timestamp="1.7e12"), "not an integer timestamp"),
        (v3_request(timestamp="9" * 5000), "not an integer timestamp"),
        (v3_request(signature=sign_v3(BODY, NOW_MS - 1)), "does not match"),
        (v3_request(signature="é" + sign_v3(BODY, NOW_MS)[1:]), "does not match"),
        (v3_request(signature=sign_v3(BODY, NOW_MS).rstrip("=")), "does not match"),
        (legacy_request(None), "must be v1 or v2"),
        (legacy_request("v3"), "must be v1 or v2"),
        (legacy_request("v1", signature=sign_legacy("v2", BODY)), "does not match"),
        (legacy_request("v2", signature=sign_legacy("v1", BODY)), "does not match"),
        (legacy_request("v1", signature=""), "Missing X-HubSpot-Signature"),
    ],
    ids=[
        "no_signature_header",
        "blank_v3",
        "v3_without_timestamp",
        "blank_timestamp",
        "non_integer_timestamp",
        "huge_timestamp",
        "timestamp_changed_after_signing",
        "non_ascii_signature",
        "base64_padding_dropped",
        "legacy_without_version",
        "legacy_unknown_version",
        "v2_signature_labelled_v1",
        "v1_signature_labelled_v2",
        "blank_legacy",
    ],
)
def test_rejects_bad_or_missing_signature(raw: RawRequest, reason: str) -> None:
    with pytest.raises(InvalidSignatureError, match=reason) as caught:
        hubspot.verify(raw, [SECRET], NOW)
    assert SECRET not in caught.value.detail
    assert "jane.doe" not in caught.value.detail


def test_bad_v3_never_falls_back_to_a_valid_legacy_signature() -> None:
    headers = {
        "x-hubspot-signature-v3": sign_v3(BODY, NOW_MS, secret=OLD_SECRET),
        "x-hubspot-request-timestamp": str(NOW_MS),
        "x-hubspot-signature": sign_legacy("v1", BODY),
        "x-hubspot-signature-version": "v1",
    }

    with pytest.raises(InvalidSignatureError, match="X-HubSpot-Signature-v3"):
        hubspot.verify(RawRequest("POST", URL, headers, BODY), [SECRET], NOW)


def test_valid_v3_wins_over_a_stale_legacy_signature() -> None:
    raw = v3_request()
    headers = {**raw.headers, "x-hubspot-signature": "0" * 64, "x-hubspot-signature-version": "v1"}

    assert hubspot.verify(RawRequest("POST", URL, headers, BODY), [SECRET], NOW)


@pytest.mark.parametrize(
    ("batch", "reason"),
    [
        ("not json", "not valid JSON"),
        ("", "not valid JSON"),
        (json.dumps(BATCH[0]), "JSON array"),
        ("[1]", "event 0 is not a JSON object"),
        (json.dumps([BATCH[0], "x"]), "event 1 is not a JSON object"),
        (json.dumps([dict(BATCH[0], eventId=None)]), "'eventId'"),
        (json.dumps([dict(BATCH[0], eventId=True)]), "'eventId'"),
        (json.dumps([dict(BATCH[0], subscriptionId=[1])]), "'subscriptionId'"),
        (json.dumps([{k: v for k, v in BATCH[0].items() if k != "objectId"}]), "'objectId'"),
        (json.dumps([dict(BATCH[0], occurredAt="")]), "'occurredAt'"),
        (json.dumps([dict(BATCH[0], subscriptionType=None)]), "'subscriptionType'"),
    ],
    ids=[
        "text",
        "empty",
        "object_not_array",
        "number_element",
        "string_element",
        "null_event_id",
        "boolean_event_id",
        "list_subscription_id",
        "no_object_id",
        "empty_occurred_at",
        "no_subscription_type",
    ],
)
def test_rejects_verified_body_that_is_not_an_array_of_events(batch: str, reason: str) -> None:
    body = batch.encode()

    with pytest.raises(BadRequestError, match=reason):
        hubspot.verify(v3_request(body), [SECRET], NOW)


@pytest.mark.parametrize("secrets", [[], [""], ["  "]], ids=["none", "empty", "blank"])
def test_reports_source_not_configured_without_usable_secret(secrets: list[str]) -> None:
    with pytest.raises(SourceNotConfiguredError):
        hubspot.verify(v3_request(), secrets, NOW)


def test_refuses_a_bare_string_as_secrets() -> None:
    with pytest.raises(TypeError):
        hubspot.verify(v3_request(), SECRET, NOW)
