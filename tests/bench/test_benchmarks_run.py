"""The benchmarks still run and produce a valid run (every answer 200, nothing INVALID).

No figure is asserted: speed targets are read from the printed ratios, never tested.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.mark.parametrize(
    "script",
    [
        "fakeserver.py",
        "gateway.py",
        "webhook_receivers.py",
        "slowloris.py",
        # Kept outputs (issue 22): money, serving against nginx, copying against curl.
        "outputs.py",
        "operator_abuse.py",
        # Stores side by side (issue 11): two SQLite files stand in for the pair here.
        "gateway.py --db sqlite --db sqlite --replicas 2",
    ],
)
def test_a_quick_run_is_valid(script: str) -> None:
    name, *flags = script.split()
    done = subprocess.run(
        [sys.executable, str(BENCH / name), "--quick", *flags],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "INVALID" not in done.stdout
    assert "goal" in done.stdout  # the closing line that states the goal and the ratio


def test_the_mutation_bench_catches_one_mutant() -> None:
    # One cheap mutant (its area's tests take seconds): the copy, the baseline check and
    # the verdict line all work; the whole set is a bench, run by hand.
    done = subprocess.run(
        [sys.executable, str(BENCH / "mutation.py"), "--only", "ssrf-octal", "--jobs", "1"],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "caught 1 of 1" in done.stdout
