"""Standard Webhooks signing: published vectors, the independent verifier, secret format."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from apex.delivery.signing import generate_secret, parse_secret, sign

VECTORS_FILE = Path(__file__).parent.parent / "data" / "standard_webhooks_vectors.json"
VECTORS: list[dict[str, Any]] = json.loads(VECTORS_FILE.read_text(encoding="utf-8"))["vectors"]

OLD_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
NEW_SECRET = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
BODY = b'{"id":"evt_1","type":"lead.created","createdAt":"2025-01-10T08:00:00Z","data":{}}'


def b64_secret(n: int, fill: int = 0x5A) -> str:
    return "whsec_" + base64.b64encode(bytes([fill]) * n).decode("ascii")


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_signature_matches_known_answer_vector(vector: dict[str, Any]) -> None:
    headers = sign(
        vector["secrets"], vector["msg_id"], vector["timestamp"], vector["body"].encode("utf-8")
    )

    assert headers == {
        "webhook-id": vector["msg_id"],
        "webhook-timestamp": str(vector["timestamp"]),
        "webhook-signature": vector["signature"],
    }


@pytest.mark.parametrize("secret", [NEW_SECRET, OLD_SECRET], ids=["new", "old"])
def test_receiver_holding_either_secret_verifies_during_rotation(secret: str) -> None:
    headers = sign([NEW_SECRET, OLD_SECRET], "evt_1", int(time.time()), BODY)

    assert Webhook(secret).verify(BODY, headers) == json.loads(BODY)


def test_receiver_with_an_unrelated_secret_rejects() -> None:
    headers = sign([NEW_SECRET, OLD_SECRET], "evt_1", int(time.time()), BODY)

    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(BODY, headers)


def test_signatures_follow_the_order_of_the_secrets() -> None:
    both = sign([NEW_SECRET, OLD_SECRET], "evt_1", 1736496000, BODY)["webhook-signature"]
    new = sign([NEW_SECRET], "evt_1", 1736496000, BODY)["webhook-signature"]
    old = sign([OLD_SECRET], "evt_1", 1736496000, BODY)["webhook-signature"]

    assert both == f"{new} {old}"


def test_generated_secret_is_32_random_bytes_and_verifies() -> None:
    first, second = generate_secret(), generate_secret()

    assert first.startswith("whsec_")
    assert len(parse_secret(first)) == 32
    assert first != second
    headers = sign([first], "evt_1", int(time.time()), BODY)
    assert Webhook(first).verify(BODY, headers) == json.loads(BODY)


@pytest.mark.parametrize("size", [24, 32, 64])
def test_accepts_secrets_of_24_to_64_bytes(size: int) -> None:
    assert parse_secret(b64_secret(size)) == b"\x5a" * size


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        ("", "must start with 'whsec_'"),
        ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "must start with 'whsec_'"),
        ("WHSEC_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "must start with 'whsec_'"),
        ("whsk_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "must start with 'whsec_'"),
        ("whsec_", "decodes to 0 bytes"),
        (b64_secret(23), "decodes to 23 bytes"),
        (b64_secret(65), "decodes to 65 bytes"),
        ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS!", "standard, padded base64"),
        ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw ", "standard, padded base64"),
        ("whsec_ MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "standard, padded base64"),
        # URL-safe alphabet ("-" and "_" instead of "+" and "/")
        ("whsec_" + base64.urlsafe_b64encode(b"\xfb\xff" * 16).decode(), "standard, padded"),
        # 32 bytes need one "=" of padding
        (b64_secret(32).rstrip("="), "standard, padded base64"),
        # last character carries stray low bits: decodes, but is not the canonical spelling
        (b64_secret(32)[:-2] + "p=", "not canonical"),
    ],
    ids=[
        "empty",
        "no-prefix",
        "upper-case-prefix",
        "asymmetric-prefix",
        "prefix-only",
        "23-bytes",
        "65-bytes",
        "bad-character",
        "trailing-space",
        "leading-space",
        "url-safe-alphabet",
        "missing-padding",
        "non-canonical",
    ],
)
def test_refuses_malformed_secret(secret: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        parse_secret(secret)

    encoded = secret.removeprefix("whsec_").strip()
    if len(encoded) > 8:
        assert encoded not in str(caught.value)  # never echo the secret


def test_sign_refuses_a_malformed_secret_among_valid_ones() -> None:
    with pytest.raises(ValueError, match="decodes to 23 bytes"):
        sign([NEW_SECRET, b64_secret(23)], "evt_1", 1736496000, BODY)


@pytest.mark.parametrize(
    ("secrets", "msg_id", "error"),
    [
        ([], "evt_1", ValueError),
        (NEW_SECRET, "evt_1", TypeError),
        ([NEW_SECRET], "evt.1", ValueError),
        ([NEW_SECRET], "", ValueError),
    ],
    ids=["no-secrets", "bare-string", "dot-in-id", "empty-id"],
)
def test_sign_refuses_bad_arguments(secrets: Any, msg_id: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        sign(secrets, msg_id, 1736496000, BODY)
