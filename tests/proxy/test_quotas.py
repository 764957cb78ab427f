"""Pure properties of the quota arithmetic (proxy/quotas.py): GCRA, RateLimit fields, periods.

GCRA here is a token bucket of N tokens refilled at N per window: a burst of N passes at
once, then one request every W/N seconds. Hypothesis drives request times; the virtual
start times include the gateway's own epoch, where float precision is coarsest.
"""

from __future__ import annotations

import datetime as dt
import math
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.core.clock import VIRTUAL_EPOCH
from proxy.core.quotas import (
    MemoryRateLimiter,
    RateDecision,
    budget_periods,
    gcra,
    ratelimit_headers,
    seconds_to_next_day,
    seconds_to_next_month,
)

WINDOW = 60.0
starts = st.sampled_from([0.0, 1_000.5, VIRTUAL_EPOCH, VIRTUAL_EPOCH + 0.123])
limits = st.integers(min_value=1, max_value=30)
# Offsets from the start, sorted: many bursts (repeats) and many gaps of all sizes.
offsets = st.lists(
    st.one_of(
        st.floats(min_value=0, max_value=300, allow_nan=False),
        st.integers(min_value=0, max_value=300).map(float),
    ),
    min_size=1,
    max_size=120,
).map(sorted)


def run(start: float, times: list[float], limit: int) -> list[tuple[float, RateDecision]]:
    """Feed `start + t` for each t through GCRA; every decision, in order."""
    tat: float | None = None
    decisions = []
    for offset in times:
        now = start + offset
        decision = gcra(tat, now, limit, WINDOW)
        if decision.allowed:
            tat = decision.tat
        decisions.append((now, decision))
    return decisions


def admitted(decisions: list[tuple[float, RateDecision]]) -> list[float]:
    return [now for now, d in decisions if d.allowed]


def burst(tat: float | None, now: float, limit: int) -> int:
    """How many requests at the same instant `now` pass, from the state `tat`."""
    count = 0
    while True:
        decision = gcra(tat, now, limit, WINDOW)
        if not decision.allowed:
            return count
        tat = decision.tat
        count += 1
        assert count <= limit, "never more than the limit at one instant"


# -- exactness at one instant ----------------------------------------------------------------


@given(starts, limits)
def test_a_burst_from_rest_admits_exactly_the_limit(start: float, limit: int) -> None:
    decisions = run(start, [0.0] * (limit + 5), limit)
    assert [d.allowed for _, d in decisions] == [True] * limit + [False] * 5
    assert [d.remaining for _, d in decisions[:limit]] == list(range(limit - 1, -1, -1))
    refused = decisions[limit][1]
    # The true wait is one emission interval, not the whole window.
    assert refused.retry_after == pytest.approx(WINDOW / limit, abs=1e-4)
    assert refused.remaining == 0


@pytest.mark.parametrize("start", [VIRTUAL_EPOCH, 1_800_000_000.987654, 0.0])
def test_every_limit_up_to_a_thousand_admits_exactly_its_burst(start: float) -> None:
    """At wall-clock magnitudes one float addition is off by ~1e-7 s; those must never
    cost a burst its last request (they once cost every second limit one: 9 admitted 8)."""
    for limit in [*range(1, 120), 500, 600, 999, 1000]:
        assert burst(None, start, limit) == limit, limit


def test_the_worked_example_of_the_module() -> None:
    """N=10 a minute, all at t=0: ten pass, the 11th waits 6 s (not 60)."""
    decisions = run(VIRTUAL_EPOCH, [0.0] * 11, 10)
    assert sum(d.allowed for _, d in decisions) == 10
    assert decisions[-1][1].retry_after == pytest.approx(6.0)


def test_a_zero_limit_admits_nothing() -> None:
    for now in (0.0, VIRTUAL_EPOCH, VIRTUAL_EPOCH + 3600):
        decision = gcra(None, now, 0, WINDOW)
        assert not decision.allowed
        assert decision.remaining == 0


# -- bounds over any sequence of request times -----------------------------------------------


@given(starts, offsets, limits)
def test_admissions_never_exceed_the_burst_plus_the_refill(
    start: float, times: list[float], limit: int
) -> None:
    """Between any two admissions t_i <= t_j: at most N + (t_j - t_i) / (W/N) of them, i.e.
    a burst of N, then the rate N per window. This is what GCRA guarantees."""
    passed = admitted(run(start, times, limit))
    interval = WINDOW / limit
    for i in range(len(passed)):
        for j in range(i, len(passed)):
            bound = limit + math.floor((passed[j] - passed[i]) / interval + 1e-6)
            assert j - i + 1 <= bound, (passed[i], passed[j], j - i + 1, bound)


@given(starts, offsets, limits)
def test_a_refusal_waits_exactly_retry_after(start: float, times: list[float], limit: int) -> None:
    """A refused request passes at now + retry_after, and not a moment before."""
    tat: float | None = None
    for offset in times:
        now = start + offset
        decision = gcra(tat, now, limit, WINDOW)
        if decision.allowed:
            tat = decision.tat
            assert decision.retry_after == 0.0
            continue
        wait = decision.retry_after
        assert 0 < wait <= WINDOW / limit + 1e-6, "never more than one interval away"
        assert decision.tat == tat, "a refusal leaves the state alone"
        assert gcra(tat, now + wait, limit, WINDOW).allowed
        if wait > 1e-3:
            assert not gcra(tat, now + wait - 1e-3, limit, WINDOW).allowed


@given(starts, offsets, limits)
def test_remaining_is_exactly_what_a_burst_can_still_take(
    start: float, times: list[float], limit: int
) -> None:
    for now, decision in run(start, times, limit):
        if decision.allowed:
            assert burst(decision.tat, now, limit) == decision.remaining
            assert 0 <= decision.remaining < limit
        else:
            assert decision.remaining == 0


@given(starts, offsets, limits)
def test_reset_is_when_the_whole_quota_is_back(
    start: float, times: list[float], limit: int
) -> None:
    for now, decision in run(start, times, limit):
        if not decision.allowed:
            continue
        assert 0 < decision.reset <= WINDOW + 1e-6
        assert burst(decision.tat, now + decision.reset, limit) == limit
        if decision.reset > 1e-3:
            assert burst(decision.tat, now + decision.reset - 1e-3, limit) < limit


@given(starts, offsets, limits, st.floats(min_value=0, max_value=1e5, allow_nan=False))
def test_after_a_quiet_window_the_state_is_forgotten(
    start: float, times: list[float], limit: int, later: float
) -> None:
    decisions = run(start, times, limit)
    tat = max((d.tat for _, d in decisions if d.allowed), default=None)
    now = (tat if tat is not None else start) + later
    assert gcra(tat, now, limit, WINDOW) == gcra(None, now, limit, WINDOW)


def test_the_memory_limiter_keeps_one_state_per_team() -> None:
    limiter = MemoryRateLimiter()
    now = VIRTUAL_EPOCH
    assert [limiter.take("a", 2, now).allowed for _ in range(3)] == [True, True, False]
    assert limiter.take("b", 2, now).allowed, "another team has its own quota"
    refused = limiter.take("a", 2, now)
    assert refused.retry_after == pytest.approx(30.0)
    assert not limiter.take("a", 2, now + 29.9).allowed
    assert limiter.take("a", 2, now + 30.0).allowed


# -- the IETF RateLimit fields -----------------------------------------------------------------

POLICY = re.compile(r'^"(?P<name>[a-z_]+)";q=(?P<q>\d+);w=(?P<w>\d+)$')
FIELD = re.compile(r'^"(?P<name>[a-z_]+)";r=(?P<r>\d+);t=(?P<t>\d+)$')


@given(starts, offsets, limits)
def test_ratelimit_fields_are_structured_and_match_the_decision(
    start: float, times: list[float], limit: int
) -> None:
    for _, decision in run(start, times, limit):
        headers = ratelimit_headers("submits", decision)
        assert set(headers) == {"RateLimit-Policy", "RateLimit"}
        policy = POLICY.match(headers["RateLimit-Policy"])
        current = FIELD.match(headers["RateLimit"])
        assert policy is not None, headers
        assert current is not None, headers
        assert policy["name"] == current["name"] == "submits"
        assert int(policy["q"]) == limit
        assert int(policy["w"]) == 60
        assert int(current["r"]) == decision.remaining
        # t: whole seconds, rounded up, so waiting t seconds is always enough.
        assert int(current["t"]) == math.ceil(decision.reset)
        assert int(current["t"]) >= decision.reset


def test_ratelimit_fields_for_a_fresh_team() -> None:
    decision = gcra(None, VIRTUAL_EPOCH, 10, WINDOW)
    assert ratelimit_headers("submits", decision) == {
        "RateLimit-Policy": '"submits";q=10;w=60',
        "RateLimit": '"submits";r=9;t=6',
    }


# -- budget periods (UTC days and months) -----------------------------------------------------


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> float:
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=dt.UTC).timestamp()


@pytest.mark.parametrize(
    ("moment", "periods", "to_day", "to_month"),
    [
        (utc(2026, 12, 31, 23, 59, 59), ("2026-12-31", "2026-12"), 1.0, 1.0),
        (utc(2027, 1, 1), ("2027-01-01", "2027-01"), 86400.0, 31 * 86400.0),
        (utc(2026, 1, 1), ("2026-01-01", "2026-01"), 86400.0, 31 * 86400.0),
        (utc(2026, 2, 28, 12), ("2026-02-28", "2026-02"), 43200.0, 43200.0),
        (utc(2028, 2, 28, 12), ("2028-02-28", "2028-02"), 43200.0, 86400.0 + 43200.0),
        (utc(2028, 2, 29, 23, 59, 59), ("2028-02-29", "2028-02"), 1.0, 1.0),
        (utc(2026, 4, 30, 23), ("2026-04-30", "2026-04"), 3600.0, 3600.0),
        (utc(2026, 5, 31, 0, 0, 1), ("2026-05-31", "2026-05"), 86399.0, 86399.0),
        (utc(2026, 6, 1), ("2026-06-01", "2026-06"), 86400.0, 30 * 86400.0),
        (utc(2026, 12, 1), ("2026-12-01", "2026-12"), 86400.0, 31 * 86400.0),
    ],
)
def test_periods_at_their_edges(
    moment: float, periods: tuple[str, str], to_day: float, to_month: float
) -> None:
    assert budget_periods(moment) == periods
    assert seconds_to_next_day(moment) == to_day
    assert seconds_to_next_month(moment) == to_month


def test_a_fraction_of_a_second_before_midnight_on_new_year() -> None:
    moment = utc(2027, 1, 1) - 0.25
    assert budget_periods(moment) == ("2026-12-31", "2026-12")
    assert seconds_to_next_day(moment) == pytest.approx(0.25)
    assert seconds_to_next_month(moment) == pytest.approx(0.25)


moments = st.floats(min_value=utc(2000, 1, 1), max_value=utc(2100, 1, 1), allow_nan=False).map(
    lambda t: round(t, 3)
)


@given(moments)
def test_the_next_day_starts_exactly_when_the_wait_is_over(now: float) -> None:
    wait = seconds_to_next_day(now)
    assert 0 < wait <= 86400
    day, _ = budget_periods(now)
    assert budget_periods(now + wait - 0.01)[0] == day
    next_day, _ = budget_periods(now + wait)
    assert next_day != day
    start = dt.datetime.fromtimestamp(now + wait, dt.UTC)
    assert (start.hour, start.minute, start.second, start.microsecond) == (0, 0, 0, 0)
    assert next_day == start.strftime("%Y-%m-%d")
    assert (start.date() - dt.date.fromisoformat(day)).days == 1


@given(moments)
def test_the_next_month_starts_exactly_when_the_wait_is_over(now: float) -> None:
    wait = seconds_to_next_month(now)
    assert 0 < wait <= 31 * 86400
    assert wait >= seconds_to_next_day(now) - 1e-6
    day, month = budget_periods(now)
    assert budget_periods(now + wait - 0.01)[1] == month
    start = dt.datetime.fromtimestamp(now + wait, dt.UTC)
    assert (start.day, start.hour, start.minute, start.second) == (1, 0, 0, 0)
    assert budget_periods(now + wait)[1] == start.strftime("%Y-%m") != month
    assert day.startswith(month + "-")
