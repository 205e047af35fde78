"""GitHub verify: X-Hub-Signature-256 over the raw body, event and delivery headers, and a dedupe
key from the signed payload alone (the headers are not signed)."""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from apex.errors import BadRequestError, InvalidSignatureError, SourceNotConfiguredError
from apex.sources.github import verify as github
from apex.sources.request import RawRequest
from apex.sources.verification import content_key

VECTORS = json.loads((Path(__file__).parents[1] / "data" / "github_vectors.json").read_text())[
    "vectors"
]
SECRET = "gh_test_secret"
OLD_SECRET = "gh_old_secret"
BODY = b'{"action":"created","starred_at":"2026-11-26T14:03:22Z","sender":{"id":1}}'
DELIVERY = "8f0c2a10-c6b4-11f0-9a3e-1c2b3a4d5e6f"
NOW = 1_764_165_600.0


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def request(
    body: bytes = BODY, *, signature: str | None = None, **headers: str | None
) -> RawRequest:
    """A signed star delivery; `signature=` and header keywords (x_github_event=…) override it,
    None removes a header."""
    values: dict[str, str | None] = {
        "x-hub-signature-256": sign(body) if signature is None else signature,
        "x-github-event": "star",
        "x-github-delivery": DELIVERY,
        "x-github-hook-id": "512345678",
        "content-type": "application/json",
        "user-agent": "GitHub-Hookshot/abc123",
    }
    values.update({name.replace("_", "-"): value for name, value in headers.items()})
    present = {name: value for name, value in values.items() if value is not None}
    return RawRequest("POST", "https://apex.example.com/api/webhooks/github", present, body)


@pytest.mark.parametrize("vector", VECTORS, ids=[vector["name"] for vector in VECTORS])
def test_published_vector_passes_signature_check(vector: dict[str, Any]) -> None:
    raw = request(vector["body"].encode(), signature=vector["x_hub_signature_256"])

    if vector["expect"] == "not_json":
        # Reaching the JSON check proves the signature was accepted.
        with pytest.raises(BadRequestError, match="Malformed JSON body"):
            github.verify(raw, [vector["secret"]], NOW)
    else:
        (event,) = github.verify(raw, [vector["secret"]], NOW)
        assert event.payload == json.loads(vector["body"])


@pytest.mark.parametrize("vector", VECTORS, ids=[vector["name"] for vector in VECTORS])
def test_refuses_published_sha1_signature_alone(vector: dict[str, Any]) -> None:
    raw = request(
        vector["body"].encode(),
        x_hub_signature_256=None,
        x_hub_signature=vector["x_hub_signature"],
    )

    with pytest.raises(InvalidSignatureError, match="SHA-1") as caught:
        github.verify(raw, [vector["secret"]], NOW)
    assert vector["secret"] not in caught.value.detail


def test_accepts_valid_delivery_as_one_event() -> None:
    events = github.verify(request(), [SECRET], NOW)

    assert len(events) == 1
    event = events[0]
    assert (event.source, event.type) == ("github", "star")
    assert event.dedupe_key == content_key(json.loads(BODY))
    assert event.payload == json.loads(BODY)
    assert event.ignored is None


def test_keeps_delivery_headers_and_drops_signatures() -> None:
    raw = request(
        x_hub_signature=f"sha1={'0' * 40}",
        x_github_hook_installation_target_type="repository",
        x_github_hook_installation_target_id="812345001",
    )

    (event,) = github.verify(raw, [SECRET], NOW)

    assert event.headers == {
        "x-github-event": "star",
        "x-github-delivery": DELIVERY,
        "x-github-hook-id": "512345678",
        "x-github-hook-installation-target-type": "repository",
        "x-github-hook-installation-target-id": "812345001",
    }


@pytest.mark.parametrize(
    "headers",
    [
        {"x_github_delivery": "00000000-0000-0000-0000-000000000001"},
        {"x_github_hook_id": "999"},
        {"x_github_hook_id": None},
        {"x_github_event": "fork"},
        {
            "x_github_delivery": "00000000-0000-0000-0000-000000000002",
            "x_github_hook_id": "1",
            "x_github_event": "issues",
        },
    ],
    ids=["other_delivery", "other_hook", "no_hook", "other_event", "all_changed"],
)
def test_unsigned_headers_do_not_change_the_dedupe_key(headers: dict[str, str | None]) -> None:
    (original,) = github.verify(request(), [SECRET], NOW)
    (replayed,) = github.verify(request(**headers), [SECRET], NOW)

    assert replayed.dedupe_key == original.dedupe_key


def test_the_same_payload_form_encoded_has_the_same_dedupe_key() -> None:
    form = urlencode({"payload": BODY.decode()}).encode()
    (as_json,) = github.verify(request(), [SECRET], NOW)
    (as_form,) = github.verify(
        request(form, content_type="application/x-www-form-urlencoded"), [SECRET], NOW
    )

    assert as_form.dedupe_key == as_json.dedupe_key


def test_another_payload_has_another_dedupe_key() -> None:
    other = BODY.replace(b"14:03:22", b"14:03:23")
    (first,) = github.verify(request(), [SECRET], NOW)
    (second,) = github.verify(request(other), [SECRET], NOW)

    assert first.dedupe_key != second.dedupe_key


def test_accepts_ping_like_any_event() -> None:
    body = b'{"zen":"Design for failure.","hook_id":512345678,"hook":{"type":"Repository"}}'

    (event,) = github.verify(request(body, x_github_event="ping"), [SECRET], NOW)

    assert event.type == "ping"


@pytest.mark.parametrize(
    "secrets",
    [[OLD_SECRET, SECRET], [SECRET, OLD_SECRET], ["", SECRET]],
    ids=["new_secret_second", "new_secret_first", "blank_secret_skipped"],
)
def test_accepts_signature_from_any_rolling_secret(secrets: list[str]) -> None:
    assert github.verify(request(), secrets, NOW)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (request(BODY + b" ", signature=sign(BODY)), "does not match"),
        (request(signature=sign(BODY, "wrong_secret")), "does not match"),
        (request(x_hub_signature_256=None), "Missing X-Hub-Signature-256"),
        (request(signature="   "), "Missing X-Hub-Signature-256"),
        (request(signature=sign(BODY).removeprefix("sha256=")), "does not match"),
        (request(signature=sign(BODY).upper()), "does not match"),
        (request(signature="sha256=é" + "0" * 63), "does not match"),
        (request(x_hub_signature_256=None, x_hub_signature=f"sha1={'0' * 40}"), "SHA-1"),
    ],
    ids=[
        "tampered_body",
        "wrong_secret",
        "missing_header",
        "blank_header",
        "missing_sha256_prefix",
        "uppercase_hex",
        "non_ascii_signature",
        "sha1_only",
    ],
)
def test_rejects_bad_or_missing_signature(raw: RawRequest, reason: str) -> None:
    with pytest.raises(InvalidSignatureError, match=reason) as caught:
        github.verify(raw, [SECRET], NOW)
    assert SECRET not in caught.value.detail
    assert BODY.decode() not in caught.value.detail


def test_a_verified_delivery_without_a_delivery_id_is_stored_as_usual() -> None:
    signed = request()
    raw = replace(
        signed, headers={k: v for k, v in signed.headers.items() if k != "x-github-delivery"}
    )

    (event,) = github.verify(raw, [SECRET], NOW)
    assert (event.type, event.ignored, event.dedupe_key) == (
        "star",
        None,
        content_key(event.payload),
    )


def test_a_verified_delivery_without_an_event_type_is_stored_ignored_with_the_reason() -> None:
    signed = request()
    raw = replace(
        signed, headers={k: v for k, v in signed.headers.items() if k != "x-github-event"}
    )

    (event,) = github.verify(raw, [SECRET], NOW)
    assert event.type == "unknown"
    assert event.ignored is not None and "X-GitHub-Event" in event.ignored


@pytest.mark.parametrize(
    "body",
    [b"not json", b"\xff\xfe{}", b'{"n": NaN}', b"[" * 100_000],
    ids=["text", "not_utf8", "nan", "nested_too_deep"],
)
def test_rejects_verified_body_that_is_not_json(body: bytes) -> None:
    with pytest.raises(BadRequestError):
        github.verify(request(body), [SECRET], NOW)


@pytest.mark.parametrize(
    ("body", "kind"),
    [(b"[1, 2]", "an array"), (b'"star"', "a string"), (b"7", "a number"), (b"null", "null")],
)
def test_stores_verified_json_that_is_not_an_object_as_ignored(body: bytes, kind: str) -> None:
    (event,) = github.verify(request(body), [SECRET], NOW)

    assert event.ignored == f"A GitHub payload must be a JSON object, not {kind}"
    assert event.payload == json.loads(body)


def test_reads_form_encoded_payload_field() -> None:
    body = urlencode({"payload": BODY.decode()}).encode()
    raw = request(body, content_type="application/x-www-form-urlencoded; charset=utf-8")

    (event,) = github.verify(raw, [SECRET], NOW)

    assert event.payload == json.loads(BODY)


@pytest.mark.parametrize(
    "body",
    [b"zen=hi", b"payload=%7B%7D&payload=%7B%7D", b"payload=%7Bx", b"payload=\xff"],
    ids=["no_payload_field", "two_payload_fields", "payload_not_json", "not_ascii"],
)
def test_rejects_form_body_without_one_json_payload(body: bytes) -> None:
    raw = request(body, content_type="application/x-www-form-urlencoded")

    with pytest.raises(BadRequestError):
        github.verify(raw, [SECRET], NOW)


@pytest.mark.parametrize("secrets", [[], [""], ["  "]], ids=["none", "empty", "blank"])
def test_reports_source_not_configured_without_usable_secret(secrets: list[str]) -> None:
    with pytest.raises(SourceNotConfiguredError):
        github.verify(request(), secrets, NOW)


def test_refuses_a_bare_string_as_secrets() -> None:
    with pytest.raises(TypeError):
        github.verify(request(), SECRET, NOW)


@pytest.mark.parametrize(
    ("body", "accepted"),
    [
        (b'{"a":' * 64 + b"1" + b"}" * 64, True),
        (b'{"a":' * 65 + b"1" + b"}" * 65, False),
        (b'{"a":' + b"9" * 1000 + b"}", True),
        (b'{"a":' + b"9" * 1001 + b"}", False),
        (b'{"a":' * 5000 + b"1" + b"}" * 5000, False),  # would exhaust the parser's recursion
    ],
    ids=["64-deep", "65-deep", "1000-digits", "1001-digits", "5000-deep"],
)
def test_verified_body_is_bounded_in_depth_and_number_size_before_parsing(
    body: bytes, accepted: bool
) -> None:
    raw = request(body)
    if accepted:
        (event,) = github.verify(raw, [SECRET], NOW)
        assert isinstance(event.payload, dict)
    else:
        with pytest.raises(BadRequestError, match="nested more than 64|number of 1001"):
            github.verify(raw, [SECRET], NOW)


def test_half_a_surrogate_pair_in_a_verified_body_is_bad_request_not_a_crash() -> None:
    with pytest.raises(BadRequestError, match="surrogate"):
        github.verify(request(b'{"action":"created","sender":{"login":"\\ud800"}}'), [SECRET], NOW)


def test_a_platform_payload_with_a_repeated_key_is_taken_as_its_parser_wrote_it() -> None:
    (event,) = github.verify(request(b'{"action":"created","action":"deleted"}'), [SECRET], NOW)
    assert event.payload == {"action": "deleted"}
