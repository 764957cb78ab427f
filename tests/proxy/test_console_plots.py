"""The console's charts say what they show: both axes titled with their units, whole-number
ticks on an axis of counts, and a legend naming every line and every series."""

from __future__ import annotations

import re

import pytest

from proxy.console.plots import edges_for, histogram, line_chart


def ticks(svg: str) -> list[str]:
    return re.findall(
        r'<text class="tick" x="\d+(?:\.\d)?" y="[\d.]+" dy="0.3em"[^>]*>([^<]+)<', svg
    )


@pytest.mark.parametrize("largest", [1, 2, 3, 5, 7, 9, 13, 26, 99])
def test_a_histogram_of_counts_has_whole_number_ticks(largest: int) -> None:
    svg = histogram("Polls per run", [1.0] * largest, [0.0, 1.0, 2.0], "runs (count)")
    found = ticks(svg)
    assert len(found) == 5
    assert all(re.fullmatch(r"[\d,]+", t) for t in found), found
    assert float(found[-1].replace(",", "")) >= largest


def test_axes_are_titled_and_every_line_has_its_legend() -> None:
    svg = histogram(
        "Durations", [600.0, 700.0], edges_for([600.0, 700.0]), "runs (count)",
        curve=lambda t: 0.001, curve_label="learnt lognormal", limit=1.0,
        limit_label="the budget's pace", x_label="seconds from send to finish",
    )  # fmt: skip
    titles = re.findall(r'<text class="axis-title"[^>]*>([^<]+)<', svg)
    assert titles == ["runs (count)", "seconds from send to finish"]
    legend = re.findall(r"<li><span class=\"swatch [\w-]+\"></span>([^<]+)</li>", svg)
    assert legend == ["runs (count)", "learnt lognormal", "the budget&#x27;s pace"]

    chart = line_chart(
        "Spend", ["11-30", "12-01"], {"studio": [1.0, 2.5], "news": [0.0, 4.0]},
        "dollars (USD)", "day (UTC, month-day)",
    )  # fmt: skip
    assert re.findall(r'<text class="axis-title"[^>]*>([^<]+)<', chart) == [
        "dollars (USD)",
        "day (UTC, month-day)",
    ]
    assert re.findall(r"</span>([^<]+)</li>", chart) == ["studio", "news"]
