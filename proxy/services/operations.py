"""The admin operations, once: a table of named commands that the command line
(`python -m proxy admin NAME`), the admin HTTP API (`proxy/edge/admin_api.py`) and the
console run.

Each operation takes what it runs with (`Operator`: the store, the time, the settings) and
its arguments by name, and answers a JSON-able dict; the command line prints it (or a line
for people), the HTTP API sends it. Refusals are `GatewayError`s, which both edges show.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from pydantic import ValidationError

from proxy.core.config import ProxySettings, TeamLimits
from proxy.core.errors import BadInput, NotFound
from proxy.core.ssrf import AddressPolicy, WebhookUrlError, check_url_syntax, resolve_and_check
from proxy.services.accounts import (
    create_key,
    create_team,
    describe_team,
    rotate_secret,
)
from proxy.services.reports import period, report
from proxy.store import Store

__all__ = ["OPERATIONS", "Operation", "Operator", "merged_limits"]


@dataclass(frozen=True)
class Operator:
    store: Store
    now: float
    settings: ProxySettings


Operation = Callable[[Operator, Mapping[str, Any]], Awaitable[dict[str, Any]]]


def merged_limits(changes: Any, base: TeamLimits) -> TeamLimits:
    """`base` with `changes` (limit name: value) applied; a misspelt limit is refused, not
    ignored (the team would silently keep the old value)."""
    if not isinstance(changes, Mapping):
        raise BadInput("limits must be a JSON object of limit names and values")
    known = sorted(TeamLimits.model_fields)
    unknown = sorted(set(changes) - set(known))
    if unknown:
        raise BadInput(f"unknown limits {unknown}; the limits are {known}")
    try:
        return TeamLimits.model_validate({**base.model_dump(), **changes})
    except ValidationError as exc:
        first = exc.errors()[0]
        raise BadInput(f"invalid limits: {first['loc']}: {first['msg']}") from None


async def _create_team(op: Operator, args: Mapping[str, Any]) -> dict[str, Any]:
    limits = merged_limits(args.get("limits") or {}, op.settings.default_limits)
    try:
        made = await create_team(op.store, str(args.get("name", "")), limits, op.now)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    return {
        "team": await describe_team(op.store, made.team, op.now),
        "api_key": made.key,
        "webhook_secret": made.webhook_secret,
    }


async def _create_key(op: Operator, args: Mapping[str, Any]) -> dict[str, Any]:
    made = await create_key(op.store, args["team"], op.now)
    return {"team": made.team.name, "api_key": made.key, "prefix": made.prefix}


async def _list_teams(op: Operator, args: Mapping[str, Any]) -> dict[str, Any]:
    return {"teams": [await describe_team(op.store, t, op.now) for t in await op.store.teams()]}


async def _list_instances(op: Operator, args: Mapping[str, Any]) -> dict[str, Any]:
    return {"instances": [i.public(op.now) for i in await op.store.instances()]}


async def _revoke_key(op: Operator, args: Mapping[str, Any]) -> dict[str, Any]:
    prefix = args["prefix"]
    count = await op.store.revoke_keys(op.now, prefix=prefix)
    if not count:  # a typo must not read as a revoked (leaked) key
        raise NotFound(
            f"no live key starts with {prefix!r}; nothing was revoked "
            "(list-teams shows the live keys' prefixes)"
        )
    return {"revoked": count}


async def _revoke_team(op: Operator, args: Mapping[str, Any]) -> dict[str, Any]:
    return {"revoked": await op.store.revoke_keys(op.now, team_name=args["team"])}


async def _set_limits(op: Operator, args: Mapping[str, Any]) -> dict[str, Any]:
    current = await op.store.team(args["team"])
    team = await op.store.set_limits(args["team"], merged_limits(args["limits"], current.limits))
    return await describe_team(op.store, team, op.now)


async def _set_webhook(op: Operator, args: Mapping[str, Any]) -> dict[str, Any]:
    """The team's own webhook URL (its budget alerts go there), vetted as a request's
    X-Webhook-Url is: a public address, unless the operators allowed the network."""
    url = args.get("url")
    if url is None and not args.get("clear"):
        raise BadInput("give the team's webhook URL, or clear it (--clear; over HTTP: null)")
    if url is not None:
        if not isinstance(url, str):
            raise BadInput("webhook_url must be a string URL, or null to clear it")
        url = url.strip()
        policy = AddressPolicy(op.settings.webhook_allow_networks)
        try:
            check_url_syntax(url, policy=policy)
            await resolve_and_check(url, policy)
        except WebhookUrlError as exc:
            raise BadInput(f"webhook URL refused: {exc.message}") from None
    team = await op.store.set_webhook(args["team"], url)
    return await describe_team(op.store, team, op.now)


async def _rotate_secret(op: Operator, args: Mapping[str, Any]) -> dict[str, Any]:
    overlap = op.settings.webhook_secret_overlap
    secret = await rotate_secret(op.store, args["team"], op.now, overlap)
    return {"team": args["team"], "webhook_secret": secret, "overlap_seconds": overlap}


async def _webhooks(op: Operator, args: Mapping[str, Any]) -> dict[str, Any]:
    return await webhook_report(op.store, args["request_id"])


async def _resend(op: Operator, args: Mapping[str, Any]) -> dict[str, Any]:
    message = await op.store.resend(args["webhook_id"], op.now)
    if message is None:
        raise NotFound(f"no webhook message {args['webhook_id']!r}")
    return message.public()


async def _recover(op: Operator, args: Mapping[str, Any]) -> dict[str, Any]:
    try:
        since = parse_since(str(args.get("since", "")))
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    team = args.get("team")
    team_id = (await op.store.team(str(team))).id if team else None
    return {"queued": await op.store.recover(since, op.now, team_id)}


async def _usage(op: Operator, args: Mapping[str, Any]) -> dict[str, Any]:
    first, last = period(args.get("since"), args.get("until"), op.now)
    team = args.get("team") or None
    return report(first, last, team, await op.store.usage(first, last, team))


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


async def _outputs(op: Operator, args: Mapping[str, Any]) -> dict[str, Any]:
    """What the output store holds: objects, bytes, the oldest last use, and the runs
    that completed without copies (mirror failures, still to copy or given up)."""
    summary = await op.store.outputs_summary()
    return {
        "outputs": op.settings.outputs_target,
        "objects": summary.objects,
        "bytes": summary.bytes,
        "oldest_use": summary.oldest_use,
        "mirror_failures": summary.failures,
        "retention_seconds": op.settings.output_retention,
        "max_total_bytes": op.settings.output_max_total_bytes,
    }


OPERATIONS: dict[str, Operation] = {
    "create-team": _create_team,
    "create-key": _create_key,
    "list-teams": _list_teams,
    "list-instances": _list_instances,
    "revoke-key": _revoke_key,
    "revoke-team": _revoke_team,
    "set-limits": _set_limits,
    "set-webhook": _set_webhook,
    "rotate-secret": _rotate_secret,
    "webhooks": _webhooks,
    "resend": _resend,
    "recover": _recover,
    "usage": _usage,
    "outputs": _outputs,
}
