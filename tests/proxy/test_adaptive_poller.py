"""The adaptive poll schedule, in the gateway, against the fake's default run durations.

Both clocks step straight to the gateway's next wake-up, so each test covers hours of
virtual time in well under a second, and counts what the upstream really saw.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from proxy.core.schedule import PRIOR_MEDIAN, PROVEN_RUNS, DurationModel
from proxy.services.poller import MODEL_KEY
from tests.proxy.harness import Harness

pytestmark = pytest.mark.anyio

MakeHarness = Callable[..., Awaitable[Harness]]
RUNS = 12
NO_LIMITS: dict[str, Any] = {
    "submits_per_minute": None,
    "polls_per_minute": None,
    "max_concurrent": None,
    "daily_budget": None,
    "monthly_budget": None,
}


async def run_until_done(harness: Harness, key: str, request_ids: list[str]) -> None:
    """Step to each next wake-up of the gateway until every run has finished."""
    for _ in range(10_000):
        done = [(await harness.poll(key, r)).json()["status"] for r in request_ids]
        if all(s in ("COMPLETED", "FAILED") for s in done):
            return
        deadline = harness.clock.next_deadline
        assert deadline is not None, "runs are unfinished but nothing is scheduled"
        await harness.advance(max(deadline - harness.clock.now(), 0.0))
    raise AssertionError("runs did not finish")


async def test_adaptive_polling_costs_a_fraction_of_the_naive_loop(
    make_harness: MakeHarness,
) -> None:
    harness = await make_harness(poll_schedule="adaptive")
    key = harness.team("adaptive", **NO_LIMITS)
    ids = []
    for i in range(RUNS):
        answer = await harness.submit(key, {"Scene_1": f"A sailor at sea, take {i}"})
        ids.append(answer.json()["request_id"])
    await run_until_done(harness, key, ids)

    jobs = harness.fake_state.jobs
    polls = harness.upstream_calls("poll")
    per_job = {job_id: 0 for job_id in jobs}
    for entry in polls:
        per_job[str(entry["path"]).rsplit("/", 1)[1]] += 1
    naive = sum(job.plan.duration / 7.0 for job in jobs.values())
    assert sum(per_job.values()) <= 0.35 * naive  # the bench measures ~19%; generous bound

    store = harness.gateway.store
    team = await store.team("adaptive")
    delays = []
    for request_id in ids:
        found = await store.request(team.id, request_id)
        assert found is not None
        generation = found[1]
        assert generation.upstream_id is not None
        assert generation.finished_at is not None
        job = jobs[generation.upstream_id]
        delays.append(generation.finished_at - (job.created_at + job.plan.duration))
    assert min(delays) >= 0
    assert sum(delays) / len(delays) <= 10.0  # target 7 s; the bench measures ~6.6 s


async def test_what_the_poller_learns_is_kept_across_a_restart(make_harness: MakeHarness) -> None:
    harness = await make_harness(poll_schedule="adaptive")
    key = harness.team("learner", **NO_LIMITS)
    ids = [
        (await harness.submit(key, {"Scene_2": f"A dancer, take {i}"})).json()["request_id"]
        for i in range(3)
    ]
    await run_until_done(harness, key, ids)
    saved = await harness.gateway.store.kv_get(MODEL_KEY)
    assert saved is not None
    assert len(DurationModel.from_json(json.loads(saved)).observations) == 3
    await harness.restart()
    assert len(harness.gateway.poller.model.observations) == 3


async def test_the_first_poll_probes_until_runs_prove_the_model_then_waits(
    make_harness: MakeHarness,
) -> None:
    harness = await make_harness(poll_schedule="adaptive")
    key = harness.team("early", **NO_LIMITS)
    await harness.submit(key, {"Scene_3": "A quiet street"})
    first = harness.clock.next_deadline
    assert first is not None
    # A fresh gateway has seen no run of this upstream: it probes, at the shortest interval,
    # so an upstream far faster than Segmind (a fake) is not left unpolled for minutes.
    assert first - harness.clock.now() == pytest.approx(harness.gateway.settings.poll_min_interval)
    # Once runs have agreed with the model (kept in the store), the prior puts the first
    # poll hundreds of seconds in.
    proven = DurationModel(observations=[PRIOR_MEDIAN] * PROVEN_RUNS)
    await harness.gateway.store.kv_set(MODEL_KEY, json.dumps(proven.to_json()))
    await harness.restart()
    assert 200 < harness.gateway.poller.first_delay() < PRIOR_MEDIAN
