"""Teams, their keys and webhook secrets. Every change to keys or teams bumps the store's
auth version in the same unit of work, so every process drops what it remembered of keys
on its very next request (a revocation takes effect at once, in every replica)."""

from __future__ import annotations

from dataclasses import replace

from proxy.core.config import TeamLimits
from proxy.db.records import Team, TeamKey
from proxy.db.tx import Tx
from proxy.rules.errors import TeamExists, UnknownTeam

__all__ = [
    "add_key",
    "create_team",
    "revoke_keys",
    "rotate_secret",
    "set_limits",
    "set_webhook",
    "team_named",
    "team_secrets",
]


def team_named(tx: Tx, name: str) -> Team:
    team = tx.team_by_name(name)
    if team is None:
        raise UnknownTeam(
            f"no team named {name!r}; list teams with `python -m proxy admin list-teams`"
        )
    return team


def create_team(tx: Tx, team: Team) -> Team:
    if not tx.insert_team(team):
        raise TeamExists(f"a team named {team.name!r} already exists; pick another name")
    tx.bump_auth_version()
    return team


def add_key(tx: Tx, team_name: str, key_hash: str, prefix: str, now: float) -> TeamKey:
    team = team_named(tx, team_name)
    tx.insert_key(team.id, key_hash, prefix, now)
    tx.bump_auth_version()
    return TeamKey(prefix, team_name, now, None)


def revoke_keys(
    tx: Tx, now: float, *, team_name: str | None = None, prefix: str | None = None
) -> int:
    """Revoke one key (by prefix) or all of a team's keys; returns how many."""
    team_id = None if prefix is not None else team_named(tx, team_name or "").id
    count = tx.revoke_keys(now, team_id=team_id, prefix=prefix)
    tx.bump_auth_version()
    return count


def team_secrets(tx: Tx, team_id: str, now: float) -> list[str]:
    """The webhook secrets that sign now: the current one, and the previous one while
    its overlap lasts, so receivers can switch without losing a delivery."""
    found = tx.secrets(team_id)
    if found is None:
        return []
    current, previous, until = found
    if current is None:
        return []
    return [current, previous] if previous and until and now < until else [current]


def rotate_secret(tx: Tx, team_name: str, secret: str, now: float, overlap: float) -> None:
    team = team_named(tx, team_name)
    tx.rotate_secret(team.id, secret, now + overlap)
    tx.bump_auth_version()


def set_limits(tx: Tx, team_name: str, limits: TeamLimits) -> Team:
    team = team_named(tx, team_name)
    tx.set_limits(team.id, limits)
    tx.bump_auth_version()
    return replace(team, limits=limits)


def set_webhook(tx: Tx, team_name: str, url: str | None) -> Team:
    """The team's own webhook URL (None: none); checked by the caller (SSRF guard)."""
    team = team_named(tx, team_name)
    tx.set_team_webhook(team.id, url)
    tx.bump_auth_version()  # processes holding the team drop it, and read the URL anew
    return replace(team, webhook_url=url)
