"""The hostile-caller figures of the hardening issue, measured in one run, side by side.

    python bench/hardening.py [--quick] [--json]

Each figure comes from its own bench (run alone for its details), against real gateway
processes on loopback:

- `webhook_receivers.py`: the gateway's peak RSS while a receiver answers 400 MB (goal:
  under 300 MB), and another team's webhook delay while 80 receivers trickle (goal: under
  20 s), each beside its idle figure;
- `upstream_budget.py`: upstream calls in the busiest 60 s under sustained demand, as a
  ratio to `upstream_requests_per_minute` (goal: at most 1.0), and upstream 429s (goal: 0);
- `slowloris.py`: the share of 300 half-open connections closed within 30 s (goal: at
  least 90%), and a normal client's latency during the attack against idle;
- `operator_abuse.py`: the gateway's peak RSS under 10 concurrent 150 MB admin bodies with
  no key, beside its idle RSS (goal: under idle + 50 MB), and the limits on wrong admin
  keys: how many of 412 wrong keys from one client were answered 401 (goal: 10), and the
  right key from another client meanwhile, beside its idle latency (goal: answered).

Nothing here is a test: the figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

import operator_abuse
import slowloris
import upstream_budget
import webhook_receivers

Row = tuple[str, str, str, bool]  # figure, measured, goal, met


def _webhooks(f: dict[str, Any]) -> list[Row]:
    contended = f["delay_contended_s"]
    delay = "not arrived" if contended is None else f"{contended * 1000:.0f} ms"
    return [
        (
            "gateway peak RSS, receiver answering 400 MB",
            f"{f['peak_rss_mb']:.0f} MB "
            f"({f['peak_over_idle']:.2f}x idle {f['idle_rss_mb']:.0f} MB)",
            "< 300 MB",
            bool(f["goal_memory_met"]),
        ),
        (
            f"other team's webhook delay, {f['trickling_receivers']} receivers trickling",
            f"{delay} (idle {f['delay_idle_s'] * 1000:.0f} ms)",
            "< 20 s",
            bool(f["goal_delay_met"]),
        ),
    ]


def _budget(f: dict[str, Any]) -> list[Row]:
    return [
        (
            "upstream calls in the busiest 60 s / budget",
            f"{f['ratio_to_budget']:.2f} ({f['busiest_60s']} of {f['budget_per_minute']}/min)",
            "<= 1.0",
            f["ratio_to_budget"] <= 1.0,
        ),
        ("upstream 429s", str(f["upstream_429s"]), "0", f["upstream_429s"] == 0),
    ]


def _slowloris(f: dict[str, Any]) -> list[Row]:
    ratio = f["latency_ratio"]
    return [
        (
            f"half-open connections closed within {f['window_seconds']:g} s",
            f"{f['share_closed']:.0%} ({f['closed_within_window']} of {f['connections']})",
            ">= 90%",
            f["share_closed"] >= 0.9,
        ),
        (
            "normal client latency during the attack / idle",
            "-" if ratio is None else f"{ratio:.2f}x",
            "served",
            f["normal_during_served"] == f["normal_during_tried"],
        ),
    ]


def _operators(f: dict[str, Any]) -> list[Row]:
    ratio = f["busy_right_key_ms"] / f["idle_right_key_ms"]
    return [
        (
            f"gateway peak RSS, {f['clients']} x {f['body_mb']} MB admin bodies, no key",
            f"{f['peak_rss_mb']:.0f} MB (+{f['peak_over_idle_mb']:.0f} MB over idle "
            f"{f['idle_rss_mb']:.0f} MB)",
            "< +50 MB",
            bool(f["goal_memory_met"]),
        ),
        (
            "wrong admin keys from one client answered 401",
            f"{f['wrong_keys_401']} of {f['wrong_keys_sent']} (the rest 429)",
            "<= 10",
            f["wrong_keys_401"] <= 10,
        ),
        (
            "right key from another client meanwhile",
            f"{f['other_client_right_key_status']} / login {f['other_client_login_status']}, "
            f"{ratio:.2f}x idle latency",
            "200 / 303",
            bool(f["goal_limits_met"]),
        ),
    ]


BENCHES: list[tuple[str, Callable[[bool], dict[str, Any]], Callable[..., list[Row]]]] = [
    ("webhook_receivers", webhook_receivers.measure, _webhooks),
    ("upstream_budget", upstream_budget.measure, _budget),
    ("slowloris", slowloris.measure, _slowloris),
    ("operator_abuse", operator_abuse.measure, _operators),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs of each bench")
    parser.add_argument("--json", action="store_true", help="also print every figure as JSON")
    args = parser.parse_args(argv)
    figures: dict[str, dict[str, Any]] = {}
    rows: list[Row] = []
    for name, measure, rows_of in BENCHES:
        print(f"running {name}{' --quick' if args.quick else ''} ...", flush=True)
        figures[name] = measure(args.quick)
        rows.extend(rows_of(figures[name]))
    width = max(len(r[0]) for r in rows)
    print()
    for figure, measured, goal, met in rows:
        print(f"{figure:<{width}}  {measured:<36} goal {goal:<9} {'met' if met else 'MISSED'}")
    if args.json:
        print(json.dumps(figures, indent=2, default=str))
    met_count = sum(r[3] for r in rows)
    print(f"goal: every hardening figure within its goal ({met_count} of {len(rows)} met)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
