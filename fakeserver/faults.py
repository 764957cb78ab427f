"""Faults on demand: scripted answers, `Prefer` tokens and seeded chaos, as one ASGI layer.

For each API request (submit, poll, credits) the layer picks at most one action, first
match wins: the next scripted answer queued for the route (`POST /__admin/script`), then
the request's own `Prefer` header, then chaos (seeded probabilities). An action may delay,
answer a forced status and body, or break the connection. With `after`, the request is
served first (a job is created and charged) and only its answer is replaced: the case
where a client must not resubmit.

Network faults need a socket. Under uvicorn they are real (TCP reset, a closed connection
with no reply, non-HTTP bytes); in-process, where there is none, the layer raises
`SimulatedNetworkFault` instead. It never touches /__admin.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
import struct
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import DEFAULT_MESSAGES, InvalidInput, SimulatedNetworkFault
from .journal import CONNECTION_KEY, ENTRY_KEY, ROUTE_KEY, route_of
from .prefer import FAULT_KINDS, parse_prefer

__all__ = ["Action", "ChaosSettings", "FaultMiddleware", "FaultPlan"]

FAULTABLE_ROUTES = ("submit", "poll", "credits")
# Every server error the gateway handles: each is retried, and 503 is an outage's answer.
CHAOS_ERROR_CODES = (500, 502, 503, 504)
DELAY_KINDS = ("fixed", "lognormal", "trickle")
MALFORMED_BODY = b'{"status": "QUEUED", "request_id": "'  # cut short: not valid JSON


@dataclass(frozen=True)
class Action:
    """What to do to one request instead of (or around) serving it normally."""

    code: int | None = None  # answer this status
    body: Any = None  # with this JSON body (default: a Segmind-like error)
    headers: dict[str, str] = field(default_factory=dict)
    fault: str | None = None  # break the connection this way
    delay_ms: float = 0.0  # wait before answering
    trickle_ms: float = 0.0  # spread the body over this long
    after: bool = False  # serve the request first, then replace its answer
    source: str = ""

    @classmethod
    def from_script(cls, entry: dict[str, Any]) -> Action:
        known = {"code", "status", "body", "headers", "fault", "delay_ms", "trickle_ms", "after"}
        unknown = set(entry) - known - {"times", "message"}
        if unknown:
            raise InvalidInput(
                f"script entry has unknown fields {sorted(unknown)}; known: {sorted(known)}"
            )
        code = entry.get("code", entry.get("status"))
        if code is not None and (not isinstance(code, int) or not 100 <= code <= 599):
            raise InvalidInput(f"script entry status must be an HTTP status code; got {code!r}")
        fault = entry.get("fault")
        if fault is not None and fault not in FAULT_KINDS:
            raise InvalidInput(f"script fault must be one of {', '.join(FAULT_KINDS)}")
        body = entry.get("body")
        if body is None and code is not None and code >= 400:
            body = {"error": entry.get("message") or DEFAULT_MESSAGES.get(code, "error")}
        if code is None and fault is None and not entry.get("delay_ms") and "body" in entry:
            code = 200
        return cls(
            code=code,
            body=body,
            headers={str(k): str(v) for k, v in (entry.get("headers") or {}).items()},
            fault=fault,
            delay_ms=float(entry.get("delay_ms") or 0),
            trickle_ms=float(entry.get("trickle_ms") or 0),
            after=bool(entry.get("after", False)),
            source="script",
        )


@dataclass(frozen=True)
class ChaosSettings:
    error_rate: float = 0.0  # chance of a 500, 502 or 504
    fault_rate: float = 0.0  # chance of a network fault
    delay_rate: float = 0.0  # chance of a delay
    delay_ms: float = 200.0  # fixed delay, or the median of a lognormal one
    delay_kind: str = "fixed"  # fixed, lognormal or trickle
    seed: int | None = None

    def __post_init__(self) -> None:
        for name in ("error_rate", "fault_rate", "delay_rate"):
            rate = getattr(self, name)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"chaos {name} must be between 0 and 1; got {rate}")
        if self.delay_kind not in DELAY_KINDS:
            raise ValueError(
                f"chaos delay kind must be one of {', '.join(DELAY_KINDS)}; got {self.delay_kind!r}"
            )

    @property
    def active(self) -> bool:
        return bool(self.error_rate or self.fault_rate or self.delay_rate)


class FaultPlan:
    """Scripted answers per route, and the chaos dice."""

    def __init__(self, chaos: ChaosSettings | None = None) -> None:
        self.scripts: dict[str, deque[Action]] = {}
        self.set_chaos(chaos or ChaosSettings())

    def set_chaos(self, chaos: ChaosSettings) -> None:
        self.chaos = chaos
        self._rng = random.Random(chaos.seed)

    def script(self, route: str, entries: list[dict[str, Any]]) -> int:
        if route not in (*FAULTABLE_ROUTES, "any"):
            valid = ", ".join((*FAULTABLE_ROUTES, "any"))
            raise InvalidInput(f"script route must be one of {valid}; got {route!r}")
        queue = self.scripts.setdefault(route, deque())
        for entry in entries:
            if not isinstance(entry, dict):
                raise InvalidInput('each script entry must be an object, e.g. {"code": 502}')
            action = Action.from_script(entry)
            times = entry.get("times", 1)
            if not isinstance(times, int) or times < 1:
                raise InvalidInput("script entry times must be a whole number of 1 or more")
            queue.extend([action] * times)
        return len(queue)

    def pending(self) -> dict[str, int]:
        return {route: len(queue) for route, queue in self.scripts.items() if queue}

    def reset(self) -> None:
        self.scripts.clear()
        self.set_chaos(self.chaos)

    def take_scripted(self, route: str) -> Action | None:
        for name in (route, "any"):
            queue = self.scripts.get(name)
            if queue:
                return queue.popleft()
        return None

    def roll(self) -> Action | None:
        """Chaos: at most one seeded fault for this request."""
        chaos, rng = self.chaos, self._rng
        if not chaos.active:
            return None
        delay = trickle = 0.0
        if rng.random() < chaos.delay_rate:
            ms = chaos.delay_ms
            if chaos.delay_kind == "lognormal":
                ms = chaos.delay_ms * rng.lognormvariate(0.0, 0.75)
            if chaos.delay_kind == "trickle":
                trickle = ms
            else:
                delay = ms
        if rng.random() < chaos.error_rate:
            return Action(code=rng.choice(CHAOS_ERROR_CODES), delay_ms=delay, source="chaos")
        if rng.random() < chaos.fault_rate:
            return Action(fault=rng.choice(FAULT_KINDS), delay_ms=delay, source="chaos")
        if delay or trickle:
            return Action(delay_ms=delay, trickle_ms=trickle, source="chaos")
        return None


def action_from_prefer(scope: Scope) -> Action | None:
    values = [v.decode("latin-1") for k, v in scope["headers"] if k == b"prefer"]
    if not values:
        return None
    prefs = parse_prefer(values)
    if not (prefs.forces_answer or prefs.delay_ms or prefs.trickle_ms):
        return None
    body = None
    if prefs.code is not None:
        body = {"error": DEFAULT_MESSAGES[prefs.code]}
    return Action(
        code=prefs.code,
        body=body,
        headers={"Retry-After": "1"} if prefs.code == 429 else {},
        fault=prefs.fault,
        delay_ms=prefs.delay_ms,
        trickle_ms=prefs.trickle_ms,
        after=prefs.after,
        source="prefer",
    )


class FaultMiddleware:
    def __init__(self, app: ASGIApp, plan: FaultPlan) -> None:
        self.app = app
        self.plan = plan

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = scope.get(ROUTE_KEY) or route_of(scope["method"], scope["path"])
        if route not in FAULTABLE_ROUTES:
            await self.app(scope, receive, send)
            return
        try:
            action = self.plan.take_scripted(route) or action_from_prefer(scope) or self.plan.roll()
        except InvalidInput as exc:
            await exc.response()(scope, receive, send)
            return
        if action is None:
            await self.app(scope, receive, send)
            return
        entry = scope.get(ENTRY_KEY)
        if entry is not None:
            entry["fault"] = action.fault or (f"code={action.code}" if action.code else "delay")
            entry["fault_source"] = action.source
        if action.delay_ms:
            await asyncio.sleep(action.delay_ms / 1000)
        if action.code is None and action.fault is None:
            await self.app(scope, receive, _trickling(send, action.trickle_ms))
            return
        if action.after:
            await self.app(scope, receive, _discard)
        if action.fault is not None:
            await _break(action.fault, scope.get(CONNECTION_KEY), send)
            return
        body = json.dumps(action.body).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *((k.lower().encode(), v.encode()) for k, v in action.headers.items()),
        ]
        send = _trickling(send, action.trickle_ms)
        await send({"type": "http.response.start", "status": action.code, "headers": headers})
        await send({"type": "http.response.body", "body": body})


async def _discard(message: Message) -> None:
    return None


def _trickling(send: Send, total_ms: float) -> Send:
    """Spread each response body over `total_ms`, a few bytes at a time."""
    if total_ms <= 0:
        return send

    async def trickle(message: Message) -> None:
        if message["type"] != "http.response.body" or not message.get("body"):
            await send(message)
            return
        body: bytes = message["body"]
        pieces = [body[i : i + 8] for i in range(0, len(body), 8)]
        pause = total_ms / 1000 / len(pieces)
        for piece in pieces[:-1]:
            await send({"type": "http.response.body", "body": piece, "more_body": True})
            await asyncio.sleep(pause)
        await send({**message, "body": pieces[-1]})

    return trickle


async def _break(fault: str, cycle: Any, send: Send) -> None:
    if fault == "malformed":
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(MALFORMED_BODY)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": MALFORMED_BODY})
        return
    transport = getattr(cycle, "transport", None)
    if transport is None:
        raise SimulatedNetworkFault(fault)
    if fault == "reset":
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                # Linger 0 turns close() into a TCP RST: the peer sees "connection reset".
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    elif fault == "garbage":
        transport.write(random.randbytes(64) + b"\r\n\r\n")
        transport.close()
    else:  # empty: the connection closes with no reply at all
        transport.close()
    # Let uvicorn see the disconnect, so it does not try to answer a 500 on a dead socket.
    for _ in range(20):
        if getattr(cycle, "disconnected", True):
            break
        await asyncio.sleep(0)
