"""Benchmark: polls and cache-hit submits through the gateway, beside polls of the fake itself.

    .venv/bin/python bench/gateway.py            # full run, about 25 s
    .venv/bin/python bench/gateway.py --quick    # smoke run, about 8 s

Both servers run as real processes under uvicorn: the fake Segmind (`python -m fakeserver`,
runs shortened to a fraction of a second) and the gateway (`python -m proxy serve`, a fresh
SQLite store in a temporary directory, upstream = the fake). Setup submits a few distinct
jobs through the gateway and the same bodies directly to the fake, and waits (bounded) until
every one is COMPLETED on both sides. A raw keep-alive HTTP/1.1 client in a process of its
own then drives three kinds of phase, taking turns in alternating slices:

    gw poll    GET /workflows/request/{id} on the gateway with the team key (from its store)
    fake poll  GET /workflows/request/{upstream id} on the fake with the fake's key
    gw hit     POST /workflows/{workflow} on the gateway with a completed job's body: a
               cache hit (X-Cache-Status: HIT, no upstream call)
    gw poll xN the same polls on a second gateway on the same store, run with
               `serve --workers N` (`--workers`, default 2; 1 leaves it out)

with a line of server CPU per poll answered (process CPU of all of a server's processes,
so it holds on any number of cores) for one gateway process, N workers and the fake.
Every figure is printed as a ratio to the fake's own polls measured in the same run: the
ratio is the figure to compare across machines; the absolute rates only describe this one.
The gateway runs as shipped (its default INFO log: one JSON access line per request) unless
`--gateway-log-level` says otherwise.

With `--db URL` (repeat it: `--db sqlite --db postgresql://...`) it compares stores instead,
side by side in one run (issue 11): for each store, a fake and a gateway on it, then

    polls      GET /workflows/request/{id} of completed runs (answered from the store)
    admits     POST /workflows/{workflow} with a new body each time: every one a MISS
               admission (the store's admission transaction plus a real upstream submit to
               the fake, which runs jobs in a fraction of a second)
    admits x3  the same spread over three gateway processes on that store (`--replicas`)

printed with each store's ratio to the first one's. `sqlite` alone means a fresh SQLite
file; any other value is passed to `--db` as it is (give PostgreSQL a database of its own).
Goals: polls on PostgreSQL at least 0.9x SQLite's; 200 admissions/s across 3 replicas.

Goal (issue): polling through the gateway is at least as fast as polling the fake directly,
since it is served from the store. A benchmark, not a timed test: it exits 0 whether or not
the goal is met, and 2 when its own figures are invalid (an answer other than 200, a poll
that is not COMPLETED, a submit that is not a cache hit, a paid upstream run during the
measured phases).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection as Pipe
from pathlib import Path
from urllib.parse import urlsplit

import httpx
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
    run_in_load_process,
    run_phase,
    start_server,
    stop_server,
    wait_until_answers,
)

ROOT = Path(__file__).resolve().parent.parent
FAKE_KEY = "bench-upstream-key"  # the gateway's "company" key on the fake
METRICS_TOKEN = "bench-metrics-token-3f8a1c"  # noqa: S105 (a test value) /metrics needs one
TEAM_NAME = "bench"
WORKFLOW_ID = "68628fe34727e611dfa219b4-v4"
SUBMIT_PATH = f"/workflows/{WORKFLOW_ID}"
POLL_PREFIX = "/workflows/request/"
GENEROUS = "10000000"  # per-minute limits and budgets no phase can reach
MAX_RATE = 200_000  # requests/s no phase can reach: turns a duration into a count bound
SETUP_SECONDS = 30.0  # the setup jobs must be COMPLETED on both sides this soon
SETUP_SLEEP = 0.05
HTTP_TIMEOUT = 10.0
HEADER_SAMPLES = 20  # cache-hit submits whose X-Cache-Status is checked, before and after
GOAL_RATIO = 1.0

GW_POLL, FAKE_POLL, GW_HIT, GW_POLL_N = "gw poll", "fake poll", "gw hit", "gw poll xN"
PHASES = (GW_POLL, FAKE_POLL, GW_HIT)
# What every answer of a phase must contain, beside its 200: polls read finished jobs,
# submits are cache hits (the gateway's HIT message; the header is checked on samples).
EXPECTED = {
    GW_POLL: b'"status":"COMPLETED"',
    FAKE_POLL: b'"status":"COMPLETED"',
    GW_HIT: b"(cache hit, no cost)",
    GW_POLL_N: b'"status":"COMPLETED"',
}


@dataclass(frozen=True)
class Plan:
    """What the load process does, sent to it whole."""

    gateway_port: int
    fake_port: int
    gateway_pid: int
    fake_pid: int
    team_key: str
    gateway_polls: list[str]  # request paths, one per setup job
    fake_polls: list[str]  # the same jobs' paths on the fake
    bodies: list[bytes]  # the setup jobs' submit bodies: cache hits now
    connections: int
    seconds: float  # per phase kind, split into `rounds` slices
    rounds: int
    warmup: float  # seconds of warm-up before each kind of phase
    # A second gateway on the same store, `serve --workers N` (N > 1), polled as `gw poll`.
    workers: int = 1
    workers_port: int = 0
    workers_pid: int = 0

    @property
    def phases(self) -> tuple[str, ...]:
        return (*PHASES, GW_POLL_N) if self.workers > 1 else PHASES


@dataclass
class Results:
    slices: dict[str, list[PhaseResult]]
    unexpected: Counter[str] = field(default_factory=Counter)  # 200s without EXPECTED


# --- the load process ---------------------------------------------------------------------


RequestFor = Callable[[int, int], bytes]


def _spread(requests: Sequence[bytes], n: int) -> RequestFor:
    """Each connection walks the requests from its own offset: every one gets used."""
    stride = max(1, len(requests) // n)

    def request_for(index: int, seq: int) -> bytes:
        return requests[(index * stride + seq) % len(requests)]

    return request_for


async def _drive(plan: Plan) -> Results:
    n = plan.connections
    gateway = [Connection(HOST, plan.gateway_port) for _ in range(n)]
    fake = [Connection(HOST, plan.fake_port) for _ in range(n)]
    workers = [Connection(HOST, plan.workers_port) for _ in range(n if plan.workers > 1 else 0)]
    team_auth = [("x-api-key", plan.team_key)]
    json_type = ("content-type", "application/json")
    kinds: dict[str, tuple[list[Connection], RequestFor, int]] = {
        GW_POLL: (
            gateway,
            _spread([build_request("GET", p, HOST, team_auth) for p in plan.gateway_polls], n),
            plan.gateway_pid,
        ),
        FAKE_POLL: (
            fake,
            _spread(
                [build_request("GET", p, HOST, [("x-api-key", FAKE_KEY)]) for p in plan.fake_polls],
                n,
            ),
            plan.fake_pid,
        ),
        GW_HIT: (
            gateway,
            _spread(
                [
                    build_request("POST", SUBMIT_PATH, HOST, [*team_auth, json_type], body)
                    for body in plan.bodies
                ],
                n,
            ),
            plan.gateway_pid,
        ),
        GW_POLL_N: (
            workers,
            _spread([build_request("GET", p, HOST, team_auth) for p in plan.gateway_polls], n),
            plan.workers_pid,  # the parent: its workers' CPU is counted with it
        ),
    }
    phases = plan.phases
    results = Results({name: [] for name in phases})

    def checker(name: str) -> Callable[[int, bytes], None]:
        expected = EXPECTED[name]

        def check(status: int, body: bytes) -> None:
            if status == 200 and expected not in body:
                results.unexpected[name] += 1

        return check

    slice_seconds = plan.seconds / plan.rounds
    cap = max(1, int(slice_seconds * MAX_RATE))
    try:
        for name in phases:
            conns, request_for, _ = kinds[name]
            await run_phase(
                f"warm-up {name}",
                conns,
                request_for,
                seconds=plan.warmup,
                max_requests=cap,
                on_answer=checker(name),
            )
        for r in range(plan.rounds):
            # Rotate which kind goes first, so none always follows another.
            turn = r % len(phases)
            for name in phases[turn:] + phases[:turn]:
                conns, request_for, pid = kinds[name]
                results.slices[name].append(
                    await run_phase(
                        name,
                        conns,
                        request_for,
                        seconds=slice_seconds,
                        max_requests=cap,
                        server_pid=pid,
                        on_answer=checker(name),
                    )
                )
                close_all(conns)  # the next slice of this kind opens them afresh
        return results
    finally:
        close_all(gateway)
        close_all(fake)
        close_all(workers)


def _load_process(plan: Plan, out: Pipe) -> None:
    load_entry(_drive, plan, out)


# --- setup: servers, team, jobs -------------------------------------------------------------


def _clean_env() -> dict[str, str]:
    """The caller's environment minus anything that would change what is measured."""
    prefixes = ("FAKESERVER_", "PROXY_", "SEGMIND_")
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}


def _create_team(db: str, env: dict[str, str], name: str = TEAM_NAME) -> str:
    """A team with limits no phase reaches; returns its key."""
    limits = []
    for flag in ("--submits-per-minute", "--polls-per-minute", "--max-concurrent"):
        limits += [flag, GENEROUS]
    for flag in ("--daily-budget", "--monthly-budget"):
        limits += [flag, "1e12"]
    # Admin commands never create a store: `admin init` makes the one the gateway will serve.
    init = [sys.executable, "-m", "proxy", "admin", "init", "--db", db]
    subprocess.run(init, cwd=ROOT, env=env, capture_output=True, timeout=60, check=True)
    argv = [sys.executable, "-m", "proxy", "admin", "create-team", name, "--db", db, "--json"]
    done = subprocess.run(
        [*argv, *limits], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    if done.returncode != 0:
        raise RuntimeError(f"admin create-team failed ({done.returncode}):\n{done.stderr}")
    key: str = json.loads(done.stdout)["api_key"]
    return key


def _job_body(i: int) -> bytes:
    return json.dumps({"Scene_1": f"Benchmark scene {i}: a lighthouse keeper at dawn"}).encode()


def _expect_200(answer: httpx.Response, what: str) -> httpx.Response:
    if answer.status_code != 200:
        raise RuntimeError(f"{what}: HTTP {answer.status_code} {answer.text[:300]}")
    return answer


def _setup_jobs(
    http: httpx.Client, gateway_url: str, fake_url: str, team_key: str, jobs: int
) -> tuple[list[str], list[str], list[bytes]]:
    """Submit `jobs` distinct bodies through the gateway and directly to the fake; wait
    until all are COMPLETED on both. Returns (gateway poll paths, fake poll paths, bodies)."""
    team = {"x-api-key": team_key, "content-type": "application/json"}
    upstream = {"x-api-key": FAKE_KEY, "content-type": "application/json"}
    bodies = [_job_body(i) for i in range(jobs)]
    gateway_polls, fake_polls = [], []
    for body in bodies:
        answer = _expect_200(
            http.post(gateway_url + SUBMIT_PATH, content=body, headers=team), "gateway submit"
        )
        if answer.headers.get("x-cache-status") != "MISS":
            raise RuntimeError(f"setup submit was not a MISS: {answer.headers!r}")
        gateway_polls.append(POLL_PREFIX + answer.json()["request_id"])
        answer = _expect_200(
            http.post(fake_url + SUBMIT_PATH, content=body, headers=upstream), "fake submit"
        )
        path = urlsplit(answer.json()["poll_url"]).path
        if not path.startswith(POLL_PREFIX):
            raise RuntimeError(f"unexpected poll_url path {path!r}")
        fake_polls.append(path)
    pending = {(gateway_url, path, team_key) for path in gateway_polls}
    pending |= {(fake_url, path, FAKE_KEY) for path in fake_polls}
    deadline = time.monotonic() + SETUP_SECONDS
    while pending and time.monotonic() < deadline:
        for job in sorted(pending):
            base, path, key = job
            answer = _expect_200(http.get(base + path, headers={"x-api-key": key}), "setup poll")
            status = answer.json()["status"]
            if status == "COMPLETED":
                pending.discard(job)
            elif status == "FAILED":
                raise RuntimeError(f"setup job {base}{path} FAILED: {answer.text[:300]}")
        if pending:
            time.sleep(SETUP_SLEEP)
    if pending:
        raise RuntimeError(
            f"{len(pending)} setup jobs not COMPLETED within {SETUP_SECONDS:g} s: "
            f"{sorted(pending)[:4]}"
        )
    return gateway_polls, fake_polls, bodies


def _check_hit_headers(
    http: httpx.Client, gateway_url: str, team_key: str, bodies: list[bytes]
) -> list[str]:
    """Cache-hit submits on a sample: 200 with X-Cache-Status HIT, or a problem each."""
    headers = {"x-api-key": team_key, "content-type": "application/json"}
    problems = []
    for i in range(HEADER_SAMPLES):
        answer = http.post(
            gateway_url + SUBMIT_PATH, content=bodies[i % len(bodies)], headers=headers
        )
        cache = answer.headers.get("x-cache-status")
        if answer.status_code != 200 or cache != "HIT":
            problems.append(f"sample submit: HTTP {answer.status_code}, X-Cache-Status {cache}")
    return problems


METRIC_LINE = re.compile(r"^(segmind_gateway_\w+)\{([^}]*)\}\s+(\S+)$")


def _metric(http: httpx.Client, gateway_url: str, name: str, **labels: str) -> float:
    """Sum of a gateway metric's samples whose labels include `labels`."""
    scrape = http.get(
        gateway_url + "/metrics", headers={"authorization": f"Bearer {METRICS_TOKEN}"}
    )
    text = _expect_200(scrape, "gateway /metrics").text
    total = 0.0
    for line in text.splitlines():
        m = METRIC_LINE.match(line)
        if m is None or m[1] != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', m[2]))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(m[3])
    return total


def _paid_runs(http: httpx.Client, gateway_url: str) -> tuple[float, float]:
    """(MISS admissions, upstream submit calls) the gateway has counted so far."""
    return (
        _metric(http, gateway_url, "segmind_gateway_cache_total", result="MISS"),
        _metric(http, gateway_url, "segmind_gateway_upstream_calls_total", kind="submit"),
    )


# --- the report ---------------------------------------------------------------------------


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def _per_request(cpu: float | None, requests: int) -> str:
    return "n/a" if cpu is None or not requests else f"{1e6 * cpu / requests:.0f}"


def _row(r: PhaseResult, fake_rate: float) -> str:
    return (
        f"{r.name:<10} {r.requests:>9,} {r.not_ok:>8,} {r.seconds:>8.2f} {r.rate:>9,.0f} "
        f"{1000 * r.percentile(0.5):>7.2f} {1000 * r.percentile(0.99):>7.2f} "
        f"{_ratio(r.rate, fake_rate):>12.2f}x {cpu_share(r.server_cpu, r.seconds):>7} "
        f"{_per_request(r.server_cpu, r.requests):>8} {cpu_share(r.client_cpu, r.seconds):>7}"
    )


def _cpu_per_poll(merged: dict[str, PhaseResult], workers: int) -> str:
    """Server CPU per poll answered (process CPU, all of a server's processes: it holds on
    any number of cores) for one gateway process, for `workers`, and for the fake."""
    per = {
        name: (1e6 * r.server_cpu / r.requests if r.server_cpu and r.requests else None)
        for name, r in merged.items()
    }
    fake = per[FAKE_POLL]

    def shown(name: str) -> str:
        value = per[name]
        if value is None:
            return "n/a"
        return f"{value:.0f} us" + (f" ({value / fake:.2f}x the fake's)" if fake else "")

    return (
        f"CPU per poll answered: gateway, 1 worker {shown(GW_POLL)}; {workers} workers "
        f"{shown(GW_POLL_N)}; fake {fake:.0f} us (goal: at most the fake's)"
        if fake
        else "CPU per poll answered: n/a (no /proc)"
    )


def report(results: Results, plan: Plan, setup_problems: Sequence[str]) -> bool:
    """Print the table and the verdict; True if the run's figures are valid."""
    merged = {name: merge_phases(results.slices[name]) for name in plan.phases}
    gw, fake = merged[GW_POLL], merged[FAKE_POLL]
    print(
        f"gateway benchmark: python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"{plan.connections} connections, {plan.seconds:g} s of each phase kind in "
        f"{plan.rounds} alternating slice(s), {len(plan.bodies)} completed jobs"
    )
    print(
        f"{'phase':<10} {'requests':>9} {'non-200':>8} {'seconds':>8} {'req/s':>9} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'vs fake poll':>13} {'server':>7} {'us/req':>8} "
        f"{'client':>7}"
    )
    for name in plan.phases:
        print(_row(merged[name], fake.rate))
    print(
        "server, client: CPU as % of one core during the phase (server: the gateway for gw "
        "rows, the fake for fake poll; client: the load process); us/req: server CPU "
        "microseconds per answer, steadier than req/s on a shared machine"
    )
    ratios = [
        p.rate / f.rate
        for p, f in zip(results.slices[GW_POLL], results.slices[FAKE_POLL], strict=True)
        if p.rate and f.rate
    ]
    if len(ratios) > 1:
        print(
            f"gw poll/fake poll per slice: {'  '.join(f'{r:.2f}' for r in ratios)}; "
            f"median {statistics.median(ratios):.2f}"
        )
    print(
        f"poll latency through the gateway: p50 {1000 * gw.percentile(0.5):.2f} ms = "
        f"{_ratio(gw.percentile(0.5), fake.percentile(0.5)):.2f}x the fake's, "
        f"p99 {1000 * gw.percentile(0.99):.2f} ms = "
        f"{_ratio(gw.percentile(0.99), fake.percentile(0.99)):.2f}x"
    )
    if plan.workers > 1:
        print(_cpu_per_poll(merged, plan.workers))
    problems = list(setup_problems)
    for name in plan.phases:
        r = merged[name]
        if r.not_ok or r.timed_out:
            bad = {str(k): v for k, v in sorted(r.statuses.items()) if k != 200}
            bad.update(r.errors)
            extra = " (phase timed out)" if r.timed_out else ""
            problems.append(f"{name} had {r.not_ok:,} bad answers {bad}{extra}")
        if results.unexpected[name]:
            problems.append(
                f"{name} had {results.unexpected[name]:,} answers without "
                f"{EXPECTED[name].decode()!r}"
            )
    ratio = _ratio(gw.rate, fake.rate)
    verdict = "met" if ratio >= GOAL_RATIO else "NOT met"
    if problems:
        verdict = "INVALID run, see below"
    print(
        f"gateway poll/s {gw.rate:,.0f} = {ratio:.2f}x the fake's poll/s {fake.rate:,.0f} "
        f"(goal >= {GOAL_RATIO:.1f}: {verdict}); cache-hit submits/s "
        f"{merged[GW_HIT].rate:,.0f} = {_ratio(merged[GW_HIT].rate, fake.rate):.2f}x"
    )
    for line in problems:
        print(f"INVALID: {line}")
    return not problems


# --- main ---------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bench/gateway.py",
        description="Polls and cache-hit submits through the gateway, beside polls of the "
        "fake Segmind measured in the same run.",
    )
    p.add_argument("--connections", type=int, default=32, help="concurrent keep-alive connections")
    p.add_argument(
        "--seconds", type=float, default=6.0, help="seconds of each phase kind (gw poll, ...)"
    )
    p.add_argument("--rounds", type=int, default=6, help="alternating slices of each phase kind")
    p.add_argument("--warmup", type=float, default=0.5, help="seconds of warm-up per phase kind")
    p.add_argument("--jobs", type=int, default=16, help="distinct completed jobs to poll")
    p.add_argument(
        "--gateway-log-level",
        help="the gateway's log level (default: its own, INFO, one access line per request)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=2,
        help="also poll a second gateway run with `serve --workers N` on the same store "
        "(default 2; 1 leaves it out)",
    )
    p.add_argument("--quick", action="store_true", help="a smoke run of about 8 s")
    p.add_argument(
        "--db",
        action="append",
        metavar="URL",
        help="compare stores instead (repeat): `sqlite` (a fresh file), a path, or a URL",
    )
    p.add_argument("--replicas", type=int, default=3, help="with --db: gateways for admits xN")
    p.add_argument(
        "--shipped-polls",
        action="store_true",
        help="with --db: admitting gateways poll on the shipped (adaptive) schedule instead "
        "of every 0.05 s, as a deployment would",
    )
    return p


def _start_fake(servers: list[Server]) -> Server:
    port = free_port()
    fake = start_server(
        "fake",
        [
            sys.executable, "-m", "fakeserver", "--host", HOST, "--port", str(port),
            "--api-key", FAKE_KEY, "--plan", "unlimited", "--credits", "1e12",
            "--time-scale", "0.0001", "--log-level", "warning",
        ],
        port,
        cwd=str(ROOT),
        env=_clean_env(),
    )  # fmt: skip
    servers.append(fake)
    wait_until_answers(fake, "/healthz")
    return fake


def _start_gateway(
    args: argparse.Namespace,
    db: str,
    fake: Server,
    servers: list[Server],
    name: str = "gateway",
    *,
    fast_polls: bool = True,
    workers: int = 1,
) -> Server:
    port = free_port()
    team_env = {
        **_clean_env(),
        "SEGMIND_API_KEY": FAKE_KEY,
        "PROXY_METRICS_TOKEN": METRICS_TOKEN,
        # The company-wide upstream budget must not slow the setup or hold admissions.
        "PROXY_UPSTREAM_REQUESTS_PER_MINUTE": GENEROUS,
        # Offline: the default image, on Segmind's storage, could never be fetched.
        "PROXY_IMAGE_PREFLIGHT": "false",
    }
    if fast_polls or not args.shipped_polls:
        # It measures answering polls, not the schedule: the fixed loop finishes setup fast.
        team_env |= {"PROXY_POLL_INTERVAL": "0.05", "PROXY_POLL_SCHEDULE": "fixed"}
    argv = [
        sys.executable, "-m", "proxy", "serve", "--host", HOST, "--port", str(port),
        "--db", db, "--upstream-url", f"http://{HOST}:{fake.port}",
    ]  # fmt: skip
    if args.gateway_log_level:
        argv += ["--log-level", args.gateway_log_level]
    if workers > 1:
        argv += ["--workers", str(workers)]
    gateway = start_server(name, argv, port, cwd=str(ROOT), env=team_env)
    servers.append(gateway)
    wait_until_answers(gateway, "/readyz")
    return gateway


def _start_servers(
    args: argparse.Namespace, db: str, servers: list[Server]
) -> tuple[Server, Server]:
    fake = _start_fake(servers)
    return fake, _start_gateway(args, db, fake, servers)


# --- stores side by side (--db) -------------------------------------------------------------

POLLS, ADMITS, ADMITS_X = "polls", "admits", "admits x{n}"
STORE_POLL_GOAL = 0.9  # polls/s on PostgreSQL against SQLite's
REPLICA_ADMIT_GOAL = 200.0  # admissions/s across the replicas


@dataclass(frozen=True)
class StorePlan:
    """One measured phase against one store: polls or admissions, over `ports`."""

    name: str
    ports: list[int]
    pids: list[int]
    team_key: str
    polls: list[str]  # completed runs' poll paths (for `polls`)
    tag: str  # makes admission bodies unique to this phase
    connections: int
    seconds: float
    warmup: float


async def _drive_store(plan: StorePlan) -> tuple[PhaseResult, int]:
    """The phase's result, and how many 200s were not what the phase measures."""
    # Connections alternate over the gateways: a client balanced over the replicas.
    conns = [Connection(HOST, plan.ports[i % len(plan.ports)]) for i in range(plan.connections)]
    auth = [("x-api-key", plan.team_key), ("content-type", "application/json")]
    if plan.name == POLLS:
        request_for = _spread(
            [build_request("GET", p, HOST, auth[:1]) for p in plan.polls], plan.connections
        )
        expected = EXPECTED[GW_POLL]
    else:
        fresh = itertools.count()  # warm-up included: no body is ever sent twice

        def request_for(index: int, seq: int) -> bytes:
            scene = {"Scene_1": f"Admission {plan.tag} {next(fresh)}: a keeper at dawn"}
            return build_request("POST", SUBMIT_PATH, HOST, auth, json.dumps(scene).encode())

        expected = b"The request is queued"  # the MISS message: a new paid run admitted
    unexpected = 0

    def check(status: int, body: bytes) -> None:
        nonlocal unexpected
        if status == 200 and expected not in body:
            unexpected += 1

    cap = max(1, int(plan.seconds * MAX_RATE))
    try:
        await run_phase(
            "warm-up", conns, request_for, seconds=plan.warmup, max_requests=cap,
        )  # fmt: skip
        close_all(conns)
        unexpected = 0
        # One gateway's CPU is measured (the first): with several, it is a sample.
        result = await run_phase(
            plan.name, conns, request_for, seconds=plan.seconds, max_requests=cap,
            server_pid=plan.pids[0], on_answer=check,
        )  # fmt: skip
        return result, unexpected
    finally:
        close_all(conns)


def _store_load_process(plan: StorePlan, out: Pipe) -> None:
    load_entry(_drive_store, plan, out)


def _store_db(url: str, tmp: str, index: int) -> str:
    return str(Path(tmp) / f"store-{index}.sqlite") if url == "sqlite" else url


def _measure_store(
    args: argparse.Namespace, url: str, db: str, index: int
) -> tuple[dict[str, PhaseResult], list[str]]:
    """Polls and admissions on one store, then admissions over `--replicas` gateways."""
    servers: list[Server] = []
    problems: list[str] = []
    results: dict[str, PhaseResult] = {}
    team = f"{TEAM_NAME}-{index}-{os.getpid()}"  # a reused PostgreSQL database has others
    try:
        key = _create_team(db, _clean_env(), team)
        fake = _start_fake(servers)
        gateways = [_start_gateway(args, db, fake, servers)]
        with httpx.Client(timeout=HTTP_TIMEOUT) as http:
            polls, _, _ = _setup_jobs(
                http, f"http://{HOST}:{gateways[0].port}", f"http://{HOST}:{fake.port}",
                key, args.jobs,
            )  # fmt: skip
        phases = [(POLLS, 1), (ADMITS, 1), (ADMITS_X.format(n=args.replicas), args.replicas)]
        admitters: list[Server] = []
        for name, count in phases:
            serving = gateways
            if name != POLLS:
                # Admissions on gateways of their own: with --shipped-polls, on the poll
                # schedule a deployment runs, not the setup's 20 polls a second per run.
                while len(admitters) < count:
                    admitters.append(
                        _start_gateway(
                            args, db, fake, servers, f"admitter {len(admitters)}",
                            fast_polls=False,
                        )
                    )  # fmt: skip
                serving = admitters
            plan = StorePlan(
                name=name if name == POLLS else ADMITS,
                ports=[g.port for g in serving[:count]],
                pids=[g.pid for g in serving[:count]],
                team_key=key,
                polls=polls,
                tag=f"{os.getpid()}-{index}-{count}",
                connections=args.connections,
                seconds=args.seconds,
                warmup=args.warmup,
            )
            budget = plan.warmup + plan.seconds + 2 * PHASE_GRACE_SECONDS + 30.0
            kind, payload = run_in_load_process(_store_load_process, plan, budget)
            if kind != "ok":
                raise RuntimeError(f"the load process failed:\n{payload}")
            result, unexpected = payload
            results[name] = result
            if result.not_ok or result.timed_out:
                bad = {str(k): v for k, v in result.statuses.items() if k != 200}
                bad.update(result.errors)
                problems.append(f"{url} {name}: {result.not_ok:,} bad answers {bad}")
            if unexpected:
                problems.append(f"{url} {name}: {unexpected:,} answers not {plan.name} ones")
        for server in servers:
            if server.proc.poll() is not None:
                problems.append(f"{url}: {server.name} exited during the run")
    finally:
        for server in reversed(servers):
            stop_server(server)
    return results, problems


def compare_stores(args: argparse.Namespace) -> int:
    """`--db` given: the same phases on each store, side by side, with ratios."""
    problems: list[str] = []
    measured: list[tuple[str, dict[str, PhaseResult]]] = []
    with tempfile.TemporaryDirectory(prefix="bench-stores-") as tmp:
        for index, url in enumerate(args.db):
            results, found = _measure_store(args, url, _store_db(url, tmp, index), index)
            measured.append((url, results))
            problems += found
    x = ADMITS_X.format(n=args.replicas)
    print(
        f"stores side by side: python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"{args.connections} connections, {args.seconds:g} s a phase"
    )
    print(f"{'store':<28} {'polls/s':>9} {'admits/s':>9} {x + '/s':>12}   vs first store")
    first = measured[0][1]
    for url, r in measured:
        shown = re.sub(r"//[^@/]*@", "//", url)  # no user name in a printed URL
        print(
            f"{shown[:28]:<28} {r[POLLS].rate:>9,.0f} {r[ADMITS].rate:>9,.0f} {r[x].rate:>12,.0f}"
            f"   polls {_ratio(r[POLLS].rate, first[POLLS].rate):.2f}x, admits "
            f"{_ratio(r[ADMITS].rate, first[ADMITS].rate):.2f}x, {x} "
            f"{_ratio(r[x].rate, first[x].rate):.2f}x"
        )
    last_url, last = measured[-1]
    poll_ratio = _ratio(last[POLLS].rate, first[POLLS].rate)
    print(
        f"goal: polls on {last_url.split(':')[0]} >= {STORE_POLL_GOAL}x {args.db[0].split(':')[0]}"
        f"'s: {poll_ratio:.2f}x ({'met' if poll_ratio >= STORE_POLL_GOAL else 'NOT met'}); "
        f">= {REPLICA_ADMIT_GOAL:.0f} admissions/s over {args.replicas} replicas: "
        f"{last[x].rate:,.0f} ({'met' if last[x].rate >= REPLICA_ADMIT_GOAL else 'NOT met'})"
    )
    for line in problems:
        print(f"INVALID: {line}")
    return 2 if problems else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.quick:
        args.seconds, args.rounds, args.warmup, args.jobs = 1.5, 1, 0.2, 4
    if min(args.connections, args.rounds, args.jobs, args.workers) < 1 or args.seconds <= 0:
        sys.exit("--connections, --rounds, --seconds, --jobs and --workers must be positive")

    # A SIGTERM must still stop the servers: turn it into SystemExit, which runs `finally`.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    if args.db:
        return compare_stores(args)
    servers: list[Server] = []
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp:
        try:
            db = str(Path(tmp) / "gateway.sqlite")
            team_key = _create_team(db, _clean_env())
            fake, gateway = _start_servers(args, db, servers)
            workers = (
                _start_gateway(args, db, fake, servers, "workers", workers=args.workers)
                if args.workers > 1
                else None
            )
            gateway_url = f"http://{HOST}:{gateway.port}"
            fake_url = f"http://{HOST}:{fake.port}"
            with httpx.Client(timeout=HTTP_TIMEOUT) as http:
                gateway_polls, fake_polls, bodies = _setup_jobs(
                    http, gateway_url, fake_url, team_key, args.jobs
                )
                problems += _check_hit_headers(http, gateway_url, team_key, bodies)
                paid_before = _paid_runs(http, gateway_url)
            plan = Plan(
                gateway_port=gateway.port,
                fake_port=fake.port,
                gateway_pid=gateway.pid,
                fake_pid=fake.pid,
                team_key=team_key,
                gateway_polls=gateway_polls,
                fake_polls=fake_polls,
                bodies=bodies,
                connections=args.connections,
                seconds=args.seconds,
                rounds=args.rounds,
                warmup=args.warmup,
                workers=args.workers,
                workers_port=workers.port if workers else 0,
                workers_pid=workers.pid if workers else 0,
            )
            kinds = len(plan.phases)
            budget = (
                kinds * (plan.warmup + PHASE_GRACE_SECONDS)
                + kinds * plan.seconds
                + kinds * plan.rounds * PHASE_GRACE_SECONDS
                + 30.0
            )
            kind, payload = run_in_load_process(_load_process, plan, budget)
            for server in servers:
                if server.proc.poll() is not None:
                    problems.append(f"{server.name} exited during the run")
                    print(f"{server.name} exited:\n{server.output()}", file=sys.stderr)
            if kind != "ok":
                print(f"the load process failed:\n{payload}", file=sys.stderr)
                return 2
            with httpx.Client(timeout=HTTP_TIMEOUT) as http:
                problems += _check_hit_headers(http, gateway_url, team_key, bodies)
                paid_after = _paid_runs(http, gateway_url)
            if paid_after != paid_before:
                problems.append(
                    f"paid runs during the phases: (MISS, upstream submits) went from "
                    f"{paid_before} to {paid_after}"
                )
        finally:
            for server in reversed(servers):
                stop_server(server)
    return 0 if report(payload, plan, problems) else 2


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)  # the servers and the load process are already stopped
