"""Team accounts: a new team (with its first key and webhook secret), a new key, a new
secret, and a team as operators see it. A new key is returned once and never stored."""

from __future__ import annotations

import re
import unicodedata
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from proxy.core.config import TeamLimits
from proxy.core.keys import hash_key, key_prefix, new_team_key
from proxy.core.webhooks import new_secret
from proxy.db import Team, TeamKey
from proxy.store import Store

__all__ = [
    "NewKey",
    "create_key",
    "create_team",
    "describe_team",
    "rotate_secret",
    "team_name_problem",
]

TEAM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class NewKey:
    team: Team
    key: str  # shown once, to whoever created it
    prefix: str
    webhook_secret: str | None = None  # with a new team: shown once too


def team_name_problem(name: str, taken: Iterable[str] = ()) -> str | None:
    """Why `name` cannot be a new team's name, or None. Names are ASCII letters, digits,
    '-', '_' and '.', starting with a letter or digit: a name is in URLs, metrics labels
    and log lines, where a Cyrillic `\u0435` passes for `design`'s `e` and `..` is a path
    step; and no two names may differ only in case. Existing teams keep their names (a
    lookup is by the exact name), so one made before this rule is still managed."""
    if TEAM_NAME.fullmatch(name) is None:
        odd = next((c for c in name if not (c.isascii() and (c.isalnum() or c in "-_."))), None)
        what = ""
        if odd is not None:
            label = unicodedata.name(odd, f"U+{ord(odd):04X}")
            what = f" ({odd!r} at {name.index(odd) + 1} is {label})"
        elif name and not name[0].isalnum():
            what = " (it must start with a letter or digit)"
        return (
            f"team names are 1 to 64 characters: ASCII letters, digits, '-', '_' or '.', "
            f"starting with a letter or digit; got {name!r}{what}"
        )
    same = next((t for t in taken if t.casefold() == name.casefold()), None)
    if same is not None:
        return f"a team named {same!r} exists; names differing only in case are refused"
    return None


async def create_team(store: Store, name: str, limits: TeamLimits, now: float) -> NewKey:
    name = name.strip()
    problem = team_name_problem(name)
    if problem is None:
        problem = team_name_problem(name, [t.name for t in await store.teams() if t.name != name])
    if problem is not None:
        raise ValueError(problem)
    secret, key = new_secret(), new_team_key()
    team = Team(uuid.uuid4().hex, name, now, limits, secret)
    await store.create_team(team, (hash_key(key), key_prefix(key)))
    return NewKey(team, key, key_prefix(key), secret)


async def rotate_secret(store: Store, team_name: str, now: float, overlap: float) -> str:
    """A new webhook secret; the old one keeps signing for `overlap` seconds."""
    secret = new_secret()
    await store.rotate_secret(team_name, secret, now, overlap)
    return secret


async def create_key(store: Store, team_name: str, now: float) -> NewKey:
    key = new_team_key()
    stored = await store.add_key(team_name, hash_key(key), key_prefix(key), now)
    return NewKey(await store.team(team_name), key, stored.prefix)


async def describe_team(store: Store, team: Team, now: float) -> dict[str, object]:
    """A team as the admin API and CLI show it: limits, key prefixes, spend; no secrets."""
    day, month = await store.spent(team.id, now)
    keys: list[TeamKey] = await store.keys(team.name)
    return {
        "name": team.name,
        "created_at": team.created_at,
        "limits": team.limits.model_dump(),
        "keys": [
            {"prefix": k.prefix, "created_at": k.created_at, "revoked_at": k.revoked_at}
            for k in keys
        ],
        "webhook_url": team.webhook_url,
        "spent_today": round(day, 4),
        "spent_this_month": round(month, 4),
    }
