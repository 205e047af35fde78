"""apex.jsonlimits: nesting depth and number length refused before parsing; strict JSON."""

from __future__ import annotations

import pytest

from apex.errors import BadRequestError
from apex.jsonlimits import MAX_DEPTH, MAX_NUMBER_LENGTH, check_limits, parse


@pytest.mark.parametrize(
    "body",
    [
        b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1),
        b'{"a":' * (MAX_DEPTH + 1) + b"1" + b"}" * (MAX_DEPTH + 1),
        b"[" * 100_000,  # unterminated: refused on the way down, never parsed
        b"9" * (MAX_NUMBER_LENGTH + 1),
        b"[-" + b"1" * MAX_NUMBER_LENGTH + b"]",
        b'{"a": 1e' + b"0" * MAX_NUMBER_LENGTH + b"}",
        "[" * 40,  # text as well as bytes
    ],
)
def test_refuses_deep_nesting_and_long_numbers(body: bytes | str) -> None:
    with pytest.raises(BadRequestError):
        check_limits(body)


@pytest.mark.parametrize(
    "body",
    [
        b"[" * MAX_DEPTH + b"]" * MAX_DEPTH,
        b"9" * MAX_NUMBER_LENGTH,
        b'"' + b"[{" * 1000 + b"9" * 5000 + b'"',  # inside a string nothing counts
        b'["\\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["]',  # an escaped quote does not end it
        b"[]" * 10_000,  # many shallow arrays
        b"",
    ],
)
def test_accepts_what_is_within_the_limits(body: bytes) -> None:
    check_limits(body)


def test_limits_are_parameters() -> None:
    check_limits(b"[[[]]]", max_depth=3)
    with pytest.raises(BadRequestError, match="2 levels"):
        check_limits(b"[[[]]]", max_depth=2)
    with pytest.raises(BadRequestError, match="limit is 3"):
        check_limits(b"[1234]", max_number_length=3)


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b'{"a": NaN}', "NaN"),
        (b'{"a": Infinity}', "Infinity"),
        (b"[-Infinity]", "-Infinity"),
        (b"[1e400]", "out of range"),
        (b"[-1e400]", "out of range"),
        (b'{"a": 1', "Malformed JSON"),
        (b"\xff\xfe", "UTF-8"),
        (b'{"url": "https://a.example", "url": "https://b.example"}', "same key twice"),
        (b'[{"a": {"b": 1, "b": 2}}]', "same key twice"),
        (b'{"x": "\\ud800"}', "surrogate"),
        (b'{"x": "a\\udfff b"}', "surrogate"),
        (b'{"\\ud83d": 1}', "surrogate"),
        (b'["\\ude00\\ud83d"]', "surrogate"),  # the halves in the wrong order
    ],
)
def test_parse_refuses_what_is_not_strict_json(body: bytes, detail: str) -> None:
    with pytest.raises(BadRequestError, match=detail):
        parse(body)


def test_parse_returns_the_document() -> None:
    assert parse(b'{"a": [1, 2.5, "x", null, true], "b": {"c": 1e300}}') == {
        "a": [1, 2.5, "x", None, True],
        "b": {"c": 1e300},
    }
    assert parse(b"9" * MAX_NUMBER_LENGTH) == int("9" * MAX_NUMBER_LENGTH)
    assert parse(b'["\\ud83d\\ude00", "\\\\ud800"]') == ["\U0001f600", "\\ud800"]


def test_error_detail_never_quotes_the_body() -> None:
    with pytest.raises(BadRequestError) as caught:
        parse(b'{"secret-value": NaN}')
    assert "secret-value" not in caught.value.detail
