"""Benchmark: the company-wide upstream budget under sustained demand.

    .venv/bin/python bench/upstream_budget.py            # 12 virtual minutes
    .venv/bin/python bench/upstream_budget.py --quick    # 4 virtual minutes

Real processes: one fake Segmind (`python -m fakeserver --plan N`, N equal to the budget)
and two gateway processes on one SQLite store (`python -m proxy --upstream-requests... N`),
all on virtual clocks, moved together one second at a time (each gateway's advance returns
only once its poll loops are asleep again). Both rate windows are counted on those clocks,
so the comparison is exact: no network latency moves a call from one minute to the next.

Demand well above the budget: three teams, each submitting new runs through both gateways
as fast as its own limits allow (10 a minute, 10 running at once) and polling them; every
run costs one upstream submit and several upstream polls, and the budget is 20 calls a
minute for the whole company. Printed: upstream calls in the busiest 60 s (from the fake's
own journal) against the setting, as a ratio (goal: never above 1.0), the upstream 429s
(goal 0), and how many runs completed. A benchmark, not a test: it exits 0 either way.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.servers import ServerProcess, start_server  # noqa: E402

BUDGET = 20  # upstream calls a minute, for the company (the fake's plan too)
TEAMS = 3
UPSTREAM_KEY = "bench-upstream-key-4c1e"
ADMIN_KEY = "bench-admin-key-9d2b"
WORKFLOW = "68628fe34727e611dfa219b4-v4"
STEP = 1.0  # virtual seconds per clock step


def busiest(times: Sequence[float], span: float = 60.0) -> int:
    """The most calls in any span (t - span, t], as the fake's window counts them."""
    ordered, most, start = sorted(times), 0, 0
    for end, at in enumerate(ordered):
        while ordered[start] <= at - span:
            start += 1
        most = max(most, end - start + 1)
    return most


class Bench:
    def __init__(self, workdir: Path) -> None:
        self.http = httpx.Client(timeout=30.0)
        self.fake = start_server(
            "fakeserver", "--api-key", UPSTREAM_KEY, "--clock", "virtual",
            "--plan", str(BUDGET), "--time-scale", "0.1", "--seed", "3",
        )  # fmt: skip
        db = workdir / "gateway.sqlite"
        self.gateways: list[ServerProcess] = []
        for name in ("a", "b"):
            env = {
                "SEGMIND_API_KEY": UPSTREAM_KEY,
                "PROXY_ADMIN_KEY": ADMIN_KEY,
                "PROXY_INSTANCE_ID": f"bench-{name}",
                "PROXY_UPSTREAM_REQUESTS_PER_MINUTE": str(BUDGET),
                "PROXY_LOG_LEVEL": "WARNING",
                "PROXY_IMAGE_PREFLIGHT": "false",  # offline: the default image is unreachable
                # Runs of the fake at --time-scale 0.1 take about 67 s: say so, so the
                # gateways poll them as densely as they would poll Segmind's.
                "PROXY_EXPECTED_RUN_SECONDS": "67.39",
                "PROXY_POLL_TARGET_DELAY": "2.0",
                "PROXY_POLL_MIN_INTERVAL": "1.0",
            }
            argv = ["--upstream-url", self.fake.url, "--db", str(db), "--clock", "virtual"]
            self.gateways.append(start_server("proxy", *argv, env=env))
        limits = {"daily_budget": None, "monthly_budget": None}
        self.keys = []
        for n in range(TEAMS):
            made = self.http.post(
                f"{self.gateways[0].url}/admin/teams",
                json={"name": f"team{n}", "limits": limits},
                headers={"x-admin-key": ADMIN_KEY},
            )
            made.raise_for_status()
            self.keys.append(made.json()["api_key"])
        self.running: list[tuple[int, str, str]] = []  # (team, gateway url, request id)
        self.completed = 0
        self.refused = 0
        self.serial = 0

    def advance(self, seconds: float) -> None:
        self.http.post(
            f"{self.fake.url}/__admin/clock/advance", json={"seconds": seconds}
        ).raise_for_status()
        for gateway in self.gateways:
            self.http.post(
                f"{gateway.url}/admin/clock/advance",
                json={"seconds": seconds},
                headers={"x-admin-key": ADMIN_KEY},
            ).raise_for_status()

    def demand(self) -> None:
        """Each team submits one new run (alternating gateways) and polls what it runs."""
        for team, key in enumerate(self.keys):
            gateway = self.gateways[self.serial % len(self.gateways)].url
            self.serial += 1
            answer = self.http.post(
                f"{gateway}/workflows/{WORKFLOW}",
                json={"Scene_1": f"bench run {self.serial}"},
                headers={"x-api-key": key},
            )
            if answer.status_code == 200:
                self.running.append((team, gateway, answer.json()["request_id"]))
            else:
                self.refused += 1  # the team's own limits: that is the demand's ceiling
        still = []
        for team, gateway, request_id in self.running:
            body = self.http.get(
                f"{gateway}/workflows/request/{request_id}",
                headers={"x-api-key": self.keys[team]},
            ).json()
            if body.get("status") == "COMPLETED":
                self.completed += 1
            elif body.get("status") != "FAILED":
                still.append((team, gateway, request_id))
        self.running = still

    def journal(self) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = self.http.get(f"{self.fake.url}/__admin/journal").json()[
            "entries"
        ]
        return entries

    def close(self) -> None:
        for gateway in self.gateways:
            gateway.stop()
        self.fake.stop()
        self.http.close()


def measure(quick: bool) -> dict[str, Any]:
    minutes = 4 if quick else 12
    with tempfile.TemporaryDirectory(prefix="bench-budget-") as workdir:
        bench = Bench(Path(workdir))
        started = time.monotonic()
        try:
            for _ in range(int(minutes * 60 / STEP)):
                bench.demand()
                bench.advance(STEP)
            journal = bench.journal()
        finally:
            bench.close()
    upstream = [e for e in journal if e.get("route") in ("submit", "poll")]
    most = busiest([float(e["at"]) for e in upstream])
    return {
        "budget_per_minute": BUDGET,
        "virtual_minutes": minutes,
        "gateway_processes": 2,
        "teams": TEAMS,
        "upstream_calls": len(upstream),
        "upstream_submits": sum(1 for e in upstream if e["route"] == "submit"),
        "busiest_60s": most,
        "ratio_to_budget": most / BUDGET,
        "upstream_429s": sum(1 for e in upstream if e.get("status") == 429),
        "runs_completed": bench.completed,
        "submits_refused_by_team_limits": bench.refused,
        "real_seconds": round(time.monotonic() - started, 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="4 virtual minutes, not 12")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    figures = measure(args.quick)
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        for name, value in figures.items():
            print(f"{name:>32}: {value}")
    ratio, limited = figures["ratio_to_budget"], figures["upstream_429s"]
    print(
        f"goal: busiest 60 s at most 1.0 x the budget (measured {ratio:.2f}: "
        f"{figures['busiest_60s']} calls against {BUDGET}/min) and 0 upstream 429s "
        f"(measured {limited}): {'met' if ratio <= 1.0 and limited == 0 else 'NOT met'}"
    )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONPATH", str(ROOT))
    raise SystemExit(main())
