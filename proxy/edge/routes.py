"""The team-facing API: Segmind's own endpoints, as drop-in as a base URL and a key, and a
team's own usage report.

Drop-in: `POST /workflows/{id}` and `GET /workflows/request/{id}` take and give Segmind's
bodies and codes. Gateway extras ride on headers so they never collide with workflow
inputs: `X-Webhook-Url`, `Idempotency-Key`, `Cache-Control: no-cache` in; `X-Cache-Status`,
`RateLimit-Policy`, `RateLimit`, `Retry-After` and `X-Request-Id` out. Each handler parses,
asks the gateway's services (`proxy/services/gateway.py`) and formats; no rule lives here.
"""

from __future__ import annotations

import math
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from proxy.core.errors import BadInput, GatewayError, LimitExceeded
from proxy.core.fairqueue import DEFAULT_URGENCY, MAX_URGENCY
from proxy.core.quotas import RateDecision, gcra_state, ratelimit_headers
from proxy.db import StoreError, Team
from proxy.edge.auth import authenticate
from proxy.edge.bodies import parse_body, read_body
from proxy.edge.middleware import TEAM_KEY
from proxy.edge.responses import answered, report_response
from proxy.services.gateway import Gateway, SubmitOptions
from proxy.services.reports import parse_query, period, report

__all__ = ["MAX_IDEMPOTENCY_KEY", "ROUTES", "gateway_of"]

MAX_IDEMPOTENCY_KEY = 255


def gateway_of(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


async def _team(request: Request, gateway: Gateway) -> Team:
    with answered():
        team = await authenticate(gateway.store, request.headers)
    request.scope[TEAM_KEY] = team.name
    return team


def _policy_headers(team: Team, name: str, decision: RateDecision | None) -> dict[str, str]:
    return ratelimit_headers(name, decision) if decision is not None else {}


def _refused_rate_headers(exc: LimitExceeded, name: str, limit: int | None) -> None:
    """The RateLimit fields on a rate refusal too: none left, back after Retry-After."""
    exc.headers.update({
        "RateLimit-Policy": f'"{name}";q={limit or 0};w=60',
        "RateLimit": f'"{name}";r=0;t={exc.retry_after}',
    })  # fmt: skip


def _options(request: Request) -> SubmitOptions:
    headers = request.headers
    webhook = headers.get("x-webhook-url")
    if webhook is not None:
        try:  # urlsplit refuses a bracketed host that is no IPv6 address (`http://[x]/`)
            parts = urlsplit(webhook.strip())
            host = parts.hostname
        except ValueError as exc:
            raise BadInput(
                f"X-Webhook-Url is not a valid URL ({exc}); got {webhook[:100]!r}"
            ) from None
        if parts.scheme not in ("http", "https") or not host:
            raise BadInput(f"X-Webhook-Url must be an http(s) URL; got {webhook[:100]!r}")
        if parts.username or parts.password:
            raise BadInput("X-Webhook-Url must not carry credentials; sign-in is by signature")
    idempotency_key = headers.get("idempotency-key")
    if idempotency_key is not None and not 0 < len(idempotency_key) <= MAX_IDEMPOTENCY_KEY:
        raise BadInput(f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters")
    no_cache = any(
        d.strip().lower() in ("no-cache", "no-store")
        for d in headers.get("cache-control", "").split(",")
    )
    return SubmitOptions(
        no_cache,
        webhook.strip() if webhook else None,
        idempotency_key,
        priority=_urgency(headers.get("priority")),
    )


def _urgency(value: str | None) -> int:
    """The `u` of an RFC 9218 `Priority` field (`u=0, i`): 0 most urgent to 7, 3 when
    absent. It orders the team's own waiting runs only. Parameters it does not know (`i`,
    extensions) are ignored, as the RFC asks; a `u` out of range or not a digit is refused,
    since the caller plainly meant to set it."""
    if value is None:
        return DEFAULT_URGENCY
    for item in value.split(","):
        name, _, given = item.strip().partition("=")
        if name.strip() != "u":
            continue
        given = given.strip()
        if not (given.isdigit() and len(given) == 1 and int(given) <= MAX_URGENCY):
            raise BadInput(
                f"Priority: u must be an urgency from 0 (most urgent) to {MAX_URGENCY}, "
                f"e.g. 'Priority: u=1'; got {given[:20]!r}"
            )
        return int(given)
    return DEFAULT_URGENCY


async def _submit_state(gateway: Gateway, team: Team) -> RateDecision | None:
    limit = team.limits.submits_per_minute
    if limit is None:
        return None
    try:
        tat = await gateway.store.rate_tat(team.id, "submits")
    except StoreError:
        return None  # the fields are a courtesy: the answer itself says what happened
    return gcra_state(tat, gateway.clock.now(), limit)


def _poll_state(gateway: Gateway, team: Team) -> RateDecision | None:
    limit = team.limits.polls_per_minute
    if limit is None:
        return None
    return gateway.poll_limits.peek(team.id, limit, gateway.clock.now())


def _add_rate_fields(exc: GatewayError, name: str, state: RateDecision | None) -> None:
    """Every answer to a known team carries the RateLimit fields, errors included."""
    if state is not None and "RateLimit" not in exc.headers:
        exc.headers.update(ratelimit_headers(name, state))


async def submit(request: Request) -> Response:
    gateway = gateway_of(request)
    team = await _team(request, gateway)
    try:
        options = _options(request)
        body = parse_body(await read_body(request, gateway.settings.max_body_bytes))
        with answered():
            admission = await gateway.submit(
                team, request.path_params["workflow_id"], body, options
            )
    except LimitExceeded as exc:
        if exc.limit == "submits_per_minute":
            _refused_rate_headers(exc, "submits", team.limits.submits_per_minute)
        _add_rate_fields(exc, "submits", await _submit_state(gateway, team))
        raise
    except GatewayError as exc:
        _add_rate_fields(exc, "submits", await _submit_state(gateway, team))
        raise
    request_id = admission.request.id
    status = admission.request.cache_status.value
    headers = {"X-Cache-Status": status, **_policy_headers(team, "submits", admission.rate)}
    if admission.replayed:
        headers["Idempotent-Replayed"] = "true"
    messages = {
        "HIT": "The result is ready (cache hit, no cost). Poll poll_url to read it.",
        "JOIN": "Joined an identical run already in progress (no cost). Poll poll_url.",
        "MISS": "The request is queued. Poll poll_url, or wait for the webhook.",
    }
    answer: dict[str, object] = {
        # A HIT's result is ready: say so. Clients that read the submit answer's status at
        # all (Segmind's SDK does not; ours and the page's script poll either way) then find
        # COMPLETED at poll_url too.
        "status": "COMPLETED" if status == "HIT" else "QUEUED",
        "request_id": request_id,
        "poll_url": f"{gateway.settings.base_url}/workflows/request/{request_id}",
        "message": messages[status],
    }
    queue = await gateway.queue_place(admission.generation)
    if queue is not None:  # held for a slot of the company's upstream budget
        answer["queue"] = queue
        headers["X-Queue-Position"] = str(int(queue["position"]))
        headers["X-Queue-Send-After"] = str(math.ceil(queue["estimated_send_in"]))
    return JSONResponse(answer, headers=headers)


async def poll(request: Request) -> Response:
    gateway = gateway_of(request)
    team = await _team(request, gateway)
    try:
        with answered():
            answer = await gateway.poll(team, request.path_params["request_id"])
    except LimitExceeded as exc:
        if exc.limit == "polls_per_minute":
            _refused_rate_headers(exc, "polls", team.limits.polls_per_minute)
        raise
    except GatewayError as exc:
        _add_rate_fields(exc, "polls", _poll_state(gateway, team))
        raise
    headers = {
        "X-Cache-Status": answer.request.cache_status.value,
        **_policy_headers(team, "polls", answer.rate),
    }
    return Response(answer.body, headers=headers, media_type="application/json")


async def credits(request: Request) -> Response:
    gateway = gateway_of(request)
    team = await _team(request, gateway)
    state = await _submit_state(gateway, team)
    headers = ratelimit_headers("submits", state) if state is not None else {}
    with answered():
        return JSONResponse(await gateway.credits(team), headers=headers)


async def team_usage(request: Request) -> Response:
    """The key's own team's usage per UTC day; `team=` may only name that team."""
    gateway = gateway_of(request)
    team = await _team(request, gateway)
    query = parse_query(request.query_params)
    if query.team is not None and query.team != team.name:
        raise GatewayError(
            f"a team key reads its own team's usage only (team {team.name!r}); "
            "leave out team=, or ask an operator for the admin report",
            status_code=403,
        )
    first, last = period(query.since, query.until, gateway.clock.now())
    try:
        with answered():
            rate = gateway.take_read(team)  # after the cheap checks, before the store
            rows = await gateway.store.usage(first, last, team.name)
    except LimitExceeded as exc:
        _refused_rate_headers(exc, "polls", team.limits.polls_per_minute)
        raise
    response = report_response(report(first, last, team.name, rows), query.form)
    response.headers.update(_policy_headers(team, "polls", rate))
    return response


ROUTES = [
    Route("/workflows/request/{request_id}", poll, methods=["GET"]),
    Route("/workflows/{workflow_id}", submit, methods=["POST"]),
    Route("/v1/get-user-credits", credits, methods=["GET"]),
    Route("/v1/usage", team_usage, methods=["GET"]),
]
