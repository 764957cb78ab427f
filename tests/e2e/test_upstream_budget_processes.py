"""The company budget with real processes (issue 10, items 5 and 16): runs held for the
budget outlive SIGTERM and SIGKILL, never charged as unknown; and `--with-fake` demo runs
never meet an upstream 429. Real uvicorn processes, real SQLite files, loopback sockets."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import httpx

from proxy.core.config import PRICE
from proxy.db.sqlite import SQLiteBackend
from proxy.store import open_store
from tests.servers import ServerProcess, start_server
from tests.stack import ADMIN_KEY, WORKFLOW, BothClocks, Stack, running_stack, start_gateway

STOP_WITHIN = 10.0  # real seconds a stopped gateway may take to exit; it waits for no budget
BUDGET = 100.0  # a team's default daily budget


def submit(stack: Stack, scene: str) -> str:
    answer = httpx.post(
        f"{stack.gateway.url}/workflows/{WORKFLOW}",
        json={"Scene_1": scene},
        headers={"x-api-key": stack.team_key},
        timeout=STOP_WITHIN,  # answered at once, held or not
    )
    assert answer.status_code == 200, answer.text
    request_id: str = answer.json()["request_id"]
    return request_id


def statuses(db: Path) -> list[str]:
    store = open_store(str(db), create=False)
    try:
        assert isinstance(store.backend, SQLiteBackend)
        rows = store.backend._connection().execute("SELECT status FROM generations ORDER BY rowid")
        return [str(status) for (status,) in rows]
    finally:
        store.close()


def stopped(gateway: ServerProcess, how: signal.Signals) -> int:
    gateway.proc.send_signal(how)
    code = gateway.proc.wait(timeout=STOP_WITHIN)
    gateway.stop()  # collect its output, remove its log
    return code


def test_held_runs_survive_sigterm_and_sigkill_and_are_sent_after(tmp_path: Path) -> None:
    db = tmp_path / "gateway.sqlite"
    env = {"PROXY_UPSTREAM_REQUESTS_PER_MINUTE": "1"}
    with running_stack(db, "e2e", "--plan", "1") as stack:
        stack.gateway.stop()
        stack.gateway = start_gateway(stack.fake.url, db, env)
        for n in range(3):
            submit(stack, f"run {n}")
        assert statuses(db) == ["QUEUED", "WAITING", "WAITING"]

        # SIGTERM does not wait out the budget; the held runs stay held, uncharged as unknown.
        code = stopped(stack.gateway, signal.SIGTERM)  # raises after STOP_WITHIN s
        assert code in (0, 128 + signal.SIGTERM), code
        assert statuses(db) == ["QUEUED", "WAITING", "WAITING"]
        stack.gateway = start_gateway(stack.fake.url, db, env)
        # SIGKILL while they wait: nothing in the store says "sent", so nothing is lost.
        stopped(stack.gateway, signal.SIGKILL)
        assert statuses(db) == ["QUEUED", "WAITING", "WAITING"]

        stack.gateway = start_gateway(stack.fake.url, db, env)
        clocks = BothClocks(stack)
        try:
            # 120 x 20 s: the last run is sent minutes in (one a minute) and may take the
            # fake's longest, 1800 s; 60 steps left a long draw PROCESSING now and then.
            for _ in range(120):
                if statuses(db) == ["COMPLETED"] * 3:
                    break
                clocks.sleep(20.0)
        finally:
            clocks.close()
        assert statuses(db) == ["COMPLETED"] * 3
        sent = [e["status"] for e in stack.journal("submit")]
        assert sent == [200, 200, 200]
        assert all(e["status"] != 429 for e in stack.journal("poll"))
        credits = httpx.get(
            f"{stack.gateway.url}/v1/get-user-credits", headers={"x-api-key": stack.team_key}
        ).json()["credits"]
        assert abs(credits - (BUDGET - 3 * PRICE)) < 1e-3


def test_demo_runs_through_with_fake_never_meet_an_upstream_429(tmp_path: Path) -> None:
    """`make run`: the gateway with its embedded, time-scaled fake (`make run`'s scale,
    ~7 s runs). A user's handful of runs goes through with no 429 in the fake's journal.
    Both clocks are virtual and moved together a second at a time (the fake's rate window
    and the gateway's budget run on them), so the test never waits through the runs."""
    server = start_server(
        "proxy", "--db", str(tmp_path / "gateway.sqlite"), "--with-fake", "--demo-team",
        "--clock", "virtual", "--fake-args", "--time-scale 0.01 --clock virtual",
        env={"PROXY_ADMIN_KEY": ADMIN_KEY},
    )  # fmt: skip
    try:
        printed = server.printed()
        key = re.search(r"api key: +(sgw_\S+)", printed)
        fake = re.search(r"the fake Segmind at (http://\S+)", printed)
        assert key is not None, printed
        assert fake is not None, printed
        headers = {"x-api-key": key[1]}
        ids = []
        for n in range(5):
            answer = httpx.post(
                f"{server.url}/workflows/{WORKFLOW}",
                json={"Scene_1": f"demo run {n}"},
                headers=headers,
                timeout=10,
            )
            assert answer.status_code == 200, answer.text
            ids.append(answer.json()["request_id"])
        done: dict[str, str] = {}
        for _ in range(120):  # virtual seconds: ~7 s runs end well within them
            for rid in ids:
                body = httpx.get(f"{server.url}/workflows/request/{rid}", headers=headers).json()
                if body["status"] in ("COMPLETED", "FAILED"):
                    done[rid] = body["status"]
            if len(done) == len(ids):
                break
            second = {"seconds": 1.0}
            httpx.post(f"{fake[1]}/__admin/clock/advance", json=second).raise_for_status()
            httpx.post(f"{server.url}/admin/clock/advance", json=second,
                       headers={"x-admin-key": ADMIN_KEY}).raise_for_status()  # fmt: skip
        assert sorted(done.values()) == ["COMPLETED"] * len(ids), done
        journal = httpx.get(f"{fake[1]}/__admin/journal").json()["entries"]
        assert journal, "the fake saw no calls"
        limited = [e for e in journal if e["status"] == 429]
        assert limited == [], f"{len(limited)} upstream 429s of {len(journal)} calls"
    finally:
        server.stop()
