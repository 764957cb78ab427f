"""The adaptive upstream poll schedule (`proxy.core.schedule`): its model, its rule, its figures.

Properties: every delay stays within [min_interval, max_interval]; the duration model moves
towards what it observes and round-trips through JSON; 429 back-off is bounded. Figures, on
a smaller seeded replay of the fake's default durations than `bench/poller.py` runs, with
generous bounds: polls per job at most 35% of the naive 7-second loop's (the issue's target
is 25%), mean detection delay at most 10 s (target 7 s).
"""

from __future__ import annotations

import json
import math
import random
from itertools import pairwise
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fakeserver.jobs import DurationModel as FakeDurations
from fakeserver.settings import FakeSettings
from proxy.core.schedule import (
    MAX_SIGMA,
    MIN_SIGMA,
    PRIOR_MEDIAN,
    PROVEN_RUNS,
    DurationModel,
    PollSchedule,
)
from tests.bench.scripts import load

# The simulation is the bench's (bench/simulation.py): nothing of it runs in the gateway.
simulation = load("simulation")
AdaptivePolicy = simulation.AdaptivePolicy
NaivePolicy = simulation.NaivePolicy
RateLimitWindow = simulation.RateLimitWindow
SimulationResult = simulation.SimulationResult
backoff_after_rate_limit = simulation.backoff_after_rate_limit
simulate = simulation.simulate
# The naive loop's result, the adaptive schedule's, and the model it learnt (bench types).
Replay = tuple[Any, Any, DurationModel]


durations = st.floats(min_value=1.0, max_value=100_000.0, allow_nan=False)
observation_lists = st.lists(durations, max_size=40)
elapsed_times = st.floats(min_value=0.0, max_value=1e6, allow_nan=False, allow_infinity=False)
statuses = st.sampled_from([None, "QUEUED", "queued", "PROCESSING", "STARTING", ""])


def proven(median: float = PRIOR_MEDIAN) -> DurationModel:
    """A model whose last runs agreed with it, so it no longer probes: the schedule's own
    shape, as a gateway that has seen a few runs polls."""
    model = DurationModel(prior_median=median, observations=[median] * PROVEN_RUNS)
    assert model.proven
    return model


@st.composite
def schedules(draw: st.DrawFn) -> PollSchedule:
    low = draw(st.floats(min_value=0.1, max_value=60.0))
    high = draw(st.floats(min_value=low, max_value=3600.0))
    tail_quantile = draw(st.sampled_from([0.9, 0.99, 0.999, 0.9999]))
    tail_interval = draw(st.floats(min_value=1.0, max_value=120.0))
    # The tail alone must leave room for the target: P(tail) * tail_interval / 2 < target.
    floor = (1.0 - tail_quantile) * tail_interval / 2
    return PollSchedule(
        min_interval=low,
        max_interval=high,
        target_delay=draw(st.floats(min_value=floor + 0.5, max_value=floor + 60.0)),
        tail_quantile=tail_quantile,
        tail_interval=tail_interval,
        queued_interval=draw(st.floats(min_value=1.0, max_value=600.0)),
    )


def fake_durations(count: int, seed: int) -> list[float]:
    """Run durations exactly as the fake draws them, with its default settings."""
    rng, model = random.Random(seed), FakeDurations()
    return [model.sample(rng) for _ in range(count)]


# -- the delay -----------------------------------------------------------------------------


@given(schedules(), observation_lists, elapsed_times, statuses)
def test_every_delay_is_within_the_bounds(
    schedule: PollSchedule, observed: list[float], elapsed: float, status: str | None
) -> None:
    model = DurationModel(observations=observed)
    delay = schedule.delay(elapsed, model, status)
    assert schedule.min_interval <= delay <= schedule.max_interval
    assert schedule.delay(elapsed, model, status) == delay  # a restart resumes the same plan


@given(elapsed_times, statuses)
def test_the_function_form_matches_the_class(elapsed: float, status: str | None) -> None:
    model = DurationModel()
    expected = PollSchedule(min_interval=3.0, max_interval=500.0).delay(elapsed, model, status)
    got = PollSchedule(min_interval=3.0, max_interval=500.0).delay(elapsed, model, status)
    assert got == expected


@given(st.floats(min_value=0.0, max_value=5000.0))
def test_polls_are_due_later_than_now(elapsed: float) -> None:
    schedule, model = PollSchedule(), DurationModel()
    assert schedule.next_poll_elapsed(elapsed, model) > elapsed


def test_sparse_early_dense_around_the_finish_flat_in_the_tail() -> None:
    schedule, model = PollSchedule(), proven()
    first = schedule.delay(0.0, model)
    assert model.quantile(0.001) < first < model.quantile(0.05)  # no poll for minutes
    assert first > 300.0
    at_median = schedule.delay(model.median, model)
    assert 5.0 <= at_median <= 2 * schedule.target_delay  # dense where runs finish
    late = schedule.delay(model.quantile(0.99), model)
    assert schedule.min_interval <= late <= at_median  # the hazard keeps rising
    tail = model.quantile(schedule.tail_quantile)
    assert schedule.delay(tail + 1.0, model) == schedule.tail_interval
    assert schedule.delay(10 * tail, model) == schedule.tail_interval  # a stuck run is polled
    assert schedule.delay(30.0, model, "QUEUED") == schedule.queued_interval


def test_the_plan_from_submit_to_the_tail() -> None:
    """Polls from t = 0 on, as a gateway that has seen a few runs makes them for one run."""
    schedule, model = PollSchedule(), proven()
    times, t = [], 0.0
    while t < model.quantile(0.999):
        t += schedule.delay(t, model)
        times.append(t)
    gaps = [b - a for a, b in pairwise(times)]
    assert len(times) < 150
    # Under the prior: the first poll at about 363 s, 19 polls up to the median, then every
    # 8 to 11 s for as long as the run goes (few runs do), 30 s past q(0.999).
    assert 10 <= sum(1 for x in times if x <= model.median) <= 30
    assert max(gaps[5:]) <= max(gaps)  # the gaps shrink after the first polls
    assert all(g >= schedule.min_interval for g in gaps)


def test_a_later_prior_delays_the_first_poll() -> None:
    schedule = PollSchedule()
    quick, slow = proven(100.0), proven(1000.0)
    assert schedule.delay(0.0, quick) < schedule.delay(0.0, slow)
    # Scale invariance: ten times the durations, ten times the first delay (about).
    assert schedule.delay(0.0, slow) > 5 * schedule.delay(0.0, quick)


def test_a_smaller_target_delay_means_more_polls() -> None:
    model = DurationModel()
    tight, loose = PollSchedule(target_delay=3.0), PollSchedule(target_delay=15.0)
    assert tight.delay(model.median, model) < loose.delay(model.median, model)


@pytest.mark.parametrize(
    "settings",
    [
        {"min_interval": 0.0},
        {"min_interval": 10.0, "max_interval": 5.0},
        {"tail_quantile": 1.0},
        {"tail_quantile": 0.4},
        {"tail_interval": 0.0},
        {"queued_interval": -1.0},
        {"target_delay": 0.01},
    ],
)
def test_bad_schedule_settings_are_refused(settings: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"."):
        PollSchedule(**settings)


# -- the model -----------------------------------------------------------------------------


def test_the_prior() -> None:
    model = DurationModel()
    assert model.median == pytest.approx(PRIOR_MEDIAN)
    assert model.quantile(0.5) == pytest.approx(PRIOR_MEDIAN)
    assert model.cdf(PRIOR_MEDIAN) == pytest.approx(0.5)
    assert model.survival(0.0) == 1.0
    assert model.cdf(0.0) == 0.0
    assert model.hazard(0.0) == 0.0
    assert model.hazard(800.0) > model.hazard(500.0) > 0
    assert model.mean > model.median
    assert model.pdf(PRIOR_MEDIAN) > model.pdf(PRIOR_MEDIAN * 2) > 0


@given(st.floats(min_value=60.0, max_value=5000.0), st.integers(min_value=1, max_value=60))
def test_learning_moves_the_quantiles_towards_the_observations(observed: float, count: int) -> None:
    model = DurationModel()
    before = model.median
    for _ in range(count):
        model.observe(observed)
    after = model.median
    assert abs(after - observed) <= abs(before - observed) + 1e-9
    if abs(math.log(observed / before)) > 0.01:
        assert abs(after - observed) < abs(before - observed)
        # Kept to the millisecond: the bounds hold to that.
        assert min(before, observed) - 1e-3 <= after <= max(before, observed) + 1e-3


def test_enough_observations_outweigh_the_prior() -> None:
    rng = random.Random(3)
    model = DurationModel()
    for _ in range(500):
        model.observe(900.0 * math.exp(0.1 * rng.gauss(0.0, 1.0)))
    assert model.median == pytest.approx(900.0, rel=0.03)
    assert 0.09 < model.sigma < 0.13  # the prior's 0.25 and its offset weigh little now
    assert model.quantile(0.9) == pytest.approx(900.0 * math.exp(0.1 * 1.2816), rel=0.05)


def test_the_window_is_bounded_and_forgets() -> None:
    model = DurationModel(window=50)
    for _ in range(200):
        model.observe(300.0)
    for _ in range(50):
        model.observe(1200.0)
    assert len(model.observations) == 50
    assert set(model.observations) == {1200.0}
    assert model.median > 1000.0


def test_observe_records_a_duration_inside_the_censoring_interval() -> None:
    model = DurationModel()
    recorded = model.observe(700.0, running_at=690.0)
    assert 690.0 <= recorded <= 700.0
    assert recorded == pytest.approx(695.0, abs=0.5)  # about the midpoint when polls are dense
    # First poll at 500 s already saw it done: it finished well before, per the model.
    early = DurationModel().observe(500.0, running_at=0.0)
    assert 300.0 < early < 500.0
    assert DurationModel().observe(700.0, running_at=900.0) == 700.0  # inconsistent: clamped
    assert DurationModel().observe(512.25) == 512.25  # no interval: taken as it is
    assert DurationModel().observe(512.123456) == 512.123  # kept to the millisecond


@pytest.mark.parametrize("bad", [0.0, -5.0, math.nan, math.inf, 1e12])
def test_impossible_durations_are_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="duration"):
        DurationModel().observe(bad)
    with pytest.raises(ValueError, match="duration"):
        DurationModel(observations=[bad])


@given(observation_lists)
def test_sigma_stays_sane(observed: list[float]) -> None:
    model = DurationModel(observations=observed)
    assert MIN_SIGMA <= model.sigma <= MAX_SIGMA
    assert math.isfinite(model.mu)


@given(observation_lists, elapsed_times, st.floats(min_value=0.0, max_value=1e5))
def test_finish_probability_is_a_probability(
    observed: list[float], elapsed: float, within: float
) -> None:
    model = DurationModel(observations=observed)
    p = model.finish_probability(elapsed, within)
    assert 0.0 <= p <= 1.0
    assert model.finish_probability(elapsed, within + 10.0) >= p


@given(
    observation_lists,
    st.floats(min_value=10.0, max_value=10_000.0),
    st.floats(min_value=MIN_SIGMA, max_value=MAX_SIGMA),
    st.integers(min_value=1, max_value=1000),
)
def test_json_round_trip(observed: list[float], median: float, sigma: float, window: int) -> None:
    model = DurationModel(median, sigma, prior_weight=7.5, window=window, observations=observed)
    data = json.loads(json.dumps(model.to_json()))
    again = DurationModel.from_json(data)
    assert again.to_json() == model.to_json()
    assert again.state == model.state
    for p in (0.01, 0.5, 0.99):
        assert again.quantile(p) == model.quantile(p)
    assert PollSchedule().delay(100.0, again) == PollSchedule().delay(100.0, model)


def test_the_json_stays_small() -> None:
    model = DurationModel()
    for i in range(2000):
        model.observe(600.0 + i % 100)
    assert len(json.dumps(model.to_json())) < 8_000


def test_from_json_refuses_unknown_versions() -> None:
    data = DurationModel().to_json()
    with pytest.raises(ValueError, match="version"):
        DurationModel.from_json({**data, "version": 99})
    with pytest.raises(ValueError, match="observations"):
        DurationModel.from_json({**data, "observations": "nope"})


# -- rate limits ---------------------------------------------------------------------------


@given(
    st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
    st.integers(min_value=-3, max_value=10_000),
    st.floats(min_value=-1.0, max_value=2.0),
)
def test_backoff_is_bounded(retry_after: float | None, attempt: int, spread: float) -> None:
    wait = backoff_after_rate_limit(retry_after, attempt, spread=spread)
    assert 1.0 <= wait <= 1.25 * 120.0


def test_backoff_honours_retry_after_else_doubles() -> None:
    assert backoff_after_rate_limit(30.0, 1) == 30.0
    assert backoff_after_rate_limit(30.0, 5) == 30.0
    assert backoff_after_rate_limit(10_000.0, 1) == 120.0  # clamped
    assert backoff_after_rate_limit(0.0, 1) == 1.0
    assert [backoff_after_rate_limit(None, n) for n in (1, 2, 3, 4, 5)] == [
        10.0,
        20.0,
        40.0,
        80.0,
        120.0,
    ]
    assert backoff_after_rate_limit(None, 1, spread=0.5) == 11.25  # up to +25%


# -- the figures ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def replay() -> Replay:
    runs = fake_durations(500, seed=11)
    policy = AdaptivePolicy(DurationModel())
    return simulate(runs, NaivePolicy()), simulate(runs, policy), policy.model


def test_the_naive_loop_polls_every_seven_seconds(
    replay: Replay,
) -> None:
    naive, _, _ = replay
    for duration, polls, delay in zip(naive.durations, naive.polls, naive.delays, strict=True):
        assert polls == math.ceil(duration / 7.0)
        assert delay == pytest.approx(polls * 7.0 - duration)
    assert 0.0 <= naive.max_delay < 7.0
    # SEGMIND_API.md: a 7 s loop spends 8.6 calls a minute; the issue: about 5 jobs at once.
    assert naive.requests_per_minute == pytest.approx(60 / 7, rel=0.01)
    assert 5.0 <= naive.capacity(50.0) < 6.5


def test_adaptive_meets_generous_bounds_on_the_bench_figures(
    replay: Replay,
) -> None:
    naive, adaptive, model = replay
    assert adaptive.runs == naive.runs == 500
    assert adaptive.polls_per_job <= 0.35 * naive.polls_per_job  # target: 25%
    assert adaptive.mean_delay <= 10.0  # target: 7 s
    assert adaptive.p95_delay <= 30.0
    assert all(d >= 0.0 for d in adaptive.delays)
    assert adaptive.capacity(50.0) >= 3 * naive.capacity(50.0)
    assert model.median == pytest.approx(673.9, rel=0.05)  # it learnt the fake's durations
    assert 0.15 < model.sigma < 0.25


def test_capacity_is_the_limit_over_the_calls_a_tracked_run_makes() -> None:
    result = SimulationResult((590.0, 590.0), (20, 30), (10.0, 10.0), (0, 0))
    # 50 calls over 1200 tracked seconds (duration + delay): 2.5 calls a minute.
    assert result.requests_per_minute == pytest.approx(2.5)
    assert result.capacity(50.0) == pytest.approx(20.0)
    assert result.part(1).polls == (30,)
    assert SimulationResult((), (), (), ()).capacity() == math.inf


def test_the_model_learns_a_shifted_distribution() -> None:
    shifted = FakeDurations(median=900.0)
    rng = random.Random(5)
    runs = [shifted.sample(rng) for _ in range(400)]
    policy = AdaptivePolicy(DurationModel())
    naive, adaptive = simulate(runs, NaivePolicy()), simulate(runs, policy)
    assert policy.model.median == pytest.approx(900.0, rel=0.05)
    late, naive_late = adaptive.part(200), naive.part(200)
    assert late.polls_per_job <= 0.35 * naive_late.polls_per_job
    assert late.mean_delay <= 10.0
    assert late.polls_per_job < adaptive.part(0, 50).polls_per_job  # learning pays


def test_a_burst_of_429s_is_waited_out_with_fewer_calls() -> None:
    runs = fake_durations(200, seed=2)
    burst = [RateLimitWindow(start=2000.0, end=2600.0, retry_after=None)]
    naive = simulate(runs, NaivePolicy(), rate_limits=burst)
    adaptive = simulate(runs, AdaptivePolicy(DurationModel()), rate_limits=burst)
    assert sum(adaptive.rate_limited) > 0
    assert sum(adaptive.rate_limited) < sum(naive.rate_limited) / 2
    # Every run is still noticed; the ones finishing in the burst within the back-off cap.
    assert adaptive.max_delay <= 600.0 + 1.25 * 120.0 + 60.0
    assert all(math.isfinite(d) and d >= 0 for d in adaptive.delays)


def test_the_simulation_is_deterministic() -> None:
    runs = fake_durations(60, seed=4)
    first = simulate(runs, AdaptivePolicy(DurationModel()))
    assert simulate(runs, AdaptivePolicy(DurationModel())) == first


def test_a_run_seen_queued_is_polled_at_the_queued_interval() -> None:
    # Runs of 10 s under a proven 673.9 s model: no poll before minutes, then found finished.
    result = simulate([10.0], AdaptivePolicy(proven()), queued_fraction=0.99)
    assert result.polls == (1,)
    # A run QUEUED for most of its 2000 s: polled every queued_interval while it waits.
    schedule = PollSchedule(queued_interval=45.0)
    long = simulate([2000.0], AdaptivePolicy(proven(), schedule), queued_fraction=0.9)
    assert long.polls[0] > 1800 / 45 - 10


# -- the bench ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    """bench/poller.py, loaded by path (bench/ is not a package)."""
    return load("poller")


def test_the_bench_draws_durations_as_the_fake_does(bench: ModuleType) -> None:
    fields = FakeSettings.model_fields
    defaults = {name: fields[f"duration_{name}"].default for name in ("median", "sigma")}
    defaults |= {name: fields[f"duration_{name}"].default for name in ("min", "max")}
    defaults["queued"] = fields["queued_fraction"].default
    bench_values = {
        "median": bench.FAKE_MEDIAN,
        "sigma": bench.FAKE_SIGMA,
        "min": bench.FAKE_MIN,
        "max": bench.FAKE_MAX,
        "queued": bench.QUEUED_FRACTION,
    }
    assert bench_values == defaults
    assert bench.sample_durations(300, 9) == fake_durations(300, 9)


def test_the_bench_prints_both_schedules_and_the_verdict(
    bench: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    assert bench.main(["--runs", "150", "--all"]) == 0
    out = capsys.readouterr().out
    assert "naive 7 s" in out
    assert "adaptive" in out
    assert "concurrent generations within 50 req/min" in out
    assert "target: polls/job <= 25% of naive (" in out
    assert "scenario shifted" in out
    assert "calls answered 429" in out
    assert "with notifications" in out
    assert "conditioning on the observed start" in out


def test_the_bench_runs_the_gateway_s_hinted_schedule(bench: ModuleType) -> None:
    from proxy.core.config import ProxySettings
    from proxy.services.poller import HINTED_MAX_INTERVAL

    default = ProxySettings.model_fields["upstream_events_poll_delay"].default
    assert default == bench.EVENTS_DEFAULT
    assert bench.HINTED_MAX_INTERVAL == HINTED_MAX_INTERVAL


def test_a_hint_is_one_early_poll_and_a_lost_one_changes_nothing() -> None:
    runs = fake_durations(200, 5)
    Hints = simulation.Hints
    plain = simulate(runs, AdaptivePolicy(DurationModel()))
    assert simulate(runs, AdaptivePolicy(DurationModel()), hints=Hints(drop_rate=1.0)) == plain
    # The schedule the gateway runs with notifications on: sparse, catching lost ones.
    sparse = PollSchedule(target_delay=180.0, max_interval=1800.0, probe=False)
    hinted = simulate(runs, AdaptivePolicy(DurationModel(), sparse), hints=Hints(delay=5.0))
    assert hinted.lost == 0
    # The hint's poll, or an earlier one (to rounding of the virtual times).
    assert max(hinted.delays) == pytest.approx(5.0)
    assert hinted.polls_per_job < plain.polls_per_job / 5
    half = simulate(runs, AdaptivePolicy(DurationModel(), sparse), hints=Hints(5.0, 0.5))
    assert half.lost == 0


# -- an upstream the prior does not describe ------------------------------------------------


def test_a_fresh_model_probes_so_a_fast_upstream_is_noticed_about_a_run_late() -> None:
    # A fake at 1/100 of Segmind's run time, and a gateway that was told nothing: runs of
    # about 7 s under a 673.9 s prior.
    runs = [6.7 * math.exp(0.2 * random.Random(n).gauss(0.0, 1.0)) for n in range(30)]
    policy = AdaptivePolicy(DurationModel())
    result = simulate(runs, policy, queued_fraction=0.05)
    # The first runs are probed (2, 4, 8... s): each noticed within about its own length.
    assert all(delay <= run + 2.0 for delay, run in zip(result.delays[:3], runs, strict=False))
    # Then the prior has moved to where the runs are: the model follows them at once.
    assert policy.model.median == pytest.approx(6.7, rel=0.3)
    assert max(result.delays) < 30.0
    assert sum(result.delays) / len(runs) < 10.0
    assert sum(result.polls) / len(runs) < 10.0


def test_a_fresh_model_proves_itself_on_runs_the_prior_expects_and_then_stops_probing() -> None:
    model, schedule = DurationModel(), PollSchedule()
    assert not model.proven
    assert schedule.delay(0.0, model) == schedule.min_interval  # probing: 2 s
    assert schedule.delay(30.0, model, "QUEUED") == 30.0  # doubling, also while QUEUED
    for duration in (650.0, 700.0, 680.0):
        model.observe(duration)
    assert model.proven
    assert schedule.delay(0.0, model) > 300.0  # the schedule's own first poll again
    assert model.median == pytest.approx(PRIOR_MEDIAN, rel=0.05)  # the prior stayed put


def test_the_prior_moves_only_when_the_last_runs_all_fall_outside_it_on_one_side() -> None:
    model = DurationModel()
    for duration in (8.0, 9.0):
        model.observe(duration)
    assert model.median > 300.0  # two surprises: not yet
    model.observe(2000.0)  # outside on the other side: no single direction
    assert model.median > 300.0
    for duration in (8.0, 7.0, 9.0):
        model.observe(duration)
    assert model.median == pytest.approx(8.0, rel=0.5)
    assert model.proven
    # The same from the stored form: the move is a function of the observations.
    assert DurationModel.from_json(model.to_json()).state == model.state
