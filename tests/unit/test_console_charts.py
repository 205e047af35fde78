"""The console's chart geometry and the numbers it draws: pure functions, known answers."""

from __future__ import annotations

import pytest

from apex.console import charts
from apex.console.keys import derive
from apex.console.money import money
from apex.console.stats import percentile


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, 1), (1, 1), (3, 5), (7, 10), (11, 20), (230, 250), (2600, 5000), (0.3, 0.5)],
)
def test_nice_max_rounds_the_axis_up_to_a_readable_number(value: float, expected: float) -> None:
    assert charts.nice_max(value) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("values", "share", "expected"),
    [([], 0.5, None), ([7], 0.99, 7), ([1, 2, 3, 4], 0.5, 2), ([1, 2, 3, 4], 0.9, 4),
     (list(range(1, 101)), 0.99, 99), (list(range(1, 101)), 0.5, 50)],
)  # fmt: skip
def test_percentile_is_the_nearest_rank(values: list[int], share: float, expected: int) -> None:
    assert percentile(values, share) == expected


def test_stacked_columns_stack_each_series_on_the_one_below() -> None:
    chart = charts.stacked_columns(
        ["00:00", "01:00"],
        [charts.Series("ok", "s-ok", [3, 0]), charts.Series("failed", "s-fail", [1, 4])],
    )

    by_title = {s.title: s for s in chart.shapes}
    assert set(by_title) == {"00:00: 3 ok", "00:00: 1 failed", "01:00: 4 failed"}  # no 0 bars
    ok, failed = by_title["00:00: 3 ok"], by_title["00:00: 1 failed"]
    assert failed.y + failed.h == pytest.approx(ok.y)  # failed sits on ok
    assert ok.h == pytest.approx(3 * failed.h)
    assert by_title["01:00: 4 failed"].h == pytest.approx(4 * failed.h)
    assert [t.label for t in chart.y_ticks] == ["0", "1.25", "2.5", "3.75", "5"]  # 4 -> 5


def test_lines_break_where_a_value_is_missing() -> None:
    chart = charts.lines(["a", "b", "c", "d"], [charts.Series("p50", "l-p50", [10, None, 20, 30])])

    polylines = [s for s in chart.shapes if s.points]
    assert [len(p.points.split()) for p in polylines] == [1, 2]


def test_grouped_bars_draw_refunds_as_zero_width() -> None:
    chart = charts.grouped_bars(["ads", "email"], [charts.Series("linear", "m-linear", [-5, 10])])

    widths = {s.title: s.w for s in chart.shapes}
    assert widths["ads: -5 linear"] < 1 < widths["email: 10 linear"]


@pytest.mark.parametrize(
    ("amount", "currency", "shown"),
    [(12050, "usd", "120.50 USD"), (500, "jpy", "500 JPY"), (1234567, "kwd", "1,234.567 KWD"),
     (-250, "eur", "-2.50 EUR"), (0, None, "0")],
)  # fmt: skip
def test_money_shows_the_currency_own_decimals(
    amount: int, currency: str | None, shown: str
) -> None:
    assert money(amount, currency) == shown


def test_each_purpose_gets_its_own_key_and_the_first_key_decides() -> None:
    key = "a" * 43 + "="
    assert derive(key, "session") != derive(key, "portal-link")
    assert derive(key + ",other", "session") == derive(key, "session")
    assert derive("b" * 43 + "=", "session") != derive(key, "session")
