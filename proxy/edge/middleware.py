"""Plain ASGI layers for the hot path (no BaseHTTPMiddleware): a request id on every
answer and log line, and one metrics sample and access-log line per request."""

from __future__ import annotations

import logging
import os
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from proxy.core.logs import bind_request_id
from proxy.services.metrics import Metrics

__all__ = ["TEAM_KEY", "ObservabilityMiddleware", "route_of"]

log = logging.getLogger("proxy.access")
TEAM_KEY = "proxy.team"  # handlers put the team's name here once they know it
# Paths whose last part is a secret (`events.py`), right or wrong: a near miss would tell.
EVENTS_PATH = "/upstream/events/"


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
    def __init__(self, app: ASGIApp, metrics: Metrics, log_polls: bool = False) -> None:
        self.app = app
        self.metrics = metrics
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

    @staticmethod
    def _log(scope: Scope, route: str, status: int, team: str | None, seconds: float) -> None:
        path = scope["path"]
        if path.startswith(EVENTS_PATH):
            path = EVENTS_PATH + "<secret>"
        log.info(
            "%s %s %s",
            scope["method"],
            path,
            status,
            extra={"route": route, "status": status, "team": team, "ms": round(seconds * 1000, 2)},
        )
