"""Plain ASGI layers for the hot path (no BaseHTTPMiddleware): a request id on every
answer and log line, one metrics sample and access-log line per request, and the refusal
of a NUL in a path or query (no id, name or date holds one; PostgreSQL cannot compare
text with one, which made a lookup a 503 that invites retries forever).

Never logs the upstream events secret: not in its own path, nor in a near miss of it."""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from proxy.core.logs import bind_request_id
from proxy.services.metrics import Metrics

__all__ = ["TEAM_KEY", "NulGuard", "ObservabilityMiddleware", "logged_path", "route_of"]

log = logging.getLogger("proxy.access")
TEAM_KEY = "proxy.team"  # handlers put the team's name here once they know it
# Paths whose last part is a secret (`events.py`), right or wrong: a near miss would tell.
EVENTS_PATH = "/upstream/events/"
# Spellings a router or a proxy may take for the events path (`//upstream/events/`,
# `/Upstream/events/`, `/upstream/./events/`): whatever follows them is not logged either.
_EVENTS_LIKE = re.compile(r"(upstream/+(?:\.{1,2}/+)*events/+).*", re.IGNORECASE | re.DOTALL)
_NUL_REFUSED = json.dumps(
    {"error": "the path or query holds a NUL character (%00), which no id, name or date "
              "of the gateway contains; remove it"}
).encode()  # fmt: skip


def logged_path(path: str, secrets: Sequence[str] = ()) -> str:
    """`path` as the access log shows it: the events secret, or anything in its place
    after a spelling of the events path, is `<secret>`."""
    for secret in secrets:
        if secret:
            path = path.replace(secret, "<secret>")
    return _EVENTS_LIKE.sub(lambda m: m.group(1) + "<secret>", path)


def route_of(method: str, path: str) -> str:
    if path.startswith("/workflows/request/"):
        return "poll"
    if path.startswith("/workflows/"):
        return "submit"
    if path == "/v1/get-user-credits":
        return "credits"
    if path.startswith("/admin"):
        return "admin"
    return "other"


class ObservabilityMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        metrics: Metrics,
        log_polls: bool = False,
        secrets: Sequence[str] = (),
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.secrets = tuple(secrets)  # masked wherever they appear in a logged path
        # Successful polls are most of the traffic and say nothing new (the metrics count
        # them); logging each would cost more than answering it.
        self.log_polls = log_polls

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = next((v for k, v in scope["headers"] if k == b"x-request-id"), b"")
        text = incoming.decode("latin-1")[:64]
        request_id = text if text and text.isprintable() else os.urandom(16).hex()
        start = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []),
                                      (b"x-request-id", request_id.encode())]  # fmt: skip
            await send(message)

        with bind_request_id(request_id):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                seconds = time.perf_counter() - start
                route = route_of(scope["method"], scope["path"])
                team = scope.get(TEAM_KEY)
                self.metrics.observe_request(route, status, team, seconds)
                quiet = route == "poll" and status < 400 and not self.log_polls
                if not quiet:
                    self._log(scope, route, status, team, seconds)

    def _log(self, scope: Scope, route: str, status: int, team: str | None, seconds: float) -> None:
        path = logged_path(scope["path"], self.secrets)
        log.info(
            "%s %s %s",
            scope["method"],
            path,
            status,
            extra={"route": route, "status": status, "team": team, "ms": round(seconds * 1000, 2)},
        )


class NulGuard:
    """Answers 400 to a request whose path or query holds a NUL, before any route runs."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (
            "\x00" in scope["path"]
            or b"%00" in scope.get("query_string", b"")
            or b"\x00" in scope.get("query_string", b"")
        ):
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(_NUL_REFUSED)).encode()),
            ]
            await send({"type": "http.response.start", "status": 400, "headers": headers})
            await send({"type": "http.response.body", "body": _NUL_REFUSED})
            return
        await self.app(scope, receive, send)
