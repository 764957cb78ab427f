"""The control surface under /__admin: journal, clock, credits, scripted faults, chaos.

Guarded by `X-Admin-Token` when an admin token is configured. Answers name accounts by
label and never show a key.
"""

from __future__ import annotations

import hmac
import json
from dataclasses import asdict
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .errors import ApiError, InvalidInput
from .faults import ChaosSettings
from .jobs import state_of
from .notify import NotifySettings
from .state import FakeState

__all__ = ["routes"]


def _guarded(request: Request) -> FakeState:
    state: FakeState = request.app.state.fake
    token = state.settings.admin_token
    if token:
        given = request.headers.get("x-admin-token", "")
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise ApiError(401, "admin endpoints need the admin token in X-Admin-Token")
    return state


async def _json_object(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw) if raw.strip() else {}
    except ValueError:
        raise InvalidInput("the admin request body must be a JSON object") from None
    if not isinstance(body, dict):
        raise InvalidInput("the admin request body must be a JSON object")
    return body


async def journal(request: Request) -> Response:
    state = _guarded(request)
    route = request.query_params.get("route")
    try:
        since = int(request.query_params.get("since", "0"))
    except ValueError:
        raise InvalidInput("since must be a journal sequence number") from None
    return JSONResponse({"entries": state.journal.entries(route, since)})


async def counts(request: Request) -> Response:
    return JSONResponse(_guarded(request).journal.counts())


async def reset(request: Request) -> Response:
    _guarded(request).reset()
    return JSONResponse({"reset": True})


async def clock(request: Request) -> Response:
    return JSONResponse({"now": _guarded(request).clock.now()})


async def advance(request: Request) -> Response:
    state = _guarded(request)
    body = await _json_object(request)
    seconds = body.get("seconds")
    if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds < 0:
        raise InvalidInput('advance needs {"seconds": <a number of 0 or more>}')
    now = state.clock.advance(float(seconds))
    state.persist()
    return JSONResponse({"now": now})


async def script(request: Request) -> Response:
    state = _guarded(request)
    if request.method == "GET":
        return JSONResponse({"pending": state.faults.pending()})
    body = await _json_object(request)
    responses = body.get("responses")
    if not isinstance(responses, list) or not responses:
        raise InvalidInput(
            'script needs {"route": "submit"|"poll"|"credits"|"any", '
            '"responses": [{"code": 502}, {"fault": "reset"}, ...]}'
        )
    queued = state.faults.script(str(body.get("route", "any")), responses)
    return JSONResponse({"queued": queued, "pending": state.faults.pending()})


async def credits(request: Request) -> Response:
    state = _guarded(request)
    body = await _json_object(request)
    label, amount = body.get("key"), body.get("credits")
    account = state.accounts.by_label(str(label))
    if account is None:
        labels = ", ".join(a.label for a in state.accounts.all())
        raise InvalidInput(f"no account labelled {label!r}; accounts are {labels}")
    if not isinstance(amount, int | float) or isinstance(amount, bool) or amount < 0:
        raise InvalidInput('credits needs {"key": "<label>", "credits": <a number of 0 or more>}')
    account.credits = float(amount)
    state.persist()
    return JSONResponse({"key": account.label, "credits": account.credits})


async def accounts(request: Request) -> Response:
    state = _guarded(request)
    return JSONResponse(
        {
            "accounts": [
                {
                    "key": a.label,
                    "credits": a.credits,
                    "rate_limit": a.rate_limit,
                    "workflows": None if a.workflows is None else sorted(a.workflows),
                }
                for a in state.accounts.all()
            ]
        }
    )


async def chaos(request: Request) -> Response:
    state = _guarded(request)
    if request.method == "POST":
        body = await _json_object(request)
        try:
            state.faults.set_chaos(ChaosSettings(**body))
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"chaos settings: {exc}") from None
    return JSONResponse(asdict(state.faults.chaos))


async def notify(request: Request) -> Response:
    """Read, or set at run time, where and how ended runs are notified."""
    state = _guarded(request)
    notifier = state.notifier
    if request.method == "POST":
        body = await _json_object(request)
        current = notifier.settings
        try:
            notifier.configure(
                NotifySettings(
                    url=body.get("url", current.url),
                    delay=float(body.get("delay", current.delay)),
                    drop_rate=float(body.get("drop_rate", current.drop_rate)),
                )
            )
        except (TypeError, ValueError) as exc:
            raise InvalidInput(
                f'notify settings: {exc}; send {{"url": "http://...", "delay": 0, "drop_rate": 0}}'
            ) from None
    return JSONResponse(notifier.status())


async def job(request: Request) -> Response:
    state = _guarded(request)
    found = state.jobs.get(request.path_params["request_id"])
    if found is None:
        raise ApiError(404, "no such job (never submitted, or swept after expiry)")
    current = state_of(found, state.clock.now(), state.settings.result_ttl)
    return JSONResponse(
        {
            "request_id": found.id,
            "workflow_id": found.workflow_id,
            "key": found.account,
            "inputs": found.inputs,
            "created_at": found.created_at,
            "polls": found.polls,
            "state": current.value if current else "EXPIRED",
            "plan": {**asdict(found.plan), "outcome": found.plan.outcome.value},
        }
    )


routes = [
    Route("/__admin/journal", journal, methods=["GET"]),
    Route("/__admin/counts", counts, methods=["GET"]),
    Route("/__admin/reset", reset, methods=["POST"]),
    Route("/__admin/clock", clock, methods=["GET"]),
    Route("/__admin/clock/advance", advance, methods=["POST"]),
    Route("/__admin/script", script, methods=["GET", "POST"]),
    Route("/__admin/credits", credits, methods=["POST"]),
    Route("/__admin/accounts", accounts, methods=["GET"]),
    Route("/__admin/chaos", chaos, methods=["GET", "POST"]),
    Route("/__admin/notify", notify, methods=["GET", "POST"]),
    Route("/__admin/jobs/{request_id}", job, methods=["GET"]),
]
