"""The fair queue through the gateway's HTTP answers (issue 26, items 2 and 4): a held
submit says where it stands (`X-Queue-Position`, an estimated send time, the same in its
poll answer), and `Priority: u=N` orders a team's own held runs, never another team's.
In-process gateways on real SQLite files in front of the real fake."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from proxy.core.clock import VirtualClock
from proxy.rules.budget import MARGIN, WINDOW
from tests.proxy.conftest import MakeHarness
from tests.proxy.harness import Harness
from tests.proxy.test_console import ADMIN_KEY, UI, log_in

pytestmark = pytest.mark.anyio

ANSWER_WITHIN = 10.0  # real seconds: a held submit is answered at once


async def _submit(harness: Harness, key: str, scene: str, **headers: str) -> dict[str, Any]:
    answer = await asyncio.wait_for(
        harness.submit(key, {"Scene_1": scene}, **headers), ANSWER_WITHIN
    )
    assert answer.status_code == 200, answer.text
    await harness.gateway.poller.settle()  # the held run's sender asks the budget at once
    document: dict[str, Any] = answer.json()
    document["headers"] = answer.headers
    return document


def _sent(harness: Harness) -> list[str]:
    return [e["body"]["Scene_1"] for e in harness.upstream_calls("submit")]


async def test_urgency_overtakes_its_own_teams_runs_and_never_another_teams(
    make_harness: MakeHarness,
) -> None:
    harness = await make_harness(
        upstream_requests_per_minute=1, admin_key=ADMIN_KEY, wall_clock=VirtualClock(1e6)
    )
    alpha, beta = harness.team("alpha"), harness.team("beta")
    first = await _submit(harness, alpha, "a0")
    assert "x-queue-position" not in first["headers"]  # sent at once: no queue to stand in
    assert "queue" not in first
    held = await _submit(harness, alpha, "a1")
    assert held["headers"]["x-queue-position"] == "1"
    other = await _submit(harness, beta, "b1")
    # Beta's run goes before alpha's held one: alpha had the last slot.
    assert other["headers"]["x-queue-position"] == "1"
    urgent = await _submit(harness, alpha, "a2", priority="u=0, i")
    # Before its own team's u=3 run, behind the other team's.
    assert urgent["headers"]["x-queue-position"] == "2"
    assert urgent["queue"]["position"] == 2
    send_in = int(urgent["headers"]["x-queue-send-after"])
    assert 2 * (WINDOW + MARGIN) - 1 <= send_in <= 2 * (WINDOW + MARGIN) + 1
    polled = (await harness.poll(alpha, held["request_id"])).json()
    assert polled["status"] == "QUEUED"
    assert polled["queue"]["position"] == 3
    # The console's runs page says the same of each held run.
    page = (await (await log_in(harness)).get(f"{UI}/runs")).text
    for place in (1, 2, 3):
        assert f"place {place} in the fair queue" in page
    for _ in range(3):
        await harness.advance(WINDOW + MARGIN)
    assert _sent(harness) == ["a0", "b1", "a2", "a1"]
    polled = (await harness.poll(alpha, held["request_id"])).json()
    assert "queue" not in polled  # sent: no longer in the queue


@pytest.mark.parametrize("value", ["u=8", "u=-1", "u=high", "u="])
async def test_an_urgency_out_of_range_is_refused_before_any_cost(
    harness: Harness, value: str
) -> None:
    key = harness.team("alpha")
    answer = await harness.submit(key, {"Scene_1": "x"}, priority=value)
    assert answer.status_code == 400
    assert "Priority: u must be an urgency from 0" in answer.json()["error"]
    assert harness.upstream_calls("submit") == []


async def test_other_priority_parameters_are_ignored(harness: Harness) -> None:
    key = harness.team("alpha")
    answer = await harness.submit(key, {"Scene_1": "x"}, priority="i, foo=bar")
    assert answer.status_code == 200, answer.text
