"""The job state machine, as properties: no state goes backwards, terminal stays terminal."""

from __future__ import annotations

import random
import statistics
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fakeserver.jobs import DurationModel, Job, JobPlan, JobState, Outcome, state_of
from tests.fakeserver.conftest import Fake

TTL = 3600.0
ORDER = {JobState.QUEUED: 0, JobState.PROCESSING: 1, JobState.COMPLETED: 2, JobState.FAILED: 2}

plans = st.builds(
    lambda outcome, duration, queued_share, polls: JobPlan(
        outcome=outcome,
        duration=duration,
        queued_for=duration * queued_share,
        polls_per_state=polls,
    ),
    st.sampled_from(Outcome),
    st.floats(0, 5000),
    st.floats(0, 0.99),
    st.none() | st.integers(1, 5),
)
steps = st.lists(st.tuples(st.floats(0, 900), st.booleans()), max_size=40)


@given(plan=plans, steps=steps)
def test_states_only_move_forward_and_end_in_expiry(
    plan: JobPlan, steps: list[tuple[float, bool]]
) -> None:
    job = Job("id", "wf", "key-1", {}, "d", created_at=0.0, plan=plan)
    now, seen = 0.0, []
    for advance, polled in steps:
        now += advance
        job.polls += polled
        seen.append(state_of(job, now, TTL))
    alive = [s for s in seen if s is not None]
    # Once expired, always expired.
    assert seen == alive + [None] * (len(seen) - len(alive))
    # Never backwards.
    assert [ORDER[s] for s in alive] == sorted(ORDER[s] for s in alive)
    # Terminal states never change, and match the planned outcome.
    terminal = [s for s in alive if s.terminal]
    assert len(set(terminal)) <= 1
    if terminal:
        assert plan.outcome is not Outcome.NEVER
        expected = JobState.FAILED if plan.outcome is Outcome.FAILED else JobState.COMPLETED
        assert terminal[0] is expected


@given(plan=plans)
def test_expiry_is_exactly_the_result_lifetime(plan: JobPlan) -> None:
    job = Job("id", "wf", "key-1", {}, "d", created_at=100.0, plan=plan)
    assert state_of(job, 100.0 + TTL - 1e-6, TTL) is not None
    assert state_of(job, 100.0 + TTL, TTL) is None


def test_durations_center_on_the_real_median_within_bounds() -> None:
    model = DurationModel()
    rng = random.Random(1)
    samples = [model.sample(rng) for _ in range(4000)]
    assert statistics.median(samples) == pytest.approx(673.9, rel=0.02)
    assert min(samples) >= 300.0
    assert max(samples) <= 1800.0


def test_time_scale_compresses_runs_for_demos() -> None:
    rng = random.Random(1)
    samples = [DurationModel(time_scale=0.01).sample(rng) for _ in range(2000)]
    assert statistics.median(samples) == pytest.approx(6.739, rel=0.03)


def test_polls_mode_advances_one_state_per_n_polls(fake: Fake) -> None:
    request_id = fake.submit(Prefer="polls=2").json()["request_id"]
    states = [fake.poll(request_id).json()["status"] for _ in range(6)]
    assert states == ["QUEUED", "QUEUED", "PROCESSING", "PROCESSING", "COMPLETED", "COMPLETED"]


def test_outcome_never_stays_processing_until_expiry(fake: Fake) -> None:
    request_id = fake.submit(Prefer="outcome=never").json()["request_id"]
    fake.clock.advance(3599)
    assert fake.poll(request_id).json() == {"status": "PROCESSING", "output": ""}
    fake.clock.advance(1)
    assert fake.poll(request_id).status_code == 404


def test_a_custom_status_is_reported_while_processing(fake: Fake) -> None:
    request_id = fake.submit(Prefer="status=ON_HOLD, duration=100").json()["request_id"]
    fake.clock.advance(50)
    assert fake.poll(request_id).json() == {"status": "ON_HOLD", "output": ""}
    fake.clock.advance(50)
    assert fake.poll(request_id).json()["status"] == "COMPLETED"


def test_failure_rate_one_fails_every_job(make_fake: Callable[..., Fake]) -> None:
    fake = make_fake(failure_rate=1.0)
    request_id = fake.submit(Prefer="duration=0").json()["request_id"]
    assert fake.poll(request_id).json()["status"] == "FAILED"


def test_the_same_seed_gives_the_same_ids_and_durations(make_fake: Callable[..., Fake]) -> None:
    first, second = make_fake(seed=3), make_fake(seed=3)
    ids = [f.submit().json()["request_id"] for f in (first, second)]
    assert ids[0] == ids[1]
    assert first.state.jobs[ids[0]].plan == second.state.jobs[ids[1]].plan


def test_a_run_whose_image_host_is_dead_is_charged_then_fails_early(
    make_fake: Callable[..., Fake],
) -> None:
    fake = make_fake(dead_image_hosts=["Dead.Example"], price=4.0, credits=10.0)
    dead = fake.submit({"Character_Image": "https://dead.example/me.png"})
    alive = fake.submit({"Character_Image": "https://alive.example/me.png"})
    assert dead.status_code == alive.status_code == 200
    # Both accepted and charged, as Segmind charges at acceptance.
    assert fake.http.get("/v1/get-user-credits").json()["credits"] == pytest.approx(2.0)
    fake.clock.advance(1800 * 0.1)  # the longest run's share spent loading the image
    failed = fake.poll(dead.json()["request_id"]).json()
    assert failed["status"] == "FAILED"
    assert "could not load Character_Image from dead.example" in failed["error_message"]
    assert fake.poll(alive.json()["request_id"]).json()["status"] in ("QUEUED", "PROCESSING")
