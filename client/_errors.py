"""Every error the client raises, in one tree.

```
SegmindError                      base of everything below; .message, .status_code, .request_id
├── ConfigError                   unusable settings (no API key, bad base URL, bad auth style)
├── InvalidInput                  inputs rejected before anything was sent (also a ValueError)
├── APIError                      the server answered with a non-2xx status
│   ├── BadRequest                400
│   ├── Unauthorized              401  (.auth_hint: header sent and key source, never the key)
│   ├── Forbidden                 403
│   ├── NotFound                  404  (unknown workflow, or unknown/expired request id)
│   ├── InsufficientCredits       406
│   ├── RateLimited               429  (.retry_after in seconds, when the server said)
│   ├── ServerError               500
│   ├── BadGateway                502
│   ├── ServiceUnavailable        503  (.retry_after; e.g. the gateway pausing upstream calls)
│   └── GatewayTimeout            504
├── UnexpectedResponse            a 2xx answer the client cannot read (not JSON, missing fields)
├── GenerationFailed              the job ended FAILED (.reason)
├── WaitTimeout                   the job was still running when `wait` gave up (.last_status)
├── InvalidWebhook                a webhook whose signature, timestamp or body does not hold up
└── TransportError                no answer: the exchange broke below HTTP
    ├── ConnectError              the connection could not be opened: nothing was sent
    │   └── ConnectTimeout        (also a TransportTimeout)
    └── TransportTimeout          no answer in time (connect, read, write or pool)
```

The per-status classes live in one table, `STATUS_ERRORS`; codes it does not list become a
plain `APIError`. httpx errors are translated to `TransportError` in one place
(`client._boundary`). No message built here contains the API key: `scrub` removes it from
anything the server echoes back.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

__all__ = [
    "STATUS_ERRORS",
    "APIError",
    "BadGateway",
    "BadRequest",
    "ConfigError",
    "ConnectError",
    "ConnectTimeout",
    "Forbidden",
    "GatewayTimeout",
    "GenerationFailed",
    "InsufficientCredits",
    "InvalidInput",
    "InvalidWebhook",
    "NotFound",
    "RateLimited",
    "SegmindError",
    "ServerError",
    "ServiceUnavailable",
    "TransportError",
    "TransportTimeout",
    "Unauthorized",
    "UnexpectedResponse",
    "WaitTimeout",
    "error_from_response",
]

_MAX_MESSAGE = 300


class SegmindError(Exception):
    """Base of every client error."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.request_id = request_id

    def __str__(self) -> str:
        parts = [self.message]
        if self.status_code is not None:
            parts.append(f"HTTP {self.status_code}")
        if self.request_id:
            parts.append(f"request {self.request_id}")
        if len(parts) == 1:
            return self.message
        return f"{parts[0]} ({', '.join(parts[1:])})"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(message={self.message!r}, status_code={self.status_code!r}, "
            f"request_id={self.request_id!r})"
        )


class ConfigError(SegmindError):
    """The client's settings cannot work; fix them and retry."""


class InvalidInput(SegmindError, ValueError):
    """Inputs were rejected locally; no request was sent and nothing was paid."""

    def __init__(self, message: str, *, problems: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.problems: dict[str, str] = dict(problems or {})


class APIError(SegmindError):
    """The server answered with an error status."""

    #: What the status means, used when the server sends no message of its own.
    meaning = "the server answered with an error"
    #: What a person can do about it.
    advice = ""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        request_id: str | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(message, status_code=status_code, request_id=request_id)
        self.body = body


class BadRequest(APIError):
    meaning = "bad request: invalid parameters or request format"
    advice = "check the workflow inputs"


class Unauthorized(APIError):
    meaning = "unauthorized: missing or invalid API key"
    advice = "check the API key"

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = 401,
        request_id: str | None = None,
        body: Any = None,
        auth_hint: str = "",
    ) -> None:
        super().__init__(message, status_code=status_code, request_id=request_id, body=body)
        self.auth_hint = auth_hint


class Forbidden(APIError):
    meaning = "forbidden: the key lacks permission for this"
    advice = "ask for a key with access to this workflow"


class NotFound(APIError):
    meaning = "not found: unknown workflow, or a request id that is unknown or expired"
    advice = "results are kept about one hour after submission; check the id"


class InsufficientCredits(APIError):
    meaning = "not enough credits to run this workflow"
    advice = "top up the account's credits"


class _ComeBackLater(APIError):
    """An answer that may say when to try again (`Retry-After`, in seconds)."""

    default_status: int

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        request_id: str | None = None,
        body: Any = None,
        retry_after: float | None = None,
    ) -> None:
        status = self.default_status if status_code is None else status_code
        super().__init__(message, status_code=status, request_id=request_id, body=body)
        self.retry_after = retry_after


class RateLimited(_ComeBackLater):
    meaning = "rate limited: too many requests"
    advice = "slow down, or wait for the limit window to pass"
    default_status = 429


class ServerError(APIError):
    meaning = "the server failed internally"
    advice = "try again later"


class BadGateway(APIError):
    meaning = "bad gateway: the service is temporarily unavailable"
    advice = "try again later"


class ServiceUnavailable(_ComeBackLater):
    meaning = "service unavailable: the service cannot take requests for now"
    advice = "try again later, after Retry-After when the answer gives one"
    default_status = 503


class GatewayTimeout(APIError):
    meaning = "gateway timeout: the service did not answer in time"
    advice = "try again later"


STATUS_ERRORS: dict[int, type[APIError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    406: InsufficientCredits,
    429: RateLimited,
    500: ServerError,
    502: BadGateway,
    503: ServiceUnavailable,
    504: GatewayTimeout,
}


class UnexpectedResponse(SegmindError):
    """A success status with a body the client cannot use."""


class GenerationFailed(SegmindError):
    """The job reached FAILED; `reason` is the server's explanation."""

    def __init__(self, reason: str, *, request_id: str | None = None) -> None:
        super().__init__(f"generation failed: {reason}", request_id=request_id)
        self.reason = reason


class WaitTimeout(SegmindError):
    """`wait` gave up; the job may still finish and can be waited on again."""

    def __init__(
        self, message: str, *, request_id: str | None = None, last_status: str | None = None
    ) -> None:
        super().__init__(message, request_id=request_id)
        self.last_status = last_status


class InvalidWebhook(SegmindError):
    """A received webhook failed verification or could not be read; answer it with 400."""


class TransportError(SegmindError):
    """No HTTP answer: the connection failed, broke or timed out."""

    #: True when the request certainly never left this machine (safe to resend a submit).
    nothing_sent = False


class ConnectError(TransportError):
    """The connection could not be opened; nothing was sent."""

    nothing_sent = True


class TransportTimeout(TransportError):
    """No answer arrived in time."""


class ConnectTimeout(ConnectError, TransportTimeout):
    """Opening the connection timed out; nothing was sent."""


REDACTED = "<redacted>"
# Replacing can join the text on either side into a new occurrence only if the secret shares
# characters with the marker; passes are bounded, and the fallback holds none of the input.
_MAX_PASSES = 4
# JSON's two-letter escapes; a server may escape `/` too.
_JSON_SHORT = {
    '"': '"',
    "\\": "\\",
    "/": "/",
    "\b": "b",
    "\f": "f",
    "\n": "n",
    "\r": "r",
    "\t": "t",
}
_HTML_NAMED = {"&": "amp", "<": "lt", ">": "gt", '"': "quot", "'": "apos"}


def _hex(number: int, width: int) -> str:
    """`number` in hex as a pattern that takes either case of each letter digit."""
    return "".join(f"[{d}{d.upper()}]" if d.isalpha() else d for d in f"{number:0{width}x}")


def _spellings(char: str) -> str:
    """A pattern for one character of a secret in every spelling a server may echo it in
    (every repeat bounded, so no text can make the search quadratic):
    as is; percent-encoded (each UTF-8 byte, either case, also encoded twice, and `+` for a
    space); JSON-escaped (`\\u0074`, `\\"`, as deep as JSON inside JSON strings goes); and
    as an HTML character reference (`&#116;`, `&#x74;`, `&amp;`)."""
    forms = [re.escape(char)]
    forms.append("".join(f"%(?:25){{0,3}}{_hex(byte, 2)}" for byte in char.encode("utf-8")))
    if char == " ":
        forms.append(r"\+")
    point = ord(char)
    if point > 0xFFFF:  # JSON spells it as a surrogate pair
        high, low = divmod(point - 0x10000, 0x400)
        forms.append(rf"\\{{1,8}}u{_hex(0xD800 + high, 4)}\\{{1,8}}u{_hex(0xDC00 + low, 4)}")
    else:
        forms.append(rf"\\{{1,8}}u{_hex(point, 4)}")
    if char in _JSON_SHORT:
        forms.append(rf"\\{{1,8}}{re.escape(_JSON_SHORT[char])}")
    forms.append(f"&#0{{0,8}}{point};?")
    forms.append(f"&#[xX]0{{0,8}}{_hex(point, 1)};?")
    if char in _HTML_NAMED:
        forms.append(f"&{_HTML_NAMED[char]};")
    return "(?:" + "|".join(forms) + ")"


def secret_pattern(secret: str) -> str:
    """A regular expression for `secret` however it was echoed: each character in any of
    its spellings (`_spellings`), so a key that is URL-encoded, JSON-escaped or half one
    and half the other is found all the same."""
    return "".join(map(_spellings, secret))


# Every spelling but the plain one starts with one of these; a text without any of them can
# hold a secret only as is, and a literal search (much faster) finds it.
_ESCAPE_STARTS = ("%", "\\", "&", "+")


class Scrubber:
    """Masks every occurrence of the secrets, in every spelling, in any text a server sends.

    An empty (or absent) secret is no secret: it masks nothing. With several, the longest
    is tried first, so a secret that contains another is masked whole.
    """

    __slots__ = ("_literal", "_marker", "_spelled")

    def __init__(self, *secrets: str | None, marker: str = REDACTED) -> None:
        kept = sorted({s for s in secrets if s}, key=lambda s: (-len(s), s))
        self._marker = marker
        self._spelled = (
            re.compile("|".join(f"(?:{secret_pattern(s)})" for s in kept)) if kept else None
        )
        self._literal = re.compile("|".join(map(re.escape, kept))) if kept else None

    def __bool__(self) -> bool:
        return self._spelled is not None

    def _pattern(self, text: str) -> re.Pattern[str] | None:
        if any(start in text for start in _ESCAPE_STARTS):
            return self._spelled
        return self._literal

    def found_in(self, text: str) -> bool:
        pattern = self._pattern(text)
        return pattern is not None and pattern.search(text) is not None

    def __call__(self, text: str) -> str:
        marker = self._marker
        for _ in range(_MAX_PASSES):
            pattern = self._pattern(text)
            if pattern is None or pattern.search(text) is None:
                return text
            text = pattern.sub(marker, text)
        return "" if self.found_in(marker) else marker


def scrub(text: str, secret: str | None) -> str:
    """`text` with every occurrence of `secret`, in any spelling, masked (servers echo
    headers back, in error pages, JSON and redirect URLs)."""
    return Scrubber(secret)(text)


def server_message(text: str) -> tuple[str | None, Any]:
    """The message in an error body and the decoded body.

    Segmind sends `{"error": "..."}` (the official SDK reads `error`); other spellings
    (`message`, `detail`) and plain text are accepted too.
    """
    text = text.strip()
    if not text:
        return None, None
    try:
        decoded = json.loads(text)
    except ValueError:
        return _shorten(text), text
    if isinstance(decoded, dict):
        for key in ("error", "message", "detail", "error_message"):
            value = decoded.get(key)
            if isinstance(value, str) and value.strip():
                return _shorten(value.strip()), decoded
            if isinstance(value, dict | list) and value:
                return _shorten(json.dumps(value)), decoded
    return _shorten(text), decoded


def _shorten(text: str) -> str:
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."


def error_from_response(
    status_code: int,
    body: bytes,
    *,
    action: str,
    request_id: str | None = None,
    retry_after: float | None = None,
    auth_hint: str = "",
    secret: str | None = None,
) -> APIError:
    """The error for a non-2xx answer; `action` says what was being done ("submit the job")."""
    cls = STATUS_ERRORS.get(status_code, APIError)
    said, decoded = server_message(scrub(body.decode("utf-8", errors="replace"), secret))
    message = f"could not {action}: {cls.meaning}"
    if said:
        message += f"; the server said: {said}"
    if cls is Unauthorized and auth_hint:
        message += f"; {auth_hint}"
    if issubclass(cls, _ComeBackLater) and retry_after is not None:
        message += f"; retry after {retry_after:g} s"
    if cls.advice:
        message += f". {cls.advice[0].upper()}{cls.advice[1:]}."
    if cls is Unauthorized:
        return Unauthorized(
            message,
            status_code=status_code,
            request_id=request_id,
            body=decoded,
            auth_hint=auth_hint,
        )
    if issubclass(cls, _ComeBackLater):
        return cls(
            message,
            status_code=status_code,
            request_id=request_id,
            body=decoded,
            retry_after=retry_after,
        )
    return cls(message, status_code=status_code, request_id=request_id, body=decoded)
