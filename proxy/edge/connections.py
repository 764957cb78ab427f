"""Connection limits uvicorn lacks: a deadline for each request head and body, and caps on
open connections (in all, and from one client address).

uvicorn closes a connection idle *between* requests (`timeout_keep_alive`), but one that
never finishes its first request head, or drips a header byte every few seconds, or a body
byte, is kept for ever: a few hundred of them use up the process's file limit and lock
everyone out (slowloris). Its `limit_concurrency` answers 503 past N *tasks*, and only once
a head is complete, so it caps nothing an attacker holds open.

`uvicorn_options(settings)` gives uvicorn (`uvicorn.run(..., **options)` or
`uvicorn.Config(..., **options)`) an HTTP protocol class: uvicorn's own (httptools, or h11
where httptools is missing) with these deadlines and caps added:

- `header_timeout`: from the moment a connection opens, or the first byte of a following
  request on a kept-alive connection, the whole request head must arrive within this many
  seconds. If not, the gateway answers 408 (when some of the head came) and closes; a
  connection that sent nothing is closed without an answer, as an idle keep-alive one is.
- `body_timeout`: from the end of the head, the whole body must arrive within this many
  seconds (the gateway's bodies are at most `max_body_bytes`, 64 KB). If not: 408 and close.
- `max_head_bytes`: a head larger than this (32 KiB) is answered 431 and closed: the
  deadline bounds a head in time, this in bytes.
- `max_connections`: past this many open connections, a new one is answered 503 with
  `Retry-After` and closed at once, before anything of it is read; the cap is also kept
  below what the process's file limit allows (which is raised to fit where permitted).
- `max_connections_per_client`: past this many from one address, a new one is answered
  429, so one client cannot take the whole `max_connections` from everyone else.

The refusals are written by hand here, below the ASGI app, so they cost no task, no store
read and no upstream call: the cheapest possible answer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import h11
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from proxy.edge.zerocopy import offer_zerocopy

if TYPE_CHECKING:
    from proxy.core.config import ProxySettings

__all__ = [
    "ConnectionGuard",
    "ConnectionLimits",
    "guarded_protocol",
    "raise_file_limit",
    "uvicorn_options",
]

log = logging.getLogger("proxy.connections")

# Files the process needs besides client connections: the store, upstream and webhook
# connections (up to webhook_concurrency), logs, the event loop's own descriptors.
FILE_RESERVE = 128
LOG_EVERY = 10.0  # seconds: one warning line per kind of refusal at most this often


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout: float
    body_timeout: float
    max_connections: int
    max_connections_per_client: int | None = None
    max_head_bytes: int = 32768


@dataclass
class ConnectionGuard:
    """The state every connection of one server shares: the limits, open connections per
    client address, and counts of refusals waiting to be logged."""

    limits: ConnectionLimits
    per_client: Counter[str] = field(default_factory=Counter)
    unlogged: Counter[str] = field(default_factory=Counter)
    logged_at: dict[str, float] = field(default_factory=dict)
    _app: Any = None
    _quiet_app: Any = None

    def quiet(self, app: Any) -> Any:
        """`app`, ending quietly when its client is gone (see `_quiet_when_gone`) and
        offered zero-copy file bodies (proxy/edge/zerocopy.py); made once per app, not
        per connection."""
        if self._app is not app:
            self._app, self._quiet_app = app, _quiet_when_gone(offer_zerocopy(app))
        return self._quiet_app

    def note(self, kind: str, now: float, message: str) -> None:
        """Log a refusal, at most one line per `kind` every LOG_EVERY seconds: a flood of
        connections must not become a flood of log lines."""
        self.unlogged[kind] += 1
        if now - self.logged_at.get(kind, -LOG_EVERY) >= LOG_EVERY:
            log.warning("%s (%d since the last line like it)", message, self.unlogged[kind])
            self.logged_at[kind] = now
            self.unlogged[kind] = 0


def _quiet_when_gone(app: ASGIApp) -> ASGIApp:
    """Starlette raises ClientDisconnect into the app when the client goes away while its
    body is read, which uvicorn logs as "Exception in ASGI application", a traceback at
    ERROR. A body past `body_timeout` ends exactly so: nothing failed and there is no one
    left to answer, so it ends here, unlogged, instead of flooding the log under attack."""

    async def quiet(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await app(scope, receive, send)
        except ClientDisconnect:
            return

    return quiet


def _answer(status: int, reason: str, message: str, headers: dict[str, str]) -> bytes:
    body = json.dumps({"error": message}).encode()
    lines = [
        f"HTTP/1.1 {status} {reason}",
        "content-type: application/json",
        f"content-length: {len(body)}",
        "connection: close",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class _Deadlines:
    """One connection's head and body deadlines, and its place in the caps.

    The protocol tells it what was read (`received`) and where its parser is (`arm_head`
    when a head begins, `head_complete`, `message_complete`, `lost`); it answers and closes
    the transport when a deadline passes or a head grows too large.
    """

    def __init__(
        self,
        guard: ConnectionGuard,
        loop: asyncio.AbstractEventLoop,
        transport: asyncio.Transport,
        connections: int,
        abandon_request: Callable[[], bool],
    ) -> None:
        self.guard = guard
        self.loop = loop
        self.transport = transport
        self.abandon_request = abandon_request  # True if the app had not begun its answer
        self.head: asyncio.TimerHandle | None = None
        self.body: asyncio.TimerHandle | None = None
        self.got_bytes = False  # any byte of the current request head has arrived
        self.head_bytes = 0  # bytes read while waiting for the current head
        self.tail = b""  # the last bytes read: a head's end may straddle two reads
        peer = transport.get_extra_info("peername")
        self.client = str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"
        self.counted = False
        self.refused = self._refuse(connections)
        if not self.refused:
            self.guard.per_client[self.client] += 1
            self.counted = True
            self.arm_head()  # a connection that sends nothing at all is closed too

    def _refuse(self, connections: int) -> bool:
        limits = self.guard.limits
        now = self.loop.time()
        if connections > limits.max_connections:
            self.guard.note(
                "max_connections",
                now,
                f"refused a connection: {limits.max_connections} open (max_connections)",
            )
            self._close(
                503,
                "Service Unavailable",
                f"the gateway has its maximum of {limits.max_connections} open connections "
                "(max_connections); retry in a few seconds",
                {"retry-after": str(max(1, round(limits.header_timeout)))},
            )
            return True
        cap = limits.max_connections_per_client
        if cap is not None and self.guard.per_client[self.client] >= cap:
            self.guard.note(
                "max_connections_per_client",
                now,
                f"refused a connection from {self.client}: {cap} open from that address "
                "(max_connections_per_client)",
            )
            self._close(
                429,
                "Too Many Requests",
                f"{cap} connections are already open from your address "
                "(max_connections_per_client); reuse or close them, then retry",
                {"retry-after": str(max(1, round(limits.header_timeout)))},
            )
            return True
        return False

    def _close(self, status: int, reason: str, message: str, headers: dict[str, str]) -> None:
        if self.transport.is_closing():
            return
        self.transport.write(_answer(status, reason, message, headers))
        self.transport.close()

    def arm_head(self) -> None:
        if self.head is None and not self.transport.is_closing():
            self.head = self.loop.call_later(self.guard.limits.header_timeout, self._head_late)

    def received(self, data: bytes) -> bool:
        """Count bytes read; True (431 sent, connection closing) if they take a head past
        `max_head_bytes`, before the parser buffers them."""
        self.got_bytes = True
        tail, self.tail = self.tail, data[-3:]
        if self.head is None:
            return False
        self.head_bytes += len(data)
        if self.head_bytes <= self.guard.limits.max_head_bytes:
            return False
        # A read that ends the head may carry a body after it: that is not a large head.
        return b"\r\n\r\n" not in tail + data and self.head_too_large()

    def head_too_large(self) -> bool:
        """Past `max_head_bytes` still inside one head: answer 431 and close. A deadline
        alone bounds a head in time, not in bytes (a fast sender fills memory in seconds)."""
        limit = self.guard.limits.max_head_bytes
        if self.head is None or self.head_bytes <= limit:
            return False
        self._cancel_head()
        self.guard.note("max_head_bytes", self.loop.time(), "closed a connection: head too large")
        self._close(
            431,
            "Request Header Fields Too Large",
            f"the request head (request line and headers) is over {limit} bytes "
            "(max_head_bytes); send shorter headers",
            {},
        )
        return True

    def head_complete(self) -> None:
        self._cancel_head()
        self.got_bytes = False
        self.head_bytes = 0
        if self.body is None and not self.transport.is_closing():
            self.body = self.loop.call_later(self.guard.limits.body_timeout, self._body_late)

    def message_complete(self) -> None:
        if self.body is not None:
            self.body.cancel()
            self.body = None

    def lost(self) -> None:
        self._cancel_head()
        self.message_complete()
        if self.counted:
            self.counted = False
            self.guard.per_client[self.client] -= 1
            if self.guard.per_client[self.client] <= 0:
                del self.guard.per_client[self.client]

    def _cancel_head(self) -> None:
        if self.head is not None:
            self.head.cancel()
            self.head = None

    def _head_late(self) -> None:
        self.head = None
        seconds = self.guard.limits.header_timeout
        if not self.got_bytes:  # silent: nothing to answer, like an idle keep-alive close
            self.transport.close()
            return
        message = f"closed a connection: no full head in {seconds:g} s"
        self.guard.note("header_timeout", self.loop.time(), message)
        self._close(
            408,
            "Request Timeout",
            f"the request head (request line and headers) did not arrive within {seconds:g} s "
            "(header_timeout); send the whole head at once",
            {},
        )

    def _body_late(self) -> None:
        self.body = None
        seconds = self.guard.limits.body_timeout
        self.guard.note(
            "body_timeout", self.loop.time(), f"closed a connection: no full body in {seconds:g} s"
        )
        if self.abandon_request():
            self._close(
                408,
                "Request Timeout",
                f"the request body did not arrive within {seconds:g} s of its head "
                "(body_timeout); send the whole body at once",
                {},
            )
        else:  # the app has begun its answer: nothing more can be said on this connection
            self.transport.close()


def _abandon(cycle: Any) -> bool:
    """Drop the request in `cycle` (either parser's) if its answer has not begun: then the
    connection can still be answered 408; else nothing more can be said on it."""
    if cycle is None or cycle.response_started:
        return False
    cycle.disconnected = True  # whatever the app sends later is dropped
    cycle.message_event.set()
    return True


class _Guarded(asyncio.Protocol):
    """What both parsers' guarded protocols share: placed first among the bases, before
    uvicorn's protocol class, so `super()` here is uvicorn's. A connection takes its place
    under the caps and its deadlines when made, gives them up when lost, and every byte
    read is counted against them before uvicorn parses it."""

    guard: ClassVar[ConnectionGuard]
    _deadlines: _Deadlines | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        uvicorn_side: Any = self  # uvicorn's attributes, set by its connection_made
        uvicorn_side.app = self.guard.quiet(uvicorn_side.app)
        self._deadlines = _Deadlines(
            self.guard,
            uvicorn_side.loop,
            transport,  # type: ignore[arg-type]  # a stream connection: a Transport
            len(uvicorn_side.connections),
            self._abandon,
        )

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadlines is not None:
            self._deadlines.lost()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        deadlines = self._deadlines
        if deadlines is None or deadlines.refused:
            return  # refused: its answer is written; read nothing of it
        if deadlines.received(data):
            return
        super().data_received(data)
        if not deadlines.head_too_large():
            self._between_requests(deadlines)

    def _between_requests(self, deadlines: _Deadlines) -> None:
        """After bytes were parsed: arm the head deadline if they began the next request."""

    def _abandon(self) -> bool:
        uvicorn_side: Any = self
        return _abandon(uvicorn_side.cycle)


class _GuardedH11(_Guarded, H11Protocol):
    """uvicorn's h11 protocol with deadlines and caps, for where httptools is missing."""

    def _between_requests(self, deadlines: _Deadlines) -> None:
        idle = self.cycle is None or self.cycle.response_complete
        if self.conn.their_state is h11.IDLE and idle:
            deadlines.arm_head()  # the next request on a kept-alive connection has begun

    def handle_events(self) -> None:
        super().handle_events()
        deadlines = self._deadlines
        if deadlines is None:
            return
        state = self.conn.their_state
        if state is h11.SEND_BODY:
            deadlines.head_complete()
        elif state is not h11.IDLE:  # DONE, MUST_CLOSE, CLOSED, ERROR: this request is read
            if deadlines.head is not None:
                deadlines.head_complete()
            deadlines.message_complete()

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        # The connection passes to a WebSocket protocol, which closes it: this one hears
        # of it no more, so it gives up its place and deadlines now.
        if self._deadlines is not None:
            self._deadlines.lost()
        super().handle_websocket_upgrade(event)


def _httptools_class() -> type[asyncio.Protocol] | None:
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # no httptools (PyPy, Windows): uvicorn's "auto" picks h11 too
        return None

    class _GuardedHttpTools(_Guarded, HttpToolsProtocol):
        """uvicorn's httptools protocol (its "auto" choice) with deadlines and caps."""

        def _between_requests(self, deadlines: _Deadlines) -> None:
            if deadlines.body is None and (self.cycle is None or self.cycle.response_complete):
                # Bytes between requests (even bare CRLFs, which begin no message) cancelled
                # uvicorn's keep-alive timer: the head deadline takes over.
                deadlines.arm_head()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if self._deadlines is not None:
                self._deadlines.arm_head()

        def on_headers_complete(self) -> None:
            super().on_headers_complete()
            if self._deadlines is not None:
                self._deadlines.head_complete()

        def on_message_complete(self) -> None:
            super().on_message_complete()
            if self._deadlines is not None:
                self._deadlines.message_complete()

        def handle_websocket_upgrade(self) -> None:
            # As in _GuardedH11: the WebSocket protocol takes the connection over.
            if self._deadlines is not None:
                self._deadlines.lost()
            super().handle_websocket_upgrade()

    return _GuardedHttpTools


def guarded_protocol(
    limits: ConnectionLimits, parser: Literal["auto", "h11"] = "auto"
) -> type[asyncio.Protocol]:
    """A protocol class for uvicorn's `http=` option, with its own ConnectionGuard: one
    class per server, so two servers in one process keep separate counts. `auto` is
    uvicorn's own choice: httptools where it is installed, else h11."""
    base = (_httptools_class() if parser == "auto" else None) or _GuardedH11
    return type(base.__name__, (base,), {"guard": ConnectionGuard(limits)})


def raise_file_limit(wanted: int) -> int:
    """Raise this process's soft limit on open files towards `wanted` (as far as the hard
    limit allows) and return the limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return wanted if soft == resource.RLIM_INFINITY else soft
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        return soft
    return target


def connection_limits(settings: ProxySettings) -> ConnectionLimits:
    """The settings' limits, with `max_connections` kept below the file limit: a cap above
    it would let connections use up the descriptors the store and upstream calls need."""
    reserve = FILE_RESERVE + settings.webhook_concurrency
    files = raise_file_limit(settings.max_connections + reserve)
    cap = settings.max_connections
    if files - reserve < cap:
        cap = max(files - reserve, 1)
        log.warning(
            "max_connections lowered from %d to %d: the process may open only %d files "
            "(raise `ulimit -n` to allow more)",
            settings.max_connections,
            cap,
            files,
        )
    return ConnectionLimits(
        header_timeout=settings.header_timeout,
        body_timeout=settings.body_timeout,
        max_connections=cap,
        # 0 turns it off (TOML and the environment have no null): behind a load balancer
        # every caller has the balancer's address.
        max_connections_per_client=settings.max_connections_per_client or None,
        max_head_bytes=settings.max_head_bytes,
    )


def uvicorn_options(settings: ProxySettings) -> dict[str, Any]:
    """Keyword arguments for `uvicorn.run` or `uvicorn.Config`: the guarded protocol, no
    WebSocket upgrades (the gateway has no WebSocket route; an upgraded connection would
    leave these limits for a protocol without them), and forwarded headers believed only
    from `forwarded_allow_ips`."""
    trusted = settings.forwarded_allow_ips
    return {
        "http": guarded_protocol(connection_limits(settings)),
        "ws": "none",
        # uvicorn's own default trusts X-Forwarded-For from 127.0.0.1, so any local client
        # could name itself anyone; the gateway believes only the proxies it is told of.
        "proxy_headers": bool(trusted),
        "forwarded_allow_ips": list(trusted) or None,
    }
