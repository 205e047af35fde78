"""Riding out an unreachable dependency: capped backoff, and one log line per change of state."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

FIRST_DELAY = 0.5  # seconds before the first retry
MAX_DELAY = 5.0  # the backoff's cap: a dependency that is back is noticed within this
STILL_DOWN_EVERY = 60.0  # seconds between "still unreachable" lines


class Outage:
    """Whether `name` (e.g. "Redis") answers, as one process sees it.

    `failed(exc)` is called on each failed attempt and returns how long to wait before the next;
    `ok()` on each success. Logged: the first failure, "still unreachable" once a minute, and
    the recovery with how long it lasted. Never raises.
    """

    def __init__(
        self,
        name: str,
        log: logging.Logger,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.log = log
        self.clock = clock
        self.since: float | None = None  # when it went down; None while it answers
        self._delay = FIRST_DELAY
        self._reported = 0.0

    @property
    def down(self) -> bool:
        return self.since is not None

    def failed(self, exc: BaseException) -> float:
        now = self.clock()
        if self.since is None:
            self.since = self._reported = now
            self._delay = FIRST_DELAY
            self.log.warning(
                "%s unreachable (%s: %s); retrying with backoff",
                self.name,
                type(exc).__name__,
                _first_line(exc),
            )
            return self._delay
        if now - self._reported >= STILL_DOWN_EVERY:
            self._reported = now
            self.log.warning("%s still unreachable after %d s", self.name, now - self.since)
        self._delay = min(self._delay * 2, MAX_DELAY)
        return self._delay

    def ok(self) -> None:
        if self.since is not None:
            self.log.info(
                "%s reachable again after %.1f s; resuming", self.name, self.clock() - self.since
            )
            self.since = None


def _first_line(exc: BaseException, limit: int = 200) -> str:
    """The start of an error's message: drivers' messages run over several lines."""
    lines = str(exc).strip().splitlines()
    return lines[0][:limit] if lines else ""
