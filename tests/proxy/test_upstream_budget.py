"""The company-wide upstream budget, and paid submits under it (issue 10, items 5, 6, 10).

The budget is a true sliding window kept in the store: no 60 s span ever holds more than
`upstream_requests_per_minute` calls from every process on the store. A submit is answered
at once: sent now if the budget has a slot, else held WAITING (never sent, never charged as
unknown) and sent in admission order as the budget allows, surviving a stop, a restart and
a takeover. In-process gateways on real SQLite files in front of the real fake; the signal
and process cases are in `test_budget_processes.py`.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import anyio
import pytest

from proxy.core.config import PRICE
from proxy.rules.budget import MARGIN, WINDOW
from proxy.store import open_store
from tests.proxy.conftest import MakeHarness
from tests.proxy.harness import Harness, admission_for
from tests.proxy.test_several_gateways import (  # noqa: F401  (fixtures)
    LEASE,
    Pair,
    make_pair,
    pair,
    team,
)

pytestmark = pytest.mark.anyio

BUDGET = 100.0
ANSWER_WITHIN = 10.0  # real seconds a submit may take before the test calls it held hostage


def busiest(times: list[float], span: float = WINDOW) -> int:
    """The most calls in any half-open span (t - span, t] ending on a call."""
    ordered = sorted(times)
    most, start = 0, 0
    for end, at in enumerate(ordered):
        while ordered[start] <= at - span:
            start += 1
        most = max(most, end - start + 1)
    return most


# -- the window, in the store ---------------------------------------------------------


@pytest.mark.parametrize("per_minute", [1, 6, 20])
async def test_no_sixty_seconds_ever_hold_more_calls_than_the_budget(
    tmp_path: Path, per_minute: int
) -> None:
    """GCRA with a burst of N let a sliding minute hold 2N-1 (21 at 20/min): not this."""
    store = open_store(str(tmp_path / "budget.sqlite"))
    granted, now = [], 1_000.0
    try:
        for _ in range(4000):  # demand far above the budget: a call asked every 0.25 s
            if await store.take_upstream("poll", now, per_minute) == 0:
                granted.append(now)
            now += 0.25
    finally:
        store.close()
    assert busiest(granted) == per_minute
    # And it is a limit, not a trickle: the whole budget is used, window after window.
    assert len(granted) >= per_minute * int((now - 1_000.0) // (WINDOW + MARGIN))


async def test_processes_on_one_store_share_one_window(tmp_path: Path) -> None:
    path = str(tmp_path / "budget.sqlite")
    stores = [open_store(path), open_store(path), open_store(path)]
    granted, now, per_minute = [], 5_000.0, 10
    try:
        for step in range(3000):
            if await stores[step % 3].take_upstream("poll", now, per_minute) == 0:
                granted.append(now)
            now += 0.1
    finally:
        for store in stores:
            store.close()
    assert busiest(granted) == per_minute


async def test_a_refused_call_is_told_the_true_wait(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "budget.sqlite"))
    try:
        for at in (0.0, 10.0, 20.0):
            assert await store.take_upstream("poll", 100.0 + at, 3) == 0
        wait = await store.take_upstream("poll", 130.0, 3)
        assert wait == pytest.approx(100.0 + WINDOW + MARGIN - 130.0)
        assert await store.take_upstream("poll", 130.0 + wait - 0.01, 3) > 0
        assert await store.take_upstream("poll", 130.0 + wait, 3) == 0
    finally:
        store.close()


async def test_polls_step_aside_while_a_submit_waits(tmp_path: Path) -> None:
    """Submits before polls: once a submit was refused for want of a slot, a poll asking
    first when the slot frees does not take it; the submit does."""
    store = open_store(str(tmp_path / "budget.sqlite"))
    try:
        for at in (0.0, 1.0):
            assert await store.take_upstream("poll", at, 2) == 0
        wait = await store.take_upstream("submit", 5.0, 2)
        assert wait > 0
        freed = 5.0 + wait
        assert await store.take_upstream("poll", freed, 2) > 0  # the slot is the submit's
        assert await store.take_upstream("submit", freed, 2) == 0
        assert await store.upstream_calls_between(freed, freed) == [freed]
    finally:
        store.close()


# -- submits answered at once ---------------------------------------------------------


async def submit_now(harness: Harness, key: str, body: dict[str, str]) -> dict[str, Any]:
    """A submit must be answered at once, whatever the budget: a bound in real seconds so a
    gateway that waits for the budget fails the test instead of hanging it."""
    answer = await asyncio.wait_for(harness.submit(key, body), ANSWER_WITHIN)
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-cache-status"] == "MISS"
    document: dict[str, Any] = answer.json()
    assert document["status"] == "QUEUED"
    # A held run's sender asks the budget at once; let it, before the test moves time.
    await harness.gateway.poller.settle()
    return document


async def statuses(harness: Harness, team_name: str, request_ids: list[str]) -> list[str]:
    store = harness.gateway.store
    team_id = (await store.team(team_name)).id
    found = [await store.request(team_id, rid) for rid in request_ids]
    return [f[1].status for f in found if f is not None]


async def test_a_submit_over_the_budget_is_held_not_held_hostage(
    make_harness: MakeHarness,
) -> None:
    harness = await make_harness(upstream_requests_per_minute=2)
    key = harness.team("alpha")
    ids = [
        (await submit_now(harness, key, {"Scene_1": f"run {n}"}))["request_id"] for n in range(4)
    ]
    # Two went out; two wait in the store, never sent, and poll QUEUED like any queued run.
    assert len(harness.upstream_calls("submit")) == 2
    assert (await statuses(harness, "alpha", ids))[2:] == ["WAITING", "WAITING"]
    assert await harness.gateway.store.waiting_runs() == 2
    for place, rid in enumerate(ids[2:], start=1):
        # Segmind's shape, and one extra field: where the run stands in the fair queue.
        polled = (await harness.poll(key, rid)).json()
        assert polled["status"] == "QUEUED"
        assert set(polled) == {"status", "queue"}
        assert polled["queue"]["position"] == place
    done = [await harness.advance_until_done(key, rid, step=10.0) for rid in ids]
    assert [d["status"] for d in done] == ["COMPLETED"] * 4
    # Sent in admission order, and paid once each.
    bodies = [e["body"]["Scene_1"] for e in harness.upstream_calls("submit")]
    assert bodies == [f"run {n}" for n in range(4)]
    assert await harness.credits(key) == pytest.approx(BUDGET - 4 * PRICE)
    calls = harness.upstream_calls("submit") + harness.upstream_calls("poll")
    assert busiest([float(e["at"]) for e in calls]) <= 2
    assert [e for e in harness.fake_state.journal.entries() if e["status"] == 429] == []


async def test_a_later_submit_never_overtakes_a_held_one(make_harness: MakeHarness) -> None:
    harness = await make_harness(upstream_requests_per_minute=1)
    key = harness.team("alpha")
    first = await submit_now(harness, key, {"Scene_1": "first"})
    held = await submit_now(harness, key, {"Scene_1": "held"})
    await harness.advance(WINDOW + MARGIN)  # the held one's slot
    later = await submit_now(harness, key, {"Scene_1": "later"})  # the window is full again
    assert [e["body"]["Scene_1"] for e in harness.upstream_calls("submit")] == ["first", "held"]
    await harness.advance(WINDOW + MARGIN)
    sent = [e["body"]["Scene_1"] for e in harness.upstream_calls("submit")]
    assert sent == ["first", "held", "later"]
    assert {first["request_id"], held["request_id"], later["request_id"]}


async def test_a_stop_does_not_wait_for_the_budget_and_held_runs_survive_a_restart(
    make_harness: MakeHarness,
) -> None:
    harness = await make_harness(upstream_requests_per_minute=1)
    key = harness.team("alpha")
    sent = await submit_now(harness, key, {"Scene_1": "sent"})
    held = [
        (await submit_now(harness, key, {"Scene_1": f"held {n}"}))["request_id"] for n in (1, 2)
    ]
    await harness.clock.wait_for_sleepers(1)
    # The stop is bounded in real time; nothing is waited out on the (virtual) budget.
    await asyncio.wait_for(harness.restart(), ANSWER_WITHIN)
    assert await statuses(harness, "alpha", held) == ["WAITING", "WAITING"]
    for rid in [sent["request_id"], *held]:
        done = await harness.advance_until_done(key, rid, step=10.0)
        assert done["status"] == "COMPLETED", done
    assert len(harness.upstream_calls("submit")) == 3
    assert await harness.credits(key) == pytest.approx(BUDGET - 3 * PRICE)


async def test_a_held_run_that_segmind_refuses_fails_refunded_with_its_webhook(
    make_harness: MakeHarness,
) -> None:
    harness = await make_harness(
        upstream_requests_per_minute=1, webhook_allow_networks=["127.0.0.0/8"]
    )
    key = harness.team("alpha")
    await submit_now(harness, key, {"Scene_1": "sent"})
    answer = await asyncio.wait_for(
        harness.submit(key, {"Scene_1": "held"}, **{"x-webhook-url": "http://127.0.0.1:9/h"}),
        ANSWER_WITHIN,
    )
    assert answer.status_code == 200, answer.text
    held = answer.json()["request_id"]
    await harness.gateway.poller.settle()
    harness.fake_state.faults.script("submit", [{"code": 502}])
    await harness.advance(WINDOW + MARGIN)
    polled = (await harness.poll(key, held)).json()
    assert polled["status"] == "FAILED"
    assert "Segmind failed to submit" in polled["error_message"]
    assert await harness.credits(key) == pytest.approx(BUDGET - PRICE)  # the first only
    # Its caller was answered QUEUED long ago: it hears of the failure by webhook.
    store = harness.gateway.store
    events = [m.event for m, _ in await store.messages_for_request(None, held)]
    assert events == ["job.failed"]


# -- takeover -------------------------------------------------------------------------


async def test_a_dead_gateways_held_run_is_sent_by_the_taker_never_charged_as_unknown(
    pair: Pair,  # noqa: F811
) -> None:
    key = await team(pair)
    store = pair.a.store
    ask = admission_for(
        await store.team("alpha"), {"Scene_1": "A held knight"}, instance="gateway-c"
    )
    # What a third gateway leaves when it dies while the run waits for the budget.
    await store.heartbeat("gateway-c", pair.b_wall.now() + LEASE)
    await store.admit(ask, pair.harness.clock.now())
    await pair.beat(3)  # c's lease holds: it may still send it
    assert pair.harness.upstream_calls("submit") == []
    await pair.beat(1)  # c is gone: one of a and b takes it and sends it
    for _ in range(20):
        await pair.advance(7)
        if await pair.status(pair.b_http, key, ask.request_id) == "COMPLETED":
            break
    assert await pair.status(pair.b_http, key, ask.request_id) == "COMPLETED"
    assert len(pair.harness.upstream_calls("submit")) == 1


# -- cheap refusals before expensive work (item 10) -------------------------------------


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The hosts looked up in DNS, in order; each answers a public address."""
    seen: list[str] = []

    async def counted(host: str, *args: Any, **kwargs: Any) -> list[Any]:
        seen.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", 0))]

    monkeypatch.setattr(anyio, "getaddrinfo", counted)
    return seen


async def test_a_rate_limited_submit_with_a_webhook_costs_no_dns_lookup(
    harness: Harness, lookups: list[str]
) -> None:
    key = harness.team("alpha", submits_per_minute=1)
    hook = {"x-webhook-url": "https://hooks.example.com/done"}
    first = await harness.submit(key, {"Scene_1": "one"}, **hook)
    assert first.status_code == 200, first.text
    assert lookups == ["hooks.example.com"]  # the lookup is seen when it happens
    refused = await harness.submit(key, {"Scene_1": "two"}, **hook)
    assert refused.status_code == 429, refused.text
    assert "submit rate limit" in refused.json()["error"]
    assert lookups == ["hooks.example.com"]  # none for the refused one


async def test_a_team_at_its_concurrency_limit_costs_no_dns_lookup(
    harness: Harness, lookups: list[str]
) -> None:
    key = harness.team("alpha", max_concurrent=1)
    hook = {"x-webhook-url": "https://hooks.example.com/done"}
    assert (await harness.submit(key, {"Scene_1": "one"}, **hook)).status_code == 200
    refused = await harness.submit(key, {"Scene_1": "two"}, **hook)
    assert refused.status_code == 429, refused.text
    assert "concurrency limit" in refused.json()["error"]
    assert len(lookups) == 1
    # A JOIN of the running run takes no slot: it is not refused, and is looked up.
    joined = await harness.submit(key, {"Scene_1": "one"}, **hook)
    assert joined.headers["x-cache-status"] == "JOIN"
    assert len(lookups) == 2
