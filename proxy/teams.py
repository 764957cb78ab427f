"""Creating teams and keys, revoking keys: the one implementation behind both the admin
command line and the admin HTTP API. A new key is returned once and never stored."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from .auth import hash_key, key_prefix, new_team_key
from .config import TeamLimits
from .store import SQLiteStore, Team, TeamKey

__all__ = ["NewKey", "create_key", "create_team", "describe_team"]


@dataclass(frozen=True)
class NewKey:
    team: Team
    key: str  # shown once, to whoever created it
    prefix: str


def create_team(store: SQLiteStore, name: str, limits: TeamLimits, now: float) -> NewKey:
    name = name.strip()
    if not name or len(name) > 64 or not all(c.isalnum() or c in "-_." for c in name):
        raise ValueError(f"team names are 1 to 64 letters, digits, '-', '_' or '.'; got {name!r}")
    team = store.create_team(uuid.uuid4().hex, name, limits, now)
    return create_key(store, team.name, now)


def create_key(store: SQLiteStore, team_name: str, now: float) -> NewKey:
    key = new_team_key()
    stored = store.add_key(team_name, hash_key(key), key_prefix(key), now)
    return NewKey(store.team(team_name), key, stored.prefix)


def describe_team(store: SQLiteStore, team: Team, now: float) -> dict[str, object]:
    """A team as the admin API and CLI show it: limits, key prefixes, spend; no secrets."""
    day, month = store.spent(team.id, now)
    keys: list[TeamKey] = store.keys(team.name)
    return {
        "name": team.name,
        "created_at": team.created_at,
        "limits": team.limits.model_dump(),
        "keys": [
            {"prefix": k.prefix, "created_at": k.created_at, "revoked_at": k.revoked_at}
            for k in keys
        ],
        "spent_today": round(day, 4),
        "spent_this_month": round(month, 4),
    }
