"""When to poll the upstream next: an adaptive schedule that learns how long runs take.

Pure code: no I/O and no clock reads; every time is passed in, in seconds. The poller asks
`PollSchedule.delay(elapsed, model)` after each poll of a run that is not terminal yet and
stores `now + delay` as the run's `next_poll_at`, so a restarted gateway resumes the same
schedule: the delay depends only on the run's elapsed time and on the model, which the
gateway can persist with `DurationModel.to_json()`.

The model
---------
`DurationModel` is a lognormal over submit-to-finish durations, fitted on the logarithms of
the last `window` observed durations pooled with a prior worth `prior_weight` observations
(by default the 673.9 s median of SEGMIND_API.md with a log-sd of 0.25, a little wider than
the fake's 0.2 so that the prior is humble). The window makes it follow drift; the prior
keeps the first runs of a fresh gateway sensible.

The rule: optimal inspection density (Keller, 1974)
---------------------------------------------------
Poll a run at density n(t) (polls per second at elapsed time t). A run that finishes at T
costs the polls made while it ran, ∫_0^T n, and is noticed on average 1/(2 n(T)) seconds
late. Minimising  E[polls] + λ·E[delay] = ∫ n(t) S(t) dt + λ ∫ f(t) / (2 n(t)) dt  pointwise
(S is the survival function, f the density) gives

    n(t) = sqrt(λ h(t) / 2),   that is an interval Δ(t) = κ / sqrt(h(t)),

where h = f / S is the hazard: the chance per second that a run still going finishes now.
So poll where runs finish, but only as the square root of how likely that is: sparse while
h is tiny (early), dense where h is high (around and after the median). The constant κ
(the Lagrange multiplier in disguise) is set so that the model's expected delay equals
`target_delay`:  E[delay] = (κ/2) ∫ f h^(-1/2) dt + P(tail) · tail_interval / 2.
The next poll after a poll at t is the t' with ∫_t^t' n = 1 (one poll's worth of density),
read off a cumulative table built once per model state. Past the model's
`tail_quantile` (0.999) the hazard says little about a run that may be stuck, so the
density becomes a flat 1/`tail_interval` (30 s). A run last seen QUEUED has not started,
so its elapsed time says nothing: it is polled every `queued_interval` (60 s) until it is.
Every delay is clamped to [`min_interval`, `max_interval`].

Worked example (the default prior: median 673.9 s, log-sd 0.25; target 7 s): the prior's
q(0.999) is 1459 s and κ comes out at 0.80 s^(1/2). From t = 0 the density adds up to one
poll only at t = 363 s (the prior's q(0.007)): the first poll, 52 naive polls saved. At the
median the hazard is h = 0.0047/s, so polls are 0.80 / sqrt(0.0047) = 11.6 s apart (a run
finishing there is noticed 5.8 s late on average); at q(0.99) = 1206 s, h = 0.0088/s and
polls are 8.5 s apart; past 1459 s, every 30 s. On the fake's runs (log-sd 0.2) this prior
alone costs about 21 polls a run where the naive 7-second loop makes 98, noticing runs
6.4 s late on average; once the model has learnt the log-sd of 0.2 (first poll at 418 s,
11.3 s apart at the median, 7.9 s at q(0.99)) it costs about 18.

Following an upstream the prior does not describe
--------------------------------------------------
A gateway in front of a fake whose runs take 7 s (or a Segmind that got much faster) meets
runs the prior says cannot be: under the prior alone its first poll comes at 363 s, long
after every run ended, and each run found finished at its first poll teaches the model
little. Two rules let it follow such an upstream with no setting:

- Probing. Until the model is *proven* (its last `PROVEN_RUNS` observations all lie within
  its own central 99.9%, and at most `FIRST_POLL_SHARE` of the last `FIRST_POLL_RUNS` runs
  were found finished at their first poll, which says only that they ended by then), the
  next poll comes no later than the run's elapsed time again (at least `min_interval`):
  2, 4, 8, 16 s... also while QUEUED. A run is then noticed at most about its own duration
  late, however wrong the model. On Segmind this costs the first `PROVEN_RUNS` runs of a
  fresh gateway about 8 polls each, and nothing after. Off with notifications
  (`probe=False`): they say when runs end.
- The prior moves. When the last `PROVEN_RUNS` observations all lie outside the prior's
  own central 99.9%, on the same side, the prior keeps its shape and weight but is centred
  on them: its place was wrong, not its spread. Three 8 s runs give a model with a median
  of 8 s at once, not after hundreds of runs.

The simulation that measures this schedule against the naive loop (`simulate()`, its
policies and the rate-limit backoff they use) lives with its bench, in
`bench/simulation.py`: nothing of it runs in the gateway.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise
from statistics import NormalDist
from typing import Any

__all__ = [
    "PRIOR_MEDIAN",
    "PRIOR_SIGMA",
    "PROVEN_RUNS",
    "DurationModel",
    "PollSchedule",
]

PRIOR_MEDIAN = 673.9  # seconds, submit to COMPLETED (SEGMIND_API.md)
PRIOR_SIGMA = 0.25  # log-sd; the fake's default is 0.2
PRIOR_WEIGHT = 20.0  # the prior counts as this many observations
WINDOW = 500  # observations kept
MIN_SIGMA = 0.05  # never trust the data to be narrower than this
MAX_SIGMA = 3.0  # nor wider than this
MAX_DURATION = 1e7  # seconds (about 4 months): anything longer is a bug upstream of here
PROVEN_RUNS = 3  # observations that must agree with a model before probing stops
# Runs found finished at their first poll, at most this share of the last `FIRST_POLL_RUNS`:
# by design the first poll comes before all but ~1% of runs end, so many more mean the
# model puts runs later than they are (its observations are then only upper bounds).
FIRST_POLL_SHARE = 0.2
FIRST_POLL_RUNS = 20
CENTRAL = 0.999  # "agree": within the model's central 99.9%
JSON_VERSION = 1

_STD = NormalDist()
_SQRT2 = math.sqrt(2.0)
_Z_LOW = -5.0  # below this the chance of finishing is < 3e-7: the table starts here
_Z_STEP = 0.02
_Z_CENTRAL = _STD.inv_cdf((1.0 + CENTRAL) / 2)  # 3.29: half the central interval, in sds


def _upper(z: float) -> float:
    """P(Z > z) for a standard normal, accurate far into the upper tail."""
    return 0.5 * math.erfc(z / _SQRT2)


def _normal_hazard(z: float) -> float:
    """The standard normal's hazard φ(z) / P(Z > z) (the inverse Mills ratio)."""
    upper = _upper(z)
    if upper < 1e-300:
        return max(z, 0.0)  # its asymptote
    return _STD.pdf(z) / upper


class DurationModel:
    """Lognormal run durations, learnt from a window of observations pooled with a prior.

    `mu` and `sigma` are the mean and sd of log(duration): the prior counts as
    `prior_weight` observations at log(prior_median) with sd `prior_sigma`, pooled (as a
    mixture) with the window's observations. `state` changes whenever the fit does.
    """

    def __init__(
        self,
        prior_median: float = PRIOR_MEDIAN,
        prior_sigma: float = PRIOR_SIGMA,
        *,
        prior_weight: float = PRIOR_WEIGHT,
        window: int = WINDOW,
        observations: Iterable[float] = (),
        informative: Iterable[bool] | None = None,
    ) -> None:
        if not 0 < prior_median <= MAX_DURATION:
            raise ValueError(f"prior_median must be in (0, {MAX_DURATION:g}]; got {prior_median!r}")
        if not MIN_SIGMA <= prior_sigma <= MAX_SIGMA:
            raise ValueError(
                f"prior_sigma must be in [{MIN_SIGMA}, {MAX_SIGMA}]; got {prior_sigma!r}"
            )
        if not (math.isfinite(prior_weight) and prior_weight >= 0):
            raise ValueError(f"prior_weight must be >= 0; got {prior_weight!r}")
        if window < 1:
            raise ValueError(f"window must be at least 1; got {window!r}")
        self.prior_median = float(prior_median)
        self.prior_sigma = float(prior_sigma)
        self.prior_weight = float(prior_weight)
        self.window = int(window)
        self._durations: deque[float] = deque(maxlen=self.window)
        # Per observation: was the run seen going at least half its recorded duration in
        # (so the observation says when it ended, not only that it had by the first poll)?
        self._informative: deque[bool] = deque(maxlen=self.window)
        self.mu = math.log(self.prior_median)
        self.sigma = self.prior_sigma
        # Whether the last observations agree with the fit: probing stops once they do.
        self.proven = False
        for duration in observations:
            self._durations.append(self._rounded(self._checked(duration)))
        given = list(informative) if informative is not None else []
        self._informative.extend(given[-len(self._durations) :] if self._durations else [])
        while len(self._informative) < len(self._durations):
            self._informative.appendleft(True)  # stored before this was kept: trusted
        self._refit()

    # -- learning -----------------------------------------------------------------------

    @staticmethod
    def _checked(duration: float) -> float:
        if not 0 < duration <= MAX_DURATION:
            raise ValueError(
                f"a duration must be in (0, {MAX_DURATION:g}] seconds; got {duration!r}"
            )
        return float(duration)

    def _refit(self) -> None:
        logs = [math.log(d) for d in self._durations]
        prior_mu = self._prior_mu(logs[-PROVEN_RUNS:])
        weight = self.prior_weight + len(logs)
        if weight <= 0:  # no prior weight and no data: the prior's shape, by default
            self.mu, self.sigma = prior_mu, self.prior_sigma
        else:
            mu = (self.prior_weight * prior_mu + sum(logs)) / weight
            spread = self.prior_weight * (self.prior_sigma**2 + (prior_mu - mu) ** 2)
            spread += sum((y - mu) ** 2 for y in logs)
            self.mu = mu
            self.sigma = min(max(math.sqrt(spread / weight), MIN_SIGMA), MAX_SIGMA)
        recent = list(self._informative)[-FIRST_POLL_RUNS:]
        self.proven = (
            len(logs) >= PROVEN_RUNS
            and recent.count(False) <= FIRST_POLL_SHARE * len(recent)
            and all(abs(y - self.mu) <= _Z_CENTRAL * self.sigma for y in logs[-PROVEN_RUNS:])
        )

    def _prior_mu(self, recent: list[float]) -> float:
        """The prior's centre: the configured median, unless the last `PROVEN_RUNS` logs
        all lie outside its central `CENTRAL` on one side; then their mean."""
        prior_mu = math.log(self.prior_median)
        if len(recent) < PROVEN_RUNS:
            return prior_mu
        bound = _Z_CENTRAL * self.prior_sigma
        if all(y > prior_mu + bound for y in recent) or all(y < prior_mu - bound for y in recent):
            return sum(recent) / len(recent)
        return prior_mu

    def observe(self, finished_by: float, running_at: float | None = None) -> float:
        """Learn from one finished run; return the duration recorded.

        `finished_by` is the elapsed time (since submit) of the poll that first saw the run
        COMPLETED or FAILED. Without `running_at` it is recorded as the duration (late by
        the detection delay, a few seconds: about 1% here). With `running_at`, the elapsed
        time of the last poll that saw the run still going (0.0 when the first poll already
        found it done), the run finished somewhere in between, and the model records the
        conditional median of that interval under its current fit: about the midpoint when
        polls are dense, well below `finished_by` after a long first wait. Durations are
        kept to the millisecond.
        """
        finished_by = self._checked(finished_by)
        duration = finished_by
        informative = running_at is None or running_at >= finished_by / 2
        if running_at is not None:
            low = min(max(float(running_at), 0.0), finished_by)
            p_low, p_high = self.cdf(low), self.cdf(finished_by)
            if p_high - p_low > 1e-12:
                duration = min(max(self.quantile((p_low + p_high) / 2), low), finished_by)
            else:
                duration = (low + finished_by) / 2
        self._durations.append(self._rounded(duration))
        self._informative.append(informative)
        self._refit()
        return self._durations[-1]

    @staticmethod
    def _rounded(duration: float) -> float:
        return max(round(duration, 3), 0.001)

    @property
    def observations(self) -> tuple[float, ...]:
        return tuple(self._durations)

    @property
    def state(self) -> tuple[float, float]:
        """What the schedule depends on: (mu, sigma)."""
        return (self.mu, self.sigma)

    # -- the distribution ---------------------------------------------------------------

    def _z(self, t: float) -> float:
        return (math.log(t) - self.mu) / self.sigma if t > 0 else -math.inf

    @property
    def median(self) -> float:
        return math.exp(self.mu)

    @property
    def mean(self) -> float:
        return math.exp(self.mu + self.sigma**2 / 2)

    def quantile(self, p: float) -> float:
        if not 0.0 < p < 1.0:
            raise ValueError(f"a quantile needs 0 < p < 1; got {p!r}")
        return math.exp(self.mu + self.sigma * _STD.inv_cdf(p))

    def cdf(self, t: float) -> float:
        """P(duration <= t)."""
        return 0.0 if t <= 0 else 1.0 - _upper(self._z(t))

    def survival(self, t: float) -> float:
        """P(duration > t)."""
        return 1.0 if t <= 0 else _upper(self._z(t))

    def pdf(self, t: float) -> float:
        return 0.0 if t <= 0 else _STD.pdf(self._z(t)) / (self.sigma * t)

    def hazard(self, t: float) -> float:
        """Chance per second of finishing at t, for a run not finished by t."""
        return 0.0 if t <= 0 else _normal_hazard(self._z(t)) / (self.sigma * t)

    def finish_probability(self, elapsed: float, within: float) -> float:
        """P(finish within `within` seconds | not finished after `elapsed` seconds)."""
        alive = self.survival(elapsed)
        if alive <= 0.0:
            return 1.0
        return min(max((alive - self.survival(elapsed + within)) / alive, 0.0), 1.0)

    # -- persistence --------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "version": JSON_VERSION,
            "prior_median": self.prior_median,
            "prior_sigma": self.prior_sigma,
            "prior_weight": self.prior_weight,
            "window": self.window,
            "observations": list(self._durations),
            "informative": list(self._informative),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DurationModel:
        if data.get("version") != JSON_VERSION:
            raise ValueError(f"unknown duration model version {data.get('version')!r}")
        observations = data.get("observations", [])
        if not isinstance(observations, list):
            raise ValueError("duration model: observations must be a list")
        return cls(
            float(data["prior_median"]),
            float(data["prior_sigma"]),
            prior_weight=float(data["prior_weight"]),
            window=int(data["window"]),
            observations=[float(d) for d in observations],
            informative=[bool(i) for i in data.get("informative", [True] * len(observations))],
        )

    def __repr__(self) -> str:
        return (
            f"DurationModel(median={self.median:.1f}, sigma={self.sigma:.3f}, "
            f"n={len(self._durations)})"
        )


@dataclass(frozen=True)
class _Table:
    """The cumulative poll density N over a grid of z = (log t - mu) / sigma."""

    mu: float
    sigma: float
    z: tuple[float, ...]
    n: tuple[float, ...]  # N(t(z)): polls due from t = 0 to t(z), increasing
    kappa: float

    def t(self, z: float) -> float:
        return math.exp(self.mu + self.sigma * z)

    @property
    def t_tail(self) -> float:
        return self.t(self.z[-1])


@lru_cache(maxsize=64)
def _table(
    mu: float, sigma: float, target_delay: float, tail_quantile: float, tail_interval: float
) -> _Table:
    z_tail = _STD.inv_cdf(tail_quantile)
    steps = max(math.ceil((z_tail - _Z_LOW) / _Z_STEP), 1)
    zs = [_Z_LOW + (z_tail - _Z_LOW) * i / steps for i in range(steps + 1)]
    # In z: dt = sigma t dz, h(t) = λ(z) / (sigma t), f(t) dt = φ(z) dz.
    density, inverse = [], []  # sqrt(h) dt/dz and f h^(-1/2) dt/dz
    for z in zs:
        t = math.exp(mu + sigma * z)
        lam = _normal_hazard(z)
        density.append(math.sqrt(lam * sigma * t))
        inverse.append(_STD.pdf(z) * math.sqrt(sigma * t / lam))
    dz = (z_tail - _Z_LOW) / steps
    body = sum((a + b) / 2 * dz for a, b in pairwise(inverse))
    body_delay = target_delay - (1.0 - tail_quantile) * tail_interval / 2
    # κ: E[delay] = κ/2 · body + P(tail) · tail_interval / 2 = target_delay.
    kappa = max(2.0 * body_delay / body, 1e-9) if body > 0 else 1e-9
    cumulative, total = [0.0], 0.0
    for a, b in pairwise(density):
        total += (a + b) / 2 * dz / kappa
        cumulative.append(total)
    return _Table(mu, sigma, tuple(zs), tuple(cumulative), kappa)


@dataclass(frozen=True)
class PollSchedule:
    """When to poll a run next (see the module docstring for the rule and an example)."""

    min_interval: float = 2.0
    max_interval: float = 600.0
    target_delay: float = 7.0  # the mean seconds between finishing and being noticed
    tail_quantile: float = 0.999  # past the model's q(this): a flat `tail_interval`
    tail_interval: float = 30.0
    queued_interval: float = 60.0  # for a run last seen QUEUED
    # Probe while the model is not proven. Off where something else says when runs end
    # (the upstream's notifications): there runs are rarely seen going, and need not be.
    probe: bool = True

    def __post_init__(self) -> None:
        if not 0 < self.min_interval <= self.max_interval:
            raise ValueError("need 0 < min_interval <= max_interval")
        if not 0.5 < self.tail_quantile < 1.0:
            raise ValueError("tail_quantile must be in (0.5, 1)")
        if self.tail_interval <= 0 or self.queued_interval <= 0:
            raise ValueError("tail_interval and queued_interval must be positive")
        if self.target_delay <= (1.0 - self.tail_quantile) * self.tail_interval / 2:
            raise ValueError("target_delay is too small for the tail interval")

    def _clamp(self, seconds: float) -> float:
        return min(max(seconds, self.min_interval), self.max_interval)

    def table(self, model: DurationModel) -> _Table:
        return _table(
            model.mu, model.sigma, self.target_delay, self.tail_quantile, self.tail_interval
        )

    def next_poll_elapsed(self, elapsed: float, model: DurationModel) -> float:
        """The elapsed time at which one more poll's worth of density has accrued (unclamped)."""
        table = self.table(model)
        t = max(elapsed, 0.0)
        t_tail = table.t_tail
        if t >= t_tail:
            return t + self.tail_interval
        z = -math.inf if t <= 0 else (math.log(t) - table.mu) / table.sigma
        zs, ns = table.z, table.n
        if z <= zs[0]:
            done = 0.0
        else:
            i = min(bisect_right(zs, z) - 1, len(zs) - 2)
            share = (z - zs[i]) / (zs[i + 1] - zs[i])
            done = ns[i] + share * (ns[i + 1] - ns[i])
        due = done + 1.0
        if due >= ns[-1]:
            return max(t_tail, t) + (due - ns[-1]) * self.tail_interval
        j = bisect_right(ns, due) - 1
        share = (due - ns[j]) / (ns[j + 1] - ns[j]) if ns[j + 1] > ns[j] else 0.0
        return table.t(zs[j] + share * (zs[j + 1] - zs[j]))

    def delay(self, elapsed: float, model: DurationModel, last_status: str | None = None) -> float:
        """Seconds from now until the next poll of a run `elapsed` seconds old, not terminal.

        `last_status` is what the last poll said (None: not polled yet). QUEUED means the
        run has not started, so its age says nothing: poll every `queued_interval`. Any
        other status, known or not, follows the schedule. While the model is not proven,
        no later than `elapsed` from now (probing: see the module docstring).
        """
        if not math.isfinite(elapsed):
            return self.max_interval if elapsed > 0 else self.min_interval
        if last_status is not None and last_status.upper() == "QUEUED":
            planned = self.queued_interval
        else:
            planned = self.next_poll_elapsed(elapsed, model) - max(elapsed, 0.0)
        if self.probe and not model.proven:
            # Probing: however wrong the model, a run is noticed about its duration late.
            planned = min(planned, max(elapsed, self.min_interval))
        return self._clamp(planned)
