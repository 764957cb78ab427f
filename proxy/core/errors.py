"""The gateway's exception tree; each error is an answer a team can act on.

    GatewayError                 status code + {"error": message, ...} + headers
    ├── BadInput                 400/413/422: the request itself is wrong; nothing was charged
    ├── Unauthenticated          401: no team key, or one that is unknown or revoked
    ├── NotFound                 404: no such workflow, or no such request for this team
    ├── LimitExceeded            429 (rate, concurrency) or 406 (budget), names the limit
    ├── UpstreamFailure          502/503/504: Segmind refused or failed; says what to do
    │   └── UnconfirmedSubmit    502/504: a submit Segmind may have started (no answer at all)
    ├── Conflict                 409: a team name taken
    └── StoreUnavailable         503: the gateway cannot check limits, so admits nothing

The rules (`proxy/rules/`) and the store (`proxy/store/`) raise their own errors, with no
HTTP in them; `answer_for` is where they become one of these.

No message ever contains the upstream key or a team key: messages are built from team
names, key prefixes and the upstream's own error text, which `upstream.py` scrubs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from starlette.responses import JSONResponse

from proxy.db.errors import StorageUnavailable, StoreError
from proxy.rules.errors import (
    BUDGET_LIMITS,
    IdempotencyMismatch,
    LeaseLost,
    LimitReached,
    RuleError,
    TeamExists,
    UnknownTeam,
)

__all__ = [
    "BadInput",
    "Conflict",
    "GatewayError",
    "LimitExceeded",
    "NotFound",
    "StoreUnavailable",
    "Unauthenticated",
    "UnconfirmedSubmit",
    "UpstreamFailure",
    "answer_for",
    "answered",
]


class GatewayError(Exception):
    status_code = 500

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status_code is not None:
            self.status_code = status_code
        self.headers = dict(headers or {})
        self.extra = extra

    def response(self, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse(
            {"error": self.message, **self.extra},
            self.status_code,
            headers={**self.headers, **(headers or {})},
        )


class BadInput(GatewayError):
    status_code = 400


class Unauthenticated(GatewayError):
    status_code = 401


class NotFound(GatewayError):
    status_code = 404


class LimitExceeded(GatewayError):
    status_code = 429

    def __init__(
        self, message: str, *, limit: str, retry_after: float, status_code: int = 429
    ) -> None:
        seconds = max(1, int(-(-retry_after // 1)))  # a whole number of seconds, rounded up
        super().__init__(
            message,
            status_code=status_code,
            headers={"Retry-After": str(seconds)},
            limit=limit,
            retry_after=seconds,
        )
        self.limit = limit
        self.retry_after = seconds


class UpstreamFailure(GatewayError):
    status_code = 502


class UnconfirmedSubmit(UpstreamFailure):
    """Segmind gave a submit no answer (a timeout, a connection broken after the request
    went out, an unreadable 200): a paid run may have started there that the gateway has
    no id to follow. Never retried; charged per `failed_runs`."""


class StoreUnavailable(GatewayError):
    status_code = 503

    def __init__(self, message: str = "") -> None:
        super().__init__(
            message
            or "the gateway's store is unavailable, so no limit can be checked and nothing "
            "was admitted or charged; retry in a few seconds",
            headers={"Retry-After": "5"},
        )


class Conflict(GatewayError):
    status_code = 409


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
    if isinstance(exc, StorageUnavailable):
        return StoreUnavailable(exc.message)
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
