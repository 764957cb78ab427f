"""The balance watch (issue 26, item 5): the company's Segmind credits read through the
budget every `credits_check_interval` and after a 406, kept with their time, exported,
shown, told once to the company's webhook when low, and a paid submit the balance cannot
cover refused with 406 before any upstream call. In-process gateways on real SQLite
files in front of the real fake, whose credits fall as runs are charged."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from proxy.core.config import PRICE
from proxy.core.webhooks import new_secret
from tests.proxy.harness import Harness
from tests.proxy.test_webhooks import HOOKS, HooksFactory, Receiver
from tests.proxy.test_webhooks import hooks as hooks

pytestmark = pytest.mark.anyio

INTERVAL = 300.0


async def _set_fake_credits(harness: Harness, credits: float) -> None:
    """As a test sets the fake's balance: its admin endpoint, over HTTP."""
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=harness.fake), base_url="http://fake"
    ) as fake:
        answer = await fake.post("/__admin/credits", json={"key": "key-1", "credits": credits})
        assert answer.status_code == 200, answer.text


async def _advance(harness: Harness, seconds: float) -> None:
    """Move both clocks; wait for the balance watch, then for the webhooks it queued."""
    await harness.advance(seconds, webhooks=False)
    await harness.gateway.balance.settle()
    await harness.settle_webhooks()


def _fake_credits(harness: Harness) -> float:
    return harness.fake_state.accounts.all()[0].credits


async def _company(hooks: HooksFactory, **settings: Any) -> tuple[Harness, Receiver, str]:
    secret = new_secret()
    harness, receiver = await hooks(
        company_webhook_url=f"{HOOKS}/company",
        company_webhook_secret=secret,
        credits_check_interval=INTERVAL,
        **settings,
    )
    return harness, receiver, secret


async def test_a_low_balance_is_told_once_and_a_run_it_cannot_pay_is_refused(
    hooks: HooksFactory,
) -> None:
    harness, receiver, secret = await _company(hooks)
    key = harness.team("alpha", daily_budget=None, monthly_budget=None)
    await _set_fake_credits(harness, 3 * PRICE)
    assert await harness.gateway.upstream_balance() is None  # not read before an interval
    await _advance(harness, INTERVAL)
    assert [e["route"] for e in harness.fake_state.journal.entries()] == ["credits"]
    events = receiver.to("/company")
    assert len(events) == 1
    event = events[0].verify(secret)  # signed with the company's secret
    assert event.type == "account.credits_low"
    assert events[0].data["runs_left"] == 3
    assert events[0].data["alert_runs"] == 50
    for n in range(3):
        answer = await harness.submit(key, {"Scene_1": f"paid {n}"})
        assert answer.status_code == 200, answer.text
    assert _fake_credits(harness) == pytest.approx(0.0, abs=1e-6)  # the fake charged them
    refused = await harness.submit(key, {"Scene_1": "one too many"})
    assert refused.status_code == 406
    assert "cannot pay for another run" in refused.json()["error"]
    assert len(harness.upstream_calls("submit")) == 3  # the 4th never reached Segmind
    # A repeat of a paid run is a JOIN: it costs nothing upstream and is still answered.
    joined = await harness.submit(key, {"Scene_1": "paid 0"})
    assert joined.status_code == 200
    assert joined.headers["x-cache-status"] == "JOIN"
    # The console and the metrics say what is left and how long it lasts.
    balance = await harness.gateway.upstream_balance()
    assert balance is not None
    assert balance.estimate == pytest.approx(0.0, abs=1e-6)
    assert balance.hours_left == pytest.approx(0.0, abs=1e-6)
    exposition = harness.gateway.metrics.render()[0].decode()
    assert "segmind_gateway_upstream_credits 0.0" in exposition
    # Later readings, still low: no second event. A top-up lifts the refusal.
    await _advance(harness, INTERVAL)
    await _set_fake_credits(harness, 100 * PRICE)
    await _advance(harness, INTERVAL)
    assert len(receiver.to("/company")) == 1
    again = await harness.submit(key, {"Scene_1": "after the top-up"})
    assert again.status_code == 200, again.text
    assert again.headers["x-cache-status"] == "MISS"


async def test_an_upstream_406_reads_the_balance_at_once(hooks: HooksFactory) -> None:
    harness, receiver, _ = await _company(hooks)
    key = harness.team("alpha", daily_budget=None, monthly_budget=None)
    await _set_fake_credits(harness, 0.0)
    first = await harness.submit(key, {"Scene_1": "unpaid"})
    assert first.status_code == 503  # Segmind's 406, as the gateway has always answered it
    await _advance(harness, 1.0)
    routes = [e["route"] for e in harness.fake_state.journal.entries()]
    assert routes == ["submit", "credits"]
    assert len(receiver.to("/company")) == 1
    second = await harness.submit(key, {"Scene_1": "unpaid again"})
    assert second.status_code == 406
    assert len(harness.upstream_calls("submit")) == 1


def test_company_events_need_a_secret() -> None:
    from proxy.core.config import ProxySettings

    with pytest.raises(ValueError, match="company_webhook_secret"):
        ProxySettings(company_webhook_url="https://example.com/hook")
    with pytest.raises(ValueError, match="whsec_"):
        ProxySettings(company_webhook_url="https://example.com/h", company_webhook_secret="x")
