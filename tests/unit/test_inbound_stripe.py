"""apex.inbound.stripe.verify: Stripe-Signature headers made by the stripe package itself."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
import stripe

from apex.errors import BadRequestError, InvalidSignatureError, SourceNotConfiguredError
from apex.sources.request import RawRequest
from apex.sources.stripe import verify as stripe_inbound

SECRET = "whsec_test_secret"
OLD_SECRET = "whsec_old_secret"
NOW = 1_761_730_001
BODY = json.dumps(
    {
        "id": "evt_1SAbcCustCreated01",
        "object": "event",
        "created": NOW,
        "data": {"object": {"id": "cus_TAbcJaneDoe01", "email": "jane.doe@acme.io"}},
        "type": "customer.created",
    },
    separators=(",", ":"),
)


def header(body: str = BODY, secret: str = SECRET, timestamp: int = NOW) -> str:
    """Stripe's own signer (stripe>=16): "t=<timestamp>,v1=<hex>"."""
    return str(stripe.WebhookSignature.generate_signature_header(body, secret, timestamp=timestamp))


def v1(body: str = BODY, secret: str = SECRET, timestamp: int = NOW) -> str:
    return header(body, secret, timestamp).partition(",v1=")[2]


def request(signature: str | None, body: str | bytes = BODY) -> RawRequest:
    raw_body = body.encode() if isinstance(body, str) else body
    headers = {} if signature is None else {"stripe-signature": signature}
    headers["content-type"] = "application/json; charset=utf-8"
    return RawRequest("POST", "https://apex.example.com/api/webhooks/stripe", headers, raw_body)


def test_passes_the_reference_known_answer_signature() -> None:
    # inbound-platforms.md §1.4, checked there against stripe 16.1.0. The event has no type, so
    # it is stored ignored: that it is returned at all shows the signature check was passed.
    body = '{"id":"evt_test_webhook","object":"event"}'
    known = "t=1492774577,v1=88a022085c6bdb887b02cb26ff76dd681234d9675c0f22844059f55552a8883a"
    assert header(body, timestamp=1492774577) == known

    [event] = stripe_inbound.verify(request(known, body), [SECRET], 1492774577)
    assert event.ignored is not None and "'type'" in event.ignored


def test_accepts_valid_event_as_one_event_keyed_by_its_id() -> None:
    events = stripe_inbound.verify(request(header()), [SECRET], NOW)

    assert len(events) == 1
    event = events[0]
    assert (event.source, event.dedupe_key, event.type) == (
        "stripe",
        "evt_1SAbcCustCreated01",
        "customer.created",
    )
    assert event.payload == json.loads(BODY)
    assert event.headers == {}


@pytest.mark.parametrize(
    "signature",
    [
        f"t={NOW},v1={v1(secret='whsec_other')},v1={v1()}",
        f"t={NOW},v1={v1()},v1={v1(secret='whsec_other')}",
        f"t={NOW},v1={v1()},v0=6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39",
        f"v1={v1()},t={NOW}",
    ],
    ids=[
        "second_of_two_v1_matches",
        "first_of_two_v1_matches",
        "v0_ignored",
        "timestamp_last",
    ],
)
def test_accepts_header_where_any_v1_matches(signature: str) -> None:
    assert stripe_inbound.verify(request(signature), [SECRET], NOW)


@pytest.mark.parametrize(
    ("secrets", "signature"),
    [
        ([SECRET, OLD_SECRET], header(secret=OLD_SECRET)),
        ([OLD_SECRET, SECRET], header(secret=SECRET)),
        ([SECRET], f"t={NOW},v1={v1()},v1={v1(secret=OLD_SECRET)}"),
        ([OLD_SECRET], f"t={NOW},v1={v1()},v1={v1(secret=OLD_SECRET)}"),
        (["", " ", SECRET], header()),
    ],
    ids=[
        "old_secret_signed",
        "new_secret_signed",
        "both_signed_new_configured",
        "both_signed_old_configured",
        "blank_secrets_skipped",
    ],
)
def test_accepts_signature_from_any_rolling_secret(secrets: list[str], signature: str) -> None:
    assert stripe_inbound.verify(request(signature), secrets, NOW)


@pytest.mark.parametrize(
    ("signed_at", "accepted"),
    [
        (NOW - 300, True),
        (NOW + 300, True),
        (NOW - 301, False),
        (NOW - 15 * 60, False),
        (NOW + 301, False),
        (NOW + 60 * 60, False),
    ],
    ids=[
        "at_tolerance_in_past",
        "at_tolerance_in_future",
        "just_older_than_tolerance",
        "fifteen_minutes_old",
        "just_beyond_tolerance_in_future",
        "one_hour_in_future",
    ],
)
def test_rejects_signature_older_or_newer_than_tolerance(signed_at: int, accepted: bool) -> None:
    raw = request(header(timestamp=signed_at))

    if accepted:
        assert stripe_inbound.verify(raw, [SECRET], NOW)
    else:
        with pytest.raises(InvalidSignatureError, match="tolerance"):
            stripe_inbound.verify(raw, [SECRET], NOW)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (request(header(), BODY + " "), "No v1 signature .* matches"),
        (request(header(BODY.replace("jane", "john"))), "No v1 signature .* matches"),
        (request(header(secret="whsec_wrong")), "No v1 signature .* matches"),
        (request(None), "Missing Stripe-Signature"),
        (request(""), "Missing Stripe-Signature"),
        (request(f"t={NOW}"), "no v1 signature"),
        (request(f"t={NOW},v0={v1()}"), "no v1 signature"),
        (request(f"t={NOW},V1={v1()}"), "no v1 signature"),
        (request(f"v1={v1()}"), "no t= timestamp"),
        (request(f"t=,v1={v1()}"), "not an integer timestamp"),
        (request(f"t={NOW}.5,v1={v1()}"), "not an integer timestamp"),
        (request(f"t=-{NOW},v1={v1()}"), "not an integer timestamp"),
        (request(f"t={'9' * 5000},v1={v1()}"), "not an integer timestamp"),
        (request(f"t={NOW},v1={v1().upper()}"), "No v1 signature .* matches"),
        (request(f"t={NOW},v1=é{v1()[1:]}"), "No v1 signature .* matches"),
        (request(f"t={NOW + 1},v1={v1()}"), "No v1 signature .* matches"),
    ],
    ids=[
        "tampered_body_trailing_space",
        "tampered_body_content",
        "wrong_secret",
        "missing_header",
        "empty_header",
        "no_v1",
        "only_v0",
        "uppercase_scheme",
        "no_timestamp",
        "empty_timestamp",
        "fractional_timestamp",
        "negative_timestamp",
        "huge_timestamp",
        "uppercase_hex",
        "non_ascii_signature",
        "timestamp_changed_after_signing",
    ],
)
def test_rejects_bad_or_missing_signature(raw: RawRequest, reason: str) -> None:
    with pytest.raises(InvalidSignatureError, match=reason) as caught:
        stripe_inbound.verify(raw, [SECRET], NOW)
    assert SECRET not in caught.value.detail
    assert "jane.doe" not in caught.value.detail


@pytest.mark.parametrize(
    "signature",
    [
        header(),
        header(secret="whsec_wrong"),
        f"t={NOW},v1={v1(secret='whsec_other')},v1={v1()}",
        f"t={NOW},v0={v1()}",
        f"t={NOW}",
        f"v1={v1()}",
        f"t=abc,v1={v1()}",
        f"t={NOW},v1={v1()[:-1]}",
        f"t={NOW},v1={v1()},t={NOW + 1}",
        f"t={NOW + 1},t={NOW},v1={v1()}",
        f"t={NOW}, v1={v1()}",
        f"t={NOW},v1={v1()}=",
    ],
)
def test_agrees_with_stripe_verify_header_on_signatures(signature: str) -> None:
    # The clock is left out on both sides: stripe-python reads time.time() and cannot take `now`.
    try:
        stripe.WebhookSignature.verify_header(BODY, signature, SECRET, tolerance=None)
        stripe_accepts = True
    except stripe.SignatureVerificationError:
        stripe_accepts = False

    try:
        stripe_inbound.verify(request(signature), [SECRET], NOW)
        ours_accepts = True
    except InvalidSignatureError:
        ours_accepts = False

    assert ours_accepts == stripe_accepts


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("not json", "Malformed JSON body"),
        ("", "Malformed JSON body"),
        ('{"id": "evt_1", "type": "x", "amount": NaN}', "NaN"),
    ],
    ids=["text", "empty", "nan"],
)
def test_rejects_verified_body_that_is_not_json(body: str, reason: str) -> None:
    with pytest.raises(BadRequestError, match=reason):
        stripe_inbound.verify(request(header(body), body), [SECRET], NOW)


@pytest.mark.parametrize(
    ("body", "type_"),
    [
        ("[]", "unknown"),
        ('{"object": "event", "type": "customer.created"}', "customer.created"),
        ('{"id": "", "type": "customer.created"}', "customer.created"),
        ('{"id": 42, "type": "customer.created"}', "customer.created"),
        ('{"id": "evt_1", "object": "event"}', "unknown"),
        ('{"id": "evt_1", "type": 7}', "unknown"),
    ],
    ids=["array", "no_id", "empty_id", "numeric_id", "no_type", "numeric_type"],
)
def test_stores_a_verified_body_that_is_not_an_event_as_ignored(body: str, type_: str) -> None:
    [event] = stripe_inbound.verify(request(header(body), body), [SECRET], NOW)
    assert event.ignored is not None and "not a Stripe event" in event.ignored
    assert event.type == type_
    assert event.dedupe_key.startswith("sha256:")
    assert event.payload == json.loads(body)


def test_accepts_a_thin_v2_notification_as_an_event_to_process() -> None:
    body = json.dumps(
        {
            "id": "evt_test_65R9",
            "object": "v2.core.event",
            "type": "v1.billing.meter.error_report_triggered",
            "livemode": False,
            "created": "2026-11-30T10:00:00.000Z",
            "related_object": {
                "id": "mtr_1",
                "type": "billing.meter",
                "url": "/v1/billing/meters/mtr_1",
            },
        }
    )
    [event] = stripe_inbound.verify(request(header(body), body), [SECRET], NOW)
    assert (event.dedupe_key, event.type, event.ignored) == (
        "evt_test_65R9",
        "v1.billing.meter.error_report_triggered",
        None,
    )


def test_rejects_verified_body_that_is_not_utf8() -> None:
    body = b'{"id":"evt_1","type":"x","name":"\xff"}'
    mac = hmac.new(SECRET.encode(), f"{NOW}.".encode() + body, hashlib.sha256)
    signature = f"t={NOW},v1={mac.hexdigest()}"

    with pytest.raises(BadRequestError, match="UTF-8"):
        stripe_inbound.verify(request(signature, body), [SECRET], NOW)


@pytest.mark.parametrize("secrets", [[], [""], ["  "]], ids=["none", "empty", "blank"])
def test_reports_source_not_configured_without_usable_secret(secrets: list[str]) -> None:
    with pytest.raises(SourceNotConfiguredError):
        stripe_inbound.verify(request(header()), secrets, NOW)


def test_refuses_a_bare_string_as_secrets() -> None:
    with pytest.raises(TypeError):
        stripe_inbound.verify(request(header()), SECRET, NOW)
