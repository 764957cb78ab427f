"""Benchmark: the adaptive upstream poll schedule against the naive 7-second loop.

    .venv/bin/python bench/poller.py              # the fake's default durations
    .venv/bin/python bench/poller.py --shifted    # runs take 900 s; the prior says 673.9 s
    .venv/bin/python bench/poller.py --burst      # every call answered 429 for 10 minutes
    .venv/bin/python bench/poller.py --all        # all three

A deterministic simulation in virtual time (`bench/simulation.py`): a seeded RNG draws
the run durations from the fake's distribution, one run is submitted every 30 s, and each
schedule polls them; nothing sleeps and nothing goes over the network. The adaptive
schedule starts from the 673.9 s prior and learns from every run it sees finish. Printed
side by side: upstream polls per job, the detection delay (from the upstream finishing to
the poll that sees it: mean, p95, max), the calls a minute one tracked generation costs,
and how many generations each schedule can track at once within 50 requests a minute.

Goal (issue): on the fake's default durations, polls per job at most 25% of the naive
loop's, with a mean detection delay of at most 7 s. A benchmark, not a test: it exits 0
whether or not the goal is met (tests/proxy/test_schedule.py holds generous bounds).
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from simulation import (
    AdaptivePolicy,
    NaivePolicy,
    RateLimitWindow,
    SimulationResult,
    simulate,
)

from proxy.schedule import DurationModel

# The fake's default duration distribution (fakeserver.jobs.DurationModel with the defaults
# of fakeserver.settings). Re-implemented, draw for draw: bench/fakeserver.py shadows the
# `fakeserver` package for scripts in this directory. A test checks the two agree.
FAKE_MEDIAN = 673.9
FAKE_SIGMA = 0.2
FAKE_MIN = 300.0
FAKE_MAX = 1800.0
QUEUED_FRACTION = 0.03  # the first 3% of a run is QUEUED

SHIFTED_MEDIAN = 900.0
NAIVE_INTERVAL = 7.0
ARRIVAL_INTERVAL = 30.0  # one submit every 30 s: about 23 runs going at once
RATE_LIMIT = 50.0  # requests a minute (Segmind Pro)
GOAL_RATIO = 0.25
GOAL_DELAY = 7.0
BURST = RateLimitWindow(start=20_000.0, end=20_600.0, retry_after=20.0)
EARLY_RUNS = 100  # "before learning" in the shifted scenario


def sample_durations(
    count: int,
    seed: int,
    *,
    median: float = FAKE_MEDIAN,
    sigma: float = FAKE_SIGMA,
    minimum: float = FAKE_MIN,
    maximum: float = FAKE_MAX,
) -> list[float]:
    """`count` run durations drawn as the fake draws them: lognormal, then clamped."""
    rng = random.Random(seed)
    durations = []
    for _ in range(count):
        raw = median * math.exp(sigma * rng.gauss(0.0, 1.0))
        durations.append(min(max(raw, minimum), maximum))
    return durations


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    median: float = FAKE_MEDIAN
    burst: RateLimitWindow | None = None


SCENARIOS = {
    "default": Scenario(
        "default",
        f"the fake's default durations: lognormal, median {FAKE_MEDIAN} s, sigma {FAKE_SIGMA}, "
        f"clamped to [{FAKE_MIN:.0f}, {FAKE_MAX:.0f}] s",
    ),
    "shifted": Scenario(
        "shifted",
        f"runs take longer than the prior says: median {SHIFTED_MEDIAN:.0f} s, sigma "
        f"{FAKE_SIGMA} (the model starts at {FAKE_MEDIAN} s)",
        median=SHIFTED_MEDIAN,
    ),
    "burst": Scenario(
        "burst",
        f"the fake's default durations; every upstream call from t = {BURST.start:.0f} s to "
        f"{BURST.end:.0f} s is answered 429 with Retry-After: {BURST.retry_after:.0f}",
        burst=BURST,
    ),
}


def run_scenario(
    scenario: Scenario, runs: int, seed: int
) -> tuple[SimulationResult, SimulationResult, AdaptivePolicy]:
    durations = sample_durations(runs, seed, median=scenario.median)
    limits = (scenario.burst,) if scenario.burst else ()
    naive = simulate(
        durations,
        NaivePolicy(NAIVE_INTERVAL),
        arrival_interval=ARRIVAL_INTERVAL,
        queued_fraction=QUEUED_FRACTION,
        rate_limits=limits,
    )
    adaptive_policy = AdaptivePolicy(DurationModel())
    adaptive = simulate(
        durations,
        adaptive_policy,
        arrival_interval=ARRIVAL_INTERVAL,
        queued_fraction=QUEUED_FRACTION,
        rate_limits=limits,
    )
    return naive, adaptive, adaptive_policy


def _row(label: str, naive: str, adaptive: str) -> str:
    return f"  {label:<44}{naive:>12}{adaptive:>12}"


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def report(scenario: Scenario, runs: int, seed: int) -> list[str]:
    naive, adaptive, policy = run_scenario(scenario, runs, seed)
    ratio = adaptive.polls_per_job / naive.polls_per_job
    lines = [
        f"scenario {scenario.name}: {runs} runs, seed {seed}, one submit every "
        f"{ARRIVAL_INTERVAL:.0f} s, virtual time",
        f"  {scenario.description}",
        _row("", "naive 7 s", "adaptive"),
        _row(
            "upstream polls per job (mean)",
            f"{naive.polls_per_job:.1f}",
            f"{adaptive.polls_per_job:.1f}",
        ),
        _row("  adaptive / naive", "", f"{ratio:.1%}"),
        _row("detection delay, mean (s)", f"{naive.mean_delay:.2f}", f"{adaptive.mean_delay:.2f}"),
        _row("detection delay, p95 (s)", f"{naive.p95_delay:.1f}", f"{adaptive.p95_delay:.1f}"),
        _row("detection delay, max (s)", f"{naive.max_delay:.1f}", f"{adaptive.max_delay:.1f}"),
        _row(
            "calls a minute per tracked generation",
            f"{naive.requests_per_minute:.2f}",
            f"{adaptive.requests_per_minute:.2f}",
        ),
        _row(
            f"concurrent generations within {RATE_LIMIT:.0f} req/min",
            f"{naive.capacity(RATE_LIMIT):.1f}",
            f"{adaptive.capacity(RATE_LIMIT):.1f}",
        ),
    ]
    if scenario.burst is not None:
        lines.append(
            _row(
                "calls answered 429",
                str(sum(naive.rate_limited)),
                str(sum(adaptive.rate_limited)),
            )
        )
    model = policy.model
    lines.append(
        f"  model after the run: median {model.median:.1f} s, sigma {model.sigma:.3f} "
        f"({len(model.observations)} observations kept)"
    )
    if scenario.name == "shifted" and runs > 2 * EARLY_RUNS:
        early, late = adaptive.part(0, EARLY_RUNS), adaptive.part(runs // 2)
        naive_early, naive_late = naive.part(0, EARLY_RUNS), naive.part(runs // 2)
        lines.append(
            f"  learning: first {EARLY_RUNS} runs {early.polls_per_job:.1f} polls/job "
            f"({early.polls_per_job / naive_early.polls_per_job:.1%} of naive), mean delay "
            f"{early.mean_delay:.2f} s; second half {late.polls_per_job:.1f} polls/job "
            f"({late.polls_per_job / naive_late.polls_per_job:.1%}), mean delay "
            f"{late.mean_delay:.2f} s"
        )
    verdict = (
        f"polls/job <= {GOAL_RATIO:.0%} of naive ({ratio:.1%}: {_met(ratio <= GOAL_RATIO)}); "
        f"mean delay <= {GOAL_DELAY:.0f} s "
        f"({adaptive.mean_delay:.2f} s: {_met(adaptive.mean_delay <= GOAL_DELAY)})"
    )
    if scenario.name == "default":
        lines.append(f"target: {verdict}")
    else:
        lines.append(f"  (the target is set on the default scenario; here: {verdict})")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=2000, help="runs per scenario (2000)")
    parser.add_argument("--seed", type=int, default=1, help="RNG seed for the durations (1)")
    parser.add_argument("--shifted", action="store_true", help="true median 900 s")
    parser.add_argument("--burst", action="store_true", help="a 10-minute burst of 429s")
    parser.add_argument("--all", action="store_true", help="every scenario")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.all:
        names = list(SCENARIOS)
    else:
        names = [name for name in ("shifted", "burst") if getattr(args, name)] or ["default"]
    blocks = [report(SCENARIOS[name], args.runs, args.seed) for name in names]
    print("\n\n".join("\n".join(block) for block in blocks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
