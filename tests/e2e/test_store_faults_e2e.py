"""A store that fails while Segmind is answering a paid submit, end to end: real processes
(the fake and the gateway under uvicorn), the real store made to fail (SQLite's files made
immutable; PostgreSQL cut off at a TCP relay), and a real webhook receiver.

The fake holds its submit answers 3 s (a scripted delay, real time); the store fails while
they are held and comes back after the gateway has heard Segmind's answers. Every run Segmind
accepted must then be followed to its end and delivered, the caller's `Idempotency-Key` must
find it, and the team must be charged exactly once per run sent.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from proxy.core.config import PRICE
from tests.outage import PostgresRelay, SQLiteOutage, relayed
from tests.postgres import postgres_database
from tests.receiver import Receiver, eventually
from tests.servers import ServerProcess, start_server

UPSTREAM_KEY = "test-upstream-key-faults-3c8e1a"
ADMIN_KEY = "test-admin-key-faults-9d2b7f4e"
ADMIN = {"x-admin-key": ADMIN_KEY}
WORKFLOW = "68628fe34727e611dfa219b4-v4"
RUNS = 3
BUDGET = 100.0


class Outage:
    """The store's failure, whichever backend: `start()` and `end()`."""

    def __init__(self, start: Any, end: Any) -> None:
        self.start, self.end = start, end


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Outage]]:
    if request.param == "sqlite":
        db = tmp_path / "gateway.sqlite"
        # The file is made by the gateway; its WAL exists from its first write on.
        outage = SQLiteOutage(db)
        try:
            yield str(db), Outage(outage.start, outage.end)
        finally:
            outage.end()
        return
    with postgres_database("gw_faults") as url:
        relay = PostgresRelay(("127.0.0.1", int(url.rsplit(":", 1)[1].split("/")[0])))
        try:
            yield relayed(url, relay), Outage(relay.cut, relay.restore)
        finally:
            relay.close()


def advance(fake: ServerProcess, gateway: ServerProcess, seconds: float) -> None:
    httpx.post(f"{fake.url}/__admin/clock/advance", json={"seconds": seconds}).raise_for_status()
    httpx.post(
        f"{gateway.url}/admin/clock/advance", json={"seconds": seconds}, headers=ADMIN, timeout=30
    ).raise_for_status()


def start_gateway(fake: ServerProcess, db: str) -> ServerProcess:
    return start_server(
        "proxy", "--upstream-url", fake.url, "--db", db, "--clock", "virtual",
        env={
            "SEGMIND_API_KEY": UPSTREAM_KEY,
            "PROXY_ADMIN_KEY": ADMIN_KEY,
            "PROXY_WEBHOOK_ALLOW_NETWORKS": '["127.0.0.0/8"]',
            "PROXY_INSTANCE_ID": "faults-gateway",
        },
    )  # fmt: skip


def test_runs_segmind_accepted_while_the_store_failed_are_followed_and_delivered(
    store: tuple[str, Outage],
) -> None:
    db, outage = store
    receiver = Receiver()
    receiver.start()
    fake = start_server("fakeserver", "--api-key", UPSTREAM_KEY, "--clock", "virtual")
    gateway = start_gateway(fake, db)
    outputs: list[str] = []
    try:
        made = httpx.post(
            f"{gateway.url}/admin/teams",
            json={"name": "faults", "limits": {"daily_budget": BUDGET}},
            headers=ADMIN,
        )
        assert made.status_code == 201, made.text
        key = made.json()["api_key"]
        team = {"x-api-key": key}

        def credits() -> float:
            answer = httpx.get(f"{gateway.url}/v1/get-user-credits", headers=team, timeout=30)
            value: float = answer.json()["credits"] if answer.status_code == 200 else -1.0
            return value

        httpx.post(
            f"{fake.url}/__admin/script",
            json={"route": "submit", "responses": [{"delay_ms": 3000, "times": RUNS}]},
        ).raise_for_status()

        def submit(n: int) -> httpx.Response:
            return httpx.post(
                f"{gateway.url}/workflows/{WORKFLOW}",
                json={"Scene_1": f"A lighthouse keeper, run {n}"},
                headers={**team, "Idempotency-Key": f"run-{n}", "X-Webhook-Url": receiver.url},
                timeout=60,
            )

        with concurrent.futures.ThreadPoolExecutor(RUNS) as pool:
            calls = [pool.submit(submit, n) for n in range(RUNS)]
            # All three admitted (and charged) and held upstream (the fake's journal opens
            # an entry as a request arrives): now the store fails.
            eventually(lambda: len(journal(fake, "submit")) == RUNS, 10, "the runs are sent")
            outage.start()
            answers = [call.result(timeout=60) for call in calls]
        # Segmind has answered all three while the store was out.
        eventually(lambda: all(e.get("status") == 200 for e in journal(fake, "submit")), 10,
                   "Segmind answered")  # fmt: skip
        outage.end()
        # A client retries after the 503's Retry-After; readiness says when to.
        eventually(lambda: httpx.get(f"{gateway.url}/readyz").status_code == 200, 10,
                   "readiness sees the store back")  # fmt: skip

        ids = []
        for answer in answers:
            # The truth: the request exists and its run is followed (200 with its id), or
            # a 503 that does not claim nothing was charged.
            if answer.status_code == 200:
                ids.append(answer.json()["request_id"])
            else:
                assert answer.status_code == 503, answer.text
                assert "nothing was" not in answer.text, answer.text
        # The same Idempotency-Key finds each request, once the store is back.
        replayed = [submit(n) for n in range(RUNS)]
        assert all(r.status_code == 200 for r in replayed), [r.text for r in replayed]
        replayed_ids = [r.json()["request_id"] for r in replayed]
        assert set(ids) <= set(replayed_ids)
        assert len(set(replayed_ids)) == RUNS

        def all_done() -> bool:
            advance(fake, gateway, 60)
            statuses = [
                httpx.get(f"{gateway.url}/workflows/request/{rid}", headers=team, timeout=30)
                for rid in replayed_ids
            ]
            return all(s.status_code == 200 and s.json()["status"] == "COMPLETED"
                       for s in statuses)  # fmt: skip

        eventually(all_done, 60, "every run Segmind accepted completes")
        eventually(lambda: len(receiver.received) >= RUNS, 30, "every webhook arrives")
        delivered = {json.loads(r.body)["data"]["request_id"] for r in receiver.received}
        assert delivered == set(replayed_ids)
        assert len(journal(fake, "submit")) == RUNS  # nothing sent twice
        assert credits() == pytest.approx(BUDGET - RUNS * PRICE)  # charged once per run
    finally:
        try:
            outage.end()
        finally:
            outputs.append(gateway.stop())
        fake.stop()
        receiver.stop()
    assert UPSTREAM_KEY not in "".join(outputs)


def journal(fake: ServerProcess, route: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = httpx.get(
        f"{fake.url}/__admin/journal", params={"route": route}
    ).json()["entries"]
    return entries


def test_an_outage_is_refused_at_once_and_its_end_noticed_at_once(
    store: tuple[str, Outage],
) -> None:
    """The breaker: the outage is met once, then refused without waiting; readiness says
    no submit can be admitted; a finished run still answers; the store's return is seen."""
    db, outage = store
    fake = start_server("fakeserver", "--api-key", UPSTREAM_KEY, "--clock", "virtual")
    gateway = start_gateway(fake, db)
    try:
        made = httpx.post(f"{gateway.url}/admin/teams", json={"name": "outage"}, headers=ADMIN)
        team = {"x-api-key": made.json()["api_key"]}
        url = f"{gateway.url}/workflows/{WORKFLOW}"
        done = httpx.post(url, json={"Scene_1": "Before the outage"}, headers=team)
        poll = f"{gateway.url}/workflows/request/{done.json()['request_id']}"

        def completed() -> bool:
            advance(fake, gateway, 60)
            return bool(httpx.get(poll, headers=team).json()["status"] == "COMPLETED")

        eventually(completed, 30, "the first run completes")
        assert httpx.get(f"{gateway.url}/readyz").status_code == 200

        outage.start()
        first = httpx.post(url, json={"Scene_1": "During the outage"}, headers=team, timeout=30)
        assert first.status_code == 503, first.text
        assert first.headers["retry-after"]
        # Met once: from now on refused by the breaker, without asking the store.
        again = httpx.post(url, json={"Scene_1": "During the outage"}, headers=team, timeout=30)
        assert again.status_code == 503
        assert "has been unavailable for" in again.json()["error"]
        ready = httpx.get(f"{gateway.url}/readyz", timeout=30)
        assert ready.status_code == 503
        assert ready.json()["store"] == "cannot admit a submit"
        # A finished run's answer never changes: it is given from memory meanwhile.
        kept = httpx.get(poll, headers=team, timeout=30)
        assert kept.status_code == 200
        assert kept.json()["status"] == "COMPLETED"

        outage.end()
        eventually(lambda: httpx.get(f"{gateway.url}/readyz").status_code == 200, 10,
                   "readiness sees the store back")  # fmt: skip
        after = httpx.post(url, json={"Scene_1": "After the outage"}, headers=team, timeout=30)
        assert after.status_code == 200, after.text
    finally:
        try:
            outage.end()
        finally:
            gateway.stop()
            fake.stop()


def test_connections_a_database_restart_left_dead_fail_no_request(tmp_path: Path) -> None:
    """PostgreSQL restarted while the gateway was idle: every pooled connection is dead,
    and the next requests run on new ones instead of failing on each stale one."""
    with postgres_database("gw_stale") as url:
        relay = PostgresRelay(("127.0.0.1", int(url.rsplit(":", 1)[1].split("/")[0])))
        fake = start_server("fakeserver", "--api-key", UPSTREAM_KEY, "--clock", "virtual")
        gateway = start_gateway(fake, relayed(url, relay))
        try:
            made = httpx.post(f"{gateway.url}/admin/teams", json={"name": "s"}, headers=ADMIN)
            team = {"x-api-key": made.json()["api_key"]}
            url_ = f"{gateway.url}/workflows/{WORKFLOW}"
            # Several at once, so the pool holds several connections.
            with concurrent.futures.ThreadPoolExecutor(6) as pool:
                warm = list(pool.map(
                    lambda n: httpx.post(url_, json={"Scene_1": f"warm {n}"}, headers=team),
                    range(6),
                ))  # fmt: skip
            assert all(w.status_code == 200 for w in warm)
            relay.cut()  # a restart: every connection reset...
            relay.restore()  # ...and the server back at once
            answers = [
                httpx.post(url_, json={"Scene_1": f"after {n}"}, headers=team, timeout=30)
                for n in range(4)
            ]
            assert [a.status_code for a in answers] == [200] * 4, [a.text for a in answers]
        finally:
            gateway.stop()
            fake.stop()
            relay.close()


def test_a_gateway_started_before_its_database_waits_for_it() -> None:
    """Replicas start in any order: one whose PostgreSQL is down listens, answers readiness
    with 503, and serves once the database is up (its schema made then)."""
    with postgres_database("gw_late") as url:
        relay = PostgresRelay(("127.0.0.1", int(url.rsplit(":", 1)[1].split("/")[0])))
        relay.cut()
        fake = start_server("fakeserver", "--api-key", UPSTREAM_KEY, "--clock", "virtual")
        try:
            gateway = start_gateway(fake, relayed(url, relay))
        except BaseException:
            fake.stop()
            relay.close()
            raise
        try:
            waiting = httpx.get(f"{gateway.url}/readyz", timeout=30)
            assert waiting.status_code == 503
            assert waiting.json()["reason"]
            refused = httpx.post(f"{gateway.url}/admin/teams", json={"name": "late"},
                                 headers=ADMIN, timeout=30)  # fmt: skip
            assert refused.status_code == 503
            relay.restore()
            eventually(lambda: httpx.get(f"{gateway.url}/readyz").status_code == 200, 10,
                       "the gateway sees its database")  # fmt: skip
            made = httpx.post(f"{gateway.url}/admin/teams", json={"name": "late"}, headers=ADMIN)
            assert made.status_code == 201, made.text
            answer = httpx.post(
                f"{gateway.url}/workflows/{WORKFLOW}",
                json={"Scene_1": "Once the database is up"},
                headers={"x-api-key": made.json()["api_key"]},
            )
            assert answer.status_code == 200, answer.text
        finally:
            gateway.stop()
            fake.stop()
            relay.close()


def test_a_run_is_followed_across_an_upstream_restart(tmp_path: Path) -> None:
    """Segmind restarting (the fake SIGKILLed, then started on its port with its state
    file): the gateway's polls meet refused connections for a while, then the run again."""
    state = tmp_path / "fake-state.json"
    args = ("--api-key", UPSTREAM_KEY, "--clock", "virtual", "--state-file", str(state))
    fake = start_server("fakeserver", *args)
    gateway = start_gateway(fake, str(tmp_path / "gateway.sqlite"))
    try:
        made = httpx.post(f"{gateway.url}/admin/teams", json={"name": "r"}, headers=ADMIN)
        team = {"x-api-key": made.json()["api_key"]}
        answer = httpx.post(f"{gateway.url}/workflows/{WORKFLOW}",
                            json={"Scene_1": "Across a restart"}, headers=team)  # fmt: skip
        poll = f"{gateway.url}/workflows/request/{answer.json()['request_id']}"
        advance(fake, gateway, 60)
        os.kill(fake.proc.pid, signal.SIGKILL)
        fake.stop()
        for _ in range(3):  # its polls now meet a refused connection, and are retried
            httpx.post(f"{gateway.url}/admin/clock/advance", json={"seconds": 30},
                       headers=ADMIN).raise_for_status()  # fmt: skip
        assert httpx.get(poll, headers=team).json()["status"] in ("QUEUED", "PROCESSING")
        fake = start_server("fakeserver", *args, "--port", str(fake.port))
        # The fake's clock resumes where it stopped; the gateway's went on 90 s: even them.
        httpx.post(f"{fake.url}/__admin/clock/advance", json={"seconds": 90}).raise_for_status()

        def completed() -> bool:
            advance(fake, gateway, 60)
            return bool(httpx.get(poll, headers=team).json()["status"] == "COMPLETED")

        eventually(completed, 60, "the run completes after the upstream's restart")
        assert len(journal(fake, "submit")) == 0  # never sent again (this fake's journal)
    finally:
        gateway.stop()
        fake.stop()
