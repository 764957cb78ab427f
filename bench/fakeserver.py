"""Benchmark: submit and poll throughput of one fake Segmind process on this machine.

    .venv/bin/python bench/fakeserver.py            # full run, about 15 s
    .venv/bin/python bench/fakeserver.py --quick    # smoke run, about 4 s

The fake runs as a real process (`python -m fakeserver` under uvicorn, httptools, uvloop)
and so does a baseline: a bare Starlette endpoint answering `{"status": "QUEUED"}` on the
same path, served by uvicorn with the same settings. A raw keep-alive HTTP/1.1 client in a
third process (its own core) drives both in the same run, poll and baseline phases taking
turns, and the figures are printed side by side: the fake/baseline ratio is the figure to
compare across machines; the absolute rates only say something about this one.

Goal (issue): at least 2,000 polls/s from one fake process, so that gateway benchmarks
measure the gateway and not the fake. A benchmark, not a timed test: it exits 0 whether or
not the goal is met, and 2 when its own figures are invalid (answers other than 200).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection as Pipe
from pathlib import Path
from urllib.parse import urlsplit

from _load import (
    HOST,
    PHASE_GRACE_SECONDS,
    Connection,
    PhaseResult,
    Server,
    build_request,
    close_all,
    cpu_share,
    free_port,
    load_entry,
    merge_phases,
    pin_to,
    run_in_load_process,
    run_phase,
    start_server,
    stop_server,
    wait_until_answers,
)

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "bench-key"
WORKFLOW_ID = "68628fe34727e611dfa219b4-v4"
SUBMIT_PATH = f"/workflows/{WORKFLOW_ID}"
POLL_ROUTE = "/workflows/request/{request_id}"
BASELINE_PATH = "/workflows/request/" + "0" * 32  # same shape as a poll
GOAL_POLLS_PER_SECOND = 2000.0
MAX_RATE = 200_000  # requests/s no phase can reach: turns a duration into a count bound


@dataclass(frozen=True)
class Plan:
    """What the load process does, sent to it whole."""

    fake_port: int
    baseline_port: int
    fake_pid: int
    baseline_pid: int
    connections: int
    submits: int
    submit_seconds: float  # time cap of the submit phase
    seconds: float  # poll phase duration; the baseline gets the same
    rounds: int  # poll and baseline alternate in this many slices
    warmup: float  # seconds of warm-up before each kind of phase
    cpu: int | None  # pin the load process to this CPU


@dataclass
class Results:
    submit: PhaseResult
    polls: list[PhaseResult]
    baselines: list[PhaseResult]
    jobs: int  # distinct jobs the polls were spread over


# --- the baseline server (run as: bench/fakeserver.py --serve-baseline PORT) ------------------


def serve_baseline(port: int, host: str = HOST) -> None:
    """A bare Starlette endpoint under uvicorn: the floor a poll cannot go below."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    async def queued(request: Request) -> Response:
        return JSONResponse({"status": "QUEUED"})

    app = Starlette(routes=[Route(POLL_ROUTE, queued, methods=["GET"])])
    uvicorn.run(
        app,
        host=host,
        port=port,
        http="httptools",
        loop="uvloop",
        log_level="warning",
        access_log=False,
    )


# --- the load process ---------------------------------------------------------------------


def _poll_path(body: bytes) -> str:
    poll_url: str = json.loads(body)["poll_url"]
    path = urlsplit(poll_url).path
    if not path.startswith("/workflows/request/"):
        raise ValueError(f"unexpected poll_url path {path!r}")
    return path


async def _drive(plan: Plan) -> Results:
    n = plan.connections
    fake = [Connection(HOST, plan.fake_port) for _ in range(n)]
    base = [Connection(HOST, plan.baseline_port) for _ in range(n)]
    auth = [("x-api-key", API_KEY)]
    submit_raw = build_request(
        "POST", SUBMIT_PATH, HOST, [*auth, ("content-type", "application/json")], b"{}"
    )
    poll_paths: list[str] = []

    def keep_poll_url(status: int, body: bytes) -> None:
        if status == 200:
            poll_paths.append(_poll_path(body))

    def submit(index: int, seq: int) -> bytes:
        return submit_raw

    try:
        await run_phase(
            "warm-up submit",
            fake,
            submit,
            seconds=plan.warmup,
            max_requests=max(n, plan.submits // 5),
            on_answer=keep_poll_url,
        )
        submit_result = await run_phase(
            "submit",
            fake,
            submit,
            seconds=plan.submit_seconds,
            max_requests=plan.submits,
            server_pid=plan.fake_pid,
            on_answer=keep_poll_url,
        )
        if not poll_paths:
            raise RuntimeError("no submit answered 200: nothing to poll")
        polls = [build_request("GET", path, HOST, auth) for path in poll_paths]
        stride = max(1, len(polls) // n)

        def poll(index: int, seq: int) -> bytes:
            # Each connection walks the jobs from its own offset: every job gets polled.
            return polls[(index * stride + seq) % len(polls)]

        baseline_raw = build_request("GET", BASELINE_PATH, HOST, auth)

        def baseline(index: int, seq: int) -> bytes:
            return baseline_raw

        slice_seconds = plan.seconds / plan.rounds
        cap = max(1, int(slice_seconds * MAX_RATE))
        await run_phase("warm-up poll", fake, poll, seconds=plan.warmup, max_requests=cap)
        await run_phase("warm-up baseline", base, baseline, seconds=plan.warmup, max_requests=cap)
        poll_results: list[PhaseResult] = []
        base_results: list[PhaseResult] = []
        for r in range(plan.rounds):

            async def poll_slice() -> None:
                poll_results.append(
                    await run_phase(
                        "poll",
                        fake,
                        poll,
                        seconds=slice_seconds,
                        max_requests=cap,
                        server_pid=plan.fake_pid,
                    )
                )

            async def baseline_slice() -> None:
                base_results.append(
                    await run_phase(
                        "baseline",
                        base,
                        baseline,
                        seconds=slice_seconds,
                        max_requests=cap,
                        server_pid=plan.baseline_pid,
                    )
                )

            # Alternate which goes first, so neither always follows the other.
            order = (poll_slice, baseline_slice) if r % 2 == 0 else (baseline_slice, poll_slice)
            for run_slice in order:
                await run_slice()
        return Results(submit_result, poll_results, base_results, len(polls))
    finally:
        close_all(fake)
        close_all(base)


def _load_process(plan: Plan, out: Pipe) -> None:
    load_entry(_drive, plan, out, plan.cpu)


# --- the report ---------------------------------------------------------------------------


def _row(r: PhaseResult, baseline_rate: float) -> str:
    ratio = r.rate / baseline_rate if baseline_rate else float("nan")
    return (
        f"{r.name:<9} {r.requests:>9,} {r.not_ok:>8,} {r.seconds:>8.2f} {r.rate:>9,.0f} "
        f"{1000 * r.percentile(0.5):>7.2f} {1000 * r.percentile(0.99):>7.2f} "
        f"{ratio:>11.2f}x {cpu_share(r.server_cpu, r.seconds):>7} "
        f"{cpu_share(r.client_cpu, r.seconds):>7} {cpu_share(r.other_cpu, r.seconds):>7}"
    )


def report(results: Results, plan: Plan, pinned: str) -> bool:
    """Print the table and the verdict; True if every answer was a 200."""
    submit = results.submit
    poll = merge_phases(results.polls)
    base = merge_phases(results.baselines)
    print(
        f"fake Segmind benchmark: python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"{plan.connections} connections, {plan.submits:,} submits, "
        f"{plan.seconds:g} s of polls and of baseline in {plan.rounds} alternating slices, "
        f"{pinned or 'no CPU pinning'}"
    )
    print(
        f"{'phase':<9} {'requests':>9} {'non-200':>8} {'seconds':>8} {'req/s':>9} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'vs baseline':>12} {'server':>7} {'client':>7} "
        f"{'other':>7}"
    )
    for r in (submit, poll, base):
        print(_row(r, base.rate))
    print(
        "server, client, other: CPU as % of one core during the phase; other is the rest of "
        "the machine (other programs, kernel network work)"
    )
    ratios = [
        p.rate / b.rate
        for p, b in zip(results.polls, results.baselines, strict=True)
        if b.rate and p.rate
    ]
    if len(ratios) > 1:
        print(
            f"poll/baseline per slice: {'  '.join(f'{r:.2f}' for r in ratios)}; "
            f"median {statistics.median(ratios):.2f}"
        )
    print(f"polls were spread over {results.jobs:,} jobs")
    problems = []
    for r in (submit, poll, base):
        if r.not_ok or r.timed_out:
            bad = {str(k): v for k, v in sorted(r.statuses.items()) if k != 200}
            bad.update(r.errors)
            extra = " (phase timed out)" if r.timed_out else ""
            problems.append(f"INVALID: {r.name} had {r.not_ok:,} bad answers {bad}{extra}")
    if problems:
        verdict = "INVALID run, see below"
    elif poll.rate >= GOAL_POLLS_PER_SECOND:
        verdict = "goal met"
    else:
        verdict = "goal NOT met"
    base_ratio = f"{poll.rate / base.rate:.2f}x" if base.rate else "n/a"
    print(
        f"polls/s {poll.rate:,.0f} = {poll.rate / GOAL_POLLS_PER_SECOND:.2f}x the "
        f"{GOAL_POLLS_PER_SECOND:,.0f}/s goal ({verdict}); {base_ratio} a bare Starlette "
        f"endpoint ({base.rate:,.0f}/s); submits/s {submit.rate:,.0f}"
    )
    for line in problems:
        print(line)
    return not problems


# --- main ---------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bench/fakeserver.py",
        description="Submit and poll throughput of one fake Segmind process, "
        "beside a bare Starlette endpoint measured in the same run.",
    )
    p.add_argument("--connections", type=int, default=32, help="concurrent keep-alive connections")
    p.add_argument("--seconds", type=float, default=6.0, help="seconds of polls (and of baseline)")
    p.add_argument("--submits", type=int, default=3000, help="submits to time (then polled)")
    p.add_argument("--rounds", type=int, default=6, help="alternating poll/baseline slices")
    p.add_argument("--warmup", type=float, default=0.5, help="seconds of warm-up per phase kind")
    p.add_argument("--quick", action="store_true", help="a smoke run of about 5 s")
    p.add_argument(
        "--pin",
        action="store_true",
        help="pin both servers to one CPU and the load process to another (off by default: "
        "on a busy machine it keeps the scheduler from moving the server off a loaded core)",
    )
    p.add_argument("--serve-baseline", type=int, metavar="PORT", help=argparse.SUPPRESS)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.serve_baseline is not None:
        serve_baseline(args.serve_baseline)
        return 0
    if args.quick:
        args.seconds, args.submits, args.rounds, args.warmup = 1.0, 300, 1, 0.2
    if args.connections < 1 or args.submits < 1 or args.rounds < 1 or args.seconds <= 0:
        sys.exit("--connections, --submits, --rounds and --seconds must be positive")

    # A SIGTERM must still stop the servers: turn it into SystemExit, which runs `finally`.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    # No FAKESERVER_* variable or config file of the caller may change what is measured.
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAKESERVER_")}
    fake_port, baseline_port = free_port(), free_port()
    servers: list[Server] = []
    try:
        fake = start_server(
            "fake",
            [
                sys.executable,
                "-m",
                "fakeserver",
                "--host",
                HOST,
                "--port",
                str(fake_port),
                "--api-key",
                API_KEY,
                "--plan",
                "unlimited",
                "--credits",
                "1e12",
                "--log-level",
                "warning",
            ],
            fake_port,
            cwd=str(ROOT),
            env=env,
        )
        servers.append(fake)
        base = start_server(
            "baseline",
            [sys.executable, str(Path(__file__).resolve()), "--serve-baseline", str(baseline_port)],
            baseline_port,
            cwd=str(ROOT),
            env=env,
        )
        servers.append(base)
        wait_until_answers(fake, "/healthz")
        wait_until_answers(base, BASELINE_PATH)

        pinned, load_cpu = "", None
        allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        if args.pin and len(allowed) >= 2:
            server_cpu, load_cpu = allowed[0], allowed[1]
            if pin_to(fake.pid, {server_cpu}) and pin_to(base.pid, {server_cpu}):
                pinned = f"servers pinned to CPU {server_cpu}, load to CPU {load_cpu}"
            else:
                load_cpu = None
        plan = Plan(
            fake_port=fake_port,
            baseline_port=baseline_port,
            fake_pid=fake.pid,
            baseline_pid=base.pid,
            connections=args.connections,
            submits=args.submits,
            submit_seconds=max(10.0, args.submits / 100),
            seconds=args.seconds,
            rounds=args.rounds,
            warmup=args.warmup,
            cpu=load_cpu,
        )
        budget = (
            3 * (plan.warmup + PHASE_GRACE_SECONDS)
            + plan.submit_seconds
            + 2 * plan.seconds
            + 2 * plan.rounds * PHASE_GRACE_SECONDS
            + 30.0
        )
        kind, payload = run_in_load_process(_load_process, plan, budget)
        for server in servers:
            if server.proc.poll() is not None:
                print(f"{server.name} exited during the run:\n{server.output()}", file=sys.stderr)
        if kind != "ok":
            print(f"the load process failed:\n{payload}", file=sys.stderr)
            return 2
    finally:
        for server in reversed(servers):
            stop_server(server)
    return 0 if report(payload, plan, pinned) else 2


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)  # the servers and the load process are already stopped
