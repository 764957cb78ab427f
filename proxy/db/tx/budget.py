"""The company's upstream budget: its one row (pause and submit times, the calls
counted in the window, the fair queue's virtual time), the calls granted, the runs
waiting for a slot and the teams' places in the fair queue (`fair_shares`).
"""

from __future__ import annotations

from proxy.core.config import TeamLimits
from proxy.core.fairqueue import Backlog
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

    def virtual_time(self) -> float:
        """The fair queue's virtual time (read under the budget row's lock, taken before)."""
        row = self._one("SELECT virtual_time FROM upstream_budget WHERE name = ?", (BUDGET_ROW,))
        return float(row[0])

    def backlogs(self) -> list[Backlog]:
        """Every team with runs waiting: how many, its weight and its finish tag."""
        rows = self._all(
            "SELECT w.owner_team_id, w.n, t.limits, f.finish FROM "
            "(SELECT owner_team_id, COUNT(*) AS n FROM generations WHERE status = 'WAITING' "
            "GROUP BY owner_team_id) w LEFT JOIN teams t ON t.id = w.owner_team_id "
            "LEFT JOIN fair_shares f ON f.team_id = w.owner_team_id ORDER BY w.owner_team_id",
        )
        return [
            Backlog(
                str(team_id),
                int(n),
                TeamLimits.model_validate_json(limits).weight if limits else 1.0,
                0.0 if finish is None else float(finish),
            )
            for team_id, n, limits, finish in rows
        ]

    def waiting_rank(self, generation_id: str) -> tuple[str, int] | None:
        """(team, how many of its team's waiting runs go before it: more urgent, or as
        urgent and admitted earlier) of a run, or None if it is not WAITING."""
        row = self._one(
            "SELECT g.owner_team_id, (SELECT COUNT(*) FROM generations w "
            "WHERE w.status = 'WAITING' AND w.owner_team_id = g.owner_team_id "
            "AND (w.priority < g.priority OR (w.priority = g.priority "
            "AND (w.created_at < g.created_at OR (w.created_at = g.created_at "
            "AND w.{order} < g.{order}))))) FROM generations g "
            "WHERE g.id = ? AND g.status = 'WAITING'",
            (generation_id,),
        )
        return None if row is None else (str(row[0]), int(row[1]))

    def set_fair_share(self, team_id: str, finish: float, virtual_time: float) -> None:
        """A run of `team_id` was sent: its team's finish tag and the queue's virtual time."""
        self._run(
            "INSERT INTO fair_shares (team_id, finish) VALUES (?, ?) "
            "ON CONFLICT (team_id) DO UPDATE SET finish = excluded.finish",
            (team_id, finish),
        )
        self._run(
            "UPDATE upstream_budget SET virtual_time = ? WHERE name = ?",
            (virtual_time, BUDGET_ROW),
        )

    def set_priority(self, generation_id: str, priority: int) -> None:
        self._run("UPDATE generations SET priority = ? WHERE id = ?", (priority, generation_id))

    def sent_cost_since(self, since: float) -> float:
        """Dollars of the runs sent upstream at or after `since` (a sent run's created_at
        is when it was sent), whoever sent them."""
        row = self._one(
            "SELECT COALESCE(SUM(cost), 0) FROM generations "
            "WHERE upstream_id IS NOT NULL AND created_at >= ?",
            (since,),
        )
        return float(row[0])

    def overdue_polls(self, now: float) -> list[Backlog]:
        """Every team with runs in flight upstream whose next poll is due: how many, and
        its weight (no finish tag: poll order keeps no history)."""
        rows = self._all(
            "SELECT g.owner_team_id, COUNT(*), t.limits FROM generations g "
            "LEFT JOIN teams t ON t.id = g.owner_team_id WHERE g.terminal = 0 "
            "AND g.upstream_id IS NOT NULL AND g.next_poll_at <= ? "
            "GROUP BY g.owner_team_id, t.limits ORDER BY g.owner_team_id",
            (now,),
        )
        return [
            Backlog(
                str(team_id),
                int(n),
                TeamLimits.model_validate_json(limits).weight if limits else 1.0,
            )
            for team_id, n, limits in rows
        ]

    def overdue_rank(self, generation_id: str, now: float) -> tuple[str, int] | None:
        """(team, how many of its team's due runs are more overdue) of a run whose poll
        is due, or None."""
        row = self._one(
            "SELECT g.owner_team_id, (SELECT COUNT(*) FROM generations w "
            "WHERE w.terminal = 0 AND w.upstream_id IS NOT NULL "
            "AND w.owner_team_id = g.owner_team_id AND (w.next_poll_at < g.next_poll_at "
            "OR (w.next_poll_at = g.next_poll_at AND w.id < g.id))) "
            "FROM generations g WHERE g.id = ? AND g.terminal = 0 "
            "AND g.upstream_id IS NOT NULL AND g.next_poll_at <= ?",
            (generation_id, now),
        )
        return None if row is None else (str(row[0]), int(row[1]))
