"""The gateway's exception tree; each error is an answer a team can act on.

    GatewayError                 a status code, {"error": message, ...} and headers, as data
    ├── BadInput                 400/413/422: the request itself is wrong; nothing was charged
    ├── Unauthenticated          401: no team key, or one that is unknown or revoked
    ├── NotFound                 404: no such workflow, or no such request for this team
    ├── LimitExceeded            429 (rate, concurrency) or 406 (budget), names the limit
    ├── UpstreamFailure          502/503/504: Segmind refused or failed; says what to do
    │   └── UnconfirmedSubmit    502/504: a submit Segmind may have started (no answer at all)
    ├── Conflict                 409: a team name taken
    └── StoreUnavailable         503: the gateway cannot check limits, so admits nothing

The rules (`proxy/rules/`) and the storage (`proxy/db/`) raise their own errors, with no
HTTP in them. These carry their status as a field and build no response: the edge does
(`proxy/edge/responses.py`, which also turns a rule's refusal into one of these).

No message ever contains the upstream key or a team key: messages are built from team
names, key prefixes and the upstream's own error text, which `proxy/services/upstream.py` scrubs.
"""

from __future__ import annotations

from typing import Any

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

    def body(self) -> dict[str, Any]:
        """What the answer says: `{"error": message, ...}`, as Segmind's errors do."""
        return {"error": self.message, **self.extra}


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
