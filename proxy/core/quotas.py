"""Quota arithmetic, free of I/O: GCRA rate limits, budget periods, RateLimit header fields.

The store runs these inside one transaction with the reads and writes they decide on, so
a check and its spend can never be split by another request (the classic race where 200
concurrent submits all pass a "9 < 10" check).

GCRA keeps one number per limit, the theoretical arrival time (TAT). With a limit of N per
window W, each admitted request pushes the TAT by W/N; a request is admitted while the
TAT, pushed, stays within W of now. Worked example, N=10 per 60 s (6 s per request), all
at t=0: requests 1..10 push the TAT to 6, 12, ... 60 and pass; the 11th would push it to
66 > 0 + 60 and is refused with Retry-After 6 s, the true wait, not the whole window.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

__all__ = [
    "MemoryRateLimiter",
    "RateDecision",
    "budget_periods",
    "gcra",
    "gcra_state",
    "ratelimit_headers",
    "seconds_to_next_day",
    "seconds_to_next_month",
]

EPSILON = 1e-9


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    tat: float  # the TAT to store (unchanged when refused)
    limit: int
    window: float
    remaining: int
    retry_after: float  # seconds until a refused request would pass; 0 when allowed
    reset: float  # seconds until the full quota is back


def gcra(tat: float | None, now: float, limit: int, window: float = 60.0) -> RateDecision:
    if limit <= 0:
        return RateDecision(False, tat or now, limit, window, 0, window, window)
    interval = window / limit
    current = max(tat if tat is not None else now, now)
    pushed = current + interval
    allowed_at = pushed - window
    # Rounding slack: at wall-clock magnitudes (~1.8e9 s) one float addition is off by up
    # to ~1e-7 s and a burst of N adds N of them, so without it a burst of 9 a minute
    # admitted only 8. It stays far below one interval, so it never admits an extra one;
    # waits are reported half a slack early, which rounds float noise out of Retry-After.
    slack = min(interval / 4, EPSILON + 4 * (limit + 2) * math.ulp(max(abs(pushed), window)))
    if now + slack < allowed_at:
        wait = allowed_at - now - slack / 2
        return RateDecision(False, current, limit, window, 0, wait, current - now - slack / 2)
    remaining = math.floor((window - (pushed - now) + slack) / interval)
    reset = pushed - now - slack / 2
    return RateDecision(True, pushed, limit, window, max(remaining, 0), 0.0, reset)


def gcra_state(tat: float | None, now: float, limit: int, window: float = 60.0) -> RateDecision:
    """Where a limit stands at `now`, without spending anything: for the RateLimit fields
    of answers that admitted nothing (a refusal by another limit, an error)."""
    if limit <= 0:
        return RateDecision(False, tat or now, limit, window, 0, window, window)
    interval = window / limit
    current = max(tat if tat is not None else now, now)
    remaining = math.floor((window - (current - now)) / interval + EPSILON)
    return RateDecision(True, current, limit, window, max(remaining, 0), 0.0, current - now)


def ratelimit_headers(name: str, decision: RateDecision) -> dict[str, str]:
    """The IETF `RateLimit-Policy` and `RateLimit` fields (draft-ietf-httpapi-ratelimit-headers)."""
    return {
        "RateLimit-Policy": f'"{name}";q={decision.limit};w={int(decision.window)}',
        "RateLimit": f'"{name}";r={decision.remaining};t={math.ceil(decision.reset)}',
    }


def _utc(now: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(now, dt.UTC)


def budget_periods(now: float) -> tuple[str, str]:
    """The day and month a spend at `now` counts against, e.g. ("2026-11-25", "2026-11")."""
    moment = _utc(now)
    return moment.strftime("%Y-%m-%d"), moment.strftime("%Y-%m")


def seconds_to_next_day(now: float) -> float:
    moment = _utc(now)
    tomorrow = (moment + dt.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return (tomorrow - moment).total_seconds()


def seconds_to_next_month(now: float) -> float:
    moment = _utc(now)
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    start = dt.datetime(year, month, 1, tzinfo=dt.UTC)
    return (start - moment).total_seconds()


class MemoryRateLimiter:
    """GCRA per team in this process's memory: for polls, which are bounded against abuse
    but cost nothing upstream, so they need not pay a store write each."""

    def __init__(self, window: float = 60.0) -> None:
        self.window = window
        self._tat: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._tat)

    def peek(self, team_id: str, limit: int, now: float) -> RateDecision:
        return gcra_state(self._tat.get(team_id), now, limit, self.window)

    def take(self, team_id: str, limit: int, now: float) -> RateDecision:
        decision = gcra(self._tat.get(team_id), now, limit, self.window)
        if decision.allowed:
            self._tat[team_id] = decision.tat
        return decision
