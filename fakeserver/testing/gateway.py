"""The gateway as a real process in front of a `FakeServer`, with a team and its key.

It is started as a command (`python -m proxy serve ...`), never imported: `fakeserver`
stands for the upstream and imports nothing of the gateway. Both run on virtual clocks;
`advance()` moves the fake's and then the gateway's, and returns once the gateway's
pollers have caught up, so a test sees a run finish without waiting for it.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

from .processes import ServiceProcess, StopsOnExit
from .server import FakeServer

__all__ = ["Gateway", "GatewayClock"]

LISTENING = r"gateway listening on (http://\S+)"
TEAM = "tests"


class Gateway(StopsOnExit):
    """A gateway on a store of its own, upstream `fake`; `api_key` is team `team`'s key.
    A context manager: leaving `with Gateway(fake) as gateway:` stops it (not its fake)."""

    def __init__(
        self, fake: FakeServer, team: str = TEAM, limits: dict[str, Any] | None = None
    ) -> None:
        self.fake = fake
        self.admin_key = secrets.token_urlsafe(24)
        self._dir = Path(tempfile.mkdtemp(prefix="segmind-gateway-"))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PROXY_", "SEGMIND_"))}
        env.update(
            SEGMIND_API_KEY=fake.api_key,
            PROXY_ADMIN_KEY=self.admin_key,
            # A test's webhook receiver listens on loopback, which the gateway refuses by
            # default (a guard against requests to internal services).
            PROXY_WEBHOOK_ALLOW_NETWORKS='["127.0.0.0/8", "::1/128"]',
            # Offline tests use the default image, on Segmind's storage, out of reach; the
            # fake never loads images, so checking them would only refuse every submit.
            PROXY_IMAGE_PREFLIGHT="false",
        )
        argv = [
            sys.executable, "-m", "proxy", "serve", "--host", "127.0.0.1", "--port", "0",
            "--upstream-url", fake.url, "--db", str(self._dir / "gateway.sqlite"),
            "--clock", "virtual",
        ]  # fmt: skip
        try:
            self.process = ServiceProcess(argv, env, LISTENING)
        except BaseException:
            shutil.rmtree(self._dir, ignore_errors=True)
            raise
        self.url = self.process.url
        self._http = httpx.Client(
            base_url=self.url, headers={"x-admin-key": self.admin_key}, timeout=30.0
        )
        try:
            self.team = team
            self.api_key = self.create_team(team, limits)["api_key"]
        except BaseException:
            self.stop()
            raise
        self.clock = GatewayClock(self)

    def create_team(self, name: str, limits: dict[str, Any] | None = None) -> dict[str, Any]:
        """Another team (`POST /admin/teams`); the answer holds its `api_key`, once."""
        body: dict[str, Any] = {"name": name, **({"limits": limits} if limits else {})}
        made = self._http.post("/admin/teams", json=body)
        if made.status_code != 201:
            raise RuntimeError(f"creating team {name!r}: {made.status_code} {made.text}")
        team: dict[str, Any] = made.json()
        return team

    def advance(self, seconds: float) -> None:
        """Move the fake's clock, then the gateway's; back once its pollers have polled."""
        self.fake.advance(seconds)
        moved = self._http.post("/admin/clock/advance", json={"seconds": seconds})
        if moved.status_code != 200:
            raise RuntimeError(f"advancing the gateway's clock: {moved.status_code} {moved.text}")

    def stop(self) -> str:
        """Stop the gateway (not its fake) and remove its store; returns what it printed."""
        self._http.close()
        try:
            return self.process.stop()
        finally:
            shutil.rmtree(self._dir, ignore_errors=True)


class GatewayClock:
    """A clock for the project's SDK (`client.Client(clock=...)`): `sleep()` advances both
    clocks, so `Client.wait()` on a gateway run returns in a moment."""

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway

    def now(self) -> float:
        return self._gateway.fake.now()

    def sleep(self, seconds: float) -> None:
        self._gateway.advance(seconds)
