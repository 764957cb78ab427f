"""The command line's exit codes: one table, most specific class first.

| code | meaning |
|---|---|
| 0 | success |
| 1 | unexpected internal error (a bug: please report it) |
| 2 | usage error (bad command line) |
| 3 | invalid input, nothing was sent (`InvalidInput`) |
| 4 | configuration error, e.g. no API key (`ConfigError`) |
| 10 | other HTTP error (`APIError`) |
| 11 | 400 bad request (`BadRequest`) |
| 12 | 401 unauthorized (`Unauthorized`) |
| 13 | 403 forbidden (`Forbidden`) |
| 14 | 404 not found or expired (`NotFound`) |
| 15 | 406 not enough credits (`InsufficientCredits`) |
| 16 | 429 rate limited (`RateLimited`) |
| 17 | 500 server error (`ServerError`) |
| 18 | 502 bad gateway (`BadGateway`) |
| 19 | 504 gateway timeout (`GatewayTimeout`) |
| 27 | 503 service unavailable (`ServiceUnavailable`) |
| 20 | the generation failed (`GenerationFailed`) |
| 21 | gave up waiting, the job may still finish (`WaitTimeout`) |
| 22 | unreadable answer (`UnexpectedResponse`) |
| 23 | network error (`TransportError`) |
| 24 | could not connect, nothing sent (`ConnectError`) |
| 25 | network timeout (`TransportTimeout`) |
| 26 | invalid webhook (`InvalidWebhook`) |
| 130 | interrupted (Ctrl-C); a submitted job keeps running |
"""

from __future__ import annotations

from ._errors import (
    APIError,
    BadGateway,
    BadRequest,
    ConfigError,
    ConnectError,
    Forbidden,
    GatewayTimeout,
    GenerationFailed,
    InsufficientCredits,
    InvalidInput,
    InvalidWebhook,
    NotFound,
    RateLimited,
    SegmindError,
    ServerError,
    ServiceUnavailable,
    TransportError,
    TransportTimeout,
    Unauthorized,
    UnexpectedResponse,
    WaitTimeout,
)

__all__ = [
    "EXIT_CODES",
    "EXIT_INTERNAL",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "exit_code_for",
]

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

EXIT_CODES: dict[type[SegmindError], int] = {
    InvalidInput: 3,
    ConfigError: 4,
    APIError: 10,
    BadRequest: 11,
    Unauthorized: 12,
    Forbidden: 13,
    NotFound: 14,
    InsufficientCredits: 15,
    RateLimited: 16,
    ServerError: 17,
    BadGateway: 18,
    GatewayTimeout: 19,
    GenerationFailed: 20,
    WaitTimeout: 21,
    UnexpectedResponse: 22,
    TransportError: 23,
    ConnectError: 24,
    TransportTimeout: 25,
    InvalidWebhook: 26,
    ServiceUnavailable: 27,
}


def exit_code_for(error: BaseException) -> int:
    """The code of the nearest class in the table along the error's MRO."""
    for cls in type(error).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]
    return EXIT_INTERNAL
