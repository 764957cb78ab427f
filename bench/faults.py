"""Fault drills: what clients and teams see while the store or the upstream fails.

    .venv/bin/python bench/faults.py          # store down 20 s, 120 s, twice; upstream 5xx 60 s
    .venv/bin/python bench/faults.py --quick  # shorter: 5 s, twice 3 s; upstream 15 s
    .venv/bin/python bench/faults.py --only killed  # the drills whose name has "killed"

Real processes, real time: a PostgreSQL cluster of the bench's own (initdb in a temporary
folder, run as the `postgres` user, stopped with `pg_ctl -m immediate` and started again),
the fake Segmind on its system clock with ~7 s runs, one gateway on that cluster, and a
webhook receiver. During each drill one client submits distinct runs at a steady rate, each
with a webhook URL; after it, the bench waits for every admitted run to end.

Printed per drill: runs admitted (200), completed, lost (admitted, never completed), paid
twice (one request's inputs sent upstream more than once, from the fake's journal), webhooks
owed and delivered, p99 answer time of submits made during the fault, and the seconds from
the store's return (the cluster accepting connections again) to the first admitted submit.
Targets: 0 lost, 0 paid twice, p99 under 1 s during the fault, recovery under 1 s. A bench,
not a test: it exits 0 whatever the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.receiver import Receiver  # noqa: E402
from tests.servers import ServerProcess, start_server  # noqa: E402

UPSTREAM_KEY = "bench-faults-upstream-key-61d0"
ADMIN_KEY = "bench-faults-admin-key-3f7a"
WORKFLOW = "68628fe34727e611dfa219b4-v4"
TERMINAL = ("COMPLETED", "FAILED")
RATE = 4.0  # submits a second during a drill
AFTER = 5.0  # seconds of submits after a fault ended
SETTLE = 90.0  # seconds to wait for the runs of a drill to end
UNLIMITED = ("submits_per_minute", "polls_per_minute", "max_concurrent", "daily_budget",
             "monthly_budget")  # fmt: skip


def pg_bin(name: str) -> str:
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    if not found:
        raise SystemExit(f"{name} not found under /usr/lib/postgresql: install postgresql")
    return str(found[-1])


class Cluster:
    """A PostgreSQL cluster of the bench's own, on a free port, run as `postgres`."""

    def __init__(self, workdir: Path) -> None:
        self.data = workdir / "pgdata"
        self.data.mkdir()
        shutil.chown(workdir, "postgres")
        shutil.chown(self.data, "postgres")
        self._as_postgres(pg_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres")
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.log = workdir / "pg.log"
        self.start()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _as_postgres(self, *argv: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *argv], check=True, capture_output=True, cwd="/"
        )

    def start(self) -> float:
        """Start; returns the time it accepts connections."""
        self._as_postgres(
            pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w",
            "-o", f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1", "start",
        )  # fmt: skip
        return time.monotonic()

    def stop(self, mode: str = "immediate") -> None:
        self._as_postgres(pg_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")


@dataclass
class Answer:
    started: float
    seconds: float
    status: int
    request_id: str | None
    prompt: str


@dataclass
class Drill:
    name: str
    answers: list[Answer] = field(default_factory=list)
    fault: tuple[float, float] = (0.0, 0.0)  # when the fault started and ended
    back_at: float | None = None  # when the store accepted connections again


class Stack:
    def __init__(self, workdir: Path, cluster: Cluster) -> None:
        self.receiver = Receiver()
        self.receiver.start()
        # Its jobs in a file: a drill restarts it, as Segmind restarting keeps its runs.
        state = str(workdir / "fake-state.json")
        self.fake_args = ("--api-key", UPSTREAM_KEY, "--time-scale", "0.01", "--plan",
                          "unlimited", "--state-file", state)  # fmt: skip
        self.fake = start_server("fakeserver", *self.fake_args)
        self.cluster = cluster
        self.gateway = self.start_gateway()
        self.http = httpx.Client(timeout=60.0)
        made = self.http.post(
            f"{self.gateway.url}/admin/teams",
            json={"name": "drills", "limits": dict.fromkeys(UNLIMITED)},
            headers={"x-admin-key": ADMIN_KEY},
        )
        made.raise_for_status()
        self.team = {"x-api-key": made.json()["api_key"], "X-Webhook-Url": self.receiver.url}
        self.sent = 0
        self.shown = False

    def start_gateway(self) -> ServerProcess:
        return start_server(
            "proxy", "--upstream-url", self.fake.url, "--db", self.cluster.url,
            env={
                "SEGMIND_API_KEY": UPSTREAM_KEY,
                "PROXY_ADMIN_KEY": ADMIN_KEY,
                "PROXY_WEBHOOK_ALLOW_NETWORKS": '["127.0.0.0/8"]',
                "PROXY_EXPECTED_RUN_SECONDS": "7",
                "PROXY_UPSTREAM_REQUESTS_PER_MINUTE": "100000",
                # The workflow's default image is Segmind's sample, offline here.
                "PROXY_IMAGE_PREFLIGHT": "false",
                # Restarted, it is the same process: it takes its runs back at once.
                "PROXY_INSTANCE_ID": "bench-faults-gateway",
            },
        )  # fmt: skip

    def submit(self) -> Answer:
        self.sent += 1
        prompt = f"drill run {self.sent} {time.time_ns()}"
        started = time.monotonic()
        try:
            answer = self.http.post(
                f"{self.gateway.url}/workflows/{WORKFLOW}",
                json={"Scene_1": prompt},
                headers=self.team,
            )
            status = answer.status_code
            request_id = answer.json().get("request_id") if status == 200 else None
            if status not in (200, 503) and not self.shown:
                self.shown = True
                print(f"first unexpected answer: {status} {answer.text[:300]}", flush=True)
        except httpx.HTTPError:
            status, request_id = 0, None
        return Answer(started, time.monotonic() - started, status, request_id, prompt)

    def load(self, drill: Drill, done: threading.Event) -> None:
        """Submits at `RATE` a second until `done`, each on a thread of its own (a slow
        answer does not hold the next back)."""
        threads = []
        while not done.is_set():
            thread = threading.Thread(target=lambda: drill.answers.append(self.submit()))
            thread.start()
            threads.append(thread)
            time.sleep(1.0 / RATE)
        for thread in threads:
            thread.join()

    def status(self, request_id: str) -> str:
        try:
            answer = self.http.get(
                f"{self.gateway.url}/workflows/request/{request_id}", headers=self.team
            )
        except httpx.HTTPError:
            return "unreachable"
        return str(answer.json().get("status")) if answer.status_code == 200 else "error"

    def close(self) -> None:
        self.gateway.stop()
        self.fake.stop()
        self.receiver.stop()


def run_drill(stack: Stack, name: str, fault: Callable[[Drill], None]) -> Drill:
    """Steady submits from before the fault until `AFTER` seconds after it ended."""
    drill, done = Drill(name), threading.Event()
    loader = threading.Thread(target=stack.load, args=(drill, done))
    loader.start()
    try:
        fault(drill)
        time.sleep(AFTER)
    finally:
        done.set()
        loader.join()
    return drill


def store_outage(cluster: Cluster, down: float, times: int = 1) -> Callable[[Drill], None]:
    def fault(drill: Drill) -> None:
        time.sleep(2.0)  # load before the fault
        start = time.monotonic()
        for n in range(times):
            cluster.stop("immediate")
            time.sleep(down)
            drill.back_at = cluster.start()
            if n < times - 1:
                time.sleep(2.0)
        drill.fault = (start, time.monotonic())

    return fault


def gateway_killed_in_outage(
    cluster: Cluster, stack: Stack, down: float
) -> Callable[[Drill], None]:
    """The store stops; the gateway is SIGKILLed and started again while it is down (it
    waits for it); then the store comes back."""

    def fault(drill: Drill) -> None:
        time.sleep(2.0)
        start = time.monotonic()
        cluster.stop("immediate")
        time.sleep(down / 3)
        os.kill(stack.gateway.proc.pid, signal.SIGKILL)
        stack.gateway.stop()
        stack.gateway = stack.start_gateway()
        time.sleep(down / 3)
        drill.back_at = cluster.start()
        drill.fault = (start, time.monotonic())

    return fault


def upstream_gone(stack: Stack, seconds: float) -> Callable[[Drill], None]:
    """Segmind refusing connections (the fake SIGKILLed), then restarted on its port with
    its state file: its runs go on."""

    def fault(drill: Drill) -> None:
        time.sleep(2.0)
        start = time.monotonic()
        port = stack.fake.port
        os.kill(stack.fake.proc.pid, signal.SIGKILL)
        stack.fake.stop()
        time.sleep(seconds)
        stack.fake = start_server("fakeserver", *stack.fake_args, "--port", str(port))
        drill.fault = (start, time.monotonic())

    return fault


def upstream_errors(stack: Stack, seconds: float) -> Callable[[Drill], None]:
    def fault(drill: Drill) -> None:
        time.sleep(2.0)
        start = time.monotonic()
        stack.http.post(f"{stack.fake.url}/__admin/chaos", json={"error_rate": 1.0})
        time.sleep(seconds)
        stack.http.post(f"{stack.fake.url}/__admin/chaos", json={"error_rate": 0.0})
        drill.fault = (start, time.monotonic())

    return fault


def report(stack: Stack, drill: Drill) -> dict[str, object]:
    admitted = [a for a in drill.answers if a.status == 200 and a.request_id]
    deadline = time.monotonic() + SETTLE
    ended: dict[str, str] = {}
    pending = {a.request_id for a in admitted if a.request_id}
    while pending and time.monotonic() < deadline:
        for rid in list(pending):
            status = stack.status(rid)
            if status in TERMINAL:
                ended[rid] = status
                pending.discard(rid)
        if pending:
            time.sleep(1.0)
    completed = sum(1 for status in ended.values() if status == "COMPLETED")
    if pending:  # what the gateway said of each lost run, for whoever reads the figures
        log = stack.gateway.log.read_text(errors="replace").splitlines()
        for rid in sorted(pending):
            print(f"lost {rid}: {stack.status(rid)}", *[line for line in log if rid in line][-5:],
                  sep="\n  ", flush=True)  # fmt: skip
    journal = stack.http.get(f"{stack.fake.url}/__admin/journal", params={"route": "submit"})
    sent: dict[str, int] = {}
    for entry in journal.json()["entries"]:
        body = entry.get("body") or {}
        prompt = body.get("Scene_1") if isinstance(body, dict) else None
        if prompt:
            sent[prompt] = sent.get(prompt, 0) + 1
    twice = sum(1 for a in drill.answers if sent.get(a.prompt, 0) > 1)
    delivered = {json.loads(r.body)["data"]["request_id"] for r in stack.receiver.received}
    owed = {a.request_id for a in admitted}
    during = sorted(
        a.seconds for a in drill.answers if drill.fault[0] <= a.started <= drill.fault[1]
    )
    p99 = during[min(len(during) - 1, int(len(during) * 0.99))] if during else float("nan")
    recovery = None
    if drill.back_at is not None:
        after = [a.started + a.seconds for a in admitted if a.started + a.seconds >= drill.back_at]
        recovery = min(after) - drill.back_at if after else None
    return {
        "drill": drill.name,
        "submits": len(drill.answers),
        "admitted": len(admitted),
        "completed": completed,
        "failed": len(ended) - completed,
        "lost": len(pending),
        "paid_twice": twice,
        "webhooks_owed": len(owed),
        "webhooks_delivered": len(owed & delivered),
        "p99_during_s": round(p99, 3),
        "over_0.5s_during": sum(1 for s in during if s > 0.5),
        "recovery_s": None if recovery is None else round(recovery, 3),
        "refused_503": sum(1 for a in drill.answers if a.status == 503),
        "other": sorted({a.status for a in drill.answers} - {200, 503}),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter outages")
    parser.add_argument("--only", metavar="TEXT", help="only the drills whose name has TEXT")
    args = parser.parse_args(argv)
    if os.geteuid() != 0 or shutil.which("runuser") is None:
        print("bench/faults.py runs its own PostgreSQL cluster as the postgres user: run as root")
        return 0
    short, long_, twice, upstream = (
        (5.0, 5.0, 3.0, 15.0) if args.quick else (20.0, 120.0, 20.0, 60.0)
    )
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-faults-") as tmp:
        cluster = Cluster(Path(tmp))
        stack = Stack(Path(tmp), cluster)
        try:
            plans: list[tuple[str, Callable[[Drill], None]]] = [
                (f"store down {short:.0f} s", store_outage(cluster, short)),
                (f"store down twice {twice:.0f} s", store_outage(cluster, twice, 2)),
                (f"upstream 5xx {upstream:.0f} s", upstream_errors(stack, upstream)),
                (f"upstream gone {upstream:.0f} s", upstream_gone(stack, upstream)),
                ("gateway killed in outage", gateway_killed_in_outage(cluster, stack, 3 * short)),
            ]
            if not args.quick:
                plans.insert(1, (f"store down {long_:.0f} s", store_outage(cluster, long_)))
            for name, fault in plans:
                if args.only and args.only not in name:
                    continue
                drill = run_drill(stack, name, fault)
                rows.append(report(stack, drill))
                print(json.dumps(rows[-1]), flush=True)
        finally:
            stack.close()
            cluster.stop("fast")
    print()
    print(f"{'drill':<24}{'admitted':>9}{'completed':>10}{'lost':>6}{'twice':>6}"
          f"{'hooks owed/got':>16}{'p99 fault s':>12}{'recovery s':>11}")  # fmt: skip
    for row in rows:
        print(
            f"{row['drill']!s:<24}{row['admitted']!s:>9}{row['completed']!s:>10}"
            f"{row['lost']!s:>6}{row['paid_twice']!s:>6}"
            f"{str(row['webhooks_owed']) + '/' + str(row['webhooks_delivered']):>16}"
            f"{row['p99_during_s']!s:>12}{row['recovery_s']!s:>11}"
        )
    if not rows:
        return 0
    worst = max(rows, key=lambda r: float(str(r["p99_during_s"])))
    recoveries = [float(str(r["recovery_s"])) for r in rows if r["recovery_s"] is not None]
    lost = sum(int(str(r["lost"])) for r in rows)
    twice = sum(int(str(r["paid_twice"])) for r in rows)
    p99 = float(str(worst["p99_during_s"]))
    print(
        f"goal: 0 lost ({lost}), 0 paid twice ({twice}); p99 during the fault < 1 s (worst "
        f"{p99:.3f} s, {worst['drill']}: {p99:.2f}x the target); recovery < 1 s (worst "
        f"{max(recoveries, default=float('nan')):.3f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
