"""The company-wide budget of upstream calls, kept in the store so that every gateway
process sharing it draws on one budget: Segmind's rate limit is per account.

One row: the GCRA state (`tat`), a pause every process honours after an upstream 429
(`paused_until`), and `submits_until`: while a refused submit waits for its turn, polls
step aside, so paid work goes first across processes too. Each is a time on the gateway's
clock; a process that dies leaves nothing that outlasts its own waits.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager

from ..quotas import gcra

__all__ = ["BUDGET_SCHEMA", "BudgetMixin"]

BUDGET_SCHEMA = """
CREATE TABLE IF NOT EXISTS upstream_budget (
    name TEXT PRIMARY KEY,
    tat REAL,
    paused_until REAL NOT NULL DEFAULT 0,
    submits_until REAL NOT NULL DEFAULT 0
);
INSERT OR IGNORE INTO upstream_budget (name) VALUES ('company');
"""

ROW = "company"  # the one row, made with the schema


class BudgetMixin:
    """The budget half of `SQLiteStore`: its methods run on the store's connections."""

    _transaction: Callable[[], AbstractContextManager[sqlite3.Connection]]

    def take_upstream(self, kind: str, now: float, per_minute: int) -> float:
        """Spend one upstream call of `kind` ("submit" or "poll") now, or say how many
        seconds to wait before asking again (0.0: go)."""
        with self._transaction() as db:
            tat, paused_until, submits_until = db.execute(
                "SELECT tat, paused_until, submits_until FROM upstream_budget WHERE name = ?",
                (ROW,),
            ).fetchone()
            if now < paused_until:
                return float(paused_until - now)
            interval = 60.0 / per_minute
            if kind != "submit" and now < submits_until:
                return interval
            decision = gcra(tat, now, per_minute)
            if decision.allowed:
                db.execute("UPDATE upstream_budget SET tat = ? WHERE name = ?", (decision.tat, ROW))
                return 0.0
            if kind == "submit":
                # Hold polls off until this submit is back for the slot it waits for.
                db.execute(
                    "UPDATE upstream_budget SET submits_until = MAX(submits_until, ?) "
                    "WHERE name = ?",
                    (now + decision.retry_after + interval, ROW),
                )
            return max(decision.retry_after, 1e-3)

    def pause_upstream(self, until: float) -> None:
        """After an upstream 429: no process calls upstream before `until`."""
        with self._transaction() as db:
            db.execute(
                "UPDATE upstream_budget SET paused_until = MAX(paused_until, ?) WHERE name = ?",
                (until, ROW),
            )
