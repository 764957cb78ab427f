"""Where the outside enters the client: httpx's exceptions become `TransportError`s here,
and every answer and every error is scrubbed of the API key here, before anything reads it.

Both drivers wrap every exchange in `translate_transport_errors`; nothing else in the
package catches httpx exceptions. The original is kept as `__cause__` (`raise ... from exc`).

`scrub_response` and `scrub_exception` are applied by the protocol (`Core._call`) to every
outcome of every exchange, so a server that echoes the key (a proxy's HTML error page, a
JSON body, a header, a status line, the text of a protocol error) hands no part of the
client anything that holds it: not an error message, not a parsed body, not a poll answer.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from ._errors import (
    ConnectError,
    ConnectTimeout,
    Scrubber,
    SegmindError,
    TransportError,
    TransportTimeout,
)

__all__ = ["scrub_exception", "scrub_response", "translate_transport_errors"]

# Headers that describe bytes the rebuilt answer no longer has (it holds the decoded body).
_FRAMING = frozenset({"content-length", "content-encoding", "transfer-encoding"})


def _encodings(response: httpx.Response) -> list[str]:
    """Every encoding a reader of the body may use: the declared charset (`.text`) and
    the one JSON's decoder detects (`.json()` reads the bytes, not the charset)."""
    found: list[str] = []
    declared = response.charset_encoding
    for name in (declared, json.detect_encoding(response.content), "utf-8"):
        if not name:
            continue
        try:
            canonical = codecs.lookup(name).name
        except LookupError:
            continue
        if canonical not in found:
            found.append(canonical)
    return found


def _utf8_content_type(value: str) -> str:
    params = [p for p in value.split(";") if not p.strip().lower().startswith("charset=")]
    return ";".join([*params, " charset=utf-8"])


def scrub_response(
    response: httpx.Response, scrubber: Scrubber, *, body: bool = True
) -> httpx.Response:
    """`response`, or a copy with the secret masked in its status line, header names and
    values, and (with `body`) its body in every encoding a reader may decode it with. A
    body that held the secret is re-encoded as UTF-8 and labelled so, so `.text` and
    `.json()` read the same scrubbed text. Unchanged when nothing held it (the usual case).
    """
    if not scrubber:
        return response
    items = response.headers.multi_items()
    reason = response.extensions.get("reason_phrase", b"")
    reason_text = reason.decode("latin-1") if isinstance(reason, bytes) else str(reason)
    dirty_head = scrubber.found_in(reason_text) or any(
        scrubber.found_in(name) or scrubber.found_in(value) for name, value in items
    )
    content = response.content if body else b""
    dirty_text: str | None = None
    for encoding in _encodings(response) if content else []:
        text = content.decode(encoding, errors="replace")
        if scrubber.found_in(text):
            dirty_text = text
            break
    if not dirty_head and dirty_text is None:
        return response
    headers = [(scrubber(n), scrubber(v)) for n, v in items if n.lower() not in _FRAMING]
    if dirty_text is not None:
        content = scrubber(dirty_text).encode("utf-8")
        headers = [
            (n, _utf8_content_type(v) if n.lower() == "content-type" else v) for n, v in headers
        ]
    extensions = dict(response.extensions)
    extensions["reason_phrase"] = scrubber(reason_text).encode("latin-1", errors="replace")
    try:
        request: httpx.Request | None = response.request
    except RuntimeError:  # a response built by hand, with no request set
        request = None
    return httpx.Response(
        response.status_code,
        headers=headers,
        content=content,
        request=request,
        extensions=extensions,
    )


def scrub_exception(exc: SegmindError, scrubber: Scrubber) -> None:
    """Mask the secret in `exc`'s message and in the text of every exception it was raised
    from (httpx's, httpcore's and h11's protocol errors quote what the server sent)."""
    if not scrubber:
        return
    exc.message = scrubber(exc.message)
    chain: list[BaseException] = []
    link: BaseException | None = exc
    while link is not None and link not in chain:
        chain.append(link)
        link = link.__cause__ or link.__context__
    for item in chain:
        item.args = tuple(_scrubbed_arg(arg, scrubber) for arg in item.args)


def _scrubbed_arg(arg: object, scrubber: Scrubber) -> object:
    if isinstance(arg, str):
        return scrubber(arg)
    if isinstance(arg, bytes | bytearray):
        text = bytes(arg).decode("latin-1")
        if scrubber.found_in(text):
            return scrubber(text).encode("latin-1", errors="replace")
        return arg
    if scrubber.found_in(str(arg)) or scrubber.found_in(repr(arg)):
        return scrubber(str(arg))
    return arg


@contextmanager
def translate_transport_errors(url: httpx.URL, request_id: str | None = None) -> Iterator[None]:
    where = f"{url.scheme}://{url.netloc.decode('ascii', errors='replace')}"
    try:
        yield
    except httpx.ConnectTimeout as exc:
        raise ConnectTimeout(
            f"timed out connecting to {where}; nothing was sent. Check the network or the base URL",
            request_id=request_id,
        ) from exc
    except httpx.ConnectError as exc:
        raise ConnectError(
            f"could not connect to {where} ({exc or type(exc).__name__}); nothing was sent. "
            "Check the base URL and that the server is up",
            request_id=request_id,
        ) from exc
    except httpx.TimeoutException as exc:
        phase = type(exc).__name__.removesuffix("Timeout").lower() or "request"
        raise TransportTimeout(
            f"no answer from {where} in time ({phase} timeout); raise the timeout or retry later",
            request_id=request_id,
        ) from exc
    except httpx.UnsupportedProtocol as exc:
        raise TransportError(
            f"cannot talk to {where}: unsupported URL scheme; use http:// or https://",
            request_id=request_id,
        ) from exc
    except (httpx.TransportError, httpx.StreamError) as exc:
        raise TransportError(
            f"the connection to {where} broke ({type(exc).__name__}: {exc}); "
            "it may have been sent, check before resending a paid request",
            request_id=request_id,
        ) from exc
