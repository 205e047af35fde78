"""apex.sources.hubspot.verify: signature v3, legacy v1/v2 (only when allowed), and the batched
body whose every element is stored."""

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
from apex.secretbox import generate_key
from apex.sources.hubspot import SOURCE
from apex.sources.hubspot import verify as hubspot
from apex.sources.request import InboundEvent, RawRequest
from apex.sources.verification import content_key
from config import SettingsError, load_settings

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


def legacy_allowed(vector: dict[str, Any]) -> bool:
    return vector["version"] != "v3"


@pytest.mark.parametrize("vector", VECTORS, ids=[vector["name"] for vector in VECTORS])
def test_published_vector_passes_signature_check(vector: dict[str, Any]) -> None:
    raw = vector_request(vector)
    secrets, now = [vector["client_secret"]], vector_now(vector)

    if vector["expect"] == "events":
        events = hubspot.verify(raw, secrets, now, legacy_signatures=legacy_allowed(vector))
        assert [event.payload for event in events] == json.loads(vector["body"])
        assert all(event.ignored is None for event in events)
    elif vector["expect"] == "not_array":
        # A verified JSON body that is not an array is one element, stored ignored.
        (event,) = hubspot.verify(raw, secrets, now, legacy_signatures=legacy_allowed(vector))
        assert event.payload == json.loads(vector["body"])
        assert event.ignored and "no subscriptionType" in event.ignored
    else:
        # Failing on the body shows the signature was accepted.
        with pytest.raises(BadRequestError, match="Malformed JSON body"):
            hubspot.verify(raw, secrets, now, legacy_signatures=legacy_allowed(vector))


@pytest.mark.parametrize(
    "vector",
    [vector for vector in VECTORS if vector["version"] != "v3"],
    ids=[vector["name"] for vector in VECTORS if vector["version"] != "v3"],
)
def test_refuses_a_published_legacy_vector_unless_legacy_signatures_are_allowed(
    vector: dict[str, Any],
) -> None:
    with pytest.raises(InvalidSignatureError, match="APEX_HUBSPOT_LEGACY_SIGNATURES=1"):
        hubspot.verify(vector_request(vector), [vector["client_secret"]], vector_now(vector))


@pytest.mark.parametrize("vector", VECTORS, ids=[vector["name"] for vector in VECTORS])
def test_rejects_published_vector_with_tampered_body(vector: dict[str, Any]) -> None:
    raw = vector_request(vector, body=vector["body"] + " ")

    with pytest.raises(InvalidSignatureError, match="does not match"):
        hubspot.verify(raw, [vector["client_secret"]], vector_now(vector), legacy_signatures=True)


@pytest.mark.parametrize("vector", VECTORS, ids=[vector["name"] for vector in VECTORS])
def test_rejects_published_vector_with_wrong_secret(vector: dict[str, Any]) -> None:
    with pytest.raises(InvalidSignatureError, match="does not match"):
        hubspot.verify(
            vector_request(vector), [OLD_SECRET], vector_now(vector), legacy_signatures=True
        )


def test_the_source_verifies_v3_only_and_its_legacy_verifier_also_v1_and_v2() -> None:
    assert SOURCE.verify is hubspot.verify
    assert SOURCE.verify_legacy is not None
    with pytest.raises(InvalidSignatureError, match="refused unless"):
        SOURCE.verify(legacy_request("v1"), [SECRET], NOW)
    assert len(SOURCE.verify_legacy(legacy_request("v1"), [SECRET], NOW)) == 2
    assert len(SOURCE.verify_legacy(v3_request(), [SECRET], NOW)) == 2


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
    assert hubspot.verify(raw, secrets, NOW, legacy_signatures=True)


@pytest.mark.parametrize("version", ["v1", "v2", "V2"])
def test_accepts_legacy_signature_when_v3_is_absent_and_legacy_is_allowed(version: str) -> None:
    assert len(hubspot.verify(legacy_request(version), [SECRET], NOW, legacy_signatures=True)) == 2


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_refuses_a_valid_legacy_signature_by_default(version: str) -> None:
    # v1 signs neither time nor URL: a captured request would replay forever.
    with pytest.raises(InvalidSignatureError, match="Missing X-HubSpot-Signature-v3"):
        hubspot.verify(legacy_request(version), [SECRET], NOW)


def test_v2_signature_covers_method_and_uri_but_v1_does_not() -> None:
    v1 = replace(legacy_request("v1"), method="PUT", url=URL + "?moved=1")
    v2 = replace(legacy_request("v2"), method="PUT", url=URL + "?moved=1")

    assert hubspot.verify(v1, [SECRET], NOW, legacy_signatures=True)
    with pytest.raises(InvalidSignatureError):
        hubspot.verify(v2, [SECRET], NOW, legacy_signatures=True)


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
        hubspot.verify(raw, [SECRET], NOW, legacy_signatures=True)
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
        hubspot.verify(
            RawRequest("POST", URL, headers, BODY), [SECRET], NOW, legacy_signatures=True
        )


def test_valid_v3_wins_over_a_stale_legacy_signature() -> None:
    raw = v3_request()
    headers = {**raw.headers, "x-hubspot-signature": "0" * 64, "x-hubspot-signature-version": "v1"}

    assert hubspot.verify(RawRequest("POST", URL, headers, BODY), [SECRET], NOW)


@pytest.mark.parametrize(
    "batch",
    ["not json", "", "[1", '[{"a": NaN}]', "\ufeff[]"],
    ids=["text", "empty", "truncated", "nan", "byte_order_mark"],
)
def test_rejects_a_verified_body_that_is_not_json(batch: str) -> None:
    with pytest.raises(BadRequestError, match="Malformed JSON body"):
        hubspot.verify(v3_request(batch.encode()), [SECRET], NOW)


def verified(*elements: object) -> list[InboundEvent]:
    return hubspot.verify(v3_request(json.dumps(list(elements)).encode()), [SECRET], NOW)


ASSOCIATION = {
    "eventId": 5519002733,
    "subscriptionId": 2841013,
    "portalId": 48120977,
    "appId": 3310452,
    "occurredAt": 1764252001000,
    "subscriptionType": "deal.associationChange",
    "attemptNumber": 0,
    "changeSource": "CRM_UI",
    "associationType": "DEAL_TO_CONTACT",
    "fromObjectId": 31887406213,
    "toObjectId": 90210554101,
    "associationRemoved": False,
    "isPrimaryAssociation": False,
}


@pytest.mark.parametrize(
    "subscription",
    [
        "contact.associationChange",
        "deal.associationChange",
        "company.associationChange",
        "object.associationChange",
    ],
)
def test_an_association_change_is_keyed_by_its_two_objects(subscription: str) -> None:
    (event,) = verified(dict(ASSOCIATION, subscriptionType=subscription))

    assert event.ignored is None
    assert event.type == subscription
    assert event.dedupe_key == "48120977:2841013:5519002733:31887406213>90210554101:1764252001000"


def test_both_sides_of_an_association_without_subscription_ids_are_two_events() -> None:
    bare = {key: value for key, value in ASSOCIATION.items() if key != "subscriptionId"}
    contact_side = dict(
        bare,
        subscriptionType="contact.associationChange",
        associationType="CONTACT_TO_DEAL",
        fromObjectId=ASSOCIATION["toObjectId"],
        toObjectId=ASSOCIATION["fromObjectId"],
    )

    events = verified(bare, contact_side)

    assert [event.dedupe_key for event in events] == [
        "48120977:deal.associationChange:5519002733:31887406213>90210554101:1764252001000",
        "48120977:contact.associationChange:5519002733:90210554101>31887406213:1764252001000",
    ]
    assert all(event.ignored is None for event in events)


def test_property_changes_sharing_an_event_without_subscription_ids_are_two_events() -> None:
    bare = {key: value for key, value in BATCH[1].items() if key != "subscriptionId"}
    firstname = dict(bare, propertyName="firstname", propertyValue="Jane")

    events = verified(bare, firstname)

    assert [event.dedupe_key for event in events] == [
        "48120977:contact.propertyChange:1950336821:90210554101:1764165600123:email",
        "48120977:contact.propertyChange:1950336821:90210554101:1764165600123:firstname",
    ]


GENERIC_ASSOCIATION = {
    **{key: value for key, value in ASSOCIATION.items() if key != "associationType"},
    "subscriptionType": "object.associationChange",
    "fromObjectTypeId": "0-3",
    "toObjectTypeId": "0-1",
    "associationCategory": "HUBSPOT_DEFINED",
    "associationTypeId": 3,
}


@pytest.mark.parametrize(
    "other",
    [
        dict(GENERIC_ASSOCIATION, associationTypeId=5),
        dict(GENERIC_ASSOCIATION, associationCategory="USER_DEFINED"),
        dict(GENERIC_ASSOCIATION, isPrimaryAssociation=True),
        dict(ASSOCIATION, associationCategory="USER_DEFINED", associationTypeId=41),
    ],
    ids=["other_type_id", "other_category", "primary", "legacy_shape_with_a_label"],
)
def test_association_changes_of_other_labels_between_the_same_objects_are_two_events(
    other: dict[str, Any],
) -> None:
    events = verified(GENERIC_ASSOCIATION, other)

    assert events[0].dedupe_key == (
        "48120977:2841013:5519002733:31887406213>90210554101:1764252001000:/HUBSPOT_DEFINED/3/"
    )
    assert events[1].dedupe_key != events[0].dedupe_key


def test_an_association_change_is_keyed_by_both_objects_also_with_an_object_id() -> None:
    second_contact = dict(ASSOCIATION, objectId=31887406213, toObjectId=90210554102)

    events = verified(dict(ASSOCIATION, objectId=31887406213), second_contact)

    assert [event.dedupe_key.split(":")[3] for event in events] == [
        "31887406213>90210554101",
        "31887406213>90210554102",
    ]


@pytest.mark.parametrize(
    "element",
    [
        BATCH[1],
        {key: value for key, value in BATCH[1].items() if key != "subscriptionId"},
        GENERIC_ASSOCIATION,
        {key: value for key, value in BATCH[1].items() if key != "eventId"},  # content key
    ],
    ids=["natural_key", "natural_key_without_subscription", "association", "content_key"],
)
def test_a_retry_has_the_key_of_the_first_attempt(element: dict[str, Any]) -> None:
    first, retry = verified(element, dict(element, attemptNumber=3))

    assert retry.dedupe_key == first.dedupe_key
    assert retry.payload == dict(element, attemptNumber=3)  # stored as received


@pytest.mark.parametrize(
    "element",
    [
        dict(BATCH[1], subscriptionId=None, propertyName="bad name"),
        dict(GENERIC_ASSOCIATION, associationTypeId=[3]),
        dict(
            BATCH[1],
            portalId="9" * 64,
            subscriptionId="9" * 64,
            eventId="9" * 64,
            objectId=None,
            fromObjectId="9" * 64,
            toObjectId="9" * 64,
            occurredAt="9" * 64,
            associationCategory="9" * 64,
        ),
    ],
    ids=["unreadable_property_name", "unreadable_type_id", "longer_than_stored"],
)
def test_an_element_whose_changes_the_key_cannot_tell_apart_is_keyed_by_its_content(
    element: dict[str, Any],
) -> None:
    (event,) = verified(element)

    assert event.dedupe_key == content_key(element)


def test_the_docs_event_type_spelling_types_the_event() -> None:
    element = {key: value for key, value in BATCH[1].items() if key != "subscriptionType"}

    (event,) = verified(dict(element, eventType="contact.propertyChange"))

    assert (event.type, event.ignored) == ("contact.propertyChange", None)
    assert event.dedupe_key == "48120977:2841002:1950336821:90210554101:1764165600123"


@pytest.mark.parametrize(
    "element",
    [
        {key: value for key, value in BATCH[0].items() if key != "eventId"},
        dict(BATCH[0], eventId=None),
        dict(BATCH[0], eventId=True),
        dict(BATCH[0], eventId=1.5),
        dict(BATCH[0], occurredAt=""),
        dict(BATCH[0], objectId=[1]),
        dict(BATCH[0], objectId="x" * 65),
        {key: value for key, value in ASSOCIATION.items() if key != "toObjectId"},
    ],
    ids=[
        "no_event_id",
        "null_event_id",
        "boolean_event_id",
        "fractional_event_id",
        "empty_occurred_at",
        "list_object_id",
        "overlong_object_id",
        "association_without_its_target",
    ],
)
def test_an_element_without_its_natural_key_is_keyed_by_its_content(
    element: dict[str, Any],
) -> None:
    (event,) = verified(element)

    assert event.dedupe_key == content_key(element)
    assert event.ignored is None  # the extractor decides whether it carries anything


@pytest.mark.parametrize(
    ("element", "reason"),
    [
        (1, "is not a JSON object"),
        ("x", "is not a JSON object"),
        (None, "is not a JSON object"),
        ([BATCH[0]], "is not a JSON object"),
        (dict(BATCH[0], eventId=9, subscriptionType=None), "no subscriptionType"),
        (dict(BATCH[0], eventId=9, subscriptionType=""), "no subscriptionType"),
        ({}, "no subscriptionType"),
    ],
    ids=["number", "string", "null", "nested_array", "null_type", "empty_type", "empty_object"],
)
def test_an_element_apex_cannot_use_is_stored_ignored_with_the_reason(
    element: object, reason: str
) -> None:
    events = verified(BATCH[0], element)

    assert events[0].ignored is None
    assert events[1].payload == element
    assert events[1].dedupe_key != events[0].dedupe_key
    assert events[1].ignored is not None and reason in events[1].ignored
    assert "element 1" in events[1].ignored


@pytest.mark.parametrize(
    ("body", "ignored"),
    [(BATCH[0], False), ({"example_field": "example_value"}, True), (7, True), (None, True)],
    ids=["one_event", "other_object", "number", "null"],
)
def test_a_verified_json_body_that_is_not_an_array_is_one_element(
    body: object, ignored: bool
) -> None:
    (event,) = hubspot.verify(v3_request(json.dumps(body).encode()), [SECRET], NOW)

    assert event.payload == body
    assert (event.ignored is not None) is ignored


@pytest.mark.parametrize("secrets", [[], [""], ["  "]], ids=["none", "empty", "blank"])
def test_reports_source_not_configured_without_usable_secret(secrets: list[str]) -> None:
    with pytest.raises(SourceNotConfiguredError):
        hubspot.verify(v3_request(), secrets, NOW)


def test_refuses_a_bare_string_as_secrets() -> None:
    with pytest.raises(TypeError):
        hubspot.verify(v3_request(), SECRET, NOW)


@pytest.mark.parametrize(
    ("environ", "allowed"),
    [({}, False), ({"APEX_HUBSPOT_LEGACY_SIGNATURES": "0"}, False)]
    + [({"APEX_HUBSPOT_LEGACY_SIGNATURES": value}, True) for value in ("1", "true", "yes")],
    ids=["default", "off", "one", "true", "yes"],
)
def test_legacy_signatures_are_allowed_for_hubspot_only_by_the_setting(
    environ: dict[str, str], allowed: bool
) -> None:
    base = {"REDIS_URL": "redis://127.0.0.1:6379/0", "APEX_SECRET_KEY": generate_key()}

    settings = load_settings({**base, **environ})

    assert settings.legacy_signatures("hubspot") is allowed
    assert settings.legacy_signatures("stripe") is False
    assert settings.legacy_signatures("github") is False


def test_a_malformed_legacy_setting_stops_the_boot() -> None:
    base = {"REDIS_URL": "redis://127.0.0.1:6379/0", "APEX_SECRET_KEY": generate_key()}
    with pytest.raises(SettingsError, match="APEX_HUBSPOT_LEGACY_SIGNATURES"):
        load_settings({**base, "APEX_HUBSPOT_LEGACY_SIGNATURES": "maybe"})
