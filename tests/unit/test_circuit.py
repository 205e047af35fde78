"""Endpoint circuits (apex.delivery.circuit): which attempts open one, what a probe's failure
and an answer do; the database side runs in tests/integration/test_endpoint_limits.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from apex.delivery.attempt import Outcome
from apex.delivery.circuit import CLOSED, OPEN, PROBE_MAX, Health, Rules, Tried, unreachable

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
RULES = Rules(failures=3, first_probe=10)


def outcome(status: int | None = None, error: str | None = None) -> Outcome:
    return Outcome(status, error, None, 5, None)


REFUSED = outcome(error="connection_error: ConnectionError")
TIMEOUT = outcome(error="timeout: waiting for the response headers after 15 s")


def tried(result: Outcome, seconds: float) -> Tried:
    return Tried("wh_1", T0 + timedelta(seconds=seconds), result)


def opened() -> Health:
    health = Health()
    for n in range(3):
        health.step(tried(REFUSED, n), RULES, T0 + timedelta(seconds=n))
    return health


def test_what_counts_as_unreachable() -> None:
    assert unreachable(REFUSED) and unreachable(TIMEOUT)
    assert unreachable(outcome(error="destination_unresolved: no address"))
    for reached in (outcome(500), outcome(200), outcome(410)):
        assert not unreachable(reached)
    for ours in ("destination_refused: port 22", "interrupted: the worker stopped",
                 "internal_error: ValueError", "egress_proxy_error: 403"):  # fmt: skip
        assert not unreachable(outcome(error=ours))


def test_consecutive_unreachable_attempts_open_it_and_schedule_the_first_probe() -> None:
    health = Health()
    health.step(tried(REFUSED, 0), RULES, T0)
    health.step(tried(TIMEOUT, 1), RULES, T0)
    assert health.circuit == CLOSED and health.unreachable_count == 2
    now = T0 + timedelta(seconds=2)
    health.step(tried(REFUSED, 2), RULES, now)
    assert (health.circuit, health.circuit_since) == (OPEN, now)
    assert health.circuit_reason == REFUSED.error
    assert health.probe_at == now + timedelta(seconds=10)


def test_any_answer_resets_the_count_so_a_fast_500_never_opens_it() -> None:
    health = Health()
    for n in range(10):
        health.step(tried(REFUSED if n % 2 else outcome(500), n), RULES, T0)
    assert health.circuit == CLOSED and health.unreachable_count == 1
    health.step(tried(outcome(503), 12), RULES, T0)
    assert health.unreachable_count == 0


def test_failed_probes_double_the_interval_up_to_the_cap() -> None:
    health = opened()
    since = health.circuit_since
    assert since is not None
    intervals = []
    for n in range(12):
        now = since + timedelta(seconds=100 * (n + 1))
        health.step(Tried("wh_1", now, TIMEOUT, probe=True), RULES, now)
        intervals.append(health.probe_interval)
        assert health.probe_at == now + timedelta(seconds=health.probe_interval or 0)
    assert intervals[:4] == [20, 40, 80, 160]
    assert intervals[-1] == PROBE_MAX and health.circuit == OPEN


def test_only_a_probe_failing_moves_the_next_probe() -> None:
    health = opened()
    probe_at = health.probe_at
    # Requests that were under way when the circuit opened end later, unreachable too, some
    # started just before it opened and some just after (claimed before the worker knew).
    for n in range(10):
        health.step(tried(TIMEOUT, 1.5 + n), RULES, T0 + timedelta(seconds=20 + n))
    assert (health.probe_at, health.probe_interval) == (probe_at, 10)
    assert health.circuit == OPEN and health.unreachable_count == 13


def test_an_answer_closes_it_and_forgets_the_failures() -> None:
    health = opened()
    now = T0 + timedelta(seconds=30)
    health.step(tried(outcome(404), 29), RULES, now)
    assert health == Health(circuit=CLOSED, circuit_since=now)
