"""Budget alerts: a team's spend crossing 50%, 80% and 100% of its daily or monthly
budget, told to the team's own webhook URL as a signed `budget.threshold` event.

The event is queued by admission, in the unit of work that charges the run crossing the
threshold, so a crash never loses one nor sends one for a charge that did not commit. A
run crossing several thresholds queues one event for each. Each is sent once per team,
period and threshold: its message id is made of those, and the outbox keeps ids unique,
so a refund taking the spend back under and the next charge crossing again send nothing
new.

100% means the budget is used up: it cannot pay for another run. With ~$3.97 runs a
budget is rarely filled to the cent (ten runs are 99.2% of $40), so 100% is told by the
charge after which one more run would not fit, whatever the share it reaches: the team's
next run would be refused, and that is what the team needs to hear before it happens.
Delivery, retries and signing are the outbox's (`rules/outbox.py`, `proxy/services/deliverer.py`).

Also what the budget gauges show: each team's spend against each budget, now.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

from proxy.core.quotas import budget_periods
from proxy.core.webhooks import BUDGET_EVENT, build_budget_body
from proxy.db.records import Team
from proxy.db.tx import Tx
from proxy.rules.outbox import queue

__all__ = ["PERIODS", "THRESHOLDS", "BudgetUse", "budget_use", "crossed", "on_charge"]

THRESHOLDS = (0.5, 0.8, 1.0)  # fractions of a budget that are told when spend reaches them
PERIODS = ("daily", "monthly")
EPSILON = 1e-9  # spend adds up in floats: a run that fills a budget exactly reaches 100%


@dataclass(frozen=True)
class BudgetUse:
    """A team's spend in the current day or month (UTC), and its budget (None: none)."""

    team: str
    period: str  # "daily" or "monthly"
    spent: float
    budget: float | None

    @property
    def fraction(self) -> float | None:
        if self.budget is None or self.budget <= 0:
            return None
        return self.spent / self.budget


def crossed(before: float, after: float, budget: float, price: float) -> list[float]:
    """The thresholds a spend going from `before` to `after` reaches for the first time;
    1.0 (used up) as soon as another run of `price` would not fit."""
    found = [t for t in THRESHOLDS[:-1] if before + EPSILON < t * budget <= after + EPSILON]
    if before + price <= budget + EPSILON < after + price:
        found.append(THRESHOLDS[-1])
    return found


def _starts(now: float) -> dict[str, float]:
    moment = dt.datetime.fromtimestamp(now, dt.UTC)
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return {"daily": day.timestamp(), "monthly": day.replace(day=1).timestamp()}


def on_charge(
    tx: Tx, team: Team, request_id: str, before: Mapping[str, float], price: float, now: float
) -> None:
    """Queue the `budget.threshold` events that charging `price` now, on top of `before`
    (spend by period, as admission read it), crosses; nothing without a webhook URL."""
    if not team.webhook_url:
        return
    periods = dict(zip(PERIODS, budget_periods(now), strict=True))
    budgets = {"daily": team.limits.daily_budget, "monthly": team.limits.monthly_budget}
    starts = _starts(now)
    for name, period in periods.items():
        budget = budgets[name]
        if budget is None or budget <= 0:
            continue
        spent = before.get(period, 0.0)
        for threshold in crossed(spent, spent + price, budget, price):
            body = build_budget_body(
                team=team.name,
                request_id=request_id,
                period=name,
                period_start=starts[name],
                threshold=threshold,
                spent=spent + price,
                budget=budget,
                now=now,
            )
            once = f"{team.id}|{name}|{period}|{threshold}"
            queue(tx, team.id, team.webhook_url, request_id, BUDGET_EVENT, body, now, once_for=once)


def budget_use(tx: Tx, now: float) -> list[BudgetUse]:
    """Every team's spend today and this month (UTC), with its budgets."""
    day, month = budget_periods(now)
    spent = {(team, period): amount for team, period, amount in tx.spend_in(day, month)}
    found = []
    for team in tx.teams():
        for name, period, budget in (
            ("daily", day, team.limits.daily_budget),
            ("monthly", month, team.limits.monthly_budget),
        ):
            found.append(BudgetUse(team.name, name, spent.get((team.id, period), 0.0), budget))
    return found
