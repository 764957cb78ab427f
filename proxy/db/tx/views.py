"""What operators look at (the console): reads only, never in a team's request."""

from __future__ import annotations

from proxy.db.records import Endpoint, OutboxMessage, RequestView, RunView
from proxy.db.tx.base import (
    GENERATION_COLUMNS,
    MESSAGE_COLUMNS,
    REQUEST_COLUMNS,
    _Base,
    _generation,
    _message,
    _qualified,
    _request,
)

__all__ = ["ViewsTx"]


class ViewsTx(_Base):
    """The console's reads. No index serves their orderings: an operator's page load
    scans, a team's request never. Each `limit` defaults to what a console page shows."""

    def runs_in_flight(self, limit: int = 200) -> list[RunView]:
        """Unfinished runs, oldest first, with their owner and how many requests share each."""
        rows = self._all(
            f"SELECT {_qualified('g', GENERATION_COLUMNS)}, COALESCE(t.name, '-'), "
            "(SELECT COUNT(*) FROM requests r WHERE r.generation_id = g.id) "
            "FROM generations g LEFT JOIN teams t ON t.id = g.owner_team_id "
            "WHERE g.terminal = 0 ORDER BY g.created_at LIMIT ?",
            (limit,),
        )
        width = len(GENERATION_COLUMNS.split(","))
        return [RunView(_generation(r[:width]), str(r[width]), int(r[width + 1])) for r in rows]

    def recent_requests(self, limit: int, team_id: str | None) -> list[RequestView]:
        """The latest requests (of one team, or all), newest first, with their runs."""
        where, args = ("WHERE r.team_id = ? ", [team_id]) if team_id is not None else ("", [])
        rows = self._all(
            f"SELECT {_qualified('r', REQUEST_COLUMNS)}, COALESCE(t.name, '-'), "
            f"{_qualified('g', GENERATION_COLUMNS)} FROM requests r "
            "JOIN generations g ON g.id = r.generation_id LEFT JOIN teams t ON t.id = r.team_id "
            f"{where}ORDER BY r.created_at DESC LIMIT ?",
            (*args, limit),
        )
        width = len(REQUEST_COLUMNS.split(","))
        return [
            RequestView(_request(r[:width]), str(r[width]), _generation(r[width + 1 :]))
            for r in rows
        ]

    def finished_polls(self, limit: int = 500) -> list[tuple[float, int]]:
        """(send-to-finish seconds, upstream polls) of the latest completed runs."""
        rows = self._all(
            "SELECT finished_at - created_at, polls FROM generations "
            "WHERE status = 'COMPLETED' AND upstream_id IS NOT NULL AND finished_at IS NOT NULL "
            "ORDER BY finished_at DESC LIMIT ?",
            (limit,),
        )
        return [(float(seconds), int(polls)) for seconds, polls in rows]

    def endpoints(self, limit: int = 100) -> list[Endpoint]:
        """Each (team, webhook URL) with its messages summed, latest used first."""
        latest = "SELECT {} FROM outbox x WHERE x.team_id = o.team_id AND x.url = o.url{} " \
                 "ORDER BY x.{} DESC LIMIT 1"  # fmt: skip
        rows = self._all(
            "SELECT COALESCE(t.name, '-'), o.url, COUNT(*), SUM(o.attempts), "
            "SUM(CASE WHEN o.state = 'pending' THEN 1 ELSE 0 END), "
            "SUM(CASE WHEN o.state IN ('failed', 'disabled') THEN 1 ELSE 0 END), "
            "MIN(CASE WHEN o.state = 'pending' THEN o.next_attempt_at END), "
            f"({latest.format('x.last_error', ' AND x.last_error IS NOT NULL', 'updated_at')}), "
            f"({latest.format('x.id', '', 'created_at')}) "
            "FROM outbox o LEFT JOIN teams t ON t.id = o.team_id "
            "GROUP BY o.team_id, t.name, o.url ORDER BY MAX(o.created_at) DESC LIMIT ?",
            (limit,),
        )
        return [
            Endpoint(
                str(team),
                str(url),
                int(n),
                int(tries or 0),
                int(pending or 0),
                int(failed or 0),
                due,
                error,
                str(last),
            )
            for team, url, n, tries, pending, failed, due, error, last in rows
        ]

    def recent_messages(self, limit: int = 50) -> list[tuple[OutboxMessage, str]]:
        """The latest webhook messages, newest first, with their team's name."""
        rows = self._all(
            f"SELECT {_qualified('o', MESSAGE_COLUMNS)}, COALESCE(t.name, '-') FROM outbox o "
            "LEFT JOIN teams t ON t.id = o.team_id ORDER BY o.created_at DESC LIMIT ?",
            (limit,),
        )
        return [(_message(row[:-1]), str(row[-1])) for row in rows]
