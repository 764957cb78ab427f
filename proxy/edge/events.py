"""`POST /upstream/events/<secret>`: Segmind's account webhook (events `GRAPH_RUN`,
`NODE_RUN`), taken as a hint that a run the gateway follows may have ended.

Segmind documents neither the payload nor a signature, so nothing in the body is trusted:
any request id found anywhere in it (a whole string value, or 32 hex characters inside
one, e.g. a poll URL) only brings that run's next poll forward, and the poll decides what
happened. A run gets one early poll however many hints name it, and that poll waits for
the company budget like any other, so a flood of hints costs at most one poll per run
followed and never overtakes a submit. Ids naming no such run cost one indexed read.

The answer is the same 204, sent before the store is asked, whatever the body names: the
timing says nothing about which ids exist. A wrong secret, or none configured, is
answered exactly as a path the gateway does not serve (404). The secret never reaches a
log: the access log shows every path under /upstream/events/ without its last part
(`middleware.py`), since even a wrong guess could be a near miss.
"""

from __future__ import annotations

import hmac
import re
from collections import deque
from typing import Any

from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from proxy.edge.bodies import parse_body, read_body
from proxy.services.gateway import Gateway

__all__ = ["MAX_IDS", "upstream_events", "upstream_ids"]


MAX_BODY_BYTES = 65536  # a notification is a small JSON document
MAX_NODES = 4096  # JSON values looked at in one body
MAX_IDS = 32  # distinct candidate ids taken from one body

# A whole string that could be an upstream request id, or a Segmind-style id (32 hex
# characters) inside a longer string such as a poll URL.
_WHOLE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{7,127}")
_HEX_ID = re.compile(r"(?<![0-9A-Fa-f])[0-9A-Fa-f]{32}(?![0-9A-Fa-f])")


def upstream_ids(body: Any) -> list[str]:
    """Candidate request ids in a decoded JSON body, breadth first (the top-level fields
    of a notification before its nested outputs), at most `MAX_IDS` of them."""
    found: dict[str, None] = {}
    queue: deque[Any] = deque([body])
    seen = 0
    while queue and seen < MAX_NODES and len(found) < MAX_IDS:
        item = queue.popleft()
        seen += 1
        if isinstance(item, dict):
            queue.extend(item.values())
        elif isinstance(item, list):
            queue.extend(item)
        elif isinstance(item, str):
            if _WHOLE_ID.fullmatch(item):
                found[item] = None
            elif len(item) >= 32:
                found.update(dict.fromkeys(_HEX_ID.findall(item[:4096])))
    return list(found)[:MAX_IDS]


def _secret_matches(gateway: Gateway, given: str) -> bool:
    secret = gateway.settings.upstream_events_secret
    if secret is None or not given:
        return False
    return hmac.compare_digest(given.encode(), secret.get_secret_value().encode())


async def upstream_events(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    if not _secret_matches(gateway, request.path_params["secret"]):
        raise HTTPException(404)  # answered as any path the gateway does not serve
    body = parse_body(await read_body(request, MAX_BODY_BYTES))
    gateway.notice_received()
    follow = BackgroundTask(gateway.follow_notice, upstream_ids(body))
    return Response(status_code=204, background=follow)
