"""The gateway in-process in front of the real fake (ASGITransport), both on virtual clocks.

Nothing of the gateway is replaced: its real store (a SQLite file in tmp_path), poller,
upstream client and HTTP app run; only the paid upstream is the fake.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
from starlette.applications import Starlette

from client import CHARACTER_VIDEO_WORKFLOW_ID
from fakeserver import FakeSettings
from fakeserver import VirtualClock as FakeClock
from fakeserver import create_app as create_fake
from fakeserver.state import FakeState
from proxy.app import create_app
from proxy.core.cache import canonical_inputs, generation_key, scoped_key
from proxy.core.clock import Clock, VirtualClock
from proxy.core.config import PRICE, ProxySettings, TeamLimits
from proxy.core.tracing import Tracing
from proxy.db import Team
from proxy.rules import AdmissionRequest
from proxy.services.accounts import NewKey, create_team
from proxy.services.gateway import Gateway
from tests.faulting import FaultingASGITransport

UPSTREAM_KEY = "test-upstream-key-7f3a9c1e5b2d4680"
FAKE_URL = "http://fake.test"
GATEWAY_URL = "http://gateway.test"
WORKFLOW = "/workflows/68628fe34727e611dfa219b4-v4"
# Real seconds a test waits for work crossing a real socket, which happens at once: only a
# bound in case it never comes, never a deadline a passing run comes near (CI is loaded).
SAFETY = 30.0

T = TypeVar("T")


class WatchedClock(VirtualClock):
    """The gateway's virtual clock, plus a way to wait, without sleeping for real, until
    something is asleep on it (a retried submit waiting out its backoff, a poll loop)."""

    def __init__(self, start: float) -> None:
        super().__init__(start)
        self._slept = asyncio.Event()

    async def sleep(self, seconds: float) -> None:
        # Set before the sleeper is queued; a waiter runs only once this coroutine yields,
        # by which time it is.
        self._slept.set()
        await super().sleep(seconds)

    async def wait_for_sleepers(self, count: int = 1) -> None:
        while self.sleepers < count:
            self._slept.clear()
            await self._slept.wait()


class UpstreamTransport(FaultingASGITransport):
    """The fake in-process, its network faults turned into httpx errors (tests/faulting.py).
    `refuse_connections` makes that many next exchanges fail with a connection refused
    (nothing sent), which never reaches the fake or its journal."""

    def __init__(self, app: Starlette) -> None:
        super().__init__(app=app)
        self.refuse_connections = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.refuse_connections > 0:
            self.refuse_connections -= 1
            raise httpx.ConnectError("connection refused", request=request)
        return await super().handle_async_request(request)


@dataclass
class Harness:
    fake: Starlette
    fake_clock: FakeClock
    app: Starlette
    gateway: Gateway
    clock: WatchedClock
    http: httpx.AsyncClient
    upstream_transport: UpstreamTransport = field(repr=False)
    # What the gateway's deliverer sends webhooks through (None: the SSRF-guarded sockets).
    webhook_transport: httpx.AsyncBaseTransport | None = field(default=None, repr=False)

    @property
    def fake_state(self) -> FakeState:
        state: FakeState = self.fake.state.fake
        return state

    def upstream_calls(self, route: str) -> list[dict[str, Any]]:
        return self.fake_state.journal.entries(route)

    async def advance(self, seconds: float, *, webhooks: bool = True) -> None:
        """Move both clocks, then wait until every poll loop has done its work and (unless
        `webhooks=False`) every webhook attempt that became due has been made and recorded."""
        self.fake_clock.advance(seconds)
        self.clock.advance(seconds)
        await self.gateway.poller.settle()
        if webhooks:
            await self.settle_webhooks()

    async def settle_webhooks(self) -> None:
        """Wait until the deliverer has sent everything due and is asleep again. A loop woken
        by the clock takes a few event-loop turns to count itself busy: yield them first."""
        for _ in range(3):
            for _ in range(20):
                await asyncio.sleep(0)
            await self.gateway.deliverer.settle()

    def team(self, name: str, **limits: Any) -> str:
        """A new team with the given limits (others: defaults); returns its key."""
        return self.new_team(name, **limits).key

    def new_team(self, name: str, **limits: Any) -> NewKey:
        """A new team; its key and its webhook secret (`.key`, `.webhook_secret`)."""
        return blocking(
            create_team(self.gateway.store, name, TeamLimits(**limits), self.clock.now())
        )

    async def submit(self, key: str, body: Any = None, **headers: str) -> httpx.Response:
        return await self.http.post(
            WORKFLOW, json={} if body is None else body, headers={"x-api-key": key, **headers}
        )

    async def poll(self, key: str, request_id: str) -> httpx.Response:
        return await self.http.get(f"/workflows/request/{request_id}", headers={"x-api-key": key})

    async def credits(self, key: str) -> float:
        """What the team can still spend, from the gateway's own credits endpoint."""
        answer = await self.http.get("/v1/get-user-credits", headers={"x-api-key": key})
        assert answer.status_code == 200, answer.text
        credits: float = answer.json()["credits"]
        return credits

    async def advance_until_done(
        self, key: str, request_id: str, step: float = 7.0, limit: float = 4000.0
    ) -> dict[str, Any]:
        """Advance both clocks `step` at a time until the request's poll is terminal."""
        moved = 0.0
        while True:
            body: dict[str, Any] = (await self.poll(key, request_id)).json()
            if body.get("status") in ("COMPLETED", "FAILED") or moved >= limit:
                return body
            await self.advance(step)
            moved += step

    async def drive(self, work: Awaitable[T], step: float = 10.0, limit: float = 600.0) -> T:
        """Await `work` that sleeps on the gateway's virtual clock (a retried submit): each
        time it (or anything else) is found asleep on the clock and not yet done, move both
        clocks `step`, at most `limit` seconds in all. Event-driven: no real sleep."""
        task = asyncio.ensure_future(work)
        moved = 0.0
        while True:
            asleep = asyncio.ensure_future(self.clock.wait_for_sleepers(1))
            await asyncio.wait({task, asleep}, return_when=asyncio.FIRST_COMPLETED)
            asleep.cancel()
            if task.done():
                return task.result()
            if moved >= limit:
                task.cancel()
                raise AssertionError(f"still not done after {limit} s of virtual time")
            await self.advance(step)
            moved += step

    async def submits_settled(self) -> None:
        """Wait until every admission and every paid submit the gateway started has
        finished (or failed), whether or not its caller is still waiting."""
        # The gateway keeps these tasks privately; stop() waits on them the same way.
        await asyncio.gather(*list(self.gateway._admitting), return_exceptions=True)
        await asyncio.gather(*list(self.gateway._submits), return_exceptions=True)

    async def restart(self) -> None:
        """Stop this gateway and start a new one on the same store file and the same fake,
        as a process restart would; the harness then talks to the new one."""
        settings = self.gateway.settings
        await self.http.aclose()
        await self.gateway.stop()
        self.clock = WatchedClock(start=self.fake_clock.now())
        self.app = create_app(
            settings,
            clock=self.clock,
            upstream_transport=self.upstream_transport,
            webhook_transport=self.webhook_transport,
        )
        self.gateway = self.app.state.gateway
        await self.gateway.start()
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app),
                                      base_url=GATEWAY_URL)  # fmt: skip


def blocking(work: Coroutine[Any, Any, T]) -> T:
    """Run a store coroutine to its end from synchronous test code, on a thread of its own
    (its own event loop), whether or not a loop runs here."""
    with ThreadPoolExecutor(max_workers=1) as thread:
        return thread.submit(asyncio.run, work).result()


def admission_for(
    team: Team, body: dict[str, str], instance: str | None = None
) -> AdmissionRequest:
    """What the gateway asks the store to admit for `body` (a MISS, by team scope): for
    tests that leave a run admitted but never submitted, as a crash mid-submit does."""
    workflow_id = CHARACTER_VIDEO_WORKFLOW_ID
    inputs = canonical_inputs(workflow_id, body)
    return AdmissionRequest(
        team=team,
        request_id=uuid.uuid4().hex,
        generation_id=uuid.uuid4().hex,
        scope_key=scoped_key(generation_key(workflow_id, inputs), team.id, False),
        workflow_id=workflow_id,
        inputs=inputs,
        price=PRICE,
        instance=instance,
    )


async def start_harness(
    db: Path | str,
    fake: dict[str, Any] | None = None,
    *,
    webhook_transport: httpx.AsyncBaseTransport | None = None,
    clock_start: float | None = None,
    wall_clock: Clock | None = None,
    upstream_key: str = UPSTREAM_KEY,
    tracing: Tracing | None = None,
    **settings: Any,
) -> Harness:
    """`webhook_transport` replaces the deliverer's SSRF-guarded sockets (e.g. an
    `httpx.ASGITransport` to an in-process receiver); `clock_start` starts both virtual
    clocks there instead of at their epoch; `wall_clock` times the gateway's heartbeat
    (default: real time); `upstream_key` is the company key (the fake's one account);
    `tracing` where its spans go (default: as the environment says)."""
    fake_clock = FakeClock() if clock_start is None else FakeClock(start=clock_start)
    fake_app = create_fake(
        FakeSettings(
            api_keys=[upstream_key], public_url=FAKE_URL, seed=5, plan="unlimited",
            **(fake or {}),
        ),
        clock=fake_clock,
    )  # fmt: skip
    clock = WatchedClock(start=fake_clock.now())
    settings.setdefault("db", str(db))
    # Flow tests step the clocks in small, known amounts: they poll on the fixed 7 s loop.
    # The adaptive schedule (the default) has its own tests, and the e2e suite runs it.
    settings.setdefault("poll_schedule", "fixed")
    gateway_settings = ProxySettings(
        upstream_url=FAKE_URL,
        upstream_key=upstream_key,
        public_url=GATEWAY_URL,
        **settings,
    )
    upstream = UpstreamTransport(fake_app)
    app = create_app(
        gateway_settings,
        clock=clock,
        upstream_transport=upstream,
        webhook_transport=webhook_transport,
        wall_clock=wall_clock,
        tracing=tracing,
    )
    gateway: Gateway = app.state.gateway
    await gateway.start()
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=GATEWAY_URL)
    return Harness(fake_app, fake_clock, app, gateway, clock, http, upstream, webhook_transport)


async def stop_harness(harness: Harness) -> None:
    await harness.http.aclose()
    await harness.gateway.stop()
