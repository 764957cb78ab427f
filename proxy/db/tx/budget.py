"""The company's upstream budget: its one row (pause and submit times, the calls
counted in the window), the calls granted, and the runs waiting for a slot.
"""

from __future__ import annotations

from proxy.db.tx.base import _Base

__all__ = ["BudgetTx"]

BUDGET_ROW = "company"


class BudgetTx(_Base):
    """Rows of `upstream_budget` and `upstream_calls`; WAITING runs."""

    def budget_times(self) -> tuple[float, float]:
        """(paused_until, submits_until) of the company's budget, read without its lock."""
        row = self._one(
            "SELECT paused_until, submits_until FROM upstream_budget WHERE name = ?", (BUDGET_ROW,)
        )
        return float(row[0]), float(row[1])

    def budget_state(self) -> tuple[float, float, int, float]:
        """(paused_until, submits_until, calls counted in the window, when old calls were
        last forgotten), locked to the end of the transaction."""
        paused_until, submits_until, calls, forgotten_at = self._one(
            "SELECT paused_until, submits_until, calls, forgotten_at FROM upstream_budget "
            f"WHERE name = ?{self.dialect.for_update}",
            (BUDGET_ROW,),
        )
        return float(paused_until), float(submits_until), int(calls), float(forgotten_at)

    def set_call_count(self, calls: int, forgotten_at: float) -> None:
        self._run(
            "UPDATE upstream_budget SET calls = ?, forgotten_at = ? WHERE name = ?",
            (calls, forgotten_at, BUDGET_ROW),
        )

    def raise_budget_times(self, *, paused_until: float = 0.0, submits_until: float = 0.0) -> None:
        self._run(
            "UPDATE upstream_budget SET paused_until = {greatest}(paused_until, ?), "
            "submits_until = {greatest}(submits_until, ?) WHERE name = ?",
            (paused_until, submits_until, BUDGET_ROW),
        )

    def forget_calls(self, before: float) -> int:
        """Delete the calls at or before `before`; returns how many."""
        return self._run("DELETE FROM upstream_calls WHERE at <= ?", (before,)).rowcount

    def nth_latest_call(self, n: int) -> float:
        """The time of the n-th latest call (n = 1: the latest)."""
        row = self._one("SELECT at FROM upstream_calls ORDER BY at DESC LIMIT 1 OFFSET ?", (n - 1,))
        return float(row[0])

    def add_call(self, at: float) -> None:
        self._run("INSERT INTO upstream_calls (at) VALUES (?)", (at,))

    def calls_between(self, start: float, end: float) -> list[float]:
        rows = self._all(
            "SELECT at FROM upstream_calls WHERE at >= ? AND at <= ? ORDER BY at", (start, end)
        )
        return [float(at) for (at,) in rows]

    def waiting_count(self) -> int:
        return int(self._one("SELECT COUNT(*) FROM generations WHERE status = 'WAITING'")[0])

    def any_waiting(self) -> bool:
        return self._one("SELECT 1 FROM generations WHERE status = 'WAITING' LIMIT 1") is not None

    def waiting_ahead(self, generation_id: str, up_to: int) -> int:
        """How many runs admitted before this one still wait to be sent (at most `up_to`)."""
        row = self._one(
            "SELECT COUNT(*) FROM (SELECT 1 FROM generations w, generations g "
            "WHERE g.id = ? AND w.status = 'WAITING' "
            "AND (w.created_at < g.created_at OR (w.created_at = g.created_at "
            "AND w.{order} < g.{order})) LIMIT ?) ahead",
            (generation_id, up_to),
        )
        return int(row[0])
