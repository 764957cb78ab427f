"""What admission reads and writes: idempotency keys, submit-rate state, the cache,
runs to share, a team's running count and spend, and the new run and request rows.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from proxy.db.records import Generation, RequestRecord
from proxy.db.tx.base import (
    GENERATION_COLUMNS,
    REQUEST_COLUMNS,
    _Base,
    _generation,
    _qualified,
)

__all__ = ["AdmissionTx"]


class AdmissionTx(_Base):
    """Admission's reads and writes."""

    def idempotency(self, team_id: str, key: str, now: float) -> tuple[str, str] | None:
        """(fingerprint, request id) of a live Idempotency-Key."""
        row = self._one(
            "SELECT fingerprint, request_id FROM idempotency "
            "WHERE team_id = ? AND key = ? AND expires_at > ?",
            (team_id, key, now),
        )
        return None if row is None else (str(row[0]), str(row[1]))

    def put_idempotency(
        self, team_id: str, key: str, fingerprint: str, request_id: str, expires_at: float
    ) -> None:
        self._run(
            "INSERT INTO idempotency (team_id, key, fingerprint, request_id, expires_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (team_id, key) DO UPDATE SET "
            "fingerprint = excluded.fingerprint, request_id = excluded.request_id, "
            "expires_at = excluded.expires_at",
            (team_id, key, fingerprint, request_id, expires_at),
        )

    def rate_tat(self, team_id: str, name: str) -> float | None:
        row = self._one(
            "SELECT tat FROM rate_state WHERE team_id = ? AND name = ?", (team_id, name)
        )
        return None if row is None else float(row[0])

    def set_rate_tat(self, team_id: str, name: str, tat: float) -> None:
        self._run(
            "INSERT INTO rate_state (team_id, name, tat) VALUES (?, ?, ?) "
            "ON CONFLICT (team_id, name) DO UPDATE SET tat = excluded.tat",
            (team_id, name, tat),
        )

    def put_cache(self, scope_key: str, generation_id: str, expires_at: float) -> None:
        self._run(
            "INSERT INTO cache (scope_key, generation_id, expires_at) VALUES (?, ?, ?) "
            "ON CONFLICT (scope_key) DO UPDATE SET generation_id = excluded.generation_id, "
            "expires_at = excluded.expires_at",
            (scope_key, generation_id, expires_at),
        )

    def shared(self, scope_key: str, now: float) -> tuple[Generation, str] | None:
        """What a request for `scope_key` can share, in one read: a finished result still
        cached ("HIT"), else the oldest run in flight ("JOIN")."""
        row = self._one(
            f"SELECT * FROM (SELECT {_qualified('g', GENERATION_COLUMNS)}, 'HIT' AS kind, "
            "0 AS rank FROM cache c JOIN generations g ON g.id = c.generation_id "
            "WHERE c.scope_key = ? AND c.expires_at > ? AND g.status = 'COMPLETED' "
            f"UNION ALL SELECT {GENERATION_COLUMNS}, 'JOIN', 1 FROM generations "
            "WHERE scope_key = ? AND terminal = 0) AS shared ORDER BY rank, created_at LIMIT 1",
            (scope_key, now, scope_key),
        )
        return None if row is None else (_generation(row[:-2]), str(row[-2]))

    def running_count(self, team_id: str) -> tuple[int, float | None]:
        """How many unfinished runs the team owns, and when the oldest was admitted."""
        count, oldest = self._one(
            "SELECT COUNT(*), MIN(created_at) FROM generations "
            "WHERE owner_team_id = ? AND terminal = 0",
            (team_id,),
        )
        return int(count), None if oldest is None else float(oldest)

    def spent(self, team_id: str, *periods: str) -> dict[str, float]:
        """What the team spent in each period (0.0 where nothing was)."""
        rows = self._all(
            f"SELECT period, amount FROM spend WHERE team_id = ? "
            f"AND period IN ({', '.join('?' * len(periods))})",
            (team_id, *periods),
        )
        found = {str(period): float(amount) for period, amount in rows}
        return {period: found.get(period, 0.0) for period in periods}

    def spend_in(self, *periods: str) -> list[tuple[str, str, float]]:
        """(team id, period, dollars) of every team's spend in these periods."""
        rows = self._all(
            f"SELECT team_id, period, amount FROM spend WHERE period IN "
            f"({', '.join('?' * len(periods))})",
            periods,
        )
        return [(str(team), str(period), float(amount)) for team, period, amount in rows]

    def add_spend(self, team_id: str, periods: Sequence[str], amount: float) -> None:
        """Add `amount` to the spend of each period, in one statement."""
        self._run(
            "INSERT INTO spend (team_id, period, amount) VALUES "
            + ", ".join("(?, ?, ?)" for _ in periods)
            + " ON CONFLICT (team_id, period) DO UPDATE SET "
            "amount = spend.amount + excluded.amount",
            [value for period in periods for value in (team_id, period, amount)],
        )

    def refund_spend(self, team_id: str, period: str, amount: float) -> None:
        self._run(
            "UPDATE spend SET amount = {greatest}(amount - ?, 0) WHERE team_id = ? AND period = ?",
            (amount, team_id, period),
        )

    def insert_generation(
        self,
        generation_id: str,
        scope_key: str,
        workflow_id: str,
        inputs: dict[str, Any],
        team_id: str,
        now: float,
        cost: float,
        charged: tuple[str, str],
    ) -> Generation:
        row = self._one(
            "INSERT INTO generations (id, scope_key, workflow_id, inputs, owner_team_id, "
            "status, terminal, created_at, updated_at, cost, charge_day, charge_month) "
            f"VALUES (?, ?, ?, ?, ?, 'WAITING', 0, ?, ?, ?, ?, ?) RETURNING {GENERATION_COLUMNS}",
            (
                generation_id,
                scope_key,
                workflow_id,
                json.dumps(inputs, sort_keys=True),
                team_id,
                now,
                now,
                cost,
                *charged,
            ),
        )
        return _generation(row)

    def insert_request(self, request: RequestRecord, day: str) -> None:
        """`day`: the UTC day the request counts in, in usage reports."""
        self._run(
            f"INSERT INTO requests ({REQUEST_COLUMNS}, day) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                request.id,
                request.team_id,
                request.generation_id,
                request.created_at,
                request.cache_status.value,
                request.webhook_url,
                request.idempotency_key,
                day,
            ),
        )
