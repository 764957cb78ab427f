"""The poll-schedule simulation behind `bench/poller.py`: runs replayed in virtual time
against a `PollPolicy` (the product page's naive loop, or the gateway's adaptive schedule
learning online as runs finish), with windows where the upstream answers 429, and
optionally notifications of ended runs (`Hints`) that bring a run's next poll forward
once, as the gateway's `/upstream/events` endpoint does.

Bench-only: the gateway runs `proxy.core.schedule` (the model and the schedule) and nothing of
this. `backoff_after_rate_limit` honours `Retry-After` (clamped), or else backs off
exponentially; either way the caller's random `spread` stretches it by up to 25% so runs
rate-limited together do not come back together.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from proxy.core.schedule import DurationModel, PollSchedule

__all__ = [
    "AdaptivePolicy",
    "Hints",
    "NaivePolicy",
    "PollPolicy",
    "RateLimitWindow",
    "SimulationResult",
    "StartPolicy",
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

    def next_delay(
        self, elapsed: float, last_status: str | None, started: tuple[float, float] | None = None
    ) -> float:
        """`started`: (last poll that saw the run QUEUED, or 0.0; first poll that saw it
        running), once a poll has seen it running."""
        ...

    def after_rate_limit(self, retry_after: float | None, attempt: int, spread: float) -> float: ...

    def finished(
        self,
        finished_by: float,
        running_at: float | None,
        started: tuple[float, float] | None = None,
    ) -> None: ...


@dataclass
class NaivePolicy:
    """The product page's loop: every `interval` seconds from submit; waits out Retry-After."""

    interval: float = 7.0

    def next_delay(
        self, elapsed: float, last_status: str | None, started: tuple[float, float] | None = None
    ) -> float:
        return self.interval

    def after_rate_limit(self, retry_after: float | None, attempt: int, spread: float) -> float:
        return max(self.interval, retry_after or 0.0)

    def finished(
        self,
        finished_by: float,
        running_at: float | None,
        started: tuple[float, float] | None = None,
    ) -> None:
        return None


@dataclass
class AdaptivePolicy:
    """The adaptive schedule over a model that learns from every finished run."""

    model: DurationModel = field(default_factory=DurationModel)
    schedule: PollSchedule = field(default_factory=PollSchedule)
    learn: bool = True  # False: the model is the truth, known in advance (the limit)

    def next_delay(
        self, elapsed: float, last_status: str | None, started: tuple[float, float] | None = None
    ) -> float:
        return self.schedule.delay(elapsed, self.model, last_status)

    def after_rate_limit(self, retry_after: float | None, attempt: int, spread: float) -> float:
        return backoff_after_rate_limit(retry_after, attempt, spread=spread)

    def finished(
        self,
        finished_by: float,
        running_at: float | None,
        started: tuple[float, float] | None = None,
    ) -> None:
        if self.learn:
            # No earlier poll: the run finished somewhere in (0, finished_by].
            self.model.observe(finished_by, 0.0 if running_at is None else running_at)


@dataclass
class StartPolicy(AdaptivePolicy):
    """The adaptive schedule conditioned on the run's observed start: once a poll has
    seen it running, the model is of the time from its start (estimated as the middle of
    the window between the last poll that saw it QUEUED and the first that saw it
    running), and the schedule runs on the time since then."""

    def next_delay(
        self, elapsed: float, last_status: str | None, started: tuple[float, float] | None = None
    ) -> float:
        since = elapsed - _start(started)
        return self.schedule.delay(since, self.model, last_status)

    def finished(
        self,
        finished_by: float,
        running_at: float | None,
        started: tuple[float, float] | None = None,
    ) -> None:
        if not self.learn:
            return
        start = _start(started)
        running = 0.0 if running_at is None else max(running_at - start, 0.0)
        self.model.observe(max(finished_by - start, 1e-3), running)


def _start(started: tuple[float, float] | None) -> float:
    return 0.0 if started is None else (started[0] + started[1]) / 2


@dataclass(frozen=True)
class Hints:
    """A notification per ended run, `delay` seconds after it ends; a seeded share
    `drop_rate` is lost. Each brings its run's next poll forward to its arrival, once per
    run (as the gateway does), unless the run is known to have ended already."""

    delay: float = 5.0
    drop_rate: float = 0.0
    seed: int = 1


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
    lost: int = 0  # runs the replay never saw end (none, unless a policy stops polling)

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
    hints: Hints | None = None,
    queue_times: Sequence[float] | None = None,
) -> SimulationResult:
    """Replay runs of the given true `durations` in virtual time against `policy`.

    Run i is submitted at i * `arrival_interval`; it is QUEUED for its first
    `queued_fraction` (or for `queue_times[i]` seconds, when given), then PROCESSING,
    then COMPLETED from its duration on (a poll at exactly that moment sees it done).
    Events run in time order, so the policy learns only from runs that the gateway would
    already have seen finish. A call inside a `RateLimitWindow` is answered 429 and the
    policy's backoff decides the next call. With `hints`, a run's notification arrives
    `hints.delay` after it ends (unless dropped) and brings its next poll to that moment,
    once. Deterministic: seeded drops, no real time.
    """
    run = _Replay(durations, policy, arrival_interval, queued_fraction, rate_limits, queue_times)
    if hints is not None:
        drops = random.Random(hints.seed)
        for i, duration in enumerate(durations):
            if drops.random() >= hints.drop_rate:
                run.push(i * arrival_interval + duration + hints.delay, i, _HINT)
    return run.replay()


_SUBMIT, _POLL, _HINT = 0, 1, 2


class _Replay:
    """One simulation's state: an event queue and, per run, what the poller knows."""

    def __init__(
        self,
        durations: Sequence[float],
        policy: PollPolicy,
        arrival_interval: float,
        queued_fraction: float,
        rate_limits: Sequence[RateLimitWindow],
        queue_times: Sequence[float] | None,
    ) -> None:
        count = len(durations)
        self.durations, self.policy = durations, policy
        self.arrival_interval, self.rate_limits = arrival_interval, rate_limits
        self.queue_times = (
            list(queue_times) if queue_times is not None
            else [d * queued_fraction for d in durations]
        )  # fmt: skip
        self.polls, self.limited = [0] * count, [0] * count
        self.delays = [0.0] * count
        self.done = [False] * count
        self.hinted = [False] * count
        self.token = [0] * count  # a poll event of an older token was replaced
        self.last_running: list[float | None] = [None] * count
        self.queued_until = [0.0] * count
        self.started: list[tuple[float, float] | None] = [None] * count
        self.attempts = [0] * count
        # (time, sequence, run, kind, token): submits first at equal times, then in order.
        self.events: list[tuple[float, int, int, int, int]] = [
            (i * arrival_interval, i, i, _SUBMIT, 0) for i in range(count)
        ]
        heapq.heapify(self.events)
        self.sequence = count

    def push(self, at: float, run: int, kind: int = _POLL) -> None:
        heapq.heappush(self.events, (at, self.sequence, run, kind, self.token[run]))
        self.sequence += 1

    def replay(self) -> SimulationResult:
        while self.events:
            now, _, run, kind, token = heapq.heappop(self.events)
            elapsed = now - run * self.arrival_interval
            if kind == _SUBMIT:
                self.push(now + self.policy.next_delay(0.0, None), run)
            elif kind == _HINT:
                if not (self.done[run] or self.hinted[run]):
                    self.hinted[run] = True
                    self.token[run] += 1  # the scheduled poll is replaced by this one
                    self.push(now, run)
            elif not self.done[run] and token == self.token[run]:
                self.poll(now, run, elapsed)
        return SimulationResult(
            tuple(self.durations),
            tuple(self.polls),
            tuple(self.delays),
            tuple(self.limited),
            lost=self.done.count(False),
        )

    def poll(self, now: float, run: int, elapsed: float) -> None:
        policy = self.policy
        self.polls[run] += 1
        window = next((w for w in self.rate_limits if w.start <= now < w.end), None)
        if window is not None:
            self.limited[run] += 1
            self.attempts[run] += 1
            spread = (run * 0.6180339887498949) % 1.0  # deterministic, spread out
            self.push(now + policy.after_rate_limit(window.retry_after, self.attempts[run],
                                                    spread), run)  # fmt: skip
            return
        self.attempts[run] = 0
        duration = self.durations[run]
        if elapsed >= duration:
            self.done[run] = True
            self.delays[run] = elapsed - duration
            policy.finished(elapsed, self.last_running[run], self.started[run])
            return
        status = "QUEUED" if elapsed < self.queue_times[run] else "PROCESSING"
        self.last_running[run] = elapsed
        if status == "QUEUED":
            self.queued_until[run] = elapsed
        elif self.started[run] is None:
            self.started[run] = (self.queued_until[run], elapsed)
        self.push(now + policy.next_delay(elapsed, status, self.started[run]), run)
