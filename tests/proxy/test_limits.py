"""Quotas and budgets through the whole gateway: exact under concurrency, never overshot,
released on every terminal path, and closed (503) when the store cannot check them.

Every team here is made with only the limit under test switched on, so a refusal can only
come from that limit. Both clocks start at 2026-01-01T00:00:00Z (a UTC midnight).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from proxy.core.config import PRICE
from proxy.core.quotas import seconds_to_next_day, seconds_to_next_month
from proxy.db.sqlite import SQLiteBackend
from tests.proxy.harness import Harness, start_harness, stop_harness

pytestmark = pytest.mark.anyio

MakeHarness = Callable[..., Awaitable[Harness]]
NO_LIMITS: dict[str, Any] = {
    "submits_per_minute": None,
    "polls_per_minute": None,
    "max_concurrent": None,
    "daily_budget": None,
    "monthly_budget": None,
}


def limited(**limits: Any) -> dict[str, Any]:
    return {**NO_LIMITS, **limits}


def scene(i: int) -> dict[str, str]:
    """A distinct, valid body per i: each is its own generation (a MISS)."""
    return {"Scene_1": f"A knight rides through the valley, take {i}"}


async def credits(h: Harness, key: str) -> float:
    answer = await h.http.get("/v1/get-user-credits", headers={"x-api-key": key})
    assert answer.status_code == 200, answer.text
    left: float = answer.json()["credits"]
    return left


async def settle_run(h: Harness, key: str, request_id: str, seconds: float = 2000) -> str:
    await h.advance(seconds)
    status: str = (await h.poll(key, request_id)).json()["status"]
    return status


def refusal(answer: httpx.Response, status: int, limit: str) -> dict[str, Any]:
    """Assert a JSON refusal naming `limit`, with a whole-second Retry-After; return it."""
    assert answer.status_code == status, answer.text
    body: dict[str, Any] = answer.json()
    assert body["limit"] == limit
    assert isinstance(body["error"], str)
    assert body["error"]
    assert answer.headers["retry-after"] == str(body["retry_after"])
    assert int(answer.headers["retry-after"]) >= 1
    return body


def rows(h: Harness, query: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(h.gateway.settings.db) as db:
        found = db.execute(query).fetchall()
    db.close()
    return found


# -- the submit rate -------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [9, 12])
async def test_200_concurrent_distinct_submits_admit_exactly_the_limit(
    harness: Harness, limit: int
) -> None:
    key = harness.team("rush", **limited(submits_per_minute=limit))
    answers = await asyncio.gather(*(harness.submit(key, scene(i)) for i in range(200)))

    admitted = [a for a in answers if a.status_code == 200]
    assert len(admitted) == limit
    assert {a.headers["x-cache-status"] for a in admitted} == {"MISS"}
    assert len(harness.upstream_calls("submit")) == limit
    # Each admission saw its own place in the quota: remaining counts down to 0.
    policy = f'"submits";q={limit};w=60'
    assert {a.headers["ratelimit-policy"] for a in admitted} == {policy}
    remaining = sorted(
        int(a.headers["ratelimit"].split(";")[1].removeprefix("r=")) for a in admitted
    )
    assert remaining == list(range(limit))

    wait = -(-60 // limit)  # the real wait: one emission interval, rounded up
    refused = [a for a in answers if a.status_code != 200]
    assert len(refused) == 200 - limit
    for answer in refused:
        body = refusal(answer, 429, "submits_per_minute")
        assert body["retry_after"] == wait
        assert "submit rate limit" in body["error"]
        assert answer.headers["ratelimit-policy"] == policy
        assert answer.headers["ratelimit"] == f'"submits";r=0;t={wait}'

    # The wait is real: a moment before it, still refused; after it, exactly one passes.
    await harness.advance(wait - 1)
    early = await harness.submit(key, scene(1000))
    assert refusal(early, 429, "submits_per_minute")["retry_after"] == 1
    await harness.advance(1)
    late = await asyncio.gather(*(harness.submit(key, scene(2000 + i)) for i in range(5)))
    assert sorted(a.status_code for a in late) == [200, 429, 429, 429, 429]


async def test_200_concurrent_identical_submits_admit_exactly_the_limit(harness: Harness) -> None:
    key = harness.team("copycats", **limited(submits_per_minute=10))
    answers = await asyncio.gather(*(harness.submit(key, scene(7)) for _ in range(200)))

    statuses = Counter(
        a.headers["x-cache-status"] if a.status_code == 200 else a.status_code for a in answers
    )
    assert statuses == {"MISS": 1, "JOIN": 9, 429: 190}
    assert len(harness.upstream_calls("submit")) == 1
    ids = {a.json()["request_id"] for a in answers if a.status_code == 200}
    assert len(ids) == 10, "every admitted request has its own id"
    for answer in answers:
        if answer.status_code == 429:
            assert refusal(answer, 429, "submits_per_minute")["retry_after"] == 6


async def test_two_gateways_on_one_store_share_the_limit_exactly(make_harness: MakeHarness) -> None:
    """Two workers on one SQLite file: the check and the spend are one transaction, so the
    limit holds across them too."""
    first = await make_harness()
    second = await start_harness(Path(first.gateway.settings.db))
    try:
        key = first.team("split", **limited(submits_per_minute=10))
        answers = await asyncio.gather(
            *(first.submit(key, scene(i)) for i in range(0, 200, 2)),
            *(second.submit(key, scene(i)) for i in range(1, 200, 2)),
        )
    finally:
        await stop_harness(second)
    assert sum(a.status_code == 200 for a in answers) == 10
    assert sum(a.status_code == 429 for a in answers) == 190
    assert len(first.upstream_calls("submit")) + len(second.upstream_calls("submit")) == 10


# -- budgets ---------------------------------------------------------------------------------


@pytest.mark.parametrize("budget", [3 * PRICE + 1, 3 * PRICE, PRICE + PRICE + PRICE])
async def test_a_daily_budget_of_three_runs_admits_exactly_three_of_50(
    harness: Harness, budget: float
) -> None:
    key = harness.team("spender", **limited(daily_budget=budget))
    answers = await asyncio.gather(*(harness.submit(key, scene(i)) for i in range(50)))

    assert sum(a.status_code == 200 for a in answers) == 3
    assert len(harness.upstream_calls("submit")) == 3
    day_left = seconds_to_next_day(harness.clock.now())
    assert day_left == 86400
    for answer in answers:
        if answer.status_code != 200:
            body = refusal(answer, 406, "daily_budget")
            assert body["retry_after"] == 86400, "the real wait: until UTC midnight"
            assert "daily budget exhausted" in body["error"]
    # Never overshot, not even by a rounding error.
    (spent,) = rows(harness, "SELECT amount FROM spend WHERE period = '2026-01-01'")
    assert spent[0] == pytest.approx(3 * PRICE)
    assert spent[0] <= budget + 1e-9
    assert await credits(harness, key) == pytest.approx(budget - 3 * PRICE, abs=1e-4)


async def test_the_daily_budget_comes_back_at_utc_midnight(harness: Harness) -> None:
    key = harness.team("daily", **limited(daily_budget=PRICE + 1))
    assert (await harness.submit(key, scene(1))).status_code == 200
    refusal(await harness.submit(key, scene(2)), 406, "daily_budget")
    await harness.advance(2000)
    refused = await harness.submit(key, scene(2))
    wait = refusal(refused, 406, "daily_budget")["retry_after"]
    assert wait == 86400 - 2000
    await harness.advance(wait - 1)
    refusal(await harness.submit(key, scene(2)), 406, "daily_budget")
    await harness.advance(1)
    assert (await harness.submit(key, scene(2))).status_code == 200
    assert await credits(harness, key) == pytest.approx(1.0, abs=1e-4)


async def test_a_monthly_budget_is_not_reset_by_a_new_day(harness: Harness) -> None:
    key = harness.team("monthly", **limited(monthly_budget=2 * PRICE + 1))
    answers = await asyncio.gather(*(harness.submit(key, scene(i)) for i in range(10)))
    assert sum(a.status_code == 200 for a in answers) == 2
    month = seconds_to_next_month(harness.clock.now())
    assert month == 31 * 86400
    for answer in answers:
        if answer.status_code != 200:
            body = refusal(answer, 406, "monthly_budget")
            assert body["retry_after"] == 31 * 86400
            assert "monthly budget exhausted" in body["error"]
    await harness.advance(2000)
    await harness.advance(86400)  # the next day: a monthly budget stays spent
    body = refusal(await harness.submit(key, scene(99)), 406, "monthly_budget")
    assert body["retry_after"] == 30 * 86400 - 2000
    assert await credits(harness, key) == pytest.approx(1.0, abs=1e-4)


async def test_joins_and_hits_cost_nothing_but_count_as_submits(harness: Harness) -> None:
    key = harness.team("frugal", **limited(daily_budget=PRICE, submits_per_minute=3))
    first = await harness.submit(key, scene(1))
    assert first.headers["x-cache-status"] == "MISS"
    # The budget is spent: a different run is refused, and a refusal uses no submit.
    refusal(await harness.submit(key, scene(2)), 406, "daily_budget")
    refusal(await harness.submit(key, scene(2), **{"Cache-Control": "no-cache"}), 406,
            "daily_budget")  # fmt: skip
    for _ in range(2):
        joined = await harness.submit(key, scene(1))
        assert joined.status_code == 200, joined.text
        assert joined.headers["x-cache-status"] == "JOIN"
    # Three submits this minute (MISS, JOIN, JOIN): the 4th is over the rate.
    refusal(await harness.submit(key, scene(1)), 429, "submits_per_minute")
    assert await credits(harness, key) == 0.0

    assert await settle_run(harness, key, first.json()["request_id"]) == "COMPLETED"
    for _ in range(3):
        hit = await harness.submit(key, scene(1))
        assert hit.status_code == 200, hit.text
        assert hit.headers["x-cache-status"] == "HIT"
    refusal(await harness.submit(key, scene(1)), 429, "submits_per_minute")
    assert await credits(harness, key) == 0.0
    assert len(harness.upstream_calls("submit")) == 1
    # A forced fresh run is a paid run: over budget.
    await harness.advance(60)
    refusal(await harness.submit(key, scene(1), **{"Cache-Control": "no-cache"}), 406,
            "daily_budget")  # fmt: skip


@pytest.mark.parametrize(("mode", "charged"), [("charge", PRICE), ("refund", 0.0)])
async def test_what_a_failed_run_costs_follows_the_setting(
    make_harness: MakeHarness, mode: str, charged: float
) -> None:
    harness = await make_harness(failed_runs=mode, fake={"failure_rate": 1.0})
    key = harness.team("unlucky", **limited(daily_budget=10.0))
    answer = await harness.submit(key, scene(1))
    assert answer.status_code == 200, answer.text
    assert await credits(harness, key) == pytest.approx(10.0 - PRICE, abs=1e-4)
    assert await settle_run(harness, key, answer.json()["request_id"]) == "FAILED"
    assert await credits(harness, key) == pytest.approx(10.0 - charged, abs=1e-4)


@pytest.mark.parametrize("mode", ["charge", "refund"])
# (A 429 refuses nothing: the run is held and sent later; see test_upstream_budget.py.)
@pytest.mark.parametrize(("code", "answered"), [(400, 400), (406, 503)])
async def test_a_submit_the_upstream_refused_is_never_charged(
    make_harness: MakeHarness, mode: str, code: int, answered: int
) -> None:
    harness = await make_harness(failed_runs=mode)
    key = harness.team("refused", **limited(daily_budget=10.0))
    harness.fake_state.faults.script("submit", [{"code": code, "times": 5}])
    answer = await harness.drive(harness.submit(key, scene(1)))
    assert answer.status_code == answered, answer.text
    assert await credits(harness, key) == pytest.approx(10.0, abs=1e-4)


@pytest.mark.parametrize(("mode", "charged"), [("charge", PRICE), ("refund", 0.0)])
async def test_a_submit_segmind_may_have_started_costs_what_a_failed_run_costs(
    make_harness: MakeHarness, mode: str, charged: float
) -> None:
    harness = await make_harness(failed_runs=mode)
    key = harness.team("unconfirmed", **limited(daily_budget=10.0))
    # The job is created, then the connection breaks before any answer.
    harness.fake_state.faults.script("submit", [{"fault": "reset", "after": True}])
    answer = await harness.submit(key, scene(1))
    assert answer.status_code == 502, answer.text
    assert len(harness.fake_state.jobs) == 1
    assert "may have started" in answer.json()["error"]
    said = "was charged" if charged else "nothing was charged"
    assert said in answer.json()["error"]
    assert await credits(harness, key) == pytest.approx(10.0 - charged, abs=1e-4)


async def test_a_completed_run_stays_charged(harness: Harness) -> None:
    key = harness.team("paid", **limited(daily_budget=10.0))
    answer = await harness.submit(key, scene(1))
    assert await settle_run(harness, key, answer.json()["request_id"]) == "COMPLETED"
    assert await credits(harness, key) == pytest.approx(10.0 - PRICE, abs=1e-4)


# -- concurrency -----------------------------------------------------------------------------


async def two_running(harness: Harness) -> tuple[str, str]:
    """A team at its concurrency limit of 2; returns its key and its first request's id."""
    key = harness.team("busy", **limited(max_concurrent=2))
    first = await harness.submit(key, scene(1))
    assert first.status_code == 200, first.text
    assert (await harness.submit(key, scene(2))).status_code == 200
    third = await harness.submit(key, scene(3))
    body = refusal(third, 429, "max_concurrent")
    assert body["retry_after"] == 674, "the real wait: the oldest run's expected end"
    assert "concurrency limit" in body["error"]
    # Joining a running generation needs no slot.
    joined = await harness.submit(key, scene(1))
    assert joined.headers["x-cache-status"] == "JOIN"
    await harness.advance(10)
    assert refusal(await harness.submit(key, scene(3)), 429, "max_concurrent")["retry_after"] == 664
    return key, first.json()["request_id"]


async def test_concurrency_is_exact_under_a_burst(harness: Harness) -> None:
    key = harness.team("burst", **limited(max_concurrent=2))
    answers = await asyncio.gather(*(harness.submit(key, scene(i)) for i in range(50)))
    assert sum(a.status_code == 200 for a in answers) == 2
    for answer in answers:
        if answer.status_code != 200:
            refusal(answer, 429, "max_concurrent")


async def test_a_slot_is_released_when_a_run_completes(harness: Harness) -> None:
    key, first = await two_running(harness)
    assert await settle_run(harness, key, first) == "COMPLETED"
    assert (await harness.submit(key, scene(3))).headers["x-cache-status"] == "MISS"


async def test_a_slot_is_released_when_a_run_fails(make_harness: MakeHarness) -> None:
    harness = await make_harness(fake={"failure_rate": 1.0})
    key, first = await two_running(harness)
    assert await settle_run(harness, key, first) == "FAILED"
    answers = [await harness.submit(key, scene(i)) for i in (3, 4, 5)]
    assert [a.status_code for a in answers] == [200, 200, 429]


async def test_a_slot_is_released_when_a_run_passes_its_deadline(
    make_harness: MakeHarness,
) -> None:
    harness = await make_harness(generation_deadline=100.0)
    key, first = await two_running(harness)
    await harness.advance(200)
    body = (await harness.poll(key, first)).json()
    assert body["status"] == "FAILED"
    assert "gave up" in body["error_message"]
    assert (await harness.submit(key, scene(3))).status_code == 200


async def test_a_slot_is_released_when_polling_is_given_up(make_harness: MakeHarness) -> None:
    harness = await make_harness(give_up_after=60.0)
    key, first = await two_running(harness)
    harness.fake_state.faults.script("poll", [{"code": 500, "times": 1000}])
    for _ in range(30):
        await harness.advance(10)
        if (await harness.poll(key, first)).json()["status"] == "FAILED":
            break
    body = (await harness.poll(key, first)).json()
    assert body["status"] == "FAILED"
    assert "gave up" in body["error_message"]
    harness.fake_state.faults.reset()
    assert (await harness.submit(key, scene(3))).status_code == 200


async def test_a_slot_is_released_when_the_submit_fails(harness: Harness) -> None:
    key = harness.team("flaky", **limited(max_concurrent=2))
    assert (await harness.submit(key, scene(1))).status_code == 200
    harness.fake_state.faults.script("submit", [{"code": 500}])
    assert (await harness.submit(key, scene(2))).status_code == 502
    assert (await harness.submit(key, scene(3))).status_code == 200
    refusal(await harness.submit(key, scene(4)), 429, "max_concurrent")


# -- polls -----------------------------------------------------------------------------------


async def test_polls_have_their_own_limit_and_never_count_as_submits(harness: Harness) -> None:
    key = harness.team("pollster", **limited(polls_per_minute=3, submits_per_minute=2))
    other = harness.team("bystander", **limited(polls_per_minute=3))
    submitted = await harness.submit(key, scene(1))
    assert submitted.headers["ratelimit"] == '"submits";r=1;t=30'
    request_id = submitted.json()["request_id"]

    for remaining in (2, 1, 0):
        answer = await harness.poll(key, request_id)
        assert answer.status_code == 200, answer.text
        assert answer.headers["ratelimit-policy"] == '"polls";q=3;w=60'
        assert answer.headers["ratelimit"] == f'"polls";r={remaining};t={60 - 20 * remaining}'
    over = await harness.poll(key, request_id)
    body = refusal(over, 429, "polls_per_minute")
    assert body["retry_after"] == 20
    assert over.headers["ratelimit-policy"] == '"polls";q=3;w=60'
    assert over.headers["ratelimit"] == '"polls";r=0;t=20'

    # Polls used up: the second submit of the minute still passes, and is the last one.
    second = await harness.submit(key, scene(2))
    assert second.status_code == 200, second.text
    assert second.headers["ratelimit"].startswith('"submits";r=0;')
    refusal(await harness.submit(key, scene(3)), 429, "submits_per_minute")
    # Another team's polls are its own.
    mine = (await harness.submit(other, scene(1))).json()["request_id"]
    assert (await harness.poll(other, mine)).status_code == 200

    await harness.advance(19)
    refusal(await harness.poll(key, request_id), 429, "polls_per_minute")
    await harness.advance(1)
    assert (await harness.poll(key, request_id)).status_code == 200


# -- the store -------------------------------------------------------------------------------


async def test_an_unreachable_store_admits_nothing(harness: Harness) -> None:
    key = harness.team("careful", **limited(daily_budget=10.0, submits_per_minute=5))
    backend = harness.gateway.store.backend
    assert isinstance(backend, SQLiteBackend)
    backend.busy_timeout = 0.05
    # The writer thread opens its connection (with the new timeout) on its next write.
    await asyncio.get_running_loop().run_in_executor(backend._writer, backend._close_local)

    locker = sqlite3.connect(harness.gateway.settings.db, isolation_level=None)
    try:
        locker.execute("BEGIN EXCLUSIVE")
        answers = [await harness.submit(key, scene(i)) for i in range(3)]
        for answer in answers:
            assert answer.status_code == 503, answer.text
            assert "store is unavailable" in answer.json()["error"]
            assert "nothing was admitted or charged" in answer.json()["error"]
            assert int(answer.headers["retry-after"]) >= 1
        locker.execute("ROLLBACK")
    finally:
        locker.close()

    assert harness.upstream_calls("submit") == []
    assert rows(harness, "SELECT COUNT(*) FROM requests") == [(0,)]
    assert rows(harness, "SELECT COUNT(*) FROM generations") == [(0,)]
    assert rows(harness, "SELECT COUNT(*) FROM spend") == [(0,)]
    assert rows(harness, "SELECT COUNT(*) FROM rate_state") == [(0,)]

    answer = await harness.submit(key, scene(1))
    assert answer.status_code == 200, answer.text
    assert answer.headers["ratelimit"].startswith('"submits";r=4;'), "no refused submit counted"
    assert await credits(harness, key) == pytest.approx(10.0 - PRICE, abs=1e-4)


async def test_every_answer_to_a_team_carries_the_ratelimit_fields(harness: Harness) -> None:
    key = harness.team(
        "fields",
        **limited(
            submits_per_minute=10, polls_per_minute=60, max_concurrent=1, daily_budget=PRICE + 1
        ),
    )
    answers = [
        await harness.submit(key, scene(1)),  # 200, a MISS
        await harness.submit(key, scene(2)),  # 429, concurrency
        await harness.submit(key, {"Scene_1": 5}),  # 400, bad input
        await harness.http.get("/v1/get-user-credits", headers={"x-api-key": key}),
        await harness.poll(key, "f" * 32),  # 404
    ]
    assert [a.status_code for a in answers] == [200, 429, 400, 200, 404]
    for answer in answers:
        assert answer.headers["ratelimit-policy"].startswith(('"submits";q=10;w=60', '"polls"'))
        assert answer.headers["ratelimit"].startswith(('"submits";r=', '"polls";r='))
    # The refused and bad submits spent no rate: 10 a minute, the MISS took one, polls none.
    assert answers[3].headers["ratelimit"].startswith('"submits";r=9;')
    await settle_run(harness, key, answers[0].json()["request_id"])
    over_budget = await harness.submit(key, scene(3))
    assert over_budget.status_code == 406
    assert over_budget.headers["ratelimit"].startswith('"submits";r=')
