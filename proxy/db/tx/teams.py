"""Teams, their webhook secrets and URLs, and their API keys."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from proxy.core.config import TeamLimits
from proxy.db.records import Team, TeamKey
from proxy.db.tx.base import _Base

__all__ = ["TeamsTx"]

TEAM_COLUMNS = "t.id, t.name, t.created_at, t.limits, t.webhook_secret, t.webhook_url"


def _team(row: Sequence[Any]) -> Team:
    team_id, name, created_at, limits, secret, url = row
    return Team(team_id, name, created_at, TeamLimits.model_validate_json(limits), secret, url)


class TeamsTx(_Base):
    """Rows of `teams` and `api_keys`."""

    def insert_team(self, team: Team) -> bool:
        """False if the name is taken (by this or a concurrent transaction)."""
        cursor = self._run(
            "INSERT INTO teams (id, name, created_at, limits, webhook_secret) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING",
            (
                team.id,
                team.name,
                team.created_at,
                team.limits.model_dump_json(),
                team.webhook_secret,
            ),
        )
        return cursor.rowcount == 1

    def team_by_name(self, name: str) -> Team | None:
        row = self._one(f"SELECT {TEAM_COLUMNS} FROM teams t WHERE t.name = ?", (name,))
        return None if row is None else _team(row)

    def teams(self) -> list[Team]:
        return [_team(r) for r in self._all(f"SELECT {TEAM_COLUMNS} FROM teams t ORDER BY t.name")]

    def team_for_key(self, key_hash: str) -> Team | None:
        row = self._one(
            f"SELECT {TEAM_COLUMNS} FROM api_keys k JOIN teams t ON t.id = k.team_id "
            "WHERE k.hash = ? AND k.revoked_at IS NULL",
            (key_hash,),
        )
        return None if row is None else _team(row)

    def set_limits(self, team_id: str, limits: TeamLimits) -> None:
        self._run("UPDATE teams SET limits = ? WHERE id = ?", (limits.model_dump_json(), team_id))

    def set_team_webhook(self, team_id: str, url: str | None) -> None:
        self._run("UPDATE teams SET webhook_url = ? WHERE id = ?", (url, team_id))

    def secrets(self, team_id: str) -> tuple[str | None, str | None, float | None] | None:
        row = self._one(
            "SELECT webhook_secret, webhook_secret_previous, webhook_previous_until "
            "FROM teams WHERE id = ?",
            (team_id,),
        )
        return None if row is None else (row[0], row[1], row[2])

    def rotate_secret(self, team_id: str, secret: str, previous_until: float) -> None:
        self._run(
            "UPDATE teams SET webhook_secret_previous = webhook_secret, "
            "webhook_previous_until = ?, webhook_secret = ? WHERE id = ?",
            (previous_until, secret, team_id),
        )

    def insert_key(self, team_id: str, key_hash: str, prefix: str, now: float) -> None:
        self._run(
            "INSERT INTO api_keys (hash, team_id, prefix, created_at) VALUES (?, ?, ?, ?)",
            (key_hash, team_id, prefix, now),
        )

    def revoke_keys(self, now: float, *, team_id: str | None, prefix: str | None) -> int:
        column, value = ("prefix", prefix) if prefix is not None else ("team_id", team_id)
        cursor = self._run(
            f"UPDATE api_keys SET revoked_at = ? WHERE {column} = ? AND revoked_at IS NULL",
            (now, value),
        )
        return cursor.rowcount

    def keys(self, team_name: str | None = None) -> list[TeamKey]:
        query = (
            "SELECT k.prefix, t.name, k.created_at, k.revoked_at FROM api_keys k "
            "JOIN teams t ON t.id = k.team_id"
        )
        args: tuple[str, ...] = ()
        if team_name is not None:
            query += " WHERE t.name = ?"
            args = (team_name,)
        return [TeamKey(*row) for row in self._all(query + " ORDER BY k.created_at", args)]
