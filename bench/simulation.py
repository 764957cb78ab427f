"""The poll-schedule simulation behind `bench/poller.py`: runs replayed in virtual time
against a `PollPolicy` (the product page's naive loop, or the gateway's adaptive schedule
learning online as runs finish), with windows where the upstream answers 429.

Bench-only: the gateway runs `proxy.schedule` (the model and the schedule) and nothing of
this. `backoff_after_rate_limit` honours `Retry-After` (clamped), or else backs off
exponentially; either way the caller's random `spread` stretches it by up to 25% so runs
rate-limited together do not come back together.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from proxy.schedule import DurationModel, PollSchedule

__all__ = [
    "AdaptivePolicy",
    "NaivePolicy",
    "PollPolicy",
    "RateLimitWindow",
    "SimulationResult",
    "backoff_after_rate_limit",
    "simulate",
]


def backoff_after_rate_limit(
    retry_after: float | None,
    attempt: int,
    *,
    base: float = 10.0,
    cap: float = 120.0,
    floor: float = 1.0,
    spread: float = 0.0,
) -> float:
    """Seconds to wait after the `attempt`-th 429 in a row (1 for the first).

    A usable `Retry-After` is honoured, clamped to [floor, cap]; without one the wait is
    `base * 2^(attempt-1)`, capped. `spread` is a number in [0, 1) the caller draws at
    random: it stretches the wait by up to 25% so that runs rate-limited together come back
    apart. The result is always within [floor, 1.25 * cap].
    """
    if retry_after is not None and math.isfinite(retry_after) and retry_after >= 0:
        wait = retry_after
    else:
        wait = base * 2.0 ** min(max(attempt, 1) - 1, 30)
    wait = min(max(wait, floor), cap)
    return wait * (1.0 + 0.25 * min(max(spread, 0.0), 1.0))


# -- policies and the simulation ---------------------------------------------------------


class PollPolicy(Protocol):
    """What `simulate()` drives: a poll schedule, and what it learns from finished runs."""

    def next_delay(self, elapsed: float, last_status: str | None) -> float: ...

    def after_rate_limit(self, retry_after: float | None, attempt: int, spread: float) -> float: ...

    def finished(self, finished_by: float, running_at: float | None) -> None: ...


@dataclass
class NaivePolicy:
    """The product page's loop: every `interval` seconds from submit; waits out Retry-After."""

    interval: float = 7.0

    def next_delay(self, elapsed: float, last_status: str | None) -> float:
        return self.interval

    def after_rate_limit(self, retry_after: float | None, attempt: int, spread: float) -> float:
        return max(self.interval, retry_after or 0.0)

    def finished(self, finished_by: float, running_at: float | None) -> None:
        return None


@dataclass
class AdaptivePolicy:
    """The adaptive schedule over a model that learns from every finished run."""

    model: DurationModel = field(default_factory=DurationModel)
    schedule: PollSchedule = field(default_factory=PollSchedule)

    def next_delay(self, elapsed: float, last_status: str | None) -> float:
        return self.schedule.delay(elapsed, self.model, last_status)

    def after_rate_limit(self, retry_after: float | None, attempt: int, spread: float) -> float:
        return backoff_after_rate_limit(retry_after, attempt, spread=spread)

    def finished(self, finished_by: float, running_at: float | None) -> None:
        # No earlier poll: the run finished somewhere in (0, finished_by].
        self.model.observe(finished_by, 0.0 if running_at is None else running_at)


@dataclass(frozen=True)
class RateLimitWindow:
    """Every upstream call in [start, end) (virtual seconds) is answered 429."""

    start: float
    end: float
    retry_after: float | None = None


def _nearest_rank(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(max(math.ceil(q * len(ordered)) - 1, 0), len(ordered) - 1)]


@dataclass(frozen=True)
class SimulationResult:
    """Per run, in submission order: true duration, upstream calls, detection delay."""

    durations: tuple[float, ...]
    polls: tuple[int, ...]  # every upstream call, 429s included
    delays: tuple[float, ...]  # seconds from the upstream finishing to the poll that saw it
    rate_limited: tuple[int, ...]  # of which answered 429

    @property
    def runs(self) -> int:
        return len(self.durations)

    @property
    def polls_per_job(self) -> float:
        return sum(self.polls) / self.runs if self.runs else 0.0

    @property
    def mean_delay(self) -> float:
        return sum(self.delays) / self.runs if self.runs else 0.0

    @property
    def p95_delay(self) -> float:
        return _nearest_rank(self.delays, 0.95)

    @property
    def max_delay(self) -> float:
        return max(self.delays, default=0.0)

    @property
    def mean_duration(self) -> float:
        return sum(self.durations) / self.runs if self.runs else 0.0

    @property
    def requests_per_minute(self) -> float:
        """Upstream calls per minute that one tracked generation costs, on average.

        A generation is tracked from submit until the poll that sees it finished, that is
        for its duration plus its detection delay; over many runs one tracking slot spends
        sum(polls) calls in sum(duration + delay) seconds.
        """
        tracked = sum(self.durations) + sum(self.delays)
        return 60.0 * sum(self.polls) / tracked if tracked > 0 else 0.0

    def capacity(self, limit_per_minute: float = 50.0) -> float:
        """How many generations can be tracked at once within `limit_per_minute` calls."""
        rate = self.requests_per_minute
        return limit_per_minute / rate if rate > 0 else math.inf

    def part(self, start: int, stop: int | None = None) -> SimulationResult:
        """The runs [start:stop], in submission order."""
        window = slice(start, stop)
        return SimulationResult(
            self.durations[window],
            self.polls[window],
            self.delays[window],
            self.rate_limited[window],
        )


def simulate(
    durations: Sequence[float],
    policy: PollPolicy,
    *,
    arrival_interval: float = 30.0,
    queued_fraction: float = 0.03,
    rate_limits: Sequence[RateLimitWindow] = (),
) -> SimulationResult:
    """Replay runs of the given true `durations` in virtual time against `policy`.

    Run i is submitted at i * `arrival_interval`; it is QUEUED for its first
    `queued_fraction`, then PROCESSING, then COMPLETED from its duration on (a poll at
    exactly that moment sees it done). Events run in time order, so the policy learns only
    from runs that the gateway would already have seen finish. A call inside a
    `RateLimitWindow` is answered 429 and the policy's backoff decides the next call.
    Deterministic: no randomness, no real time.
    """
    count = len(durations)
    polls = [0] * count
    limited = [0] * count
    delays = [0.0] * count
    last_running: list[float | None] = [None] * count
    last_status: list[str | None] = [None] * count
    attempts = [0] * count
    # (time, sequence, run, is_submit): submits first at equal times, then in order.
    events: list[tuple[float, int, int, bool]] = [
        (i * arrival_interval, i, i, True) for i in range(count)
    ]
    heapq.heapify(events)
    sequence = count

    def schedule(at: float, run: int) -> None:
        nonlocal sequence
        heapq.heappush(events, (at, sequence, run, False))
        sequence += 1

    while events:
        now, _, run, is_submit = heapq.heappop(events)
        submitted = run * arrival_interval
        elapsed = now - submitted
        if is_submit:
            schedule(now + policy.next_delay(0.0, None), run)
            continue
        polls[run] += 1
        window = next((w for w in rate_limits if w.start <= now < w.end), None)
        if window is not None:
            limited[run] += 1
            attempts[run] += 1
            spread = (run * 0.6180339887498949) % 1.0  # deterministic, spread out
            wait = policy.after_rate_limit(window.retry_after, attempts[run], spread)
            schedule(now + wait, run)
            continue
        attempts[run] = 0
        duration = durations[run]
        if elapsed >= duration:
            delays[run] = elapsed - duration
            policy.finished(elapsed, last_running[run])
            continue
        status = "QUEUED" if elapsed < duration * queued_fraction else "PROCESSING"
        last_running[run], last_status[run] = elapsed, status
        schedule(now + policy.next_delay(elapsed, status), run)
    return SimulationResult(tuple(durations), tuple(polls), tuple(delays), tuple(limited))
