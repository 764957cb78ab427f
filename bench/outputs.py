"""Benchmark: what kept outputs save, how fast the gateway serves them, and what a copy costs.

    .venv/bin/python bench/outputs.py [--quick]

Three parts, each printed side by side in one run:

- money: a seeded 14-day trace of requests, a third of them repeating an earlier one at
  lags from minutes to days, run through the store's own admission rules (SQLite), once
  with `cache_ttl` 3000 s and no kept outputs and once with kept outputs (the cache lasts
  `output_retention`, 30 days): dollars paid and HIT rate, against the limit of one paid run
  per distinct request;
- serving: 50 concurrent clients fetching 20 MB outputs in 5 MB ranges from the gateway
  (real processes: the fake with `--asset-bytes`, a gateway keeping outputs in a folder),
  against nginx serving the same files from the same folder: MB/s and p99, the median of
  5 rounds taken in turn (so the machine's noise falls on both alike), and the ratio
  (goal: >= 0.8x nginx);
- copying: seconds for the gateway to mirror a run's 4 x 20 MB outputs from the fake,
  against `curl` fetching the same four files at once, and the gateway's peak RSS while
  copying over its RSS when idle (goal: < +50 MB).

A benchmark, not a test: it exits 0 whatever the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import json
import math
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from proxy.core.config import TeamLimits  # noqa: E402
from proxy.db import Team  # noqa: E402
from proxy.rules import AdmissionRequest, Fence  # noqa: E402
from proxy.store import open_store  # noqa: E402
from tests.servers import ServerProcess, start_server  # noqa: E402

UPSTREAM_KEY = "bench-upstream-key-outputs"
ADMIN_KEY = "bench-admin-key-outputs-4c1e"
ADMIN = {"x-admin-key": ADMIN_KEY}
WORKFLOW = "68628fe34727e611dfa219b4-v4"
PRICE = 3.9674
RUN_SECONDS = 673.9
DAY = 86400.0


# -- money --------------------------------------------------------------------------------


def trace(requests: int, days: float, seed: int) -> list[tuple[float, str]]:
    """(time, request) pairs: two thirds new requests spread over the days, one third
    repeats of an earlier one after a log-uniform lag from one minute to five days."""
    rng = random.Random(seed)
    events: list[tuple[float, str]] = []
    fresh = 0
    for _ in range(requests):
        at = rng.uniform(0, days * DAY)
        earlier = [e for e in events if e[0] < at]
        if earlier and rng.random() < 1 / 3:
            lag = math.exp(rng.uniform(math.log(60), math.log(5 * DAY)))
            base_at, name = rng.choice(earlier)
            events.append((min(base_at + lag, days * DAY), name))
        else:
            fresh += 1
            events.append((at, f"request-{fresh}"))
    return sorted(events)


async def money(events: list[tuple[float, str]], cache_ttl: float, workdir: Path) -> dict[str, Any]:
    """Paid runs and HITs for `events`, through the store's admission rules."""
    store = open_store(str(workdir / f"money-{int(cache_ttl)}.sqlite"))
    limits = TeamLimits(
        submits_per_minute=None, polls_per_minute=None, max_concurrent=None,
        daily_budget=None, monthly_budget=None,
    )  # fmt: skip
    team = await store.create_team(Team(uuid.uuid4().hex, "bench", 0.0, limits))
    start = 1_790_000_000.0
    done: list[tuple[float, str, int]] = []  # (completes at, run, token)
    counts = {"HIT": 0, "JOIN": 0, "MISS": 0}
    for at, name in events:
        now = start + at
        while done and done[0][0] <= now:
            ends, run, token = heapq.heappop(done)
            fence = Fence("bench", token)
            await store.mark_submitted(run, f"up-{run}", ends - RUN_SECONDS, ends, fence)
            await store.record_status(
                run, "COMPLETED", ends, fence=fence, output="[]", terminal=True,
                cache_ttl=cache_ttl,
            )  # fmt: skip
        ask = AdmissionRequest(
            team=team, request_id=uuid.uuid4().hex, generation_id=uuid.uuid4().hex,
            scope_key=name, workflow_id=WORKFLOW, inputs={"name": name}, price=PRICE,
            instance="bench",
        )  # fmt: skip
        admitted = await store.admit(ask, now)
        status = admitted.request.cache_status.value
        counts[status] += 1
        if status == "MISS":
            heapq.heappush(done, (now + RUN_SECONDS, admitted.generation.id, admitted.token or 0))
    store.close()
    return {"paid": counts["MISS"], "dollars": counts["MISS"] * PRICE, **counts}


# -- processes ------------------------------------------------------------------------------


def stack(workdir: Path, asset_bytes: int) -> tuple[ServerProcess, ServerProcess, str]:
    fake = start_server(
        "fakeserver", "--api-key", UPSTREAM_KEY, "--clock", "virtual", "--plan", "unlimited",
        "--asset-bytes", str(asset_bytes),
    )  # fmt: skip
    gateway = start_server(
        "proxy", "--upstream-url", fake.url, "--db", str(workdir / "serve.sqlite"),
        "--clock", "virtual",
        env={
            "SEGMIND_API_KEY": UPSTREAM_KEY,
            "PROXY_ADMIN_KEY": ADMIN_KEY,
            "PROXY_OUTPUTS": str(workdir / "kept"),
            "PROXY_OUTPUT_ALLOW_HOSTS": '["127.0.0.1"]',
            "PROXY_OUTPUT_ALLOW_NETWORKS": '["127.0.0.0/8"]',
            "PROXY_LOG_LEVEL": "WARNING",
            "PROXY_IMAGE_PREFLIGHT": "false",  # the default image is out of reach offline
        },
    )  # fmt: skip
    made = httpx.post(f"{gateway.url}/admin/teams", json={"name": "bench"}, headers=ADMIN)
    made.raise_for_status()
    return fake, gateway, made.json()["api_key"]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def copy_run(fake: ServerProcess, gateway: ServerProcess, key: str) -> dict[str, Any]:
    """One run through the gateway; the time its completion (with the copy) took, and
    the gateway's peak RSS meanwhile."""
    http = httpx.Client(timeout=600)
    answer = http.post(
        f"{gateway.url}/workflows/{WORKFLOW}", json={"Scene_1": f"bench {uuid.uuid4()}"},
        headers={"x-api-key": key},
    )  # fmt: skip
    answer.raise_for_status()
    request_id = answer.json()["request_id"]
    http.post(f"{fake.url}/__admin/clock/advance", json={"seconds": 1900}).raise_for_status()
    idle = rss_kib(gateway.proc.pid)
    peak = idle
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, rss_kib(gateway.proc.pid))
            stop.wait(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.perf_counter()
    # Returns once the gateway's poll loops settled: the run polled, copied and recorded.
    http.post(
        f"{gateway.url}/admin/clock/advance", json={"seconds": 1900}, headers=ADMIN
    ).raise_for_status()
    seconds = time.perf_counter() - started
    stop.set()
    sampler.join()
    done = http.get(
        f"{gateway.url}/workflows/request/{request_id}", headers={"x-api-key": key}
    ).json()
    upstream_id = None
    for entry in http.get(f"{fake.url}/__admin/journal", params={"route": "poll"}).json()[
        "entries"
    ]:
        upstream_id = str(entry["path"]).rsplit("/", 1)[1]
    sources = [
        e["value"]["data"]
        for e in json.loads(
            http.get(
                f"{fake.url}/workflows/request/{upstream_id}", headers={"x-api-key": UPSTREAM_KEY}
            ).json()["output"]
        )
    ]
    http.close()
    return {
        "seconds": seconds,
        "idle_mib": idle / 1024,
        "peak_mib": peak / 1024,
        "kept": done.get("outputs_kept"),
        "urls": [e["value"]["data"] for e in json.loads(done["output"])],
        "sources": sources,
    }


def curl_all(urls: list[str], workdir: Path) -> float:
    started = time.perf_counter()
    procs = [
        subprocess.Popen(["curl", "-sS", "-o", str(workdir / f"curl-{n}"), url])
        for n, url in enumerate(urls)
    ]
    for proc in procs:
        proc.wait()
    return time.perf_counter() - started


# -- serving ----------------------------------------------------------------------------


def fetch_all(urls: list[str], clients: int, size: int, part: int) -> dict[str, float]:
    """`clients` curl processes at once (a C client, so the server is what is measured),
    each fetching one whole output in `part`-byte ranges, one after another."""
    procs = []
    began = time.perf_counter()
    for n in range(clients):
        argv = ["curl"]
        for start in range(0, size, part):
            if start:
                argv.append("--next")  # which resets every option: each range names its own
            argv += ["-sS", "-w", "%{http_code} %{size_download} %{time_total}\\n"]
            argv += ["-r", f"{start}-{start + part - 1}", "-o", "/dev/null", urls[n % len(urls)]]
        procs.append(subprocess.Popen(argv, stdout=subprocess.PIPE, text=True))
    lines = [line for proc in procs for line in proc.communicate()[0].splitlines()]
    elapsed = time.perf_counter() - began
    latencies, total = [], 0
    for line in lines:
        code, got, seconds = line.split()
        if code != "206":
            raise RuntimeError(f"INVALID: HTTP {code} for a range")
        total += int(got)
        latencies.append(float(seconds))
    latencies.sort()
    return {
        "mb_s": total / elapsed / 1e6,
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
    }


def serving(
    urls: list[str], workdir: Path, clients: int, size: int, part: int, rounds: int
) -> None:
    """The gateway and nginx in turn, `rounds` times (the machine's noise falls on both
    alike), and the median of each side's rounds."""
    print(f"serving: {clients} clients, each one {size / 1e6:g} MB output in "
          f"{part / 1e6:g} MB ranges; median of {rounds} alternating rounds")  # fmt: skip
    if not shutil.which("nginx"):
        ours = [fetch_all(urls, clients, size, part) for _ in range(rounds)]
        print(
            f"  gateway  {_median(ours, 'mb_s'):8.1f} MB/s  p99 {_median(ours, 'p99_ms'):8.1f} ms"
        )
        print("  nginx not installed: no comparison; goal: gateway >= 0.8x nginx")
        return
    balancer, base = nginx(workdir / "kept", workdir)
    names = [u.split("/v1/outputs/")[1].split("/")[1].split(".")[0] for u in urls]
    plain = [f"{base}/{n[:2]}/{n}" for n in names]
    ours, theirs = [], []
    try:
        for _ in range(rounds):
            ours.append(fetch_all(urls, clients, size, part))
            theirs.append(fetch_all(plain, clients, size, part))
    finally:
        balancer.terminate()
        balancer.wait(10)
    for label, got in (("gateway", ours), ("nginx", theirs)):
        print(f"  {label:8} {_median(got, 'mb_s'):8.1f} MB/s  p99 {_median(got, 'p99_ms'):8.1f} ms")
    each = " ".join(f"{a['mb_s'] / b['mb_s']:.2f}" for a, b in zip(ours, theirs, strict=True))
    ratio = _median(ours, "mb_s") / _median(theirs, "mb_s")
    print(f"  goal: gateway >= 0.8x nginx; got {ratio:.2f}x (rounds: {each})")


def _median(rounds: list[dict[str, float]], key: str) -> float:
    values = sorted(r[key] for r in rounds)
    return values[len(values) // 2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def nginx(folder: Path, workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    conf = workdir / "nginx.conf"
    conf.write_text(
        f"worker_processes 1; daemon off; pid {workdir}/nginx.pid; error_log {workdir}/e.log;\n"
        + ("user root;\n" if os.geteuid() == 0 else "")
        + "events { worker_connections 1024; }\n"
        f"http {{ access_log off; sendfile on; server {{ listen 127.0.0.1:{port}; "
        f"root {folder}; }} }}\n"
    )
    proc = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(workdir)], process_group=0)
    for _ in range(200):
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=0.5)
            break
        except httpx.TransportError:
            time.sleep(0.05)
    return proc, f"http://127.0.0.1:{port}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small figures, for the suite")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    requests, clients, size = (120, 8, 2_000_000) if args.quick else (1200, 50, 20_000_000)
    part = size // 4
    with tempfile.TemporaryDirectory(prefix="bench-outputs-") as folder:
        workdir = Path(folder)
        events = trace(requests, 14, args.seed)
        distinct = len({name for _, name in events})
        short = asyncio.run(money(events, 3000.0, workdir))
        kept = asyncio.run(money(events, 30 * DAY, workdir))
        print(f"money: {len(events)} requests over 14 days, {distinct} distinct (seed {args.seed})")
        for label, got in (("cache_ttl 3000 s, no kept outputs", short), ("kept outputs", kept)):
            print(
                f"  {label:36} paid {got['paid']:5} runs  ${got['dollars']:10,.2f}  "
                f"HIT rate {got['HIT'] / len(events):6.1%}"
            )
        print(f"  {'limit (one paid run per request)':36} paid {distinct:5} runs  "
              f"${distinct * PRICE:10,.2f}")  # fmt: skip
        print(f"  kept outputs pay {kept['dollars'] / short['dollars']:.2f}x the dollars")

        fake, gateway, key = stack(workdir, size)
        try:
            copied = copy_run(fake, gateway, key)
            if not copied["kept"]:
                print("INVALID: the run's outputs were not kept")
                return
            curl_seconds = curl_all(copied["sources"], workdir)
            print(f"copying: 4 x {size / 1e6:g} MB from the fake")
            print(f"  gateway mirror (poll, copy, record) {copied['seconds']:7.2f} s")
            print(f"  curl, the four files at once        {curl_seconds:7.2f} s")
            print(f"  ratio gateway/curl {copied['seconds'] / curl_seconds:.2f}x; gateway RSS "
                  f"idle {copied['idle_mib']:.0f} MiB, peak while copying "
                  f"{copied['peak_mib']:.0f} MiB (+{copied['peak_mib'] - copied['idle_mib']:.0f} "
                  "MiB; goal < +50 MiB)")  # fmt: skip

            serving(copied["urls"], workdir, clients, size, part, rounds=1 if args.quick else 5)
        finally:
            gateway.stop()
            fake.stop()


if __name__ == "__main__":
    main()
