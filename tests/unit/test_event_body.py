"""apex.events.body_of: the delivered body is strict JSON or nothing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from apex.events import body_of

AT = datetime(2025, 1, 10, 8, 0, 0, 120000, tzinfo=UTC)


@pytest.mark.parametrize("number", [float("nan"), float("inf"), float("-inf")])
def test_data_that_is_not_json_is_never_serialized(number: float) -> None:
    with pytest.raises(ValueError):
        body_of("evt_1", "lead.created", AT, {"a": [number]})


def test_body_is_compact_json() -> None:
    assert body_of("evt_1", "lead.created", AT, {"a": 1.5}) == (
        b'{"id":"evt_1","type":"lead.created","createdAt":"2025-01-10T08:00:00.120Z",'
        b'"data":{"a":1.5}}'
    )
