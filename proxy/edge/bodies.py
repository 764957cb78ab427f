"""Request bodies as the gateway reads them: JSON in UTF-8, nested at most `MAX_JSON_DEPTH`
levels, with no lone surrogate and no NaN or Infinity anywhere.

Each refusal is a `BadInput` (400) that names the problem, raised before anything costs:
Python's JSON decoder recurses once per level (1,000 levels is a RecursionError, a 500), and
a lone surrogate (`"\\ud800"`) decodes fine but cannot be encoded again, so it would fail
later, in the cache key or the upstream request. The depth is measured on the text, by one
linear scan that never recurses, before the decoder sees it.
"""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.requests import Request

from proxy.core.errors import BadInput

__all__ = ["MAX_JSON_DEPTH", "json_depth", "lone_surrogate_at", "parse_body", "read_body"]

#: Workflow inputs are a flat object of strings (depth 1); admin bodies nest 2 deep.
MAX_JSON_DEPTH = 32

# A string token (an unterminated one runs to the end, so the scan never restarts inside
# it and stays linear), or one bracket. Whatever else is between them is skipped.
_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{}]', re.DOTALL)
_SURROGATE = re.compile("[\ud800-\udfff]")


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refused (413) past `limit` bytes, by its declared length before any
    of it is read. Its time is bounded below the app (`connections.py`, `body_timeout`)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BadInput(
            f"the body is {declared} bytes; the gateway takes at most {limit}", status_code=413
        )
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BadInput(f"the body is over {limit} bytes, the gateway's limit", status_code=413)
        chunks.append(chunk)
    return b"".join(chunks)


def json_depth(text: str, limit: int) -> int:
    """How deep `text`'s arrays and objects nest, counting stops once past `limit`."""
    depth = deepest = 0
    for token in _TOKENS.finditer(text):
        first = text[token.start()]
        if first in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    break
        elif first in "]}":
            depth = max(0, depth - 1)
    return deepest


def lone_surrogate_at(value: Any) -> str | None:
    """Where in a decoded JSON value a string holds a lone surrogate, or None.

    JSON's `\\uXXXX` escapes can spell half of a surrogate pair; the decoder keeps it as is.
    """
    stack: list[tuple[Any, str]] = [(value, "the body")]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return where
        elif isinstance(item, dict):
            for name, inner in item.items():
                if _SURROGATE.search(name):
                    return "an input name"
                stack.append((inner, f"the value of {name}"))
        elif isinstance(item, list):
            stack.extend((inner, where) for inner in item)
    return None


def _refuse_constant(name: str) -> Any:
    raise BadInput(f"the request body holds {name}, which is not JSON; send a finite number")


def parse_body(raw: bytes) -> Any:
    """The decoded JSON body (`{}` for an empty one, but whitespace alone is no JSON
    document); raises `BadInput` naming the problem."""
    if not raw:
        return {}
    try:
        # JSON between systems is UTF-8 (RFC 8259); a leading byte-order mark is tolerated.
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadInput(
            f"the request body is not UTF-8 (bad byte at offset {exc.start}); send JSON "
            "encoded as UTF-8"
        ) from None
    if json_depth(text, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise BadInput(
            f"the request body nests arrays or objects more than {MAX_JSON_DEPTH} levels "
            'deep; workflow inputs are one flat JSON object of strings, e.g. {"Scene_1": "..."}'
        )
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except ValueError as exc:
        raise BadInput(
            f"the request body is not valid JSON ({exc}); send a JSON object of inputs"
        ) from None
    where = lone_surrogate_at(value)
    if where is not None:
        raise BadInput(
            f"the request body holds a lone surrogate (a \\ud800-\\udfff escape without its "
            f"pair) in {where}; send valid Unicode text"
        )
    return value
