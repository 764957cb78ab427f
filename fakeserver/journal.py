"""The request journal: what reached the fake, in order, for tests to assert on.

Each entry records the method, path, route, the label of the key that was used (never the
key), the body, the answer's status and any fault applied. Tests of the gateway read it to
prove, for instance, that a submit went upstream exactly once.
"""

from __future__ import annotations

import json
import threading
from collections import Counter, deque
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .accounts import Accounts
from .clock import Clock

__all__ = [
    "ACCOUNT_KEY",
    "CONNECTION_KEY",
    "ENTRY_KEY",
    "ROUTE_KEY",
    "Journal",
    "JournalMiddleware",
    "api_key_of",
    "route_of",
]

ENTRY_KEY = "fakeserver.entry"  # the scope key under which a request's entry travels
# Network faults need the connection. Under uvicorn, receive() is a method of the
# request-response cycle that holds the asyncio transport; the outermost layer keeps that
# cycle here before anything wraps receive().
CONNECTION_KEY = "fakeserver.connection"
ROUTE_KEY = "fakeserver.route"  # route_of(), computed once per request
ACCOUNT_KEY = "fakeserver.account"  # the Account the key names, or None
BODY_LIMIT = 4096  # bytes of a request body kept in the journal


def route_of(method: str, path: str) -> str:
    if path.startswith("/__admin"):
        return "admin"
    if path.startswith("/workflows/request/"):
        return "poll"
    if path.startswith("/workflows/"):
        return "submit" if method == "POST" else "other"
    if path == "/v1/get-user-credits":
        return "credits"
    if path.startswith("/assets/"):
        return "asset"
    return "other"


def api_key_of(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The key a request carries: `x-api-key`, or `Authorization: Bearer <key>`."""
    bearer = None
    for name, value in headers:
        if name == b"x-api-key" and value.strip():
            return value.decode("latin-1").strip()
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                bearer = token.strip()
    return bearer


class Journal:
    def __init__(self, clock: Clock, size: int = 10_000) -> None:
        self._clock = clock
        self._entries: deque[dict[str, Any]] = deque(maxlen=size)
        self._counts: Counter[str] = Counter()
        self._seq = 0
        self._lock = threading.Lock()

    def open(self, method: str, path: str, route: str, key: str | None) -> dict[str, Any]:
        with self._lock:
            self._seq += 1
            entry: dict[str, Any] = {
                "seq": self._seq,
                "at": self._clock.now(),
                "method": method,
                "path": path,
                "route": route,
                "key": key,
                "status": None,
                "fault": None,
                "body": None,
            }
            self._entries.append(entry)
            self._counts[route] += 1
            return entry

    def entries(self, route: str | None = None, since: int = 0) -> list[dict[str, Any]]:
        with self._lock:
            return [
                dict(e)
                for e in self._entries
                if e["seq"] > since and (route is None or e["route"] == route)
            ]

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def reset(self) -> None:
        with self._lock:
            self._entries.clear()
            self._counts.clear()


def _body_for_journal(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # deep nesting is refused by the API, not here
        return raw[:BODY_LIMIT].decode("utf-8", "replace")


class JournalMiddleware:
    """Outermost layer: opens an entry per request and fills in its answer."""

    def __init__(self, app: ASGIApp, journal: Journal, accounts: Accounts) -> None:
        self.app = app
        self.journal = journal
        self.accounts = accounts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope[CONNECTION_KEY] = getattr(receive, "__self__", None)
        route = scope[ROUTE_KEY] = route_of(scope["method"], scope["path"])
        if route in ("admin", "asset"):
            await self.app(scope, receive, send)
            return
        key = api_key_of(scope["headers"])
        account = scope[ACCOUNT_KEY] = self.accounts.find(key) if key else None
        label = account.label if account else ("unknown" if key else None)
        entry = self.journal.open(scope["method"], scope["path"], route, label)
        scope[ENTRY_KEY] = entry
        chunks: list[bytes] = []
        size = 0

        async def receive_and_keep() -> Message:
            nonlocal size
            message = await receive()
            if message["type"] == "http.request" and size < BODY_LIMIT:
                chunk = message.get("body", b"")
                chunks.append(chunk)
                size += len(chunk)
                if not message.get("more_body", False):
                    entry["body"] = _body_for_journal(b"".join(chunks))
            return message

        async def send_and_note(message: Message) -> None:
            if message["type"] == "http.response.start":
                entry["status"] = message["status"]
            await send(message)

        # GET polls are most of the traffic and have no body worth keeping.
        has_body = scope["method"] in ("POST", "PUT", "PATCH")
        await self.app(scope, receive_and_keep if has_body else receive, send_and_note)
