"""Budget alerts in the store, on both backends: the charge that crosses 50%, 80% or 100%
of a budget queues one `budget.threshold` message per threshold crossed, in its own unit
of work; never twice for a team, period and threshold; nothing without a webhook URL."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest

from proxy.core.config import TeamLimits
from proxy.db import Team
from proxy.rules import AdmissionRequest, Fence, LimitReached
from proxy.store import Store, open_store

pytestmark = pytest.mark.anyio

NOW = 1_790_000_000.0  # 2026-09-21 14:13:20 UTC
HOOK = "https://hooks.example.com/budget"


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    opened = open_store(store_url)
    yield opened
    opened.close()


async def _team(store: Store, daily: float | None, monthly: float | None) -> Team:
    limits = TeamLimits(
        submits_per_minute=None, max_concurrent=None, daily_budget=daily, monthly_budget=monthly
    )
    team = await store.create_team(Team(uuid.uuid4().hex, "alpha", NOW, limits, "whsec_test"))
    return await store.set_webhook(team.name, HOOK)


async def _charge(store: Store, team: Team, price: float, at: float = NOW) -> tuple[str, Any]:
    ask = AdmissionRequest(
        team=team,
        request_id=uuid.uuid4().hex,
        generation_id=uuid.uuid4().hex,
        scope_key=uuid.uuid4().hex,
        workflow_id="alerts",
        inputs={},
        price=price,
        instance="gateway-a",
    )
    admitted = await store.admit(ask, at)
    return ask.request_id, admitted


async def _alerts(store: Store, request_id: str) -> list[dict[str, Any]]:
    found = await store.messages_for_request(None, request_id)
    return [json.loads(message.body)["data"] for message, _ in found]


async def test_each_threshold_is_told_once_by_the_charge_that_crosses_it(store: Store) -> None:
    team = await _team(store, daily=10.0, monthly=100.0)
    quiet, _ = await _charge(store, team, 4.0)  # 40%
    assert await _alerts(store, quiet) == []
    # 80%: crosses 50% and 80% at once, and another $4 run would not fit: used up (100%).
    both, _ = await _charge(store, team, 4.0)
    told = await _alerts(store, both)
    assert [(a["period"], a["threshold"], a["spent"], a["budget"]) for a in told] == [
        ("daily", 0.5, 8.0, 10.0),
        ("daily", 0.8, 8.0, 10.0),
        ("daily", 1.0, 8.0, 10.0),
    ]
    assert {a["team"] for a in told} == {"alpha"}
    assert {a["period_start"] for a in told} == {"2026-09-21T00:00:00.000Z"}
    assert {a["request_id"] for a in told} == {both}
    with pytest.raises(LimitReached):
        await _charge(store, team, 4.0)  # refused: no charge, nothing told
    full, _ = await _charge(store, team, 2.0)  # exactly 100%: told already
    assert await _alerts(store, full) == []


async def test_used_up_is_told_when_the_next_run_would_not_fit(store: Store) -> None:
    team = await _team(store, daily=40.0, monthly=None)
    told = []
    for n in range(10):  # ten runs of $3.9674: 99.2% of $40, and the eleventh is refused
        request_id, _ = await _charge(store, team, 3.9674, NOW + n)
        told += [(n, a["threshold"]) for a in await _alerts(store, request_id)]
    assert told == [(5, 0.5), (8, 0.8), (9, 1.0)]
    with pytest.raises(LimitReached, match="budget"):
        await _charge(store, team, 3.9674, NOW + 10)


async def test_a_refund_and_a_second_crossing_tell_nothing_new(store: Store) -> None:
    team = await _team(store, daily=10.0, monthly=None)
    first, admitted = await _charge(store, team, 6.0)  # 60%: 50%, and used up for $6 runs
    assert [a["threshold"] for a in await _alerts(store, first)] == [0.5, 1.0]
    fence = Fence("gateway-a", admitted.token or 0)
    await store.record_status(
        admitted.generation.id, "FAILED", NOW + 1, fence=fence, error="boom", terminal=True,
        refund=True,
    )  # fmt: skip
    again, _ = await _charge(store, team, 6.0)  # 60% again, after the refund
    assert await _alerts(store, again) == []
    # The next day is a new period: told again there. The month has no budget.
    tomorrow, _ = await _charge(store, team, 6.0, NOW + 86_400)
    told = await _alerts(store, tomorrow)
    assert [(a["period"], a["threshold"], a["period_start"]) for a in told] == [
        ("daily", 0.5, "2026-09-22T00:00:00.000Z"),
        ("daily", 1.0, "2026-09-22T00:00:00.000Z"),
    ]


async def test_the_monthly_budget_is_told_on_its_own(store: Store) -> None:
    team = await _team(store, daily=None, monthly=10.0)
    request_id, _ = await _charge(store, team, 10.0)  # all of it at once: three thresholds
    told = await _alerts(store, request_id)
    assert [(a["period"], a["threshold"]) for a in told] == [
        ("monthly", 0.5), ("monthly", 0.8), ("monthly", 1.0)
    ]  # fmt: skip
    assert {a["period_start"] for a in told} == {"2026-09-01T00:00:00.000Z"}


async def test_no_webhook_url_no_alert_and_the_gauges_read_every_team(store: Store) -> None:
    team = await _team(store, daily=10.0, monthly=40.0)
    team = await store.set_webhook(team.name, None)
    request_id, _ = await _charge(store, team, 6.0)
    assert await _alerts(store, request_id) == []
    other = await store.create_team(
        replace(
            team,
            id=uuid.uuid4().hex,
            name="beta",
            limits=TeamLimits(daily_budget=None, monthly_budget=None),
        )
    )
    uses = {(u.team, u.period): (u.spent, u.fraction) for u in await store.budget_use(NOW)}
    assert uses == {
        ("alpha", "daily"): (6.0, 0.6),
        ("alpha", "monthly"): (6.0, 0.15),
        (other.name, "daily"): (0.0, None),
        (other.name, "monthly"): (0.0, None),
    }
