"""A run (`generations`) after admission: read, locked with its lease, sent, polled,
finished, refunded, hinted; and the requests that share it.
"""

from __future__ import annotations

import json
from collections.abc import Collection

from proxy.db.records import Generation, RequestRecord
from proxy.db.tx.base import (
    GENERATION_COLUMNS,
    REQUEST_COLUMNS,
    _Base,
    _generation,
    _qualified,
    _request,
)

__all__ = ["RunsTx"]


class RunsTx(_Base):
    """Rows of `generations` and `requests` after admission."""

    def generation(self, generation_id: str) -> Generation:
        row = self._one(
            f"SELECT {GENERATION_COLUMNS} FROM generations WHERE id = ?", (generation_id,)
        )
        if row is None:
            raise KeyError(generation_id)
        return _generation(row)

    def run_and_lease(self, generation_id: str) -> tuple[Generation, tuple[str, int] | None]:
        """A run, locked to the end of the transaction, and its lease (instance, fencing
        token). The run's lock keeps its lease still too: a sweep skips locked runs."""
        lock = " FOR UPDATE OF g" if self.dialect.for_update else ""
        row = self._one(
            f"SELECT {_qualified('g', GENERATION_COLUMNS)}, l.instance, l.token "
            "FROM generations g LEFT JOIN poll_leases l ON l.generation_id = g.id "
            f"WHERE g.id = ?{lock}",
            (generation_id,),
        )
        if row is None:
            raise KeyError(generation_id)
        instance, token = row[-2], row[-1]
        lease = None if instance is None else (str(instance), int(token))
        return _generation(row[:-2]), lease

    def generation_inputs(self, generation_id: str) -> dict[str, object]:
        row = self._one("SELECT inputs FROM generations WHERE id = ?", (generation_id,))
        if row is None:
            raise KeyError(generation_id)
        inputs: dict[str, object] = json.loads(row[0])
        return inputs

    def charge_of(self, generation_id: str) -> tuple[str, float, str | None, str | None, bool]:
        """(owner, cost, day charged, month charged, refunded) of a run."""
        team_id, cost, day, month, refunded = self._one(
            "SELECT owner_team_id, cost, charge_day, charge_month, refunded FROM generations "
            "WHERE id = ?",
            (generation_id,),
        )
        return str(team_id), float(cost), day, month, bool(refunded)

    def set_refunded(self, generation_id: str) -> None:
        self._run("UPDATE generations SET refunded = 1 WHERE id = ?", (generation_id,))

    def set_submitted(
        self, generation_id: str, upstream_id: str, now: float, next_poll_at: float
    ) -> Generation | None:
        """The run, sent; None if it had ended meanwhile (then it is left as it is)."""
        # created_at becomes the send time: a run held before it was sent is polled, given
        # up and expired from when the upstream started it, as Segmind does.
        row = self._one(
            "UPDATE generations SET upstream_id = ?, status = 'QUEUED', updated_at = ?, "
            "created_at = ?, next_poll_at = ? WHERE id = ? AND terminal = 0 "
            f"RETURNING {GENERATION_COLUMNS}",
            (upstream_id, now, now, next_poll_at, generation_id),
        )
        return None if row is None else _generation(row)

    def set_status(
        self,
        generation_id: str,
        status: str,
        now: float,
        *,
        output: str | None,
        error: str | None,
        terminal: bool,
        next_poll_at: float | None,
        polled: bool = False,
    ) -> None:
        self._run(
            "UPDATE generations SET status = ?, output = ?, error = ?, terminal = ?, "
            "updated_at = ?, finished_at = ?, next_poll_at = ?, failing_since = NULL, "
            "polls = polls + ? WHERE id = ?",
            (
                status,
                output,
                error,
                int(terminal),
                now,
                now if terminal else None,
                None if terminal else next_poll_at,
                int(polled),
                generation_id,
            ),
        )

    def set_poll_failure(self, generation_id: str, now: float, next_poll_at: float) -> None:
        self._run(
            "UPDATE generations SET failing_since = COALESCE(failing_since, ?), "
            "next_poll_at = ?, updated_at = ?, polls = polls + 1 WHERE id = ? AND terminal = 0",
            (now, next_poll_at, now, generation_id),
        )

    def hintable(self, upstream_ids: Collection[str]) -> list[str]:
        """The running runs with these upstream ids whose early poll is still unspent."""
        if not upstream_ids:
            return []
        marks = ", ".join("?" * len(upstream_ids))
        rows = self._all(
            f"SELECT id FROM generations WHERE upstream_id IN ({marks}) AND terminal = 0 "
            "AND hinted_at IS NULL",
            tuple(upstream_ids),
        )
        return [str(gid) for (gid,) in rows]

    def set_hinted(self, generation_id: str, now: float) -> bool:
        """Bring the run's next poll forward to `now`, once; False if it was spent already,
        or the run ended, meanwhile."""
        cursor = self._run(
            "UPDATE generations SET hinted_at = ?, next_poll_at = "
            "CASE WHEN next_poll_at IS NULL OR next_poll_at > ? THEN ? ELSE next_poll_at END "
            "WHERE id = ? AND terminal = 0 AND hinted_at IS NULL",
            (now, now, now, generation_id),
        )
        return cursor.rowcount > 0

    def set_waiting(self, generation_id: str, now: float, *, sending: bool) -> None:
        """WAITING to SUBMITTING (`sending`), or back (the upstream refused it with 429)."""
        if sending:
            self._run(
                "UPDATE generations SET status = 'SUBMITTING', updated_at = ? WHERE id = ?",
                (now, generation_id),
            )
        else:
            self._run(
                "UPDATE generations SET status = 'WAITING', updated_at = ? "
                "WHERE id = ? AND status = 'SUBMITTING' AND upstream_id IS NULL",
                (now, generation_id),
            )

    def request_with_generation(
        self, team_id: str, request_id: str
    ) -> tuple[RequestRecord, Generation] | None:
        # One statement for both rows: this is every client poll's only query.
        row = self._one(
            f"SELECT {_qualified('r', REQUEST_COLUMNS)}, {_qualified('g', GENERATION_COLUMNS)} "
            "FROM requests r JOIN generations g ON g.id = r.generation_id "
            "WHERE r.id = ? AND r.team_id = ?",
            (request_id, team_id),
        )
        if row is None:
            return None
        width = len(REQUEST_COLUMNS.split(","))
        return _request(row[:width]), _generation(row[width:])

    def requests_of(self, generation_id: str) -> list[RequestRecord]:
        rows = self._all(
            f"SELECT {REQUEST_COLUMNS} FROM requests WHERE generation_id = ? ORDER BY created_at",
            (generation_id,),
        )
        return [_request(row) for row in rows]
