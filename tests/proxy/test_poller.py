"""The poller: one loop per generation moves it forward; clients are answered from the store.

Segmind's poll answers are scripted on the real fake (`faults.script("poll", ...)`). The
poller's schedule runs on the gateway's virtual clock: `advance(7)` is one poll interval.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from fakeserver.jobs import FAILURE_REASONS
from proxy.core.config import PRICE
from proxy.db import StorageUnavailable
from tests.proxy.conftest import MakeHarness
from tests.proxy.harness import UPSTREAM_KEY, Harness, admission_for

pytestmark = pytest.mark.anyio

KNIGHT = {"Scene_1": "A knight crossing a frozen lake"}
INTERVAL = 7.0  # the default poll interval
SHORT_RUNS = {"time_scale": 0.1}  # runs of about 67 s instead of 11 minutes


def upstream_polls(harness: Harness) -> list[dict[str, Any]]:
    return harness.upstream_calls("poll")


async def submitted(harness: Harness, key: str, body: dict[str, Any] | None = None) -> str:
    answer = await harness.submit(key, body or KNIGHT)
    assert answer.status_code == 200, answer.text
    request_id: str = answer.json()["request_id"]
    return request_id


async def status_of(harness: Harness, key: str, request_id: str) -> dict[str, Any]:
    answer = await harness.poll(key, request_id)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def test_the_first_upstream_poll_comes_one_interval_after_the_submit(
    harness: Harness,
) -> None:
    key = harness.team("alpha")
    request_id = await submitted(harness, key)
    await harness.advance(INTERVAL - 1)
    assert upstream_polls(harness) == []
    await harness.advance(1)
    assert len(upstream_polls(harness)) == 1
    assert (await status_of(harness, key, request_id))["status"] == "QUEUED"


async def test_upstream_poll_errors_are_retried_and_the_run_still_completes(
    make_harness: MakeHarness,
) -> None:
    harness = await make_harness(fake=SHORT_RUNS)
    key = harness.team("alpha")
    request_id = await submitted(harness, key)
    harness.fake_state.faults.script(
        "poll", [{"code": 500, "times": 2}, {"code": 502}, {"code": 504}]
    )
    for _ in range(4):
        await harness.advance(INTERVAL)
        assert (await status_of(harness, key, request_id))["status"] == "QUEUED"
    assert [e["status"] for e in upstream_polls(harness)] == [500, 500, 502, 504]
    done = await harness.advance_until_done(key, request_id, step=INTERVAL)
    assert done["status"] == "COMPLETED"
    assert upstream_polls(harness)[-1]["status"] == 200
    assert len(harness.upstream_calls("submit")) == 1


async def test_polls_that_fail_past_give_up_after_fail_the_run_and_free_its_slot(
    make_harness: MakeHarness,
) -> None:
    harness = await make_harness(give_up_after=120, failed_runs="refund")
    key = harness.team("alpha", max_concurrent=1)
    request_id = await submitted(harness, key)
    harness.fake_state.faults.script("poll", [{"code": 500, "times": 1000}])
    failed = await harness.advance_until_done(key, request_id, step=INTERVAL, limit=600)

    assert failed["status"] == "FAILED"
    assert failed["error_message"].startswith("gave up")
    assert "120 s" in failed["error_message"]
    assert UPSTREAM_KEY not in str(failed)
    # Failed only once the failures had lasted give_up_after, with backoff in between.
    polls = upstream_polls(harness)
    assert polls[-1]["at"] - polls[0]["at"] >= 120
    assert len(polls) < 120 / INTERVAL
    assert harness.gateway.poller.tracked == 0
    # The slot is free again (and the run refunded, as this gateway is set to).
    assert await harness.credits(key) == pytest.approx(100.0)
    harness.fake_state.faults.reset()
    assert (await harness.submit(key, {"Scene_1": "Another run"})).status_code == 200


async def test_a_run_the_upstream_no_longer_knows_fails_with_a_clear_error(
    make_harness: MakeHarness,
) -> None:
    # Results kept 60 s here: a 404 past that is final, whatever the give-up streak says.
    harness = await make_harness(result_ttl=60.0, cache_ttl=10.0)
    made = harness.new_team("alpha", max_concurrent=1)
    request_id = await submitted(harness, made.key)
    harness.fake_state.faults.script("poll", [{"code": 404, "times": 1000}])
    for _ in range(20):  # its polls answer 404 too once the result is past its life
        await harness.advance(INTERVAL)
    found = await harness.gateway.store.request(made.team.id, request_id)
    assert found is not None
    run = found[1]
    assert run.status == "FAILED"
    assert run.error is not None
    assert "no longer knows" in run.error
    polls = upstream_polls(harness)
    assert 60 <= polls[-1]["at"] - run.created_at < 60 + 2 * INTERVAL  # at its age, not later
    assert len(polls) >= 2  # the 404s of its first minute were retried
    final = len(polls)
    await harness.advance(10 * INTERVAL)
    assert len(upstream_polls(harness)) == final  # a 404 past the results' life is final
    assert (await harness.submit(made.key, {"Scene_1": "Another run"})).status_code == 200


async def test_a_404_for_a_run_seconds_old_is_retried_and_the_run_completes(
    make_harness: MakeHarness,
) -> None:
    """An upstream restart or a proxy's hiccup answers 404 for a run just sent: the run is
    too young for its results to have expired, so the poll is retried like any other."""
    harness = await make_harness(fake=SHORT_RUNS)
    key = harness.team("alpha")
    request_id = await submitted(harness, key)
    harness.fake_state.faults.script("poll", [{"code": 404, "times": 2}])
    done = await harness.advance_until_done(key, request_id, step=INTERVAL, limit=600)
    assert done["status"] == "COMPLETED"
    assert [p["status"] for p in upstream_polls(harness)][:2] == [404, 404]


async def test_a_run_answered_404_for_the_whole_give_up_time_says_what_happened(
    make_harness: MakeHarness,
) -> None:
    harness = await make_harness(give_up_after=120.0)
    key = harness.team("alpha", max_concurrent=1)
    request_id = await submitted(harness, key)
    harness.fake_state.faults.script("poll", [{"code": 404, "times": 1000}])
    failed = await harness.advance_until_done(key, request_id, step=INTERVAL, limit=600)
    assert failed["status"] == "FAILED"
    assert failed["error_message"].startswith("gave up")
    assert "404" in failed["error_message"]
    assert "submit it again" in failed["error_message"]


async def test_a_run_past_the_generation_deadline_is_failed(make_harness: MakeHarness) -> None:
    harness = await make_harness(generation_deadline=300)
    key = harness.team("alpha", max_concurrent=1)
    # Segmind keeps the run PROCESSING, the whole time (until its result would expire).
    harness.fake_state.faults.script(
        "poll", [{"status": 200, "body": {"status": "PROCESSING", "output": ""}, "times": 100}]
    )
    request_id = await submitted(harness, key)
    failed = await harness.advance_until_done(key, request_id, step=INTERVAL, limit=600)
    assert failed["status"] == "FAILED"
    assert failed["error_message"].startswith("gave up")
    assert "300 s" in failed["error_message"]
    assert harness.clock.now() - harness.fake_state.journal.entries("submit")[0]["at"] <= 320
    polls = len(upstream_polls(harness))
    await harness.advance(10 * INTERVAL)
    assert len(upstream_polls(harness)) == polls  # polling stopped
    assert harness.gateway.poller.tracked == 0
    assert (await harness.submit(key, {"Scene_1": "Another run"})).status_code == 200


async def test_a_hundred_clients_polling_cost_the_upstream_only_the_pollers_polls(
    make_harness: MakeHarness,
) -> None:
    harness = await make_harness(fake=SHORT_RUNS)
    key = harness.team("alpha", submits_per_minute=None, polls_per_minute=None)
    ids = [await submitted(harness, key) for _ in range(100)]  # 1 MISS, 99 JOIN
    assert len(harness.upstream_calls("submit")) == 1

    gateway_polls, steps = 0, 0
    while True:
        before = len(upstream_polls(harness))
        answers = await asyncio.gather(*(harness.poll(key, i) for i in ids))
        gateway_polls += len(answers)
        assert len(upstream_polls(harness)) == before  # served from the store
        statuses = {a.json()["status"] for a in answers}
        assert len(statuses) == 1  # every client sees the one generation
        if statuses == {"COMPLETED"}:
            break
        await harness.advance(INTERVAL)
        steps += 1
        assert len(upstream_polls(harness)) == before + 1  # one poll per interval, in all
        assert steps < 100

    assert len(upstream_polls(harness)) == steps
    assert gateway_polls == 100 * (steps + 1)


async def test_a_restarted_gateway_resumes_polling_and_the_run_completes(
    make_harness: MakeHarness,
) -> None:
    harness = await make_harness(fake=SHORT_RUNS)
    key = harness.team("alpha")
    request_id = await submitted(harness, key)
    await harness.advance(INTERVAL)
    assert len(upstream_polls(harness)) == 1

    await harness.restart()  # a new gateway process on the same store file and upstream
    assert harness.gateway.poller.tracked == 1
    done = await harness.advance_until_done(key, request_id, step=INTERVAL)
    assert done["status"] == "COMPLETED"
    assert len(upstream_polls(harness)) > 1
    assert len(harness.upstream_calls("submit")) == 1  # resumed, never resubmitted
    assert await harness.credits(key) == pytest.approx(100.0 - PRICE)
    # The finished run is in the cache the new process reads.
    again = await harness.submit(key, KNIGHT)
    assert again.headers["x-cache-status"] == "HIT"


async def test_a_restart_keeps_the_poll_schedule(make_harness: MakeHarness) -> None:
    harness = await make_harness()
    key = harness.team("alpha")
    await submitted(harness, key)
    await harness.advance(INTERVAL)
    await harness.advance(3)
    await harness.restart()
    await harness.advance(3)
    assert len(upstream_polls(harness)) == 1  # next poll is due 7 s after the last one
    await harness.advance(1)
    assert len(upstream_polls(harness)) == 2


async def test_an_unknown_upstream_status_is_passed_through_as_not_finished(
    harness: Harness,
) -> None:
    key = harness.team("alpha")
    request_id = await submitted(harness, key)
    harness.fake_state.faults.script(
        "poll", [{"status": 200, "body": {"status": "ON_HOLD", "output": ""}, "times": 2}]
    )
    await harness.advance(INTERVAL)
    answer = await harness.poll(key, request_id)
    assert answer.json() == {"status": "ON_HOLD", "output": ""}
    await harness.advance(INTERVAL)
    assert (await status_of(harness, key, request_id))["status"] == "ON_HOLD"
    assert harness.gateway.poller.tracked == 1  # not terminal: still polled
    done = await harness.advance_until_done(key, request_id, step=300)
    assert done["status"] == "COMPLETED"


async def test_a_failed_runs_reason_is_passed_through_under_both_keys(
    make_harness: MakeHarness,
) -> None:
    harness = await make_harness(fake={"failure_rate": 1.0, "failure_key": "error"})
    key = harness.team("alpha")
    request_id = await submitted(harness, key)
    failed = await harness.advance_until_done(key, request_id)
    assert failed["status"] == "FAILED"
    assert failed["error_message"] == failed["error"]
    assert failed["error"] in FAILURE_REASONS  # Segmind's own words, under `error` only


async def test_an_upstream_429_on_a_poll_pauses_every_poll_loop(harness: Harness) -> None:
    key = harness.team("alpha")
    await submitted(harness, key, {"Scene_1": "One run"})
    await submitted(harness, key, {"Scene_1": "Another run"})
    harness.fake_state.faults.script("poll", [{"code": 429, "headers": {"Retry-After": "30"}}])
    await harness.advance(INTERVAL)
    # The other loop, due at the same moment, polled just before or waits out the pause.
    statuses = [e["status"] for e in upstream_polls(harness)]
    assert statuses in ([429], [429, 200], [200, 429]), statuses
    for _ in range(4):  # up to 36 s after the 429: nobody polls, not even the other run
        await harness.advance(INTERVAL)
    await harness.advance(1)
    assert len(upstream_polls(harness)) == len(statuses)
    await harness.advance(2)  # 30 s after the 429, and a bit
    assert len(upstream_polls(harness)) == len(statuses) + 2
    assert [e["status"] for e in upstream_polls(harness)][-2:] == [200, 200]


async def test_the_global_upstream_budget_caps_submits_and_polls_together(
    make_harness: MakeHarness,
) -> None:
    per_minute = 6  # one upstream call per 10 s, after a burst of 6
    harness = await make_harness(fake=SHORT_RUNS, upstream_requests_per_minute=per_minute)
    key = harness.team("alpha")
    ids = [await submitted(harness, key, {"Scene_1": f"run {n}"}) for n in range(5)]
    start = harness.clock.now()
    for _ in range(200):
        await harness.advance(INTERVAL)
        calls = harness.fake_state.journal.entries()
        elapsed = harness.clock.now() - start
        assert len(calls) <= per_minute + elapsed / (60 / per_minute) + 1e-9
        statuses = [(await status_of(harness, key, i))["status"] for i in ids]
        if set(statuses) == {"COMPLETED"}:
            break
    else:
        pytest.fail(f"runs not finished: {statuses}")
    # Five loops each wanting a poll every 7 s would have made far more calls.
    assert len(upstream_polls(harness)) < 5 * elapsed / INTERVAL / 2


async def test_a_run_cut_off_mid_submit_by_a_restart_is_failed_not_resubmitted(
    harness: Harness,
) -> None:
    key = harness.team("alpha", max_concurrent=1)
    store = harness.gateway.store
    ask = admission_for(await store.team("alpha"), KNIGHT)
    # The state a crash leaves between sending a run and hearing Segmind's answer.
    await store.admit(ask, harness.clock.now())
    assert await store.claim_send(ask.generation_id, harness.clock.now(), 60) == 0  # SUBMITTING
    await harness.restart()

    failed = await status_of(harness, key, ask.request_id)
    assert failed["status"] == "FAILED"
    assert "stopped while submitting" in failed["error_message"]
    assert harness.upstream_calls("submit") == []  # it may have run: never sent again
    assert harness.gateway.poller.tracked == 0
    again = await harness.submit(key, KNIGHT)  # not cached, and the slot is free
    assert again.status_code == 200, again.text
    assert again.headers["x-cache-status"] == "MISS"


async def test_a_poll_loop_outlives_a_moment_the_store_is_locked(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = harness.team("alpha")
    request_id = await submitted(harness, key)
    store = harness.gateway.store
    take = store.take_upstream
    locked = {"left": 1}

    async def locked_once(*args: Any, **kwargs: Any) -> float:
        # What another process holding the write lock past busy_timeout looks like (the
        # backend turns SQLite's "database is locked" into StorageUnavailable).
        if locked["left"]:
            locked["left"] -= 1
            raise StorageUnavailable()
        return await take(*args, **kwargs)

    monkeypatch.setattr(store, "take_upstream", locked_once)
    await harness.advance(INTERVAL)
    assert locked["left"] == 0
    assert upstream_polls(harness) == []  # that poll could not take its budget
    assert harness.gateway.poller.tracked == 1  # the loop is still there
    done = await harness.advance_until_done(key, request_id, step=60)
    assert done["status"] == "COMPLETED"
