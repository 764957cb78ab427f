"""The admin HTTP API under /admin, guarded by the admin key (`PROXY_ADMIN_KEY`).

Without an admin key configured, every /admin route answers 403 and says how to enable it.
A created key is in the answer once; lists show key prefixes only.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from proxy.core.config import MIN_SECRET_LENGTH, MINT_COMMAND
from proxy.core.errors import BadInput, GatewayError, Unauthenticated
from proxy.core.keys import matches_a_secret
from proxy.edge.auth import key_attempts, operator_credential
from proxy.edge.bodies import parse_body, read_body
from proxy.edge.responses import report_response
from proxy.services.gateway import Gateway
from proxy.services.operations import OPERATIONS, Operator
from proxy.services.reports import parse_query

__all__ = ["MAX_ADMIN_BODY_BYTES", "routes"]

#: An admin body is a team's name and limits, or a webhook URL: a few hundred bytes.
MAX_ADMIN_BODY_BYTES = 16_384
LATEST = 221_845_392_000  # 9000-01-01 UTC: the virtual clock goes no further


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
    attempts, client = key_attempts(request)
    now = gateway.wall_clock.now()
    attempts.check(client, now)
    given = operator_credential(request.headers)
    if not matches_a_secret(given, admin_key):
        if given:  # a guess; a request with no key at all guesses nothing
            attempts.failed(client, now)
        raise Unauthenticated(
            "the admin API needs the admin key in X-Admin-Key (or Authorization: Bearer)"
        )
    return gateway


async def _object(request: Request) -> dict[str, Any]:
    """The JSON object an admin request sends: read only once the admin key is known good
    (an unauthenticated body is never read), and at most `MAX_ADMIN_BODY_BYTES` of it."""
    _gateway(request)
    body = parse_body(await read_body(request, MAX_ADMIN_BODY_BYTES))
    if not isinstance(body, dict):
        raise BadInput("the admin request body must be a JSON object")
    return body


def _operator(gateway: Gateway, now: float | None = None) -> Operator:
    return Operator(gateway.store, gateway.clock.now() if now is None else now, gateway.settings)


async def _run(request: Request, operation: str, **args: Any) -> dict[str, Any]:
    """Run the admin operation (the command line's too) with `args`."""
    return await OPERATIONS[operation](_operator(_gateway(request)), args)


async def list_teams(request: Request) -> Response:
    return JSONResponse(await _run(request, "list-teams"))


async def add_team(request: Request) -> Response:
    body = await _object(request)
    name, limits = body.pop("name", ""), body.pop("limits", None)
    if body:
        raise BadInput(
            f'unknown fields {sorted(body)}: a new team takes "name" and "limits", '
            'e.g. {"name": "video", "limits": {"daily_budget": 50}}'
        )
    made = await _run(request, "create-team", name=name, limits=limits)
    note = "the key and the webhook secret are shown once; store them now"
    return JSONResponse({**made, "note": note}, status_code=201)


async def add_key(request: Request) -> Response:
    made = await _run(request, "create-key", team=request.path_params["name"])
    return JSONResponse(made, status_code=201)


async def revoke_key(request: Request) -> Response:
    return JSONResponse(await _run(request, "revoke-key", prefix=request.path_params["prefix"]))


async def revoke_team_keys(request: Request) -> Response:
    return JSONResponse(await _run(request, "revoke-team", team=request.path_params["name"]))


async def set_limits(request: Request) -> Response:
    changes = await _object(request)
    return JSONResponse(
        await _run(request, "set-limits", team=request.path_params["name"], limits=changes)
    )


async def update_team(request: Request) -> Response:
    """A team's own settings: its webhook URL (null clears it); limits have /limits."""
    body = await _object(request)
    unknown = sorted(set(body) - {"webhook_url"})
    if unknown or not body:
        raise BadInput(
            f"unknown fields {unknown}: a team update takes "
            '{"webhook_url": "https://..."} (or null to clear it); '
            "limits change at PATCH /admin/teams/{name}/limits"
        )
    url = body["webhook_url"]
    changed = await _run(
        request, "set-webhook", team=request.path_params["name"], url=url, clear=url is None
    )
    return JSONResponse(changed)


async def advance_clock(request: Request) -> Response:
    """Virtual clock only: move time, then wait until every poll loop is asleep again."""
    gateway = _gateway(request)
    from proxy.core.clock import VirtualClock

    if not isinstance(gateway.clock, VirtualClock):
        raise GatewayError("the gateway runs on the system clock; start it with --clock virtual",
                           status_code=409)  # fmt: skip
    body = await _object(request)
    seconds = body.get("seconds")
    if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds < 0:
        raise BadInput('advance needs {"seconds": <a number of 0 or more>}')
    if seconds > LATEST - gateway.clock.now():  # int against float: 10**400 never overflows
        raise BadInput(
            "that advance would take the clock past the year 9000; "
            "no date after 9999 can be written: advance less"
        )
    gateway.clock.advance(float(seconds))
    await gateway.settle()
    return JSONResponse({"now": gateway.clock.now()})


async def rotate(request: Request) -> Response:
    return JSONResponse(await _run(request, "rotate-secret", team=request.path_params["name"]))


async def webhook_attempts(request: Request) -> Response:
    report = await _run(request, "webhooks", request_id=request.path_params["request_id"])
    return JSONResponse(report)


async def resend(request: Request) -> Response:
    message = await _run(request, "resend", webhook_id=request.path_params["webhook_id"])
    _gateway(request).deliverer.notify()
    return JSONResponse(message)


async def recover(request: Request) -> Response:
    body = await _object(request)
    queued = await _run(request, "recover", since=body.get("since", ""), team=body.get("team"))
    _gateway(request).deliverer.notify()
    return JSONResponse(queued)


async def usage(request: Request) -> Response:
    """Every team's usage per UTC day, or one team's (`team=`), as JSON or CSV."""
    query = parse_query(request.query_params)
    document = await _run(request, "usage", since=query.since, until=query.until, team=query.team)
    return report_response(document, query.form)


async def list_instances(request: Request) -> Response:
    """The gateway processes sharing this store: alive or not, and the runs each polls."""
    gateway = _gateway(request)
    # Liveness is wall-clock time (heartbeats), whatever clock the gateway's jobs run on.
    found = await OPERATIONS["list-instances"](_operator(gateway, gateway.wall_clock.now()), {})
    return JSONResponse({"this": gateway.instance, **found})


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
    Route("/admin/teams/{name}", update_team, methods=["PATCH"]),
    Route("/admin/keys/{prefix}", revoke_key, methods=["DELETE"]),
    Route("/admin/clock/advance", advance_clock, methods=["POST"]),
    Route("/admin/instances", list_instances, methods=["GET"]),
    Route("/admin/usage", usage, methods=["GET"]),
]
