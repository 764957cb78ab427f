"""The fake app answering in-process, on an event loop of its own, for any caller.

Interceptors (`intercept.py`) hand each request to `InProcessFake.answer()`, from whatever
thread and whatever event loop the code under test runs on: the app always runs on one
loop in one thread of its own (an anyio blocking portal), so sync code, async code and
sync code called inside a running loop all reach it the same way. Nothing here opens a
socket; a network fault asked for comes back as `SimulatedNetworkFault`, for the
interceptor to turn into its library's own error.
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from dataclasses import dataclass

import httpx
from anyio.from_thread import BlockingPortal, start_blocking_portal
from starlette.applications import Starlette

from ..errors import InvalidInput
from ..journal import route_of
from ..prefer import parse_prefer
from .stall import StallWatch

__all__ = ["FORCEABLE_ROUTES", "Answer", "InProcessFake"]

#: Routes `force()` can aim at; "any" takes the next API request whatever its route.
FORCEABLE_ROUTES = ("submit", "poll", "credits", "any")


@dataclass(frozen=True)
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


class InProcessFake:
    """`app` served on a private loop; `force()` queues `Prefer` tokens for coming requests."""

    def __init__(self, app: Starlette, base_url: str, watch: StallWatch | None = None) -> None:
        self.app = app
        self._watch = watch
        self.base_url = base_url
        self._transport = httpx.ASGITransport(app=app)
        self._forced: dict[str, deque[str]] = {}
        self._lock = threading.Lock()
        self._stack = contextlib.ExitStack()
        self._portal: BlockingPortal | None = None
        self.thread_id: int | None = None

    def start(self) -> None:
        self._portal = self._stack.enter_context(start_blocking_portal())
        self.thread_id = self._portal.call(_thread_id)

    def stop(self) -> None:
        self._portal = None
        self._stack.close()

    def force(self, tokens: str, route: str = "any", times: int = 1) -> None:
        """The next `times` requests on `route` carry `Prefer: tokens`, as if the code under
        test had sent it. Checked now, so a typo fails here and not in the code under test."""
        if route not in FORCEABLE_ROUTES:
            raise ValueError(f"route must be one of {', '.join(FORCEABLE_ROUTES)}; got {route!r}")
        if times < 1:
            raise ValueError(f"times must be 1 or more; got {times}")
        try:
            parse_prefer([tokens])
        except InvalidInput as exc:
            raise ValueError(exc.message) from None
        with self._lock:
            self._forced.setdefault(route, deque()).extend([tokens] * times)

    def pending(self) -> dict[str, int]:
        with self._lock:
            return {route: len(queue) for route, queue in self._forced.items() if queue}

    def answer(self, method: str, url: str, headers: list[tuple[str, str]], body: bytes) -> Answer:
        """The fake's answer to one request (raises `SimulatedNetworkFault` for a fault)."""
        if self._portal is None:
            raise RuntimeError("the in-process fake is stopped: its mock_segmind() has exited")
        path = httpx.URL(url).path
        route = route_of(method, path)
        forced = self._take_forced(route)
        if forced is not None:
            headers = [*headers, ("Prefer", forced)]
        request = httpx.Request(method, url, headers=headers, content=body)
        answer = self._portal.call(self._serve, request)
        if route == "poll" and self._watch is not None:
            self._watch.polled(path, answer.status, answer.body)  # on the caller's thread
        return answer

    def _take_forced(self, route: str) -> str | None:
        if route not in ("submit", "poll", "credits"):
            return None  # the fake never applies Prefer elsewhere; keep it for its route
        with self._lock:
            for name in (route, "any"):
                queue = self._forced.get(name)
                if queue:
                    return queue.popleft()
        return None

    async def _serve(self, request: httpx.Request) -> Answer:
        response = await self._transport.handle_async_request(request)
        body = await response.aread()
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in response.headers.raw]
        return Answer(response.status_code, headers, body)


def _thread_id() -> int:
    return threading.get_ident()
