"""workers.outage: capped backoff and one log line per change of state, on a fake clock."""

from __future__ import annotations

import logging

import pytest

from workers.outage import FIRST_DELAY, MAX_DELAY, STILL_DOWN_EVERY, Outage


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def outage(clock: Clock) -> Outage:
    return Outage("Redis", logging.getLogger("test.outage"), clock)


def test_backoff_doubles_from_the_first_delay_up_to_the_cap(outage: Outage) -> None:
    delays = [outage.failed(ConnectionError("refused")) for _ in range(8)]
    assert delays[0] == FIRST_DELAY
    assert delays == sorted(delays) and max(delays) == MAX_DELAY
    assert all(b in (a * 2, MAX_DELAY) for a, b in zip(delays, delays[1:], strict=False))


def test_logs_down_once_still_down_each_minute_and_back_once(
    outage: Outage, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "test.outage")
    for _ in range(int(2.5 * STILL_DOWN_EVERY)):  # a failure a second for 150 s
        outage.failed(ConnectionError("Connection refused"))
        clock.now += 1
    outage.ok()
    outage.ok()
    assert [r.getMessage() for r in caplog.records] == [
        "Redis unreachable (ConnectionError: Connection refused); retrying with backoff",
        "Redis still unreachable after 60 s",
        "Redis still unreachable after 120 s",
        "Redis reachable again after 150.0 s; resuming",
    ]
    assert not outage.down


def test_a_new_outage_starts_again_from_the_first_delay(outage: Outage) -> None:
    for _ in range(5):
        outage.failed(TimeoutError())
    outage.ok()
    assert outage.failed(TimeoutError()) == FIRST_DELAY
    assert outage.down


def test_the_down_line_is_one_line(outage: Outage, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "test.outage")
    outage.failed(OSError("connection refused\n\tIs the server running on that host?\n(More)"))
    [record] = caplog.records
    assert (
        record.getMessage()
        == "Redis unreachable (OSError: connection refused); retrying with backoff"
    )
