"""The Segmind-shaped endpoints: submit, poll, credits and the output videos.

Order of checks on a submit, each answered before the next is tried: key (401), rate limit
(429), workflow (404), access (403), body and inputs (400), credits (406). Nothing that
fails a check creates a job or costs a credit.
"""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .accounts import Account
from .errors import ApiError, InvalidInput
from .jobs import poll_body, state_of
from .journal import ACCOUNT_KEY, api_key_of
from .outputs import size_of, throttled
from .prefer import parse_prefer
from .state import FakeState

__all__ = ["routes"]

ASSET_NAME = re.compile(r"scene_[1-4]\.mp4")
DIGEST = re.compile(r"[0-9a-f]{24}")
# Inputs are one flat object; anything deeper than this is refused before it is decoded
# (Python's decoder recurses per level and fails near 1,000).
MAX_DEPTH = 32
QUEUED_MESSAGE = "The request is queued. Poll poll_url every 7 seconds until it is COMPLETED."


def _state(request: Request) -> FakeState:
    state: FakeState = request.app.state.fake
    return state


def _account(request: Request, state: FakeState) -> Account:
    # The journal layer has already looked the key up; do not hash it twice.
    if ACCOUNT_KEY in request.scope and request.scope[ACCOUNT_KEY] is not None:
        account: Account = request.scope[ACCOUNT_KEY]
        account.take_request(state.clock.now())
        return account
    key = api_key_of(request.scope["headers"])
    if key is None:
        raise ApiError(
            401,
            "Unauthorized: no API key; send it as x-api-key: <key> or Authorization: Bearer <key>",
        )
    found = state.accounts.find(key)
    if found is None:
        raise ApiError(401, "Unauthorized: invalid API key; check the key you sent")
    found.take_request(state.clock.now())
    return found


async def submit(request: Request) -> Response:
    state = _state(request)
    account = _account(request, state)
    workflow_id = request.path_params["workflow_id"]
    workflow = state.catalog.get(workflow_id)
    if workflow is None:
        raise ApiError(
            404, f"Workflow not found: {workflow_id!r}; check the workflow id in the URL"
        )
    if not account.may_run(workflow.id):
        raise ApiError(403, f"Forbidden: this API key has no access to workflow {workflow.id}")
    body = read_json(await request.body())
    inputs = workflow.canonical_inputs(body, state.settings.unknown_inputs)
    prefs = parse_prefer(request.headers.getlist("prefer"))
    state.accounts.charge(account, state.price_of(workflow))
    job = state.new_job(workflow, account.label, inputs, prefs)
    return JSONResponse(
        {
            "status": "QUEUED",
            "request_id": job.id,
            "poll_url": f"{state.settings.base_url}/workflows/request/{job.id}",
            "message": QUEUED_MESSAGE,
        }
    )


def nesting_over(text: str, limit: int) -> bool:
    """Whether arrays and objects in `text` nest deeper than `limit`: one pass over the
    characters, skipping strings, so a body cannot make the check itself recurse."""
    depth = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > limit:
                return True
        elif char in "]}" and depth:
            depth -= 1
    return False


def _has_lone_surrogate(value: Any) -> bool:
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            pending.extend(item)  # the names
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, str) and any(0xD800 <= ord(c) <= 0xDFFF for c in item):
            return True
    return False


def _not_a_number(name: str) -> Any:
    raise InvalidInput(f"the request body holds {name}, which JSON does not allow")


def read_json(raw: bytes) -> Any:
    """A submit body as Segmind reads it: empty is `{}`; anything else must be UTF-8 JSON,
    nested at most `MAX_DEPTH` levels, without NaN/Infinity or a lone surrogate escape
    (`"\\ud800"`). Each is a 400 that says so, never a 500. Whitespace alone is not empty:
    it is no JSON document, as any JSON parser says (schemathesis sends `\r`)."""
    if not raw:
        return {}
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidInput("the request body is not UTF-8; send JSON encoded as UTF-8") from None
    if nesting_over(text, MAX_DEPTH):
        raise InvalidInput(
            f"the request body nests more than {MAX_DEPTH} levels deep; send a flat JSON "
            "object of inputs"
        )
    try:
        body = json.loads(text, parse_constant=_not_a_number)
    except ValueError as exc:
        raise InvalidInput(
            f"the request body is not valid JSON ({exc}); send a JSON object of inputs"
        ) from None
    if _has_lone_surrogate(body):
        raise InvalidInput(
            "the request body holds a lone surrogate (an unpaired \\ud800-\\udfff escape); "
            "send valid Unicode text"
        )
    return body


async def poll(request: Request) -> Response:
    state = _state(request)
    account = _account(request, state)
    request_id = request.path_params["request_id"]
    job = state.jobs.get(request_id)
    # Another account's job is answered exactly like one that never existed.
    if job is None or job.account != account.label:
        raise _not_found(request_id)
    job.polls += 1
    state.persist()  # a job's stage may count its polls
    current = state_of(job, state.clock.now(), state.settings.result_ttl)
    if current is None:
        state.jobs.pop(request_id, None)
        raise _not_found(request_id)
    return JSONResponse(poll_body(job, current, state.settings.failure_key))


def _not_found(request_id: str) -> ApiError:
    return ApiError(
        404,
        f"Request {request_id!r} not found or expired; results are kept for one hour "
        f"after submission, so submit again",
    )


async def credits(request: Request) -> Response:
    state = _state(request)
    account = _account(request, state)
    return JSONResponse(
        {"credits": round(account.credits, 4), "free-credits": round(account.free_credits, 4)}
    )


async def asset(request: Request) -> Response:
    """An output file; `Range` answered (206) as S3 does, by Starlette's FileResponse."""
    state = _state(request)
    digest, name = request.path_params["digest"], request.path_params["name"]
    if not (DIGEST.fullmatch(digest) and ASSET_NAME.fullmatch(name)):
        raise ApiError(404, f"no such asset {digest}/{name}; use the URLs a COMPLETED job gives")
    if state.outputs.expired(digest, state.clock.now()):
        raise ApiError(
            404,
            f"asset {digest}/{name} was deleted: outputs are kept "
            f"{state.settings.output_ttl:g} s after a run completes",
        )
    path = state.outputs.path(digest, name)
    rate = state.settings.asset_bytes_per_second
    if rate is None or "range" in request.headers:
        return FileResponse(path, media_type="video/mp4")
    return StreamingResponse(
        throttled(path, rate),
        media_type="video/mp4",
        headers={"content-length": str(size_of(path))},
    )


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


routes = [
    Route("/workflows/request/{request_id}", poll, methods=["GET"]),
    Route("/workflows/{workflow_id}", submit, methods=["POST"]),
    Route("/v1/get-user-credits", credits, methods=["GET"]),
    Route("/assets/{digest}/{name}", asset, methods=["GET"]),
    Route("/healthz", healthz, methods=["GET"]),
]
