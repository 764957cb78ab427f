"""Replicas end to end (issue 11, item 5): the fake upstream, three `python -m proxy serve`
processes with their own instance ids and working folders sharing only the store's URL,
and a real nginx in front of them, all started with docs/operations.md's "Several machines"
commands (`tests/several_machines.py` reads them from the section).

- requests through nginx spread over all three replicas (its access log names the replica
  of each request; each replica's /metrics counts its own);
- one replica SIGKILLed with 40 runs in flight and webhooks owed: every run ends through
  the other two, every webhook arrives, signed, and the upstream saw 40 submits, no more;
- a rolling restart of all three under steady load fails no request but with nginx's
  documented 503 and `Retry-After`.

Runs and webhook retries move on virtual clocks (the fake's and each gateway's, advanced
over HTTP); liveness is real time, so the leases are short (`lease_seconds` 2). Real waits
are only for sockets and lease lapses, each bounded.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from client import verify_webhook
from proxy.cli.nginx import RETRY_AFTER, UNAVAILABLE, render
from proxy.core.config import PRICE
from proxy.core.webhooks import message_id
from tests.e2e.test_console_browser import _chromium
from tests.processes import stop_group
from tests.receiver import Receiver, eventually
from tests.servers import ServerProcess, launch, start_server
from tests.several_machines import Step, block, step
from tests.stack import ADMIN_KEY, UPSTREAM_KEY, WORKFLOW

if TYPE_CHECKING:
    from playwright.sync_api import Browser

pytestmark = [
    pytest.mark.skipif(
        shutil.which("nginx") is None and not os.environ.get("CI"),
        reason="nginx is not installed (.ci/run installs it; `apt-get install nginx-light`)",
    ),
    # Three replicas, nginx and a browser start for each test: beside the suite's other
    # workers that takes longer than the suite's 120 s hang guard allows. Still a guard.
    pytest.mark.timeout(300),
]

ADMIN = {"x-admin-key": ADMIN_KEY}
LEASE_SECONDS = "2"  # real seconds before a dead replica's runs are taken over
TEAM = "design"  # the team the docs' create-team command makes
REPLICAS = 3
IN_FLIGHT = 40
TERMINAL = ("COMPLETED", "FAILED")
# Past every run's end (durations are clamped to 300-1800 s) yet well before a result's
# hour is up, after which polls answer 404 as on Segmind.
ALL_DONE = 1900.0


def free_port() -> int:
    """A loopback port free a moment ago. Guessed, unlike every other server's here: the
    balancer's configuration names the replicas' ports before they start, and a rolling
    restart brings a replica back on its own port, as deployments do."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Replica:
    number: int
    folder: Path
    port: int = field(default_factory=free_port)
    server: ServerProcess | None = None
    outputs: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"replica-{self.number}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"


@dataclass
class Deployment:
    """The fake, three replicas and nginx, started from the docs' commands."""

    root: Path
    db: str
    fake: ServerProcess
    replicas: list[Replica]
    listen: int = field(default_factory=free_port)
    nginx: subprocess.Popen[bytes] | None = None
    key: str = ""
    secret: str = ""
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=30))

    @property
    def public_url(self) -> str:
        return f"http://127.0.0.1:{self.listen}"

    @property
    def access_log(self) -> Path:
        return self.root / "balancer" / "access.log"

    def values(self, replica: Replica | None = None) -> dict[str, str]:
        """The section's variables, for this deployment (and `replica`)."""
        values = {
            "DB": self.db,
            "PUBLIC_URL": self.public_url,
            "LISTEN": f"127.0.0.1:{self.listen}",
            "PWD": str(self.root / "balancer"),
            "BALANCER_HOST": "127.0.0.1",  # nginx's connections to the replicas come from it
            **{f"REPLICA_{r.number}": r.address for r in self.replicas},
        }
        if replica is not None:
            values |= {"REPLICA_HOST": "127.0.0.1", "REPLICA_PORT": str(replica.port),
                       "INSTANCE_ID": replica.id}  # fmt: skip
        return values

    def step(self, role: str, replica: Replica | None = None) -> Step:
        return step(role, self.values(replica))

    def run(self, step: Step, *extra: str, cwd: Path) -> str:
        done = subprocess.run(
            [*step.argv, *extra],
            env={**os.environ, **step.env},
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, f"{step.argv}: {done.stderr}"
        return done.stdout

    # --- starting and stopping ----------------------------------------------------------

    def start_replica(self, replica: Replica) -> None:
        step = self.step("serve", replica)
        env = {
            **step.env,
            # The test's own: the company key for the fake, admin over HTTP (clocks,
            # metrics), loopback receivers, short leases, and a company budget that never
            # holds a submit back (holding is item 5 of issue 10, tested elsewhere).
            "SEGMIND_API_KEY": UPSTREAM_KEY,
            "PROXY_ADMIN_KEY": ADMIN_KEY,
            "PROXY_WEBHOOK_ALLOW_NETWORKS": '["127.0.0.0/8"]',
            "PROXY_LEASE_SECONDS": LEASE_SECONDS,
            "PROXY_UPSTREAM_REQUESTS_PER_MINUTE": "100000",
        }
        argv = [*step.argv, "--upstream-url", self.fake.url, "--clock", "virtual"]
        replica.server = launch(
            argv, env={**os.environ, **env}, cwd=replica.folder, name=replica.id
        )
        self.sync_clock(replica)

    def stop_replica(self, replica: Replica, how: signal.Signals) -> None:
        assert replica.server is not None
        replica.server.proc.send_signal(how)
        replica.server.proc.wait(timeout=20)
        replica.outputs.append(replica.server.stop())
        replica.server = None

    def start_balancer(self) -> None:
        folder = self.root / "balancer"
        config = self.step("nginx-config")
        assert config.stdout is not None
        text = self.run(config, "--access-log", str(self.access_log), cwd=folder)
        (folder / config.stdout).write_text(text)
        # The docs' command, kept in the foreground and out of the system's files.
        settings = f"daemon off; pid {folder}/nginx.pid; error_log {folder}/error.log;"
        if os.geteuid() == 0:
            settings += " user root;"  # workers may then read this root-only folder
        argv = [*self.step("nginx").argv, "-p", str(folder), "-g", settings]
        self.nginx = subprocess.Popen(argv, cwd=folder, process_group=0)
        eventually(lambda: _listens(self.listen), 10, "nginx listens")

    def close(self) -> None:
        if self.nginx is not None:
            stop_group(self.nginx)
        for replica in self.replicas:
            if replica.server is not None:
                replica.outputs.append(replica.server.stop())
        self.fake.stop()
        self.http.close()

    # --- clocks -------------------------------------------------------------------------

    def live(self) -> list[Replica]:
        return [r for r in self.replicas if r.server is not None]

    def _move(self, replica: Replica, seconds: float) -> float:
        moved = self.http.post(
            f"{replica.url}/admin/clock/advance", json={"seconds": seconds}, headers=ADMIN
        )
        moved.raise_for_status()
        now: float = moved.json()["now"]
        return now

    def advance(self, seconds: float) -> float:
        """Move the fake's clock and every live replica's; the replicas' time after."""
        self.http.post(
            f"{self.fake.url}/__admin/clock/advance", json={"seconds": seconds}
        ).raise_for_status()
        return max(self._move(r, seconds) for r in self.live())

    def sync_clock(self, replica: Replica) -> None:
        """A replica's virtual clock starts at its epoch: bring a (re)started one to the
        others' time, as a real clock would be."""
        others = [self._move(r, 0) for r in self.live() if r is not replica]
        if others:
            self._move(replica, max(others) - self._move(replica, 0))

    # --- the teams' side, through nginx -------------------------------------------------

    def submit(self, scene: str, webhook: str | None = None) -> httpx.Response:
        headers = {"x-api-key": self.key}
        if webhook is not None:
            headers["x-webhook-url"] = webhook
        return self.http.post(
            f"{self.public_url}/workflows/{WORKFLOW}", json={"Scene_1": scene}, headers=headers
        )

    def poll(self, request_id: str) -> httpx.Response:
        return self.http.get(
            f"{self.public_url}/workflows/request/{request_id}", headers={"x-api-key": self.key}
        )

    def statuses(self, request_ids: list[str]) -> Counter[str]:
        return Counter(str(self.poll(i).json()["status"]) for i in request_ids)

    def upstream_submits(self) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = self.http.get(
            f"{self.fake.url}/__admin/journal", params={"route": "submit"}
        ).json()["entries"]
        return entries

    def served(self, replica: Replica, route: str) -> float:
        """Requests of `route` this replica answered, from its own /metrics."""
        text = self.http.get(f"{replica.url}/metrics", headers=ADMIN).text
        pattern = rf'^segmind_gateway_requests_total\{{[^}}]*route="{route}"[^}}]*\}} (\S+)$'
        return sum(float(v) for v in re.findall(pattern, text, re.M))


def _listens(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def deployment(tmp_path: Path, postgres_url: str) -> Iterator[Deployment]:
    for folder in ("admin", "balancer", *(f"replica-{n}" for n in range(1, REPLICAS + 1))):
        (tmp_path / folder).mkdir()
    db = postgres_url  # the only thing the replicas share
    fake = start_server("fakeserver", "--api-key", UPSTREAM_KEY, "--clock", "virtual",
                        "--plan", "unlimited", "--seed", "11")  # fmt: skip
    replicas = [Replica(n, tmp_path / f"replica-{n}") for n in range(1, REPLICAS + 1)]
    built = Deployment(tmp_path, db, fake, replicas)
    try:
        admin = tmp_path / "admin"
        built.run(built.step("migrate"), cwd=admin)
        made = json.loads(built.run(built.step("create-team"), cwd=admin))
        built.key, built.secret = made["api_key"], made["webhook_secret"]
        # The test's own step: limits that 40 runs at once and a steady load never meet.
        limits = [f"--{name}" for name in ("submits-per-minute", "polls-per-minute",
                  "max-concurrent", "daily-budget", "monthly-budget")]  # fmt: skip
        limits = [word for flag in limits for word in (flag, "100000")]
        subprocess.run(
            [*built.step("migrate").argv[:3], "admin", "set-limits", TEAM, "--db", db, *limits],
            cwd=admin, check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        for replica in replicas:
            built.start_replica(replica)
        built.start_balancer()
        yield built
    finally:
        built.close()
    for replica in replicas:  # nothing secret in any replica's output
        for output in replica.outputs:
            assert UPSTREAM_KEY not in output
            assert built.secret not in output


def verified_ids(receiver: Receiver, secret: str) -> set[str]:
    """Request ids of the deliveries whose Standard Webhooks signature checks out with the
    team's secret (each at its own timestamp: the replicas' clocks are virtual)."""
    ids = set()
    for received in list(receiver.received):
        signed_at = dt.datetime.fromtimestamp(int(received.headers["webhook-timestamp"]), dt.UTC)
        event = verify_webhook(received.body, received.headers, secret, now=signed_at)
        assert event.webhook_id == message_id(event.result.request_id, event.type)
        ids.add(event.result.request_id)
    return ids


def until(deployment: Deployment, check: Callable[[], bool], what: str) -> None:
    """Until `check()`: small steps of virtual time, with real time between them for the
    leases (real seconds) to lapse and the deliveries to cross loopback."""
    for _ in range(150):
        if check():
            return
        deployment.advance(5)
        time.sleep(0.2)
    raise AssertionError(f"not reached: {what}")


def test_requests_spread_over_the_replicas(deployment: Deployment) -> None:
    ids = []
    for n in range(30):
        answer = deployment.submit(f"A lighthouse keeper, take {n}")
        assert answer.status_code == 200, answer.text
        assert answer.json()["poll_url"].startswith(deployment.public_url)
        ids.append(answer.json()["request_id"])
    deployment.advance(ALL_DONE)
    for request_id in ids * 2:
        answer = deployment.poll(request_id)
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "COMPLETED"

    lines = deployment.access_log.read_text().splitlines()
    by_replica = Counter(
        (line.split('"')[1].split()[0], re.findall(r"upstream=(\S+)", line)[0]) for line in lines
    )
    for replica in deployment.replicas:
        assert by_replica["POST", replica.address] >= 3, by_replica
        assert by_replica["GET", replica.address] >= 3, by_replica
        assert deployment.served(replica, "submit") >= 3
        assert deployment.served(replica, "poll") >= 3
    instances = deployment.http.get(f"{deployment.public_url}/admin/instances", headers=ADMIN)
    alive = {i["id"] for i in instances.json()["instances"] if i["alive"]}
    assert alive == {r.id for r in deployment.replicas}
    assert len(deployment.upstream_submits()) == 30

    # With every replica down, nginx answers the documented 503, in the gateway's shape.
    for replica in deployment.replicas:
        deployment.stop_replica(replica, signal.SIGTERM)
    for answer in (deployment.poll(ids[0]), deployment.submit("A lighthouse keeper, again")):
        assert answer.status_code == 503
        assert answer.headers["retry-after"] == str(RETRY_AFTER)
        assert answer.json() == json.loads(UNAVAILABLE)


@pytest.fixture
def browser() -> Iterator[Browser]:
    executable = _chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=executable, headless=True)
        yield launched
        launched.close()


def test_the_console_works_through_nginx_in_a_browser(
    deployment: Deployment, browser: Browser
) -> None:
    """nginx passes the browser's Host on: without it the replicas saw `Host:
    segmind_gateway` and refused every form ("log in from the console's own login page").
    The replicas believe nginx's X-Forwarded-For (`forwarded_allow_ips`), so a client's
    wrong keys count against that client, never against the operator in the browser."""
    base = f"{deployment.public_url}/admin/ui"
    guesses = [  # another client's wrong keys, through the same nginx: its own count
        deployment.http.get(
            f"{deployment.public_url}/admin/teams",
            headers={"x-admin-key": f"guess-{n:04d}", "x-forwarded-for": "198.51.100.9"},
        ).status_code
        for n in range(12)
    ]
    # Ten wrong keys a minute per client, across the replicas' own counts at most: nginx
    # spreads the guesses, and each replica counts what reaches it.
    assert guesses.count(401) >= 10, guesses
    assert set(guesses) <= {401, 429}, guesses
    # The events secret's path, in the spellings that reach it, never in nginx's log.
    guess = "events-secret-guess-0123456789"
    for path in ("/upstream/events/", "//upstream/events/", "/Upstream/./events/",
                 "/upstream%2Fevents/", "/upstream/%2E/events/"):  # fmt: skip
        url = httpx.URL(deployment.public_url).copy_with(raw_path=(path + guess).encode())
        assert deployment.http.post(url, json={}).status_code in (400, 404)
    page = browser.new_context().new_page()
    page.goto(f"{base}/teams")
    assert page.url == f"{base}/login"  # the redirect stays on nginx's address
    page.fill('input[name="admin_key"]', ADMIN_KEY)
    page.click('[data-test="login"]')
    page.wait_for_url(f"{base}/teams")
    page.fill('form.create input[name="name"]', "through-nginx")
    page.fill('form.create input[name="daily_budget"]', "5")
    page.click('[data-test="create-team"]')
    key = page.locator('[data-test="api key"]').inner_text().strip()
    credits = deployment.http.get(
        f"{deployment.public_url}/v1/get-user-credits", headers={"x-api-key": key}
    )
    assert credits.status_code == 200, credits.text
    page.goto(f"{base}/teams")
    page.click('[data-test="logout"]')
    page.wait_for_url(f"{base}/login")
    logged = deployment.access_log.read_text()
    assert "/admin/ui/login" in logged
    assert guess not in logged
    assert logged.count("<secret>") == 5


def test_the_readme_shows_the_configuration_nginx_config_prints() -> None:
    """The commands this module runs are read from the docs' section (`step`); its
    example configuration is what the command prints for its example replicas."""
    example = [f"10.0.0.{n}:8000" for n in (11, 12, 13)]
    assert block(language="nginx") == render("8080", example)
    assert step("nginx", {"PWD": "/srv"}).argv == ["nginx", "-c", "/srv/gateway-nginx.conf"]


def test_a_replica_killed_mid_flight_loses_no_run_and_no_webhook(
    deployment: Deployment, receiver: Receiver
) -> None:
    receiver.hang.set()  # deliveries reach it and stay unanswered: owed when the kill comes
    ids = []
    for n in range(IN_FLIGHT):
        answer = deployment.submit(f"A dragon over a harbour, take {n}", receiver.url)
        assert answer.status_code == 200, answer.text
        ids.append(answer.json()["request_id"])
    # Into the runs' likely ends (median 674 s): some end, their webhooks go out and hang.
    deployment.advance(660)
    eventually(lambda: receiver.received, what="a first delivery reaches the receiver")
    done = deployment.statuses(ids)
    assert 0 < done["COMPLETED"] < IN_FLIGHT, done

    instances = deployment.http.get(f"{deployment.replicas[0].url}/admin/instances",
                                    headers=ADMIN).json()["instances"]  # fmt: skip
    runs = {i["id"]: i["runs"] for i in instances}
    victim = max(deployment.replicas, key=lambda r: runs[r.id])
    assert runs[victim.id] > 0, runs  # it polls runs still in flight
    deployment.stop_replica(victim, signal.SIGKILL)
    receiver.hang.clear()

    # Every run ends through the two others, the victim's adopted once its lease lapses.
    deployment.advance(ALL_DONE - 660)
    until(deployment, lambda: sum(deployment.statuses(ids)[s] for s in TERMINAL) == IN_FLIGHT,
          "every run terminal")  # fmt: skip
    until(deployment, lambda: verified_ids(receiver, deployment.secret) == set(ids),
          "every webhook delivered, signed")  # fmt: skip
    assert deployment.statuses(ids)["COMPLETED"] == IN_FLIGHT

    # No run paid twice: 40 upstream submits, of 40 different bodies, and 40 charges.
    submits = deployment.upstream_submits()
    assert len(submits) == IN_FLIGHT
    assert len({json.dumps(e["body"], sort_keys=True) for e in submits}) == IN_FLIGHT
    accounts = deployment.http.get(f"{deployment.fake.url}/__admin/accounts").json()
    [account] = accounts["accounts"]
    assert account["credits"] == pytest.approx(1000 - IN_FLIGHT * PRICE)
    found = deployment.http.get(f"{deployment.public_url}/admin/instances", headers=ADMIN)
    alive = {i["id"] for i in found.json()["instances"] if i["alive"]}
    assert alive == {r.id for r in deployment.live()}


@dataclass
class Load:
    """A team's steady traffic through nginx in a thread: a new run now and then, polls of
    the runs it made in between. Every answer is kept."""

    deployment: Deployment
    outcomes: list[tuple[str, int, str | None]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    submitted: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def wait_for(self, answers: int, what: str) -> None:
        """Until `answers` more requests have been answered."""
        target = len(self.outcomes) + answers
        eventually(lambda: len(self.outcomes) >= target, what=what)

    def run(self) -> None:
        n = 0
        with httpx.Client(timeout=30) as http:
            key = {"x-api-key": self.deployment.key}
            base = self.deployment.public_url
            while not self.stop.is_set():
                n += 1
                try:
                    if n % 4 == 1 or not self.submitted:
                        answer = http.post(f"{base}/workflows/{WORKFLOW}", headers=key,
                                           json={"Scene_1": f"A steady load, run {n}"})  # fmt: skip
                        kind = "submit"
                        if answer.status_code == 200:
                            self.submitted.append(answer.json()["request_id"])
                    else:
                        request_id = self.submitted[n % len(self.submitted)]
                        answer = http.get(f"{base}/workflows/request/{request_id}", headers=key)
                        kind = "poll"
                except httpx.TransportError as exc:
                    self.errors.append(repr(exc))
                    continue
                self.outcomes.append((kind, answer.status_code, answer.headers.get("retry-after")))
                time.sleep(0.01)


# Its load and its restarts race the clock (nginx's fail_timeout, a replica's drain): beside
# three other workers it has run past 300 s, alone it takes ~45 s.
@pytest.mark.serial
def test_a_rolling_restart_under_load_fails_nothing_but_a_documented_503(
    deployment: Deployment,
) -> None:
    load = Load(deployment)
    worker = threading.Thread(target=load.run, daemon=True)
    worker.start()
    try:
        for replica in deployment.replicas:
            load.wait_for(20, "load before the stop")
            deployment.stop_replica(replica, signal.SIGTERM)
            load.wait_for(20, "load while it is down")
            deployment.start_replica(replica)
            deployment.advance(30)
            # nginx tries a failed replica again after fail_timeout (2 s): let it come back.
            time.sleep(2.5)
    finally:
        load.stop.set()
        worker.join(30)
    assert load.errors == []
    documented = (503, str(RETRY_AFTER))  # nginx's, when no replica could take it
    bad = [o for o in load.outcomes if o[1] != 200 and o[1:] != documented]
    assert bad == [], bad
    assert Counter(kind for kind, _, _ in load.outcomes)["submit"] > 10

    # Every run it made ends, and none was sent upstream twice.
    deployment.advance(ALL_DONE)
    until(deployment, lambda: deployment.statuses(load.submitted)["COMPLETED"]
          == len(load.submitted), "every run completed")  # fmt: skip
    bodies = [json.dumps(e["body"], sort_keys=True) for e in deployment.upstream_submits()]
    assert len(bodies) == len(set(bodies))
    assert len(bodies) >= len(load.submitted)
