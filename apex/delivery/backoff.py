"""Retry policy for outgoing deliveries: the schedule, jitter, Retry-After, and what to do next."""

from __future__ import annotations

import email.utils
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

# Delay before attempt 2, 3, ... 10, counted from the previous attempt: about 3 days in all.
DEFAULT_SCHEDULE: tuple[int, ...] = (5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)
JITTER = 0.2
MAX_DELAY = 86400.0
RETRY_AFTER_STATUSES = frozenset({429, 503})

DecisionKind = Literal["delivered", "disable", "retry", "failed"]


@dataclass(frozen=True)
class Decision:
    """What to do after an attempt.

    - "delivered": a 2xx; done.
    - "disable": 410 Gone; the receiver asked to stop: disable the subscription now (this
      delivery is not retried).
    - "retry": try again in `delay` seconds.
    - "failed": the schedule is exhausted; give up on this delivery.
    """

    kind: DecisionKind
    delay: float | None = None


def parse_schedule(text: str) -> tuple[int, ...]:
    """Parse "5,300,1800" into (5, 300, 1800). Blanks around items are allowed.

    Raises ValueError, naming the bad item, unless every item is a positive decimal integer.
    """
    items = [item.strip() for item in text.split(",")]
    delays = []
    for item in items:
        if not (item.isascii() and item.isdigit()) or int(item) == 0:
            raise ValueError(
                f"retry schedule must be comma-separated positive whole seconds; "
                f"got {item!r} in {text!r}"
            )
        delays.append(int(item))
    return tuple(delays)


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds a Retry-After header asks us to wait, at most 24 h.

    Accepts delta-seconds ("120") and an HTTP-date ("Wed, 21 Oct 2015 07:28:00 GMT"),
    measured from `now` (naive values are taken as UTC); a date in the past gives 0.
    Returns None when the header is absent or unparseable; never raises.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if value.isascii() and value.isdigit():
        return min(float(value), MAX_DELAY)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    seconds = (_as_utc(when) - _as_utc(now)).total_seconds()
    return min(max(seconds, 0.0), MAX_DELAY)


def next_delay(
    attempt: int,
    schedule: Sequence[int],
    rand: Callable[[], float],
    retry_after: float | None = None,
) -> float | None:
    """Seconds to wait before the next attempt, or None when the schedule is exhausted.

    `attempt` is the number of attempts made so far (1 after the first), so the next delay is
    schedule[attempt - 1], scaled by a jitter factor in [0.8, 1.2) from `rand()` in [0, 1).
    `retry_after` (seconds), when given, is a floor. The result is never over 24 h.
    Raises ValueError when attempt < 1.
    """
    if attempt < 1:
        raise ValueError(f"attempt counts attempts already made and starts at 1; got {attempt}")
    if attempt > len(schedule):
        return None
    delay = schedule[attempt - 1] * (1 - JITTER + 2 * JITTER * rand())
    if retry_after is not None:
        delay = max(delay, retry_after)
    return min(delay, MAX_DELAY)


def decide(
    status_code: int | None,
    attempt: int,
    schedule: Sequence[int],
    rand: Callable[[], float],
    retry_after: float | None = None,
) -> Decision:
    """Classify the outcome of attempt number `attempt` (1-based) and say what comes next.

    `status_code` is None when no HTTP response arrived (connection error, timeout, refused
    destination). Only 2xx is success; 3xx counts as a failure since redirects are not
    followed. `retry_after` is honoured only for 429 and 503. Raises ValueError when
    attempt < 1.
    """
    if attempt < 1:
        raise ValueError(f"attempt counts attempts already made and starts at 1; got {attempt}")
    if status_code is not None and 200 <= status_code <= 299:
        return Decision("delivered")
    if status_code == 410:
        return Decision("disable")
    floor = retry_after if status_code in RETRY_AFTER_STATUSES else None
    delay = next_delay(attempt, schedule, rand, floor)
    if delay is None:
        return Decision("failed")
    return Decision("retry", delay)


def _as_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment
