"""The fake Segmind in-process, for the client: transports and a clock that drive it.

`ASGITransport` only speaks async; `SyncASGITransport` runs it on a blocking portal so the
synchronous `Client` can talk to the same app. The fake raises `SimulatedNetworkFault` for
a network fault where there is no socket to break; both transports turn it into the httpx
error a real socket would give, so the client's translation is what is under test.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import anyio.from_thread
import httpx
from starlette.applications import Starlette

from fakeserver import FakeSettings, VirtualClock, create_app
from tests.faulting import FaultingASGITransport

FAKE_KEY = "test-key-1"
FAKE_URL = "http://fake.test"


class SyncASGITransport(httpx.BaseTransport):
    def __init__(self, app: Starlette, portal: anyio.from_thread.BlockingPortal) -> None:
        self.inner = FaultingASGITransport(app=app)
        self.portal = portal

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        async def call() -> httpx.Response:
            body = await request.aread() if not request.stream else request.read()
            forwarded = httpx.Request(
                request.method, request.url, headers=request.headers, content=body
            )
            response = await self.inner.handle_async_request(forwarded)
            return httpx.Response(
                response.status_code, headers=response.headers, content=response.content
            )

        return self.portal.call(call)


@dataclass
class VirtualTime:
    """A client clock whose sleep moves the fake's virtual clock: no test waits."""

    clock: VirtualClock

    def now(self) -> float:
        return self.clock.now()

    def sleep(self, seconds: float) -> None:
        self.clock.advance(seconds)


@dataclass
class AsyncVirtualTime:
    clock: VirtualClock

    def now(self) -> float:
        return self.clock.now()

    async def sleep(self, seconds: float) -> None:
        self.clock.advance(seconds)
        await anyio.lowlevel.checkpoint()


@dataclass
class Fake:
    app: Starlette
    clock: VirtualClock
    admin: httpx.Client

    def journal(self, route: str) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = self.admin.get(
            "/__admin/journal", params={"route": route}
        ).json()["entries"]
        return entries

    def script(self, route: str, *responses: dict[str, Any]) -> None:
        answer = self.admin.post(
            "/__admin/script", json={"route": route, "responses": list(responses)}
        )
        answer.raise_for_status()

    def set_credits(self, key: str, credits: float) -> None:
        self.admin.post(
            "/__admin/credits", json={"key": key, "credits": credits}
        ).raise_for_status()


@contextmanager
def running_fake(**settings: Any) -> Iterator[tuple[Fake, anyio.from_thread.BlockingPortal]]:
    settings.setdefault("api_keys", [FAKE_KEY])
    settings.setdefault("public_url", FAKE_URL)
    settings.setdefault("seed", 3)
    clock = VirtualClock()
    app = create_app(FakeSettings(**settings), clock=clock)
    with anyio.from_thread.start_blocking_portal() as portal:
        admin = httpx.Client(transport=SyncASGITransport(app, portal), base_url=FAKE_URL)
        try:
            yield Fake(app, clock, admin), portal
        finally:
            admin.close()
