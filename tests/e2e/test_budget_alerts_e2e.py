"""Budget alerts end to end: a real gateway and fake (uvicorn processes, virtual clocks)
and a team's receiver (tests/receiver.py). Paid runs push the team's spend past 50%, 80%
and 100% of its daily and monthly budgets; each threshold arrives once, signed with the
team's secret, and more runs after the budget is raised tell nothing twice. The budget
gauges on /metrics follow the store."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from client import verify_webhook
from proxy.core.config import PRICE
from tests.receiver import Receiver, eventually
from tests.stack import ADMIN_KEY, UPSTREAM_KEY, WORKFLOW, Stack, running_stack

ADMIN = {"x-admin-key": ADMIN_KEY}


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with running_stack(tmp_path / "gateway.sqlite", "video") as built:
        yield built


def _limits(stack: Stack, **limits: float) -> None:
    answer = httpx.patch(
        f"{stack.gateway.url}/admin/teams/video/limits", json=limits, headers=ADMIN
    )
    assert answer.status_code == 200, answer.text


def _run(stack: Stack, n: int) -> httpx.Response:
    return httpx.post(
        f"{stack.gateway.url}/workflows/{WORKFLOW}",
        json={"Scene_1": f"scene number {n}"},
        headers={"x-api-key": stack.team_key},
    )


def _gauges(stack: Stack) -> dict[tuple[str, str], float]:
    body = httpx.get(f"{stack.gateway.url}/metrics", headers=ADMIN).text
    return {
        (sample.name, sample.labels["period"]): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
        if sample.name.startswith("segmind_gateway_budget") and sample.labels["team"] == "video"
    }


def test_each_threshold_arrives_once_signed_with_the_teams_secret(
    stack: Stack, receiver: Receiver
) -> None:
    secret = httpx.post(
        f"{stack.gateway.url}/admin/teams/video/webhook-secret", headers=ADMIN
    ).json()["webhook_secret"]
    hooked = httpx.patch(
        f"{stack.gateway.url}/admin/teams/video", json={"webhook_url": receiver.url}, headers=ADMIN
    )
    assert hooked.status_code == 200, hooked.text
    assert hooked.json()["webhook_url"] == receiver.url
    daily, monthly = round(4 * PRICE, 4), round(8 * PRICE, 4)
    _limits(stack, daily_budget=daily, monthly_budget=monthly, max_concurrent=100)

    def told() -> list[tuple[str, float]]:
        return sorted(
            (d["period"], d["threshold"])
            for d in (json.loads(r.body)["data"] for r in receiver.received)
        )

    assert _run(stack, 1).status_code == 200  # 25% of the day
    assert _run(stack, 2).status_code == 200  # 50%
    eventually(lambda: told() == [("daily", 0.5)], what="the day's 50%")
    assert _run(stack, 3).status_code == 200  # 75%: nothing new
    assert _run(stack, 4).status_code == 200  # 100% of the day (80% too), 50% of the month
    expected = [("daily", 0.5), ("daily", 0.8), ("daily", 1.0), ("monthly", 0.5)]
    eventually(lambda: told() == expected, what="80% and 100% of the day, 50% of the month")
    assert _gauges(stack) == {
        ("segmind_gateway_budget_spent_dollars", "daily"): pytest.approx(4 * PRICE),
        ("segmind_gateway_budget_spent_dollars", "monthly"): pytest.approx(4 * PRICE),
        ("segmind_gateway_budget_used_ratio", "daily"): pytest.approx(1.0),
        ("segmind_gateway_budget_used_ratio", "monthly"): pytest.approx(0.5),
    }
    assert _run(stack, 5).status_code == 406  # the day's budget is spent: refused, no event

    # More runs on a larger daily budget: the day's spend crosses 80% of it again, which
    # was told already this day; the month's 80% is new.
    _limits(stack, daily_budget=monthly)
    for n in (6, 7, 8):
        assert _run(stack, n).status_code == 200  # the day and month at 7/8: 87.5%
    eventually(lambda: ("monthly", 0.8) in told(), what="the month's 80%")
    assert _run(stack, 9).status_code == 200  # nothing new: 80% was told for both
    assert _gauges(stack)["segmind_gateway_budget_used_ratio", "monthly"] == pytest.approx(1.0)
    eventually(lambda: ("monthly", 1.0) in told(), what="the month's 100%")
    assert told() == [*expected, ("monthly", 0.8), ("monthly", 1.0)]

    ids = [r.id for r in receiver.received]
    assert len(ids) == len(set(ids))  # each delivered once
    now = httpx.post(  # the gateway's (virtual) time: the signatures' timestamps are on it
        f"{stack.gateway.url}/admin/clock/advance", json={"seconds": 0}, headers=ADMIN
    ).json()["now"]
    for received in receiver.received:
        event = verify_webhook(
            received.body, received.headers, secret, now=dt.datetime.fromtimestamp(now, dt.UTC)
        )
        assert event.type == "budget.threshold"
        data = json.loads(received.body)["data"]
        assert data["team"] == "video"
        assert data["spent"] >= data["threshold"] * data["budget"] - 1e-6
        assert set(data) == {
            "team", "request_id", "period", "period_start", "threshold", "spent", "budget",
        }  # fmt: skip
        assert UPSTREAM_KEY not in received.body.decode()
        assert stack.team_key not in received.body.decode()


def test_a_team_webhook_url_is_vetted_like_any_webhook_url(stack: Stack) -> None:
    url = f"{stack.gateway.url}/admin/teams/video"
    for bad, words in (
        ("http://10.1.2.3/hook", "10.1.2.3"),
        ("http://169.254.169.254/latest", "169.254.169.254"),
        ("ftp://hooks.example.com/x", "http"),
        ("https://user:pw@hooks.example.com/x", "credentials"),
    ):
        refused = httpx.patch(url, json={"webhook_url": bad}, headers=ADMIN)
        assert refused.status_code == 400, (bad, refused.text)
        assert words in refused.json()["error"], refused.text
    bodies: list[dict[str, object]] = [{}, {"webhook_url": 3}, {"limits": {}}]
    for body in bodies:
        assert httpx.patch(url, json=body, headers=ADMIN).status_code == 400
    assert httpx.patch(url, json={"webhook_url": None}, headers={"x-admin-key": stack.team_key})\
        .status_code == 401  # fmt: skip
    gone = httpx.patch(
        f"{stack.gateway.url}/admin/teams/nobody", json={"webhook_url": None}, headers=ADMIN
    )
    assert gone.status_code == 404

    # The command line sets and clears it on the store file, with the same checks.
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "proxy", "admin", "set-webhook", "video", *args,
             "--db", str(stack.db)],
            capture_output=True, text=True, timeout=60,
            env={**os.environ, "PROXY_WEBHOOK_ALLOW_NETWORKS": '["127.0.0.0/8"]'},
        )  # fmt: skip

    assert cli("http://127.0.0.1:9/hooks").returncode == 0
    teams = httpx.get(f"{stack.gateway.url}/admin/teams", headers=ADMIN).json()["teams"]
    assert teams[0]["webhook_url"] == "http://127.0.0.1:9/hooks"
    private = cli("http://10.1.2.3/hook")
    assert private.returncode != 0
    assert "10.1.2.3" in private.stderr + private.stdout
    assert cli("--clear").returncode == 0
    teams = httpx.get(f"{stack.gateway.url}/admin/teams", headers=ADMIN).json()["teams"]
    assert teams[0]["webhook_url"] is None
