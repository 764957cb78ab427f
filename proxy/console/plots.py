"""Plots as inline SVG drawn on the server: no script, no CDN, nothing fetched by the
browser. Each function takes plain numbers and answers markup; labels are escaped.

Colours come from the console's stylesheet by class (`series-0` ...), so the plots follow
the page's look and carry no inline style (the console's CSP forbids it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from itertools import pairwise

from proxy.console.markup import Html, fill, join

__all__ = ["PALETTE_SIZE", "budget_bar", "edges_for", "histogram", "line_chart"]

PALETTE_SIZE = 8
WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 12, 40


def _number(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _tick(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _nice_max(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten at or above `value` (an axis's top)."""
    if value <= 0 or not math.isfinite(value):
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    return float(next(m * power for m in (1, 2, 5, 10) if m * power >= value))


def _integer_top(value: float) -> float:
    """An axis top whose quarters are whole numbers (4 times 1, 2 or 5 times a power of
    ten), for counts: no gridline at 0.5 of a run."""
    return 4 * max(_nice_max(value / 4), 1.0)


def budget_bar(used: float, budget: float | None, label: str, *, money: bool = True) -> Html:
    """A bar of `used` against `budget` (None: no budget, the bar shows spend only)."""
    width, height = 180, 16
    fraction = used / budget if budget else (0.0 if budget is None else float(used > 0))
    state = "over" if fraction >= 1 else "warn" if fraction >= 0.8 else "ok"
    filled = min(max(fraction, 0.0), 1.0) * width

    def amount(value: float) -> str:
        return f"${value:,.2f}" if money else f"{value:,.0f}"

    of = "no budget" if budget is None else amount(budget)
    return fill(
        '<svg class="bar" role="img" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
        'data-used="{used}" data-fraction="{fraction}" aria-label="{label}">'
        '<title>{label}</title><rect class="bar-track" width="{w}" height="{h}" rx="3"/>'
        '<rect class="bar-{state}" width="{filled}" height="{h}" rx="3"/></svg>'
        '<span class="bar-text">{text}</span>',
        w=width,
        h=height,
        used=f"{used:.4f}",
        fraction=f"{fraction:.4f}",
        state=state,
        filled=_number(filled),
        label=f"{label}: {amount(used)} of {of}",
        text=f"{amount(used)} of {of}",
    )


def _frame(
    title: str,
    top: float,
    x_labels: Sequence[tuple[float, str]],
    y_label: str,
    x_label: str = "",
) -> Html:
    """Axes with their titles (units included), gridlines at quarters of `top`, and the x
    labels at their positions."""
    plot_h = HEIGHT - TOP - BOTTOM
    parts = [
        fill(
            '<text class="axis-title" x="4" y="{y}" transform="rotate(-90 4 {y})" '
            'dy="0.8em" text-anchor="middle">{label}</text>',
            y=TOP + plot_h / 2,
            label=y_label,
        ),
        fill(
            '<text class="axis-title" x="{x}" y="{y}" text-anchor="middle">{label}</text>',
            x=_number(LEFT + (WIDTH - LEFT - RIGHT) / 2),
            y=HEIGHT - 4,
            label=x_label,
        ),
    ]
    for quarter in range(5):
        value = top * quarter / 4
        y = TOP + plot_h - plot_h * quarter / 4
        parts.append(
            fill(
                '<line class="grid" x1="{l}" x2="{r}" y1="{y}" y2="{y}"/>'
                '<text class="tick" x="{tx}" y="{y}" dy="0.3em" text-anchor="end">{v}</text>',
                l=LEFT,
                r=WIDTH - RIGHT,
                y=_number(y),
                tx=LEFT - 6,
                v=_tick(value),
            )
        )
    for x, text in x_labels:
        parts.append(
            fill(
                '<text class="tick" x="{x}" y="{y}" text-anchor="middle">{t}</text>',
                x=_number(x),
                y=HEIGHT - BOTTOM + 16,
                t=text,
            )
        )
    return fill(
        '<svg class="plot" role="img" viewBox="0 0 {w} {h}" aria-label="{title}">'
        "<title>{title}</title>{parts}",
        w=WIDTH,
        h=HEIGHT,
        title=title,
        parts=join(parts),
    )


def _x(index: float, count: int) -> float:
    span = WIDTH - LEFT - RIGHT
    return LEFT + span * (index + 0.5) / max(count, 1)


def _y(value: float, top: float) -> float:
    plot_h = HEIGHT - TOP - BOTTOM
    return TOP + plot_h - plot_h * min(value / top, 1.0)


def line_chart(
    title: str,
    labels: Sequence[str],
    series: Mapping[str, Sequence[float]],
    y_label: str,
    x_label: str = "",
) -> Html:
    """One line per series over the shared `labels` (e.g. dollars per team per day)."""
    count = len(labels)
    top = _nice_max(max((max(v, default=0.0) for v in series.values()), default=0.0))
    step = max(1, math.ceil(count / 8))
    ticks = [(_x(i, count), t) for i, t in enumerate(labels) if i % step == 0]
    frame = _frame(title, top, ticks, y_label, x_label)
    lines, legend = [], []
    for n, (name, values) in enumerate(series.items()):
        points = " ".join(
            f"{_number(_x(i, count))},{_number(_y(v, top))}" for i, v in enumerate(values)
        )
        colour = f"series-{n % PALETTE_SIZE}"
        lines.append(
            fill(
                '<polyline class="line {c}" points="{p}"><title>{name}</title></polyline>',
                c=colour,
                p=points,
                name=name,
            )
        )
        lines += [
            fill(
                '<circle class="dot {c}" cx="{x}" cy="{y}" r="3"><title>{t}</title></circle>',
                c=colour,
                x=_number(_x(i, count)),
                y=_number(_y(v, top)),
                t=f"{name}, {labels[i]}: {v:,.2f}",
            )
            for i, v in enumerate(values)
        ]
        legend.append(fill('<li><span class="swatch {c}"></span>{name}</li>', c=colour, name=name))
    return fill(
        '{frame}{lines}</svg><ul class="legend">{legend}</ul>',
        frame=frame,
        lines=join(lines),
        legend=join(legend),
    )


def histogram(
    title: str,
    values: Sequence[float],
    edges: Sequence[float],
    y_label: str,
    *,
    curve: Callable[[float], float] | None = None,
    curve_label: str = "",
    limit: float | None = None,
    limit_label: str = "",
    x_label: str = "",
) -> Html:
    """Counts of `values` in the bins between `edges`; `curve` (a density) drawn over it
    scaled to the counts, and `limit` as a horizontal line (e.g. a budget). The counts'
    axis has whole-number ticks; a legend names the bars, the curve and the limit."""
    bins = len(edges) - 1
    counts = [0] * bins
    for value in values:
        index = next((i for i in range(bins) if value < edges[i + 1]), bins - 1)
        if value >= edges[0]:
            counts[index] += 1
    expected: list[float] = []
    if curve is not None:
        expected = [curve((a + b) / 2) * (b - a) * len(values) for a, b in pairwise(edges)]
    top = _integer_top(max([*counts, *expected, limit or 0.0, 1.0]))
    step = max(1, math.ceil(bins / 8))
    span = (WIDTH - LEFT - RIGHT) / bins
    # Ticks at the bins' edges: a bin holds the values from its left edge up to the next.
    ticks = [(LEFT + span * i, _tick(edges[i])) for i in range(0, bins + 1, step)]
    frame = _frame(title, top, ticks, y_label, x_label)
    bars = [
        fill(
            '<rect class="hist series-0" x="{x}" y="{y}" width="{w}" height="{h}">'
            "<title>{t}</title></rect>",
            x=_number(LEFT + span * i + 1),
            y=_number(_y(c, top)),
            w=_number(max(span - 2, 1)),
            h=_number(_y(0, top) - _y(c, top)),
            t=f"{_tick(edges[i])} to {_tick(edges[i + 1])}: {c}",
        )
        for i, c in enumerate(counts)
    ]
    if expected:
        points = " ".join(
            f"{_number(_x(i, bins))},{_number(_y(e, top))}" for i, e in enumerate(expected)
        )
        bars.append(
            fill(
                '<polyline class="line series-1" points="{p}"><title>{t}</title></polyline>',
                p=points,
                t=curve_label,
            )
        )
    if limit is not None:
        bars.append(
            fill(
                '<line class="limit" x1="{l}" x2="{r}" y1="{y}" y2="{y}"><title>{t}</title></line>',
                l=LEFT,
                r=WIDTH - RIGHT,
                y=_number(_y(limit, top)),
                t=limit_label,
            )
        )
    legend = [fill('<li><span class="swatch series-0"></span>{y}</li>', y=y_label)]
    if expected:
        legend.append(fill('<li><span class="swatch series-1"></span>{t}</li>', t=curve_label))
    if limit is not None:
        legend.append(fill('<li><span class="swatch limit"></span>{t}</li>', t=limit_label))
    return fill(
        '{frame}{bars}</svg><ul class="legend">{legend}</ul>',
        frame=frame,
        bars=join(bars),
        legend=join(legend),
    )


def edges_for(values: Sequence[float], bins: int = 20, low: float = 0.0) -> list[float]:
    """`bins` equal bins from `low` to just past the largest value."""
    high = max([*values, low + 1.0])
    width = _nice_max((high - low) / bins)
    return [low + width * i for i in range(math.ceil((high - low) / width) + 1)] or [low, low + 1]
