"""apex.api.fields: timestamps in range or a ValidationError, event data as a JSON object."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from marshmallow import ValidationError

from apex.api.fields import MAX_UNIX_SECONDS, JsonObject, Text, Timestamp, isoformat_z


@pytest.mark.parametrize(
    "value",
    [
        1e20,
        -1e12,
        -1,
        MAX_UNIX_SECONDS + 1,
        float("nan"),
        float("inf"),
        True,
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-01:00",
        "2025-02-30T00:00:00Z",
        "2025-01-01T00:00:60Z",
        "2025-01-01T00:00:00",  # no zone
        "2025-01-01",
        "20250101T000000Z",
        "1700000000",
        "x" * 10_000,
    ],
)
def test_refuses_timestamps_out_of_range_or_format(value: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        Timestamp(unix_seconds=True).deserialize(value)
    assert len(str(caught.value)) < 400


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, datetime(1970, 1, 1, tzinfo=UTC)),
        (MAX_UNIX_SECONDS, datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)),
        ("2025-01-10T09:00:00+01:00", datetime(2025, 1, 10, 8, tzinfo=UTC)),
        ("2025-01-10t08:00:00.123456789z", datetime(2025, 1, 10, 8, 0, 0, 123456, tzinfo=UTC)),
        ("0001-01-01T00:00:00-01:00", datetime(1, 1, 1, 1, tzinfo=UTC)),
    ],
)
def test_accepts_timestamps_in_range(value: Any, expected: datetime) -> None:
    assert Timestamp(unix_seconds=True).deserialize(value) == expected


def test_unix_seconds_only_where_allowed() -> None:
    with pytest.raises(ValidationError):
        Timestamp().deserialize(1700000000)


def test_writes_four_digit_years() -> None:
    assert isoformat_z(datetime(17, 5, 7, 5, 32, 48, tzinfo=UTC)) == "0017-05-07T05:32:48Z"
    assert isoformat_z(datetime(2025, 1, 10, 8, 0, 0, 999, tzinfo=UTC)) == "2025-01-10T08:00:00Z"


@pytest.mark.parametrize(
    "value", ["text", 1, 1.5, [1], True, None, {"a": [float("nan")]}, {"a": {"b": float("-inf")}}]
)
def test_event_data_must_be_an_object_of_finite_numbers(value: Any) -> None:
    with pytest.raises(ValidationError):
        JsonObject().deserialize(value)


def test_event_data_object_is_returned_as_is() -> None:
    data = {"a": [1, 2.5, {"b": None}], "c": "x"}
    assert JsonObject().deserialize(data) is data


def test_text_refuses_nul() -> None:
    assert Text().deserialize("plain") == "plain"
    with pytest.raises(ValidationError):
        Text().deserialize("a\x00b")
