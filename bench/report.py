"""How the benchmarks report: one JSON line per figure, medians over REPEATS runs."""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Callable
from typing import Any

REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))


def emit(figure: str, **values: Any) -> None:
    print(json.dumps({"figure": figure, **values}), flush=True)


def median_of(run: Callable[[], float]) -> float:
    """The median of REPEATS calls of `run`."""
    return statistics.median(run() for _ in range(REPEATS))


def percentile(values: list[float], p: float) -> float:
    """The `p`th percentile of sorted `values` (nearest rank)."""
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def ratio(value: float, baseline: float) -> float | None:
    return round(value / baseline, 2) if baseline > 0 else None
