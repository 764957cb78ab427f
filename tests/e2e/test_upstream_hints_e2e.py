"""Upstream notifications end to end: the fake (`--clock virtual`) sends a GRAPH_RUN-like
call to the gateway's `/upstream/events/<secret>` when a run ends, and the gateway polls
that run at once, through the company budget. Real processes on loopback; virtual time
drives the runs; the only real waits are for calls crossing a socket, each bounded.

Upstream calls are counted in the fake's journal, which records every request it gets.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.receiver import Receiver, eventually
from tests.servers import ServerProcess, start_server
from tests.stack import ADMIN_KEY, UPSTREAM_KEY, WORKFLOW, running_stack, start_gateway

SECRET = "hint-secret-e2e-3c9b1f7a5d2e"
ADMIN = {"x-admin-key": ADMIN_KEY}
PER_MINUTE = 10  # the company budget in these tests: small, so a flood would show


@dataclass
class Hinted:
    fake: ServerProcess
    gateway: ServerProcess
    db: Path
    key: str = ""
    outputs: list[str] = field(default_factory=list)

    @property
    def events_url(self) -> str:
        return f"{self.gateway.url}/upstream/events/{SECRET}"

    def notify(self, **settings: Any) -> dict[str, Any]:
        """Point the fake's notifications at the gateway (the gateway's port is known only
        once it runs, after the fake), with `delay` and `drop_rate`."""
        answer = httpx.post(
            f"{self.fake.url}/__admin/notify", json={"url": self.events_url, **settings}
        )
        assert answer.status_code == 200, answer.text
        status: dict[str, Any] = answer.json()
        return status

    def notified(self) -> dict[str, Any]:
        status: dict[str, Any] = httpx.get(f"{self.fake.url}/__admin/notify").json()
        return status

    def advance(self, seconds: float) -> None:
        httpx.post(
            f"{self.fake.url}/__admin/clock/advance", json={"seconds": seconds}
        ).raise_for_status()
        httpx.post(
            f"{self.gateway.url}/admin/clock/advance", json={"seconds": seconds}, headers=ADMIN
        ).raise_for_status()

    def submit(self, inputs: dict[str, str], webhook_url: str | None = None) -> str:
        headers = {"x-api-key": self.key}
        if webhook_url:
            headers["X-Webhook-Url"] = webhook_url
        answer = httpx.post(f"{self.gateway.url}/workflows/{WORKFLOW}", json=inputs,
                            headers=headers)  # fmt: skip
        assert answer.status_code == 200, answer.text
        request_id: str = answer.json()["request_id"]
        return request_id

    def status(self, request_id: str) -> str:
        answer = httpx.get(
            f"{self.gateway.url}/workflows/request/{request_id}", headers={"x-api-key": self.key}
        )
        status: str = answer.json()["status"]
        return status

    def upstream_polls(self) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = httpx.get(
            f"{self.fake.url}/__admin/journal", params={"route": "poll"}
        ).json()["entries"]
        return entries

    def upstream_ids(self) -> list[str]:
        return stored_upstream_ids(self.db)

    def hint_metrics(self) -> dict[str, float]:
        text = httpx.get(f"{self.gateway.url}/metrics", headers=ADMIN).text
        found = {}
        for line in text.splitlines():
            if line.startswith("segmind_gateway_upstream_hints_total{"):
                result = line.split('result="')[1].split('"')[0]
                found[result] = float(line.rsplit(" ", 1)[1])
        return found


@pytest.fixture
def hinted(tmp_path: Path) -> Iterator[Hinted]:
    fake = start_server("fakeserver", "--api-key", UPSTREAM_KEY, "--clock", "virtual",
                        "--seed", "7")  # fmt: skip
    db = tmp_path / "gateway.sqlite"
    try:
        gateway = start_gateway(fake.url, db, {
            "PROXY_UPSTREAM_EVENTS_SECRET": SECRET,
            "PROXY_UPSTREAM_REQUESTS_PER_MINUTE": str(PER_MINUTE),
        })  # fmt: skip
    except BaseException:
        fake.stop()
        raise
    built = Hinted(fake, gateway, db)
    try:
        made = httpx.post(f"{gateway.url}/admin/teams", json={"name": "hints"}, headers=ADMIN)
        assert made.status_code == 201, made.text
        built.key = made.json()["api_key"]
        yield built
    finally:
        built.outputs.append(gateway.stop())
        fake.stop()
    for output in built.outputs:  # the secret is part of a URL, and never logged
        assert SECRET not in output
        assert UPSTREAM_KEY not in output


def run_until_notified(hinted: Hinted, step: float = 30.0, limit: float = 2400.0) -> None:
    """Move both clocks a step at a time until the fake has sent (or dropped) a
    notification; then stop, so that what follows is the hint's doing, not the clock's."""
    moved = 0.0
    while moved < limit:
        hinted.advance(step)
        moved += step
        status = hinted.notified()
        if status["sent"] + status["dropped"] + status["failed"] > 0:
            return
    raise AssertionError(f"no run ended within {limit} s of the clocks")


def test_a_notified_run_is_known_at_once_with_one_or_two_polls(
    hinted: Hinted, listening_receiver: Receiver
) -> None:
    hinted.notify(delay=1.0)
    request_id = hinted.submit({"Scene_1": "A lighthouse in a gale"}, listening_receiver.url)
    run_until_notified(hinted)
    # No clock moves from here on: only the notification can make the gateway poll now.
    eventually(lambda: listening_receiver.received, what="the completion webhook reaches the team")
    assert hinted.status(request_id) == "COMPLETED"
    assert hinted.notified()["sent"] == 1
    assert 1 <= len(hinted.upstream_polls()) <= 2
    assert hinted.hint_metrics() == {"received": 1.0, "matched": 1.0}


def test_a_wrong_secret_is_answered_as_an_unknown_path(hinted: Hinted) -> None:
    unknown = httpx.post(f"{hinted.gateway.url}/upstream/nothing/here", json={})
    for wrong in (SECRET[:-1], SECRET + "x", "x" * len(SECRET), SECRET.upper()):
        answer = httpx.post(f"{hinted.gateway.url}/upstream/events/{wrong}", json={})
        assert answer.status_code == 404 == unknown.status_code
        assert answer.json()["error"].startswith("no endpoint /upstream/")
    assert httpx.post(hinted.events_url, json={"data": {}}).status_code == 204
    # A body that is not JSON, or too large, is refused before anything else.
    assert httpx.post(hinted.events_url, content=b"{not json").status_code == 400
    assert httpx.post(hinted.events_url, content=b"[" * 70_000).status_code == 413


def test_without_a_secret_the_endpoint_is_off(tmp_path: Path) -> None:
    with running_stack(tmp_path / "gateway.sqlite") as stack:
        for secret in (SECRET, "", "None"):
            answer = httpx.post(f"{stack.gateway.url}/upstream/events/{secret}", json={})
            assert answer.status_code == 404, answer.text


def test_unknown_ids_cost_no_upstream_call(hinted: Hinted) -> None:
    hinted.submit({"Scene_1": "A quiet harbour"})
    polls = len(hinted.upstream_polls())
    for _ in range(100):
        body = {"event_type": "GRAPH_RUN", "data": {"request_id": uuid.uuid4().hex}}
        assert httpx.post(hinted.events_url, json=body).status_code == 204
    eventually(lambda: hinted.hint_metrics().get("ignored") == 100.0, what="hints handled")
    assert len(hinted.upstream_polls()) == polls
    assert "matched" not in hinted.hint_metrics()


def test_a_flood_of_hints_is_one_early_poll_a_run_within_the_budget(hinted: Hinted) -> None:
    runs = [hinted.submit({"Scene_1": f"Scene number {n}"}) for n in range(3)]
    hinted.advance(30)  # every run is sent and QUEUED upstream, none polled yet
    upstream = hinted.upstream_ids()
    assert len(upstream) == 3
    with httpx.Client() as http:
        for n in range(300):
            named = upstream[n % 3]
            body = {"event_type": "GRAPH_RUN", "data": {"request_id": named, "n": n},
                    "poll_url": f"https://api.segmind.com/workflows/request/{named}"}  # fmt: skip
            assert http.post(hinted.events_url, json=body).status_code == 204
    eventually(lambda: hinted.hint_metrics().get("received") == 300.0, what="hints handled")
    eventually(lambda: len(hinted.upstream_polls()) >= 3, what="the early polls")
    # One early poll a run; the hints are not taken as a status: each run is still going.
    assert hinted.hint_metrics()["matched"] == 3.0
    assert len(hinted.upstream_polls()) == 3
    assert {hinted.status(r) for r in runs} <= {"QUEUED", "PROCESSING"}
    # Submits still go first: a new run is sent at once.
    hinted.submit({"Scene_1": "One more"})
    assert len(hinted.upstream_ids()) == 4
    hinted.advance(2400)
    with sqlite3.connect(hinted.db) as db:
        calls = [at for (at,) in db.execute("SELECT at FROM upstream_calls ORDER BY at")]
    for i, at in enumerate(calls):  # never more than the budget in any minute
        assert sum(1 for later in calls[i:] if later < at + 60.0) <= PER_MINUTE


@pytest.mark.parametrize("drop_rate", [1.0, 0.5])
def test_lost_hints_fall_back_to_the_schedule(
    hinted: Hinted, listening_receiver: Receiver, drop_rate: float
) -> None:
    hinted.notify(delay=2.0, drop_rate=drop_rate)
    runs = [hinted.submit({"Scene_1": f"Run {n}"}, listening_receiver.url) for n in range(4)]
    for _ in range(8):  # 40 minutes of both clocks, a little at a time
        hinted.advance(300)
    eventually(lambda: len(listening_receiver.received) == 4, what="every run's webhook")
    assert {hinted.status(r) for r in runs} == {"COMPLETED"}
    status = hinted.notified()
    assert status["dropped"] + status["sent"] == 4
    if drop_rate == 1.0:
        assert status["sent"] == 0


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_a_hint_taken_by_another_replica_reaches_the_run_s_poller(
    tmp_path: Path, request: pytest.FixtureRequest, backend: str
) -> None:
    postgres = backend == "postgresql"
    db = request.getfixturevalue("postgres_url") if postgres else str(tmp_path / "gw.sqlite")
    fake = start_server("fakeserver", "--api-key", UPSTREAM_KEY, "--clock", "virtual")
    replicas: list[ServerProcess] = []
    try:
        for name in ("hints-a", "hints-b"):
            env = {"PROXY_UPSTREAM_EVENTS_SECRET": SECRET, "PROXY_INSTANCE_ID": name}
            replicas.append(start_gateway(fake.url, db, env))  # type: ignore[arg-type]
        first, second = replicas
        made = httpx.post(f"{first.url}/admin/teams", json={"name": "hints"}, headers=ADMIN)
        key = made.json()["api_key"]
        answer = httpx.post(f"{first.url}/workflows/{WORKFLOW}", json={},
                            headers={"x-api-key": key})  # fmt: skip
        assert answer.status_code == 200, answer.text
        clocks = [f"{fake.url}/__admin/clock/advance"]
        clocks += [f"{replica.url}/admin/clock/advance" for replica in replicas]
        for url in clocks:  # the run is going; its first scheduled poll is minutes away
            httpx.post(url, json={"seconds": 30}, headers=ADMIN).raise_for_status()
        assert _polls(fake) == 0
        [upstream_id] = stored_upstream_ids(db)
        sent = httpx.post(f"{second.url}/upstream/events/{SECRET}",
                          json={"data": {"request_id": upstream_id}})  # fmt: skip
        assert sent.status_code == 204
        if not postgres:
            # Other processes on a SQLite file hear nothing: the run's loop, in replica
            # a, reads it again within HINT_RECHECK seconds of its clock.
            httpx.post(clocks[1], json={"seconds": 5}, headers=ADMIN).raise_for_status()
        eventually(lambda: _polls(fake) == 1, what="the early poll, made by replica a")
    finally:
        for replica in replicas:
            replica.stop()
        fake.stop()


def _polls(fake: ServerProcess) -> int:
    journal = httpx.get(f"{fake.url}/__admin/journal", params={"route": "poll"})
    return len(journal.json()["entries"])


def stored_upstream_ids(db: str | Path) -> list[str]:
    """The upstream ids of the runs the gateways follow, read from their store."""
    query = "SELECT upstream_id FROM generations WHERE upstream_id IS NOT NULL"
    if str(db).startswith("postgresql://"):
        with psycopg.connect(str(db)) as pg:
            return [str(upstream_id) for (upstream_id,) in pg.execute(query)]
    with sqlite3.connect(db) as lite:
        return [str(upstream_id) for (upstream_id,) in lite.execute(query)]
