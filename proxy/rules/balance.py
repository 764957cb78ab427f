"""The company's Segmind balance, as the gateway last read it, and what it can still pay.

One account's credits pay for every team's runs. The gateway reads them now and then
(`proxy/services/balance.py`), and keeps the last reading with its time in the store
(`kv`), so every process sees one reading. Between readings it counts its own spend: the
runs sent upstream since the reading (`Tx.sent_cost_since`), so a balance that covers
three runs refuses the fourth before Segmind is asked, not after its 406.

When a reading is under `alert_runs` runs' worth, one `account.credits_low` event is
queued for the company's webhook URL, in the unit of work that records the reading; it is
told again only after a reading above the line (a top-up) and a fall under it again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from proxy.core.webhooks import CREDITS_EVENT, build_credits_body
from proxy.db.tx import Tx
from proxy.rules.outbox import queue

__all__ = ["COMPANY", "READING_KEY", "Balance", "balance", "record_reading"]

COMPANY = "_company"  # the outbox's owner of company events: no team's id (those are hex)
READING_KEY = "balance.reading"
RATE_SPAN = 3600.0  # seconds of spend the rate is taken over


@dataclass(frozen=True)
class Balance:
    """The last reading (credits and free credits together) and the spend since."""

    credits: float
    read_at: float
    spent_since: float  # dollars of runs sent since the reading
    spend_per_hour: float  # dollars of runs sent in the last hour

    @property
    def estimate(self) -> float:
        """What is left now, by the reading less the runs sent since."""
        return max(self.credits - self.spent_since, 0.0)

    @property
    def hours_left(self) -> float | None:
        """Hours until the estimate runs out at the last hour's spend; None: no spend."""
        return None if self.spend_per_hour <= 0 else self.estimate / self.spend_per_hour


@dataclass(frozen=True)
class Alerting:
    """Where and when to tell the company that its balance is low."""

    url: str | None
    alert_runs: int
    price: float


def record_reading(tx: Tx, credits: float, now: float, alerting: Alerting) -> Balance:
    """Keep a new reading of the balance (taken at `now`); queue `account.credits_low`
    if it is under the line and the last one was not."""
    previous = _stored(tx)
    line = alerting.alert_runs * alerting.price
    low = credits < line
    told = bool(previous and previous.get("low"))
    if low and not told and alerting.url:
        about = f"credits:{now:.3f}"
        body = build_credits_body(
            about=about,
            credits=credits,
            read_at=now,
            price=alerting.price,
            alert_runs=alerting.alert_runs,
            now=now,
        )
        queue(tx, COMPANY, alerting.url, about, CREDITS_EVENT, body, now)
    tx.set_kv(READING_KEY, json.dumps({"credits": credits, "at": now, "low": low}))
    return _balance(tx, credits, now, now)


def balance(tx: Tx, now: float) -> Balance | None:
    """The last reading and the spend since; None before the first reading."""
    stored = _stored(tx)
    if stored is None:
        return None
    return _balance(tx, float(stored["credits"]), float(stored["at"]), now)


def _balance(tx: Tx, credits: float, read_at: float, now: float) -> Balance:
    # A run sent in the very moment of the reading may or may not be in it: counted as
    # not, so the estimate errs low (a refusal a reading corrects), never high.
    spent = tx.sent_cost_since(read_at)
    per_hour = tx.sent_cost_since(now - RATE_SPAN) * 3600.0 / RATE_SPAN
    return Balance(credits, read_at, spent, per_hour)


def _stored(tx: Tx) -> dict[str, float] | None:
    text = tx.kv(READING_KEY)
    if text is None:
        return None
    try:
        found = json.loads(text)
    except ValueError:
        return None  # unreadable: as if never read; the next reading replaces it
    return found if isinstance(found, dict) else None
