"""The fake's exception tree and its Segmind-shaped error answers.

    FakeServerError
    ├── ApiError               an HTTP error answer: status code + {"error": message}
    │   └── InvalidInput       400, a body the workflow cannot take
    └── SimulatedNetworkFault  a network fault asked for where no socket exists (in-process)

Every message says what was wrong and what to do; none ever contains an API key.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

__all__ = [
    "DEFAULT_MESSAGES",
    "ERROR_CODES",
    "ApiError",
    "FakeServerError",
    "InvalidInput",
    "SimulatedNetworkFault",
    "error_response",
]

# The error codes Segmind documents, with a default message for each when one is forced;
# and 503, which it does not document but any service behind a load balancer answers in an
# outage or a deploy (the gateway retries it like 502).
DEFAULT_MESSAGES: dict[int, str] = {
    400: "Bad Request: invalid parameters or request format",
    401: "Unauthorized: missing or invalid API key",
    403: "Forbidden: this API key has no access to this workflow",
    404: "Not Found: no such workflow or request",
    406: "Insufficient Credits: not enough credits to process the request",
    429: "Rate Limited: too many requests, retry later",
    500: "Server Error: internal server error",
    502: "Bad Gateway: service temporarily unavailable, retry later",
    503: "Service Unavailable: down for a moment, retry later",
    504: "Timeout: the request timed out",
}
ERROR_CODES = tuple(DEFAULT_MESSAGES)


class FakeServerError(Exception):
    """Base of every error the fake raises."""


class ApiError(FakeServerError):
    def __init__(
        self,
        status_code: int,
        message: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.status_code = status_code
        self.message = message or DEFAULT_MESSAGES.get(status_code, f"HTTP {status_code}")
        self.headers = headers or {}
        self.extra = extra or {}
        super().__init__(f"{status_code}: {self.message}")

    def response(self) -> JSONResponse:
        return error_response(self.status_code, self.message, self.headers, self.extra)


class InvalidInput(ApiError):
    def __init__(self, message: str) -> None:
        super().__init__(400, message)


class SimulatedNetworkFault(FakeServerError):
    """Raised in-process (e.g. under httpx.ASGITransport) where a socket fault can't be made."""

    def __init__(self, fault: str) -> None:
        self.fault = fault
        super().__init__(
            f"network fault {fault!r} was asked for, but this request has no socket to break; "
            f"run the fake under uvicorn to see the real fault"
        )


def error_response(
    status_code: int,
    message: str,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    return JSONResponse({"error": message, **(extra or {})}, status_code, headers=headers)
