"""Charts as geometry for inline SVG: stacked columns, lines and grouped bars, with their axis
ticks. Pure: the templates draw the shapes (and escape every label), and show the same numbers
in a table."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

WIDTH, HEIGHT = 720, 220
LEFT, RIGHT, TOP, BOTTOM = 48, 8, 8, 28  # margins for the axes' labels


@dataclass(frozen=True)
class Series:
    name: str
    css: str  # a class of console.css that colours the series
    values: Sequence[float | None]


@dataclass(frozen=True)
class Shape:
    """A rectangle (x, y, w, h) or, for a line, its points in `points`."""

    css: str
    title: str
    x: float = 0
    y: float = 0
    w: float = 0
    h: float = 0
    points: str = ""


@dataclass(frozen=True)
class Tick:
    at: float
    label: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    shapes: list[Shape]
    y_ticks: list[Tick]  # `at` is a y coordinate
    x_ticks: list[Tick]  # `at` is an x coordinate
    legend: list[Series]
    axis_x: float = LEFT  # where the y axis stands (its labels end left of it)

    @property
    def axis_y(self) -> float:
        return self.height - BOTTOM


def nice_max(value: float) -> float:
    """The smallest of 1, 2, 2.5 or 5 times a power of ten that is at least `value` (1 for 0)."""
    if value <= 0:
        return 1
    power = 1.0
    while power * 10 < value:
        power *= 10
    while power > value:
        power /= 10
    for step in (1, 2, 2.5, 5, 10):
        if step * power >= value:
            return step * power
    return 10 * power  # pragma: no cover (the loop always returns)


def _number(value: float) -> str:
    return f"{value:g}" if value < 10_000 else f"{value / 1000:g}k"


def _y_ticks(top: float, plot_h: float) -> list[Tick]:
    return [Tick(TOP + plot_h * (1 - n / 4), _number(top * n / 4)) for n in range(5)]


def _x_ticks(labels: Sequence[str], slot: float, every: int) -> list[Tick]:
    return [
        Tick(LEFT + slot * (i + 0.5), label) for i, label in enumerate(labels) if i % every == 0
    ]


def stacked_columns(labels: Sequence[str], series: Sequence[Series], every: int = 3) -> Chart:
    """One column per label, its series stacked bottom up."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    totals = [sum(s.values[i] or 0 for s in series) for i in range(len(labels))]
    top = nice_max(max(totals, default=0))
    slot = plot_w / max(len(labels), 1)
    shapes = []
    for i, label in enumerate(labels):
        base = 0.0
        for s in series:
            value = s.values[i] or 0
            if value:
                h = plot_h * value / top
                y = TOP + plot_h - plot_h * (base + value) / top
                shapes.append(
                    Shape(
                        s.css,
                        f"{label}: {value:g} {s.name}",
                        LEFT + slot * i + slot * 0.1,
                        y,
                        slot * 0.8,
                        h,
                    )
                )
                base += value
    return Chart(
        WIDTH, HEIGHT, shapes, _y_ticks(top, plot_h), _x_ticks(labels, slot, every), list(series)
    )


def lines(labels: Sequence[str], series: Sequence[Series], every: int = 3) -> Chart:
    """One polyline per series; a missing value (None) breaks its line."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top = nice_max(max((v for s in series for v in s.values if v is not None), default=0))
    slot = plot_w / max(len(labels), 1)
    shapes = []
    for s in series:
        run: list[str] = []
        for i, value in enumerate([*s.values, None]):
            if value is None:
                if run:
                    shapes.append(Shape(s.css, s.name, points=" ".join(run)))
                run = []
                continue
            x, y = LEFT + slot * (i + 0.5), TOP + plot_h - plot_h * value / top
            run.append(f"{x:.1f},{y:.1f}")
            shapes.append(
                Shape(s.css + " dot", f"{labels[i]}: {value:g} ms {s.name}", x - 2, y - 2, 4, 4)
            )
    return Chart(
        WIDTH, HEIGHT, shapes, _y_ticks(top, plot_h), _x_ticks(labels, slot, every), list(series)
    )


def grouped_bars(labels: Sequence[str], series: Sequence[Series]) -> Chart:
    """Horizontal bars: one group per label (a row), one bar per series in it. Negative values
    (net refunds) are drawn as zero; the table shows them."""
    row_h = 12 * max(len(series), 1) + 10
    left = 160
    height = TOP + BOTTOM + row_h * max(len(labels), 1)
    plot_w = WIDTH - left - RIGHT
    top = nice_max(max((v or 0 for s in series for v in s.values), default=0))
    shapes = []
    for i, label in enumerate(labels):
        for j, s in enumerate(series):
            value = s.values[i] or 0
            w = plot_w * max(value, 0) / top
            shapes.append(
                Shape(
                    s.css,
                    f"{label}: {value:g} {s.name}",
                    left,
                    TOP + row_h * i + 5 + 12 * j,
                    max(w, 0.5),
                    10,
                )
            )
    x_ticks = [Tick(left + plot_w * n / 4, _number(top * n / 4)) for n in range(5)]
    y_ticks = [Tick(TOP + row_h * (i + 0.5), label) for i, label in enumerate(labels)]
    return Chart(WIDTH, height, shapes, y_ticks, x_ticks, list(series), left)
