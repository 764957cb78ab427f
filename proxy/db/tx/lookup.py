"""What an operator looks up by id (the console's search, its request and run pages):
reads only, of any team, never in a team's request."""

from __future__ import annotations

from proxy.db.records import Generation, RequestView
from proxy.db.tx.base import (
    GENERATION_COLUMNS,
    REQUEST_COLUMNS,
    _Base,
    _generation,
    _qualified,
    _request,
)

__all__ = ["LookupTx"]

_VIEW = (
    f"SELECT {_qualified('r', REQUEST_COLUMNS)}, COALESCE(t.name, '-'), "
    f"{_qualified('g', GENERATION_COLUMNS)} FROM requests r "
    "JOIN generations g ON g.id = r.generation_id LEFT JOIN teams t ON t.id = r.team_id "
)


class LookupTx(_Base):
    """Requests and runs found by an id an operator was given."""

    def _views(self, rows: list[tuple[object, ...]]) -> list[RequestView]:
        width = len(REQUEST_COLUMNS.split(","))
        return [
            RequestView(_request(r[:width]), str(r[width]), _generation(r[width + 1 :]))
            for r in rows
        ]

    def request_view(self, request_id: str) -> RequestView | None:
        """A request of any team, with its team's name and its run."""
        found = self._views(self._all(_VIEW + "WHERE r.id = ?", (request_id,)))
        return found[0] if found else None

    def run_requests(self, generation_id: str) -> list[RequestView]:
        """Every request a run answered, oldest first."""
        return self._views(
            self._all(_VIEW + "WHERE r.generation_id = ? ORDER BY r.created_at", (generation_id,))
        )

    def run_by_id(self, text: str) -> tuple[Generation, int] | None:
        """The run whose id or upstream (Segmind) id is `text`, and its upstream polls."""
        row = self._one(
            f"SELECT {GENERATION_COLUMNS}, polls FROM generations WHERE id = ? OR upstream_id = ?",
            (text, text),
        )
        if row is None:
            return None
        return _generation(row[:-1]), int(row[-1])

    def requests_before(
        self, limit: int, team_id: str | None, before: float | None
    ) -> list[RequestView]:
        """The latest requests created before `before` (None: any), newest first: a page."""
        where: list[str] = []
        args: list[object] = []
        if team_id is not None:
            where.append("r.team_id = ?")
            args.append(team_id)
        if before is not None:
            where.append("r.created_at < ?")
            args.append(before)
        clause = f"WHERE {' AND '.join(where)} " if where else ""
        return self._views(
            self._all(_VIEW + clause + "ORDER BY r.created_at DESC LIMIT ?", (*args, limit))
        )
