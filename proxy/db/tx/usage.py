"""Usage reports' reads: requests and runs summed per team per UTC day."""

from __future__ import annotations

from proxy.db.tx.base import _Base

__all__ = ["UsageTx"]


class UsageTx(_Base):
    """Requests and runs per team per day."""

    def requests_by_day(
        self, first: str, last: str, team_id: str | None
    ) -> list[tuple[str, str, str, int, float]]:
        """(team id, day, cache status, requests, the cost of the runs they used) for the
        days `first` to `last` (YYYY-MM-DD, both included)."""
        clause, args = ("", [first, last]) if team_id is None else (
            " AND r.team_id = ?", [first, last, team_id])  # fmt: skip
        rows = self._all(
            "SELECT r.team_id, r.day, r.cache_status, COUNT(*), SUM(g.cost) FROM requests r "
            "JOIN generations g ON g.id = r.generation_id "
            f"WHERE r.day >= ? AND r.day <= ?{clause} "
            "GROUP BY r.team_id, r.day, r.cache_status",
            args,
        )
        return [(str(t), str(d), str(s), int(n), float(c or 0)) for t, d, s, n, c in rows]

    def runs_by_day(
        self, first: str, last: str, team_id: str | None
    ) -> list[tuple[str, str, int, int, int, float]]:
        """(owner team id, day charged, runs charged, failed, refunded, dollars charged
        and not refunded) for the days `first` to `last` (both included)."""
        clause, args = ("", [first, last]) if team_id is None else (
            " AND owner_team_id = ?", [first, last, team_id])  # fmt: skip
        rows = self._all(
            "SELECT owner_team_id, charge_day, COUNT(*), "
            "SUM(CASE WHEN terminal = 1 AND status <> 'COMPLETED' THEN 1 ELSE 0 END), "
            "SUM(refunded), SUM(CASE WHEN refunded = 0 THEN cost ELSE 0 END) FROM generations "
            f"WHERE charge_day >= ? AND charge_day <= ?{clause} "
            "GROUP BY owner_team_id, charge_day",
            args,
        )
        return [
            (str(t), str(d), int(n), int(f or 0), int(r or 0), float(c or 0))
            for t, d, n, f, r, c in rows
        ]
