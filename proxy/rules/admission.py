"""Admission: HIT, JOIN or MISS, with every limit checked and spent in one unit of work.

The order is the product's: an Idempotency-Key replay is answered as before, whatever the
limits say now; then the team's submit rate; then a finished result (HIT) or a run in
flight (JOIN), which cost nothing and take no slot; only a MISS takes a concurrency slot
and is charged against the daily and monthly budgets, before it exists; a charge that
crosses 50%, 80% or 100% of a budget queues its `budget.threshold` events with it
(`rules/alerts.py`).

Locks, taken in this order by every admission so two never wait on each other: the
request's scope key (two identical requests: one MISS, one JOIN), then the team (its
rate, slots and budgets are read and written by one admission at a time).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from proxy.core.fairqueue import DEFAULT_URGENCY
from proxy.core.quotas import (
    RateDecision,
    budget_periods,
    gcra,
    seconds_to_next_day,
    seconds_to_next_month,
)
from proxy.db.records import Admission, CacheStatus, Generation, RequestRecord, Team
from proxy.db.tx import Tx
from proxy.rules import alerts
from proxy.rules.errors import IdempotencyMismatch, LimitReached
from proxy.rules.outbox import enqueue

__all__ = ["AdmissionRequest", "admit", "count_submit", "peek"]


@dataclass(frozen=True)
class AdmissionRequest:
    """Everything admission needs to decide HIT, JOIN or MISS, and the limits on a MISS."""

    team: Team
    request_id: str
    generation_id: str
    scope_key: str
    workflow_id: str
    inputs: dict[str, Any]
    price: float
    no_cache: bool = False
    webhook_url: str | None = None
    idempotency_key: str | None = None
    fingerprint: str = ""  # what an Idempotency-Key replay must match
    idempotency_ttl: float = 86400.0
    expected_run_seconds: float = 673.9
    instance: str | None = None  # the gateway process that will poll a new run (its lease)
    # Counted against the submit rate already (`count_submit`, before an image preflight):
    # admission then takes no second turn, and answers with this decision.
    submit_counted: bool = False
    counted_rate: RateDecision | None = None
    # RFC 9218 urgency (0 most urgent): orders a new run among its own team's waiting ones.
    priority: int = DEFAULT_URGENCY


def admit(tx: Tx, ask: AdmissionRequest, now: float) -> Admission:
    team = ask.team
    tx.lock_name(f"scope:{ask.scope_key}")
    tx.lock_team(team.id)
    if ask.idempotency_key:
        replay = _replay(tx, ask, now)
        if replay is not None:
            return replay
    rate = ask.counted_rate if ask.submit_counted else _take_submit(tx, team, now)
    generation, status = (None, CacheStatus.MISS) if ask.no_cache else _shared(tx, ask, now)
    token = None
    if generation is None:
        _check_concurrency(tx, ask, now)
        spent = _check_budgets(tx, ask, now)
        day, month = budget_periods(now)
        tx.add_spend(team.id, (day, month), ask.price)
        if spent is not None:
            alerts.on_charge(tx, team, ask.request_id, spent, ask.price, now)
        generation = tx.insert_generation(
            ask.generation_id,
            ask.scope_key,
            ask.workflow_id,
            ask.inputs,
            team.id,
            now,
            ask.price,
            (day, month),
        )
        if ask.priority != DEFAULT_URGENCY:
            tx.set_priority(generation.id, ask.priority)
        if ask.instance is not None:
            # Leased in the unit of work that creates it: no other process can take (and
            # fail) a run this one is still submitting.
            token = tx.set_lease(generation.id, ask.instance)
    request = RequestRecord(
        ask.request_id,
        team.id,
        generation.id,
        now,
        status,
        ask.webhook_url,
        ask.idempotency_key,
    )
    tx.insert_request(request, budget_periods(now)[0])
    if status is CacheStatus.HIT:
        enqueue(tx, request, generation, now)
    if ask.idempotency_key:
        tx.put_idempotency(
            team.id, ask.idempotency_key, ask.fingerprint, request.id, now + ask.idempotency_ttl
        )
    return Admission(request, generation, replayed=False, rate=rate, token=token)


def count_submit(tx: Tx, team: Team, now: float) -> RateDecision | None:
    """Count one submit against the team's rate now (refused past it): what a submit does
    before work that costs whether or not the run is then admitted (an image preflight
    fetches an address the team named, so its refusals are submits too)."""
    tx.lock_team(team.id)
    return _take_submit(tx, team, now)


def _take_submit(tx: Tx, team: Team, now: float) -> RateDecision | None:
    """One submit against the team's rate (refused past it), under its lock."""
    rate = _rate(tx, team, now)
    if rate is not None:
        tx.set_rate_tat(team.id, "submits", rate.tat)
    return rate


def peek(tx: Tx, ask: AdmissionRequest, now: float) -> CacheStatus | None:
    """Raise the `LimitReached` that `admit` would raise now for the team's cheap limits
    (submit rate; on a run that would be paid: concurrency and budgets), reading only: a
    refusal before any costly work (a webhook URL's DNS lookup, an image's preflight).
    Else the status `admit` would give now (None: an Idempotency-Key replay), so costly
    checks that only a paid run needs can be skipped for a HIT or a JOIN. `admit` stays
    the authority; this may let through what it then refuses, or say MISS for a request
    it then joins to a run started in between."""
    if ask.idempotency_key and _replay(tx, ask, now) is not None:
        return None  # a replay is answered as before, whatever the limits say now
    _rate(tx, ask.team, now)
    if not ask.no_cache:
        generation, status = _shared(tx, ask, now)
        if generation is not None:
            return status  # a HIT or a JOIN costs nothing and takes no slot
    _check_concurrency(tx, ask, now)
    _check_budgets(tx, ask, now)
    return CacheStatus.MISS


def _shared(tx: Tx, ask: AdmissionRequest, now: float) -> tuple[Generation | None, CacheStatus]:
    """A finished result to reuse (HIT), or a run in flight to join (JOIN)."""
    found = tx.shared(ask.scope_key, now)
    if found is None:
        return None, CacheStatus.MISS
    generation, kind = found
    return generation, CacheStatus(kind)


def _replay(tx: Tx, ask: AdmissionRequest, now: float) -> Admission | None:
    assert ask.idempotency_key is not None
    found = tx.idempotency(ask.team.id, ask.idempotency_key, now)
    if found is None:
        return None
    fingerprint, request_id = found
    if fingerprint != ask.fingerprint:
        raise IdempotencyMismatch(
            "this Idempotency-Key was already used with a different body; "
            "use a new key for a different request"
        )
    stored = tx.request_with_generation(ask.team.id, request_id)
    assert stored is not None, "an idempotency row always names a stored request"
    request, generation = stored
    return Admission(request, generation, replayed=True, rate=None)


def _rate(tx: Tx, team: Team, now: float) -> RateDecision | None:
    """The team's submit-rate decision now, or its refusal raised; writes nothing."""
    limit = team.limits.submits_per_minute
    if limit is None:
        return None
    decision = gcra(tx.rate_tat(team.id, "submits"), now, limit)
    if not decision.allowed:
        wait = decision.retry_after
        raise LimitReached(
            f"submit rate limit: team {team.name!r} may submit {limit} requests a minute; "
            f"retry in {max(1, int(-(-wait // 1)))} s",
            limit="submits_per_minute",
            retry_after=wait,
        )
    return decision


def _check_concurrency(tx: Tx, ask: AdmissionRequest, now: float) -> None:
    limit = ask.team.limits.max_concurrent
    if limit is None:
        return
    count, oldest = tx.running_count(ask.team.id)
    if count >= limit:
        # The real wait: until the oldest run is expected to finish.
        wait = (oldest or now) + ask.expected_run_seconds - now
        raise LimitReached(
            f"concurrency limit: team {ask.team.name!r} has {count} generations running "
            f"(limit {limit}); retry when one finishes, in about {max(1, int(wait))} s",
            limit="max_concurrent",
            retry_after=max(wait, 1.0),
        )


def _check_budgets(tx: Tx, ask: AdmissionRequest, now: float) -> dict[str, float] | None:
    """Refuse a run the team's budgets cannot take; else what it spent by period before
    (None: it has no budget)."""
    team, price = ask.team, ask.price
    day, month = budget_periods(now)
    checks = (
        ("daily_budget", team.limits.daily_budget, day, "today (UTC)", seconds_to_next_day),
        (
            "monthly_budget",
            team.limits.monthly_budget,
            month,
            "this month (UTC)",
            seconds_to_next_month,
        ),
    )
    if all(budget is None for _, budget, _, _, _ in checks):
        return None
    spent_in = tx.spent(team.id, day, month)
    for limit_name, budget, period, when, reset in checks:
        if budget is None:
            continue
        spent = spent_in[period]
        if spent + price > budget + 1e-9:
            raise LimitReached(
                f"{limit_name.replace('_', ' ')} exhausted: team {team.name!r} has spent "
                f"${spent:.2f} of ${budget:.2f} {when} and a run costs ${price:.4f}; "
                f"it resets in {reset(now) / 3600:.1f} h",
                limit=limit_name,
                retry_after=reset(now),
            )
    return spent_in
