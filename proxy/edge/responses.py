"""Where results become HTTP answers: the gateway's errors (`proxy/core/errors.py`) as JSON
responses, the rules' refusals and the store's failures as the gateway's errors, the app's
exception handlers that do both, and a usage report as JSON or a CSV download.

Every refusal is `{"error": "<sentence>", ...}` with its status and headers; no other
module builds an error response, so a refusal reads the same from every route.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from proxy.core.errors import (
    BadInput,
    Conflict,
    GatewayError,
    LimitExceeded,
    NotFound,
    StoreUnavailable,
)
from proxy.db.errors import StoreError
from proxy.rules.errors import (
    BUDGET_LIMITS,
    IdempotencyMismatch,
    LeaseLost,
    LimitReached,
    RuleError,
    TeamExists,
    UnknownTeam,
)
from proxy.services.reports import usage_csv

__all__ = ["EXCEPTION_HANDLERS", "answer_for", "answered", "error_response", "report_response"]


def error_response(exc: GatewayError, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """The answer an error is: its body, its status, its headers (and `headers` on top)."""
    return JSONResponse(exc.body(), exc.status_code, headers={**exc.headers, **(headers or {})})


def answer_for(exc: RuleError | StoreError) -> GatewayError:
    """The answer to a refusal of the rules or a failure of the store: the one place
    where they become HTTP."""
    if isinstance(exc, LimitReached):
        money = exc.limit in BUDGET_LIMITS
        return LimitExceeded(
            exc.message,
            limit=exc.limit,
            retry_after=exc.retry_after,
            status_code=406 if money else 429,
        )
    if isinstance(exc, IdempotencyMismatch):
        return BadInput(exc.message, status_code=422)
    if isinstance(exc, TeamExists | LeaseLost):
        return Conflict(exc.message)
    if isinstance(exc, UnknownTeam):
        return NotFound(exc.message)
    if isinstance(exc, StoreError):
        return StoreUnavailable(exc.message)
    return GatewayError(exc.message, status_code=400)


@contextmanager
def answered() -> Iterator[None]:
    """Within: the rules' refusals and the store's failures are raised as answers."""
    try:
        yield
    except (RuleError, StoreError) as exc:
        raise answer_for(exc) from exc


async def _gateway_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    return error_response(exc)


async def _rule_or_store_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RuleError | StoreError)
    return error_response(answer_for(exc))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
    else:
        message = f"no endpoint {request.url.path}; the gateway serves Segmind's workflow API"
    # Keep the router's headers: a 405 must say what is allowed (`Allow`, RFC 9110).
    return JSONResponse({"error": message}, exc.status_code, headers=exc.headers)


EXCEPTION_HANDLERS: dict[Any, Any] = {
    GatewayError: _gateway_error,
    RuleError: _rule_or_store_error,
    StoreError: _rule_or_store_error,
    HTTPException: _http_error,
}


def report_response(document: dict[str, Any], form: str) -> Response:
    if form == "csv":
        name = f"usage-{document['from']}-{document['to']}.csv"
        return Response(
            usage_csv(document),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
    return JSONResponse(document)
