"""The admin HTTP API under /admin, guarded by the admin key (`PROXY_ADMIN_KEY`).

Without an admin key configured, every /admin route answers 403 and says how to enable it.
A created key is in the answer once; lists show key prefixes only.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .auth import matches_a_secret, operator_credential
from .bodies import parse_body
from .config import MIN_SECRET_LENGTH, MINT_COMMAND, TeamLimits
from .errors import BadInput, GatewayError, NotFound, Unauthenticated
from .gateway import Gateway
from .teams import (
    create_key,
    create_team,
    describe_team,
    parse_since,
    rotate_secret,
    webhook_report,
)

__all__ = ["routes"]


def _gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    admin_key = gateway.settings.admin_key
    if admin_key is None:
        raise GatewayError(
            "the admin API is off: it is on when the gateway starts with PROXY_ADMIN_KEY set "
            f"to a secret of {MIN_SECRET_LENGTH}+ characters (make one with {MINT_COMMAND}); "
            "or use `python -m proxy admin ...` on the gateway's host",
            status_code=403,
        )
    if not matches_a_secret(operator_credential(request.headers), admin_key):
        raise Unauthenticated(
            "the admin API needs the admin key in X-Admin-Key (or Authorization: Bearer)"
        )
    return gateway


async def _object(request: Request) -> dict[str, Any]:
    body = parse_body(await request.body())
    if not isinstance(body, dict):
        raise BadInput("the admin request body must be a JSON object")
    return body


def _limits(values: Any, base: TeamLimits) -> TeamLimits:
    # A misspelt limit must not be ignored silently: the team would keep the old value.
    if not isinstance(values, dict):
        raise BadInput("limits must be a JSON object of limit names and values")
    known = sorted(TeamLimits.model_fields)
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise BadInput(f"unknown limits {unknown}; the limits are {known}")
    try:
        return TeamLimits.model_validate({**base.model_dump(), **values})
    except ValidationError as exc:
        first = exc.errors()[0]
        raise BadInput(f"invalid limits: {first['loc']}: {first['msg']}") from None


async def list_teams(request: Request) -> Response:
    gateway = _gateway(request)
    store, now = gateway.store, gateway.clock.now()
    teams = await store.teams()
    return JSONResponse({"teams": [await describe_team(store, t, now) for t in teams]})


async def add_team(request: Request) -> Response:
    gateway = _gateway(request)
    body = await _object(request)
    name = str(body.pop("name", ""))
    limits = _limits(body.pop("limits", None) or {}, gateway.settings.default_limits)
    if body:
        raise BadInput(
            f'unknown fields {sorted(body)}: a new team takes "name" and "limits", '
            'e.g. {"name": "video", "limits": {"daily_budget": 50}}'
        )
    try:
        made = await create_team(gateway.store, name, limits, gateway.clock.now())
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    return JSONResponse(
        {
            "team": await describe_team(gateway.store, made.team, gateway.clock.now()),
            "api_key": made.key,
            "webhook_secret": made.webhook_secret,
            "note": "the key and the webhook secret are shown once; store them now",
        },
        status_code=201,
    )


async def add_key(request: Request) -> Response:
    gateway = _gateway(request)
    made = await create_key(gateway.store, request.path_params["name"], gateway.clock.now())
    return JSONResponse(
        {"team": made.team.name, "api_key": made.key, "prefix": made.prefix}, status_code=201
    )


async def revoke_key(request: Request) -> Response:
    gateway = _gateway(request)
    prefix = request.path_params["prefix"]
    count = await gateway.store.revoke_keys(gateway.clock.now(), prefix=prefix)
    if not count:
        raise NotFound(f"no live key starts with {prefix!r}")
    return JSONResponse({"revoked": count})


async def revoke_team_keys(request: Request) -> Response:
    gateway = _gateway(request)
    count = await gateway.store.revoke_keys(
        gateway.clock.now(), team_name=request.path_params["name"]
    )
    return JSONResponse({"revoked": count})


async def set_limits(request: Request) -> Response:
    gateway = _gateway(request)
    name = request.path_params["name"]
    current = await gateway.store.team(name)
    limits = _limits(await _object(request), current.limits)
    team = await gateway.store.set_limits(name, limits)
    return JSONResponse(await describe_team(gateway.store, team, gateway.clock.now()))


async def advance_clock(request: Request) -> Response:
    """Virtual clock only: move time, then wait until every poll loop is asleep again."""
    gateway = _gateway(request)
    from .clock import VirtualClock

    if not isinstance(gateway.clock, VirtualClock):
        raise GatewayError("the gateway runs on the system clock; start it with --clock virtual",
                           status_code=409)  # fmt: skip
    body = await _object(request)
    seconds = body.get("seconds")
    if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds < 0:
        raise BadInput('advance needs {"seconds": <a number of 0 or more>}')
    gateway.clock.advance(float(seconds))
    await gateway.poller.settle()
    return JSONResponse({"now": gateway.clock.now()})


async def rotate(request: Request) -> Response:
    gateway = _gateway(request)
    name, overlap = request.path_params["name"], gateway.settings.webhook_secret_overlap
    secret = await rotate_secret(gateway.store, name, gateway.clock.now(), overlap)
    return JSONResponse({"team": name, "webhook_secret": secret, "overlap_seconds": overlap})


async def webhook_attempts(request: Request) -> Response:
    gateway = _gateway(request)
    report = await webhook_report(gateway.store, request.path_params["request_id"])
    return JSONResponse(report)


async def resend(request: Request) -> Response:
    gateway = _gateway(request)
    webhook_id = request.path_params["webhook_id"]
    message = await gateway.store.resend(webhook_id, gateway.clock.now())
    if message is None:
        raise NotFound(f"no webhook message {webhook_id!r}")
    gateway.deliverer.notify()
    return JSONResponse(message.public())


async def recover(request: Request) -> Response:
    gateway = _gateway(request)
    body = await _object(request)
    try:
        since = parse_since(str(body.get("since", "")))
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    team = body.get("team")
    team_id = (await gateway.store.team(str(team))).id if team else None
    count = await gateway.store.recover(since, gateway.clock.now(), team_id)
    gateway.deliverer.notify()
    return JSONResponse({"queued": count})


async def list_instances(request: Request) -> Response:
    """The gateway processes sharing this store: alive or not, and the runs each polls."""
    gateway = _gateway(request)
    now = gateway.heartbeat.wall.now()
    found = await gateway.store.instances()
    return JSONResponse({"this": gateway.instance, "instances": [i.public(now) for i in found]})


routes = [
    Route("/admin/teams/{name}/webhook-secret", rotate, methods=["POST"]),
    Route("/admin/requests/{request_id}/webhooks", webhook_attempts, methods=["GET"]),
    Route("/admin/webhooks/{webhook_id}/resend", resend, methods=["POST"]),
    Route("/admin/webhooks/recover", recover, methods=["POST"]),
    Route("/admin/teams", list_teams, methods=["GET"]),
    Route("/admin/teams", add_team, methods=["POST"]),
    Route("/admin/teams/{name}/keys", add_key, methods=["POST"]),
    Route("/admin/teams/{name}/revoke", revoke_team_keys, methods=["POST"]),
    Route("/admin/teams/{name}/limits", set_limits, methods=["PATCH", "POST"]),
    Route("/admin/keys/{prefix}", revoke_key, methods=["DELETE"]),
    Route("/admin/clock/advance", advance_clock, methods=["POST"]),
    Route("/admin/instances", list_instances, methods=["GET"]),
]
