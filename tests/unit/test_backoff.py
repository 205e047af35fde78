"""Retry policy: schedule parsing, jitter bounds, exhaustion, Retry-After, and decisions."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from apex.delivery.backoff import (
    DEFAULT_SCHEDULE,
    Decision,
    decide,
    next_delay,
    parse_retry_after,
    parse_schedule,
)

NOW = datetime(2025, 1, 10, 8, 0, 0, tzinfo=UTC)
DAY = 86400.0
ALMOST_ONE = 1 - 2**-53  # the largest float random.random() can return


def low() -> float:
    return 0.0


def mid() -> float:
    return 0.5


def high() -> float:
    return ALMOST_ONE


def test_default_schedule_spans_about_three_days_over_ten_attempts() -> None:
    assert DEFAULT_SCHEDULE == (5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)
    assert len(DEFAULT_SCHEDULE) + 1 == 10
    assert 3 * DAY < sum(DEFAULT_SCHEDULE) < 3.2 * DAY


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5", (5,)),
        ("5,300,1800", (5, 300, 1800)),
        (" 5 , 300 ,1800 ", (5, 300, 1800)),
        ("86400,172800", (86400, 172800)),
    ],
)
def test_parses_schedule(text: str, expected: tuple[int, ...]) -> None:
    assert parse_schedule(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", " ", "5,", ",5", "5,,300", "0", "5,0", "-5", "+5", "5.5", "1e3", "five", "5;300", "٥"],
)
def test_refuses_malformed_schedule(text: str) -> None:
    with pytest.raises(ValueError, match="positive whole seconds"):
        parse_schedule(text)


@pytest.mark.parametrize(
    ("attempt", "rand", "expected"),
    [
        (1, mid, 5.0),
        (1, low, 4.0),
        (2, mid, 300.0),
        (2, low, 240.0),
        (3, mid, 1800.0),
        (9, mid, 86400.0),
        (9, low, 69120.0),
    ],
)
def test_next_delay_follows_schedule_with_jitter(
    attempt: int, rand: Callable[[], float], expected: float
) -> None:
    assert next_delay(attempt, DEFAULT_SCHEDULE, rand) == pytest.approx(expected)


@pytest.mark.parametrize("attempt", range(1, len(DEFAULT_SCHEDULE) + 1))
def test_jitter_stays_within_twenty_percent(attempt: int) -> None:
    base = DEFAULT_SCHEDULE[attempt - 1]

    lowest = next_delay(attempt, DEFAULT_SCHEDULE, low)
    highest = next_delay(attempt, DEFAULT_SCHEDULE, high)

    assert lowest == pytest.approx(0.8 * base)
    assert highest is not None
    assert 0.8 * base <= highest <= min(1.2 * base, DAY)
    if 1.2 * base <= DAY:
        assert highest == pytest.approx(1.2 * base)


def test_jitter_never_pushes_past_24_hours() -> None:
    assert next_delay(9, DEFAULT_SCHEDULE, high) == DAY
    assert next_delay(1, (200000,), low) == DAY


@pytest.mark.parametrize("attempt", [10, 11, 100])
def test_exhausted_schedule_gives_none(attempt: int) -> None:
    assert next_delay(attempt, DEFAULT_SCHEDULE, mid) is None
    assert next_delay(attempt, DEFAULT_SCHEDULE, mid, retry_after=60) is None


def test_custom_schedule_is_exhausted_after_its_length() -> None:
    assert next_delay(2, (1, 2), mid) == pytest.approx(2.0)
    assert next_delay(3, (1, 2), mid) is None


@pytest.mark.parametrize("attempt", [0, -1])
def test_attempt_counts_from_one(attempt: int) -> None:
    with pytest.raises(ValueError, match="starts at 1"):
        next_delay(attempt, DEFAULT_SCHEDULE, mid)
    with pytest.raises(ValueError, match="starts at 1"):
        decide(500, attempt, DEFAULT_SCHEDULE, mid)


@pytest.mark.parametrize(
    ("attempt", "retry_after", "expected"),
    [
        (1, 60.0, 60.0),  # floor above the jittered 5 s
        (1, 0.0, 5.0),  # floor below: schedule wins
        (2, 120.0, 300.0),  # floor below: schedule wins
        (2, 3600.0, 3600.0),
        (1, 200000.0, DAY),  # capped at 24 h
        (1, None, 5.0),
    ],
)
def test_retry_after_is_a_floor_capped_at_24_hours(
    attempt: int, retry_after: float | None, expected: float
) -> None:
    assert next_delay(attempt, DEFAULT_SCHEDULE, mid, retry_after) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("   ", None),
        ("120", 120.0),
        (" 120 ", 120.0),
        ("0", 0.0),
        ("86400", DAY),
        ("999999", DAY),
        ("9" * 400, DAY),
        ("-5", None),
        ("1.5", None),
        ("soon", None),
        ("Fri, 10 Jan 2025 08:02:00 GMT", 120.0),
        ("Friday, 10-Jan-25 08:02:00 GMT", 120.0),  # obsolete RFC 850 form
        ("Fri, 10 Jan 2025 08:00:30 -0000", 30.0),  # no zone information: read as UTC
        ("Fri, 10 Jan 2025 07:00:00 GMT", 0.0),  # in the past: no wait
        ("Sun, 12 Jan 2025 08:00:00 GMT", DAY),  # two days: capped
        ("Fri, 32 Jan 2025 08:00:00 GMT", None),
        ("Fri, 10 Jan 2025", None),
    ],
)
def test_parses_retry_after(value: str | None, expected: float | None) -> None:
    result = parse_retry_after(value, NOW)

    if expected is None:
        assert result is None
    else:
        assert result == pytest.approx(expected)


def test_retry_after_date_is_measured_from_now() -> None:
    header = "Fri, 10 Jan 2025 09:00:00 GMT"

    assert parse_retry_after(header, NOW) == pytest.approx(3600.0)
    assert parse_retry_after(header, NOW + timedelta(minutes=30)) == pytest.approx(1800.0)
    assert parse_retry_after(header, NOW.replace(tzinfo=None)) == pytest.approx(3600.0)


@pytest.mark.parametrize(
    ("status", "attempt", "retry_after", "expected"),
    [
        (200, 1, None, Decision("delivered")),
        (204, 5, None, Decision("delivered")),
        (299, 10, None, Decision("delivered")),
        (410, 1, None, Decision("disable")),
        (410, 10, 60.0, Decision("disable")),
        (500, 1, None, Decision("retry", 5.0)),
        (None, 1, None, Decision("retry", 5.0)),  # timeout or connection error
        (301, 1, None, Decision("retry", 5.0)),  # redirects are failures
        (302, 2, None, Decision("retry", 300.0)),
        (304, 1, None, Decision("retry", 5.0)),
        (199, 1, None, Decision("retry", 5.0)),
        (400, 1, None, Decision("retry", 5.0)),
        (404, 3, None, Decision("retry", 1800.0)),
        (429, 1, 120.0, Decision("retry", 120.0)),  # Retry-After honoured on 429
        (503, 1, 120.0, Decision("retry", 120.0)),  # ... and on 503
        (503, 1, 10**6, Decision("retry", DAY)),  # ... capped
        (500, 1, 120.0, Decision("retry", 5.0)),  # ... and ignored otherwise
        (502, 1, 120.0, Decision("retry", 5.0)),
        (None, 1, 120.0, Decision("retry", 5.0)),
        (500, 9, None, Decision("retry", 86400.0)),
        (500, 10, None, Decision("failed")),
        (429, 10, 60.0, Decision("failed")),
        (None, 10, None, Decision("failed")),
    ],
)
def test_decides_what_happens_after_an_attempt(
    status: int | None, attempt: int, retry_after: float | None, expected: Decision
) -> None:
    decision = decide(status, attempt, DEFAULT_SCHEDULE, mid, retry_after)

    assert decision.kind == expected.kind
    if expected.delay is None:
        assert decision.delay is None
    else:
        assert decision.delay == pytest.approx(expected.delay)


def test_decision_is_frozen() -> None:
    decision = decide(500, 1, DEFAULT_SCHEDULE, mid)

    with pytest.raises(AttributeError):
        decision.kind = "failed"  # type: ignore[misc]
