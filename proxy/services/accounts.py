"""Creating teams and keys, revoking keys: the one implementation behind both the admin
command line and the admin HTTP API. A new key is returned once and never stored."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from proxy.core.config import TeamLimits
from proxy.core.errors import NotFound
from proxy.core.keys import hash_key, key_prefix, new_team_key
from proxy.core.webhooks import new_secret
from proxy.db import Team, TeamKey
from proxy.store import Store

__all__ = [
    "NewKey",
    "create_key",
    "create_team",
    "describe_team",
    "parse_since",
    "rotate_secret",
    "webhook_report",
]


@dataclass(frozen=True)
class NewKey:
    team: Team
    key: str  # shown once, to whoever created it
    prefix: str
    webhook_secret: str | None = None  # with a new team: shown once too


async def create_team(store: Store, name: str, limits: TeamLimits, now: float) -> NewKey:
    name = name.strip()
    if not name or len(name) > 64 or not all(c.isalnum() or c in "-_." for c in name):
        raise ValueError(f"team names are 1 to 64 letters, digits, '-', '_' or '.'; got {name!r}")
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


async def webhook_report(
    store: Store, request_id: str, team_id: str | None = None
) -> dict[str, Any]:
    """A request's webhook messages and every attempt, as the admin API and CLI show them."""
    found = await store.messages_for_request(team_id, request_id)
    if not found:
        raise NotFound(
            f"no webhook messages for request {request_id!r} (did it send X-Webhook-Url?)"
        )
    return {
        "request_id": request_id,
        "messages": [
            {**message.public(), "attempts": [asdict(a) for a in attempts]}
            for message, attempts in found
        ],
    }


def parse_since(value: str) -> float:
    """A time given as Unix seconds or ISO 8601 (UTC when no zone is given)."""
    try:
        return float(value)
    except ValueError:
        pass
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"since must be Unix seconds or an ISO 8601 time like 2026-11-25T10:00:00Z; "
            f"got {value!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()
