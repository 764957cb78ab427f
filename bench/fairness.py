"""Benchmark: first in, first out (the gateway before issue 26) against the fair queue,
over one seeded arrival trace of five teams, one of them flooding.

    .venv/bin/python bench/fairness.py [--seed 7] [--per-minute 50] [--flood 300]

The company budget is the gateway's: a sliding window of `--per-minute` calls, each call
counted 61 s (`proxy/rules/budget.py`). Every second, the free slots go to the runs
waiting, in admission order (FIFO) or in the fair queue's order, computed by the very
functions `claim_send` uses (`proxy/core/fairqueue.py`: `place` and `after_send`). Polls
are left out: they step aside while runs wait, in both. Printed side by side, per team:
the p50 and p95 wait from admission to send; then Jain's fairness index over the minutes
in which two or more teams were backlogged the whole minute (1.0: equal shares), and the
slots used per minute while anyone waited (the window must stay as full as FIFO keeps
it). A benchmark, not a test: it exits 0 either way.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from proxy.core.fairqueue import Backlog, after_send, place  # noqa: E402
from proxy.rules.budget import MARGIN, WINDOW  # noqa: E402

TEAMS = ("flood", "steady-1", "steady-2", "light-1", "light-2")
RATES = {"steady-1": 12.0, "steady-2": 12.0, "light-1": 4.0, "light-2": 4.0}  # runs a minute
SPAN = 40 * 60  # seconds of arrivals


@dataclass
class Run:
    team: str
    admitted: float
    sent: float | None = None


@dataclass
class Outcome:
    runs: list[Run]
    sends: list[tuple[float, str]] = field(default_factory=list)  # (second, team)


def trace(seed: int, flood: int) -> list[Run]:
    """Poisson arrivals for the steady and light teams; the flood's runs all at once, two
    minutes in."""
    rng = random.Random(seed)
    runs = [Run("flood", 120.0) for _ in range(flood)]
    for team, rate in RATES.items():
        at = rng.expovariate(rate / 60)
        while at < SPAN:
            runs.append(Run(team, float(int(at))))
            at += rng.expovariate(rate / 60)
    return sorted(runs, key=lambda r: r.admitted)


def simulate(runs: list[Run], per_minute: int, fair: bool) -> Outcome:
    runs = [Run(r.team, r.admitted) for r in runs]
    outcome = Outcome(runs)
    arrivals = deque(runs)
    waiting: dict[str, deque[Run]] = {team: deque() for team in TEAMS}
    order: deque[Run] = deque()  # FIFO: admission order
    window: deque[float] = deque()
    finish = dict.fromkeys(TEAMS, 0.0)
    virtual_time = 0.0
    now = 0.0
    while arrivals or any(waiting.values()):
        while arrivals and arrivals[0].admitted <= now:
            run = arrivals.popleft()
            waiting[run.team].append(run)
            order.append(run)
        while window and window[0] <= now - (WINDOW + MARGIN):
            window.popleft()
        while len(window) < per_minute and any(waiting.values()):
            if fair:
                backlogs = [Backlog(t, len(q), 1.0, finish[t]) for t, q in waiting.items() if q]
                team = min(
                    (b.team_id for b in backlogs),
                    key=lambda t: place(backlogs, t, 0, virtual_time),
                )
                finish[team], virtual_time = after_send(backlogs, team, virtual_time)
                run = waiting[team].popleft()
                order.remove(run)
            else:
                run = order.popleft()
                waiting[run.team].popleft()
            run.sent = now
            window.append(now)
            outcome.sends.append((now, run.team))
        now += 1.0
    return outcome


def waits(outcome: Outcome, team: str) -> tuple[float, float]:
    found = sorted(r.sent - r.admitted for r in outcome.runs if r.team == team and r.sent)
    if not found:
        return 0.0, 0.0
    return statistics.median(found), found[min(len(found) - 1, int(0.95 * len(found)))]


def jain(outcome: Outcome) -> float:
    """Mean over whole minutes in which 2+ teams were backlogged throughout (admitted
    before the minute began, sent after it ended) of Jain's index of their sends."""
    minutes = int(max(at for at, _ in outcome.sends) // 60)
    found = []
    for minute in range(minutes):
        start, end = minute * 60.0, minute * 60.0 + 60.0
        backlogged = {
            r.team
            for r in outcome.runs
            if r.admitted < start and r.sent is not None and r.sent >= end
        }
        if len(backlogged) < 2:
            continue
        shares = [
            sum(1 for at, t in outcome.sends if start <= at < end and t == team)
            for team in backlogged
        ]
        total = sum(shares)
        if total:
            found.append(total**2 / (len(shares) * sum(s * s for s in shares)))
    return statistics.mean(found) if found else 1.0


def slots_per_minute(outcome: Outcome) -> float:
    """Sends per minute over the minutes in which some run waited the whole minute."""
    minutes = int(max(at for at, _ in outcome.sends) // 60)
    busy = [
        m
        for m in range(minutes)
        if any(r.admitted < m * 60 and (r.sent or 0) >= m * 60 + 60 for r in outcome.runs)
    ]
    if not busy:
        return 0.0
    sent = sum(1 for at, _ in outcome.sends if int(at // 60) in busy)
    return sent / len(busy)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--per-minute", type=int, default=50)
    parser.add_argument("--flood", type=int, default=300)
    args = parser.parse_args()
    runs = trace(args.seed, args.flood)
    fifo = simulate(runs, args.per_minute, fair=False)
    fair = simulate(runs, args.per_minute, fair=True)
    print(
        f"{len(runs)} runs of {len(TEAMS)} teams over {SPAN // 60} min (flood: {args.flood} "
        f"at once, 2 min in); budget {args.per_minute} calls a minute; seed {args.seed}\n"
    )
    print(f"{'team':<10} {'runs':>5}  {'FIFO p50':>9} {'p95':>7}  {'fair p50':>9} {'p95':>7}")
    for team in TEAMS:
        count = sum(1 for r in runs if r.team == team)
        (f50, f95), (q50, q95) = waits(fifo, team), waits(fair, team)
        print(f"{team:<10} {count:>5}  {f50:>8.0f}s {f95:>6.0f}s  {q50:>8.0f}s {q95:>6.0f}s")
    j_fifo, j_fair = jain(fifo), jain(fair)
    s_fifo, s_fair = slots_per_minute(fifo), slots_per_minute(fair)
    print(f"\nJain's index, backlogged minutes:  FIFO {j_fifo:.3f}  fair {j_fair:.3f}  "
          f"(x{j_fair / j_fifo:.2f})")  # fmt: skip
    print(f"slots used a minute while waiting:  FIFO {s_fifo:.1f}  fair {s_fair:.1f}  "
          f"(x{s_fair / s_fifo:.2f}; the window holds {args.per_minute})")  # fmt: skip


if __name__ == "__main__":
    main()
