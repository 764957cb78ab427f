"""The gateway in-process in front of the real fake (ASGITransport), both on virtual clocks.

Nothing of the gateway is replaced: its real store (a SQLite file in tmp_path), poller,
upstream client and HTTP app run; only the paid upstream is the fake.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette

from fakeserver import FakeSettings
from fakeserver import VirtualClock as FakeClock
from fakeserver import create_app as create_fake
from fakeserver.state import FakeState
from proxy.app import create_app
from proxy.clock import VirtualClock
from proxy.config import ProxySettings, TeamLimits
from proxy.gateway import Gateway
from proxy.teams import create_team

UPSTREAM_KEY = "test-upstream-key-7f3a9c1e5b2d4680"
FAKE_URL = "http://fake.test"
GATEWAY_URL = "http://gateway.test"
WORKFLOW = "/workflows/68628fe34727e611dfa219b4-v4"


@dataclass
class Harness:
    fake: Starlette
    fake_clock: FakeClock
    app: Starlette
    gateway: Gateway
    clock: VirtualClock
    http: httpx.AsyncClient

    @property
    def fake_state(self) -> FakeState:
        state: FakeState = self.fake.state.fake
        return state

    def upstream_calls(self, route: str) -> list[dict[str, Any]]:
        return self.fake_state.journal.entries(route)

    async def advance(self, seconds: float) -> None:
        """Move both clocks, then wait until every poll loop has done its work."""
        self.fake_clock.advance(seconds)
        self.clock.advance(seconds)
        await self.gateway.poller.settle()

    def team(self, name: str, **limits: Any) -> str:
        """A new team with the given limits (others: defaults); returns its key."""
        made = create_team(
            self.gateway.store.sync,
            name,
            TeamLimits(**limits),
            self.clock.now(),
        )
        return made.key

    async def submit(self, key: str, body: Any = None, **headers: str) -> httpx.Response:
        return await self.http.post(
            WORKFLOW, json={} if body is None else body, headers={"x-api-key": key, **headers}
        )

    async def poll(self, key: str, request_id: str) -> httpx.Response:
        return await self.http.get(f"/workflows/request/{request_id}", headers={"x-api-key": key})


async def start_harness(db: Path, fake: dict[str, Any] | None = None,
                        **settings: Any) -> Harness:  # fmt: skip
    fake_clock = FakeClock()
    fake_app = create_fake(
        FakeSettings(
            api_keys=[UPSTREAM_KEY], public_url=FAKE_URL, seed=5, plan="unlimited",
            **(fake or {}),
        ),
        clock=fake_clock,
    )  # fmt: skip
    clock = VirtualClock(start=fake_clock.now())
    settings.setdefault("db", str(db))
    gateway_settings = ProxySettings(
        upstream_url=FAKE_URL,
        upstream_key=UPSTREAM_KEY,
        public_url=GATEWAY_URL,
        **settings,
    )
    app = create_app(
        gateway_settings, clock=clock, upstream_transport=httpx.ASGITransport(app=fake_app)
    )
    gateway: Gateway = app.state.gateway
    await gateway.start()
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=GATEWAY_URL)
    return Harness(fake_app, fake_clock, app, gateway, clock, http)


async def stop_harness(harness: Harness) -> None:
    await harness.http.aclose()
    await harness.gateway.stop()
