"""The fair queue and the balance watch end to end (issue 26): real uvicorn processes, the
fake at `--plan 20` with ~30 s runs, the gateway at 20 calls a minute, both on virtual
clocks moved by the test; a real SQLite store and a company webhook receiver.

- Team A submits 60 runs at once (its first 20 fill the window, 40 wait), then team B
  submits one: the next slot is B's. With weights A=1, B=2, both backlogged, B gets two
  thirds of the sends (within one slot); no 60 s span holds more than 20 calls; every run
  completes.
- A `Priority: u=0` run overtakes its own team's waiting runs, never another team's.
- The balance: the fake's credits set to 3 runs' worth, `account.credits_low` arrives
  once, the console shows the hours left, and the 4th submit is refused with 406 and no
  upstream call.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sqlite3
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from client import verify_webhook
from proxy.core.config import PRICE
from proxy.core.webhooks import new_secret
from proxy.rules.budget import MARGIN, WINDOW
from tests.receiver import Receiver, eventually
from tests.stack import ADMIN_KEY, WORKFLOW, BothClocks, Stack, running_stack

ADMIN = {"x-admin-key": ADMIN_KEY}
PER_MINUTE = 20
SLOT = WINDOW / PER_MINUTE  # 3 s: one call's share of the window
RUN_SCALE = "0.045"  # the fake's runs: ~30 s (a median of 674 s scaled)
UNLIMITED = {
    "submits_per_minute": None,
    "max_concurrent": None,
    "daily_budget": None,
    "monthly_budget": None,
}


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    env = {
        "PROXY_UPSTREAM_REQUESTS_PER_MINUTE": str(PER_MINUTE),
        "PROXY_EXPECTED_RUN_SECONDS": "30",
    }
    with running_stack(
        tmp_path / "gateway.sqlite", "alpha", "--plan", str(PER_MINUTE),
        "--time-scale", RUN_SCALE, env=env,
    ) as built:  # fmt: skip
        yield built


def _team(stack: Stack, name: str, **limits: Any) -> str:
    made = httpx.post(
        f"{stack.gateway.url}/admin/teams",
        json={"name": name, "limits": {**UNLIMITED, **limits}},
        headers=ADMIN,
    )
    assert made.status_code == 201, made.text
    key: str = made.json()["api_key"]
    return key


def _submit(stack: Stack, key: str, scene: str, **headers: str) -> httpx.Response:
    return httpx.post(
        f"{stack.gateway.url}/workflows/{WORKFLOW}",
        json={"Scene_1": scene},
        headers={"x-api-key": key, **headers},
        timeout=30,
    )


def _many(stack: Stack, key: str, scenes: list[str]) -> list[httpx.Response]:
    with ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(lambda s: _submit(stack, key, s), scenes))


def _sent(stack: Stack) -> list[str]:
    """The scenes Segmind received, in the order it received them."""
    return [str(e["body"]["Scene_1"]) for e in stack.journal("submit")]  # type: ignore[index]


def _batches(stack: Stack) -> list[list[str]]:
    """The scenes Segmind received, grouped by the moment (fake's clock) they came: the
    slots that free together (calls made together leave the window together) are taken
    at once, in no order, by the runs first in the fair queue."""
    found: dict[float, list[str]] = {}
    for e in stack.journal("submit"):
        found.setdefault(float(e["at"]), []).append(str(e["body"]["Scene_1"]))  # type: ignore
    return [found[at] for at in sorted(found)]


def _journal(stack: Stack) -> list[dict[str, Any]]:
    """Every call the fake received that its rate limit counts: submits, polls, credits."""
    entries: list[dict[str, Any]] = httpx.get(f"{stack.fake.url}/__admin/journal").json()["entries"]
    return [e for e in entries if e["route"] in ("submit", "poll", "credits")]


def _console_page(stack: Stack, page: str) -> str:
    """A console page, as an operator logged in with the admin key sees it."""
    with httpx.Client(base_url=stack.gateway.url) as browser:
        origin = {"origin": stack.gateway.url, "sec-fetch-site": "same-origin"}
        login = browser.post("/admin/ui/login", data={"admin_key": ADMIN_KEY}, headers=origin)
        assert login.status_code == 303, login.text
        answer = browser.get(f"/admin/ui/{page}")
        assert answer.status_code == 200, answer.text
        return answer.text


def _busiest(stack: Stack) -> int:
    """The most upstream calls (any kind) in any 60 s span of the fake's clock."""
    times = sorted(float(e["at"]) for e in _journal(stack))
    most, start = 0, 0
    for end, at in enumerate(times):
        while times[start] <= at - WINDOW:
            start += 1
        most = max(most, end - start + 1)
    return most


def _statuses(stack: Stack) -> dict[str, int]:
    """How many runs are in each state, read from the gateway's store (read-only)."""
    with contextlib.closing(sqlite3.connect(f"file:{stack.db}?mode=ro", uri=True)) as db:
        rows = db.execute("SELECT status, COUNT(*) FROM generations GROUP BY status")
        return {str(status): int(n) for status, n in rows}


def _all_done(stack: Stack, runs: int, clocks: BothClocks, step: float) -> None:
    """Move both clocks until every run is COMPLETED (bounded)."""
    for _ in range(200):
        found = _statuses(stack)
        assert "FAILED" not in found, found
        if found.get("COMPLETED") == runs:
            return
        clocks.sleep(step)
    raise AssertionError(f"runs still not completed: {_statuses(stack)}")


def test_a_flood_does_not_hold_back_another_team_and_weights_share_the_slots(
    stack: Stack,
) -> None:
    a, b = _team(stack, "team-a"), _team(stack, "team-b")
    answers = _many(stack, a, [f"A {n}" for n in range(60)])
    assert all(r.status_code == 200 for r in answers)
    held = [r for r in answers if "x-queue-position" in r.headers]
    assert len(held) == 40  # the first 20 filled the window
    single = _submit(stack, b, "B single")
    assert single.headers["x-queue-position"] == "1"  # before all 40 of A's
    clocks = BothClocks(stack)
    try:
        clocks.sleep(WINDOW + MARGIN)  # the first 20 calls leave the window together
        batches = _batches(stack)
        assert len(batches) == 2
        assert "B single" in batches[1]  # in the first slots that freed, before 40 of A's

        # B's weight doubles and it floods too: while both wait, B gets 2 of every 3 slots.
        changed = httpx.patch(
            f"{stack.gateway.url}/admin/teams/team-b/limits", json={"weight": 2}, headers=ADMIN
        )
        assert changed.status_code == 200, changed.text
        flood = _many(stack, b, [f"B {n}" for n in range(30)])
        assert all(r.status_code == 200 for r in flood)
        for _ in range(10):
            if len(_sent(stack)) == 91:
                break
            clocks.sleep(WINDOW + MARGIN)
        sent = _sent(stack)
        assert len(sent) == len(set(sent)) == 91  # each run sent once
        shares, total = {"A": 0, "B": 0}, 0
        for batch in _batches(stack)[2:]:
            a_left = 40 - 19 - shares["A"]  # the first slots took 19 of A's 40 held runs
            if total and (a_left <= 0 or shares["B"] >= 30):
                break  # one team's backlog is gone: the other may take every slot
            for scene in batch:
                shares[scene[0]] += 1
            total += len(batch)
            still_both = 40 - 19 - shares["A"] > 0 and shares["B"] < 30
            if still_both:
                assert abs(shares["B"] - 2 * total / 3) <= 1, (shares, batch)
        assert total >= 20  # at least one full window while both were backlogged
        _all_done(stack, 91, clocks, 20.0)
    finally:
        clocks.close()
    assert _busiest(stack) <= PER_MINUTE
    assert all(e["status"] != 429 for e in _journal(stack))


def test_urgency_overtakes_its_own_team_never_another(stack: Stack) -> None:
    a, b = _team(stack, "team-a"), _team(stack, "team-b")
    answers = _many(stack, a, [f"A {n}" for n in range(40)])  # 20 sent, 20 wait
    assert sum("x-queue-position" in r.headers for r in answers) == 20
    others = _many(stack, b, [f"B {n}" for n in range(20)])  # 20 of B's wait too
    assert all("x-queue-position" in r.headers for r in others)
    urgent = _submit(stack, a, "A urgent", priority="u=0")
    assert int(urgent.headers["x-queue-position"]) <= 2  # A's next slot, behind B's first
    clocks = BothClocks(stack)
    try:
        clocks.sleep(WINDOW + MARGIN)  # 20 slots free at once for 41 waiting runs
    finally:
        clocks.close()
    batches = _batches(stack)
    assert len(batches) == 2
    freed = batches[1]
    assert len(freed) == PER_MINUTE
    assert "A urgent" in freed  # before 10 of its own team's earlier runs
    # B's share of the slots is what it would be without the urgent run: half, +-1.
    assert abs(sum(s.startswith("B ") for s in freed) - PER_MINUTE / 2) <= 1


def test_the_balance_is_watched_told_once_and_guards_the_submits(
    tmp_path: Path, receiver: Receiver
) -> None:
    secret = new_secret()
    env = {
        "PROXY_UPSTREAM_REQUESTS_PER_MINUTE": str(PER_MINUTE),
        "PROXY_COMPANY_WEBHOOK_URL": receiver.url,
        "PROXY_COMPANY_WEBHOOK_SECRET": secret,
        "PROXY_CREDITS_CHECK_INTERVAL": "300",
    }
    with running_stack(
        tmp_path / "gateway.sqlite", "alpha", "--plan", str(PER_MINUTE),
        "--time-scale", RUN_SCALE, env=env,
    ) as stack:  # fmt: skip
        accounts = httpx.get(f"{stack.fake.url}/__admin/accounts").json()["accounts"]
        label = accounts[0]["key"]
        set_credits = httpx.post(
            f"{stack.fake.url}/__admin/credits", json={"key": label, "credits": 3 * PRICE}
        )
        assert set_credits.status_code == 200, set_credits.text
        key = _team(stack, "team-a")
        clocks = BothClocks(stack)
        try:
            clocks.sleep(300.0)  # the first reading is due
            eventually(lambda: len(receiver.received) == 1, what="account.credits_low")
            for n in range(3):
                assert _submit(stack, key, f"paid {n}").status_code == 200
            refused = _submit(stack, key, "the fourth")
            assert refused.status_code == 406, refused.text
            assert "cannot pay for another run" in refused.json()["error"]
            assert len(stack.journal("submit")) == 3  # no upstream call for the 4th
            credits = httpx.get(f"{stack.fake.url}/__admin/accounts").json()["accounts"]
            assert credits[0]["credits"] == pytest.approx(0.0, abs=1e-6)  # the fake charged
            clocks.sleep(300.0)  # another reading, still low: told once only
            page = _console_page(stack, "upstream")
            now = httpx.post(
                f"{stack.gateway.url}/admin/clock/advance", json={"seconds": 0}, headers=ADMIN
            ).json()["now"]
        finally:
            clocks.close()
        assert len(receiver.received) == 1
        event = verify_webhook(
            receiver.received[0].body,
            receiver.received[0].headers,
            secret,
            now=dt.datetime.fromtimestamp(now, dt.UTC),
        )
        assert event.type == "account.credits_low"
        assert json.loads(receiver.received[0].body)["data"]["runs_left"] == 3
        assert 'data-test="hours-left">0.0 hours left' in page
        metrics = httpx.get(f"{stack.gateway.url}/metrics", headers=ADMIN).text
        assert "segmind_gateway_upstream_credits 0.0" in metrics
