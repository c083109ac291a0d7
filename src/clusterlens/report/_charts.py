"""The reports' inline SVG charts (line charts, histograms): coordinates computed here.

The templates draw what these return (viewBox pixels, tick positions and
labels, tooltips); nothing is computed in the browser and no chart library
is loaded, so a report stays one self-contained file.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from clusterlens.report._common import fmt_number

__all__ = [
    "COLORS",
    "Bar",
    "Histogram",
    "LineChart",
    "Series",
    "fmt_compact",
    "histogram",
    "line_chart",
    "nice_ticks",
]

#: Colours of successive series (Tableau 10).
COLORS = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2")


@dataclass(frozen=True)
class Series:
    """One curve: its ``points`` (an SVG ``points`` list) and ``dots``."""

    name: str
    color: str
    points: str
    dots: list[tuple[float, float, str]]


@dataclass(frozen=True)
class LineChart:
    """A line chart in a ``width x height`` viewBox; the plot is ``left..right``
    by ``top..bottom``."""

    title: str
    ylabel: str
    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int
    series: list[Series]
    xticks: list[tuple[float, str]]
    yticks: list[tuple[float, str]]

    @property
    def points(self) -> str:
        """The first series' points (a one-curve chart)."""
        return self.series[0].points

    @property
    def dots(self) -> list[tuple[float, float, str]]:
        """The first series' dots (a one-curve chart)."""
        return self.series[0].dots


@dataclass(frozen=True)
class Bar:
    """One histogram bin: its rectangle and tooltip."""

    x: float
    y: float
    width: float
    height: float
    tip: str


@dataclass(frozen=True)
class Histogram:
    """A histogram in a ``width x height`` viewBox, its x axis at ``bottom``."""

    width: int
    height: int
    left: int
    bottom: int
    bars: list[Bar]
    xticks: list[tuple[float, str]]
    title: str


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values (steps of 1, 2, 2.5 or 5 x 10^k) over [lo, hi]."""
    if hi <= lo:
        pad = abs(lo) * 0.05 or 1.0
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / max(n - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(s * mag for s in (1, 2, 2.5, 5, 10) if s * mag >= raw)
    # i * step, rounded to the step's digits: summing steps left float residue
    # (a tick at 0 drawn as -2.71e-20)
    digits = max(0, 2 - math.floor(math.log10(step)))
    i = math.floor(lo / step)
    ticks = [round(i * step, digits)]
    while ticks[-1] < hi - 1e-9 * step:
        i += 1
        ticks.append(round(i * step, digits))
    return [t + 0.0 for t in ticks]  # no -0.0


def fmt_compact(v: float) -> str:
    """Short tick label: 1,250,000 -> 1.25M, 12,000 -> 12k."""
    a = abs(v)
    if a >= 1e9:
        return f"{v / 1e9:.4g}G"
    if a >= 1e6:
        return f"{v / 1e6:.4g}M"
    if a >= 1e4:
        return f"{v / 1e3:.4g}k"
    return fmt_number(v)


def line_chart(
    x: Sequence[float],
    series: Mapping[str, Sequence[float]],
    *,
    tip: Callable[[str, float, float], str],
    title: str = "",
    ylabel: str = "",
    size: tuple[int, int] = (720, 240),
    margins: tuple[int, int, int, int] = (64, 20, 16, 42),
    ytick_label: Callable[[float], str] | None = None,
    any_xticks: bool = False,
    max_dots: int | None = None,
) -> LineChart | None:
    """A chart of one or more series over ``x`` (None when nothing to draw).

    Parameters
    ----------
    x : sequence of float
        The abscissae, shared by the series (iterations, epochs).
    series : mapping of str to sequence of float
        The curves by name, one value per ``x``; non-finite values are left
        out.
    tip : callable
        ``tip(name, x, y)``: the tooltip of a point.
    title, ylabel : str
        The chart's title and y-axis label.
    size : (width, height), default=(720, 240)
        The viewBox, pixels.
    margins : (left, right, top, bottom), default=(64, 20, 16, 42)
        Room for the ticks and labels around the plot.
    ytick_label : callable, default=None
        The label of a y tick value; None: 3 significant digits, more where
        the ticks are closer than that tells apart (a loss that moved by
        1e-4 over the run).
    any_xticks : bool, default=False
        x ticks are whole numbers; with ``any_xticks`` fractional ones are
        kept when no whole one falls in the range.
    max_dots : int, default=None
        Draw no dots (only the curve) for a series longer than this.
    """
    ys_all = [v for vals in series.values() for v in vals if math.isfinite(v)]
    if not x or not ys_all:
        return None
    width, height = size
    left, right, top, bottom = margins
    # x spans the abscissae exactly; y is widened to round tick values.
    x0, x1 = float(min(x)), float(max(x))
    if x1 <= x0:
        x0, x1 = x0 - 1, x1 + 1
    xt = [t for t in nice_ticks(x0, x1, 6) if x0 <= t <= x1]
    whole = [t for t in xt if t == int(t)]
    xt = whole or xt if any_xticks else whole
    yt = nice_ticks(min(ys_all), max(ys_all), 5)
    y0, y1 = min(yt[0], min(ys_all)), max(yt[-1], max(ys_all))
    ylabels = _ytick_labels(yt, ytick_label)
    # room for the longest tick label (11 px digits, ~6.5 px each, right-
    # aligned 8 px off the axis) beside the rotated axis title (x 10-22)
    left = max(left, 32 + math.ceil(6.5 * max(len(s) for s in ylabels)))

    def px(v: float) -> float:
        return round(left + (v - x0) / (x1 - x0) * (width - left - right), 1)

    def py(v: float) -> float:
        span = (y1 - y0) or 1.0
        return round(height - bottom - (v - y0) / span * (height - top - bottom), 1)

    out = []
    for (name, vals), color in zip(series.items(), COLORS, strict=False):
        pts = [
            (px(a), py(b), a, b)
            for a, b in zip(x, vals, strict=True)
            if math.isfinite(b)
        ]
        dots = [(a, b, tip(name, e, v)) for a, b, e, v in pts]
        out.append(
            Series(
                name,
                color,
                " ".join(f"{a},{b}" for a, b, _, _ in pts),
                dots if max_dots is None or len(dots) <= max_dots else [],
            )
        )
    return LineChart(
        title,
        ylabel,
        width,
        height,
        left,
        width - right,
        top,
        height - bottom,
        out,
        [(px(t), fmt_number(t)) for t in xt],
        list(zip([py(t) for t in yt], ylabels, strict=True)),
    )


def _ytick_labels(
    ticks: Sequence[float], label: Callable[[float], str] | None
) -> list[str]:
    """The y tick labels: ``label``'s, else the fewest significant digits (3
    or more) that give every tick its own label."""
    if label is not None:
        return [label(t) for t in ticks]
    for digits in range(3, 10):
        out = [f"{t:.{digits}g}" for t in ticks]
        if len(set(out)) == len(out):
            return out
    return out


def histogram(
    values: npt.NDArray[np.float64], title: str, *, bins: int = 20
) -> Histogram | None:
    """A histogram of the finite ``values`` in ``bins`` equal bins (None: none)."""
    v = values[np.isfinite(values)]
    if v.size == 0:
        return None
    lo, hi = float(v.min()), float(v.max())
    if hi <= lo:
        hi = lo + 1.0
    counts, edges = np.histogram(v, bins=bins, range=(lo, hi))
    width, height, left, right, top, bottom = 720, 220, 56, 16, 12, 40
    pw, ph = width - left - right, height - top - bottom
    cmax = max(int(counts.max()), 1)
    bars = []
    for c, a, b in zip(counts, edges[:-1], edges[1:], strict=True):
        bx = left + (a - lo) / (hi - lo) * pw
        bw = max(1.0, (b - a) / (hi - lo) * pw - 1)
        bh = c / cmax * ph
        bars.append(
            Bar(
                round(bx, 1),
                round(top + ph - bh, 1),
                round(bw, 1),
                round(bh, 1),
                f"{fmt_number(float(a))} to {fmt_number(float(b))}: {int(c)}",
            )
        )
    ticks = [
        (round(left + t / 4 * pw, 1), fmt_number(lo + t / 4 * (hi - lo)))
        for t in range(5)
    ]
    return Histogram(width, height, left, height - bottom, bars, ticks, title)
