"""The targets the contract (`tests/contract/contract.py`) runs against.

- `InProcessFake`: the fake's Starlette app in this process (`TestClient`), on a
  `VirtualClock` moved directly.
- `HttpFake`: `python -m fakeserver` under uvicorn on loopback, its virtual clock moved
  over `/__admin`.
- `CassetteReplay`: the committed `cassettes/*.yaml`, replayed by vcrpy in record mode
  `none` (`client.cassettes.make_vcr`) under a raw httpx client for
  `https://api.segmind.com`. It plays only what was recorded: a scenario with no cassette
  is skipped, saying why.
- `GatewayStack`: the gateway in front of the fake, both real processes on virtual clocks
  (`tests.stack`), a fresh team per scenario.
- `LiveSegmind`: real Segmind, only with `SEGMIND_API_KEY` set and never in CI. Free
  calls only (a wrong key, an unknown workflow or id, the credits endpoint), unless
  `SEGMIND_LIVE_RUN=1` is set too: then the success checks share one real run (~$4,
  ~11 minutes of real polling).

Every target refuses what it cannot do with `pytest.skip(<why>)`.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import time
from collections.abc import Callable, Hashable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from client.cassettes import cassette_path, make_vcr
from fakeserver import FakeSettings, VirtualClock, create_app
from tests.contract.contract import (
    CREDITS_PATH,
    SUBMIT_PATH,
    AuthScheme,
    Scenario,
    Session,
)
from tests.contract.record import CANONICAL_BASE
from tests.servers import ServerProcess, start_server
from tests.stack import ADMIN_KEY, BothClocks, Stack, running_stack

__all__ = [
    "LIVE_SKIP",
    "CassetteReplay",
    "GatewayStack",
    "HttpFake",
    "InProcessFake",
    "LiveSegmind",
    "clean_environment",
    "live_key",
]

FAKE_KEY = "contract-fake-key-2c7e9a4f1b"
INPROCESS_BASE = "http://fake.test"
# On a virtual clock any poll interval is right; a minute keeps a ~674 s run to a dozen
# round trips. Real Segmind asks for 7 s (SEGMIND_API.md, step 3).
VIRTUAL_POLL_INTERVAL = 60.0
LIVE_POLL_INTERVAL = 7.0
LIVE_SKIP = "SEGMIND_API_KEY not set: live contract tests cost money and never run in CI"

# tests/conftest.py removes every SEGMIND_* variable around each test, so the live
# settings are read once, when this module is imported during collection, before any
# test (or its autouse fixtures) runs.
_LIVE_KEY = os.environ.get("SEGMIND_API_KEY", "").strip()
_LIVE_RUN = os.environ.get("SEGMIND_LIVE_RUN", "").strip() == "1"
_IN_CI = bool(os.environ.get("CI", "").strip())


def live_key() -> str:
    """The key for live Segmind, or `pytest.skip` when there is none or this is CI."""
    if not _LIVE_KEY:
        pytest.skip(LIVE_SKIP)
    if _IN_CI:
        pytest.skip("CI is set: live contract tests cost money and never run in CI")
    return _LIVE_KEY


@contextlib.contextmanager
def clean_environment() -> Iterator[None]:
    """No developer's FAKESERVER_*/PROXY_*/SEGMIND_* settings leak into a target started
    for a whole module (the autouse clean-up in tests/conftest.py is per test, and runs
    after module-scoped fixtures are set up; child processes copy the environment)."""
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith(("FAKESERVER_", "PROXY_", "SEGMIND_")):
                patch.delenv(name)
        patch.setenv("PROXY_IMAGE_PREFLIGHT", "false")  # offline, as in tests/conftest.py
        patch.setenv("PROXY_OUTPUTS", "none")  # as in tests/conftest.py
        yield


def _auth(key: str | None, scheme: AuthScheme) -> dict[str, str]:
    if key is None:
        return {}
    return {"x-api-key": key} if scheme == "x-api-key" else {"Authorization": f"Bearer {key}"}


class HttpSession:
    """What every session shares: raw clients on one base URL, closed at the end."""

    poll_interval = VIRTUAL_POLL_INTERVAL

    def __init__(self, key: str, make_client: Callable[[dict[str, str]], httpx.Client]) -> None:
        self.key = key
        self._make_client = make_client
        self._clients: list[httpx.Client] = []
        self.http = self.client(key)

    def client(self, key: str | None, *, scheme: AuthScheme = "x-api-key") -> httpx.Client:
        made = self._make_client(_auth(key, scheme))
        self._clients.append(made)
        return made

    def close(self) -> None:
        for made in self._clients:
            made.close()


# -- the fake ----------------------------------------------------------------------------


class FakeSession(HttpSession):
    """The fake: `Prefer` forces an answer or an outcome (its documented per-request way)."""

    def __init__(
        self,
        make_client: Callable[[dict[str, str]], httpx.Client],
        admin: httpx.Client,
        advance: Callable[[float], object],
    ) -> None:
        super().__init__(FAKE_KEY, make_client)
        self._admin = admin
        self._advance = advance

    def submit(self, body: Any, *, fail: bool = False) -> httpx.Response:
        headers = {"Prefer": "outcome=failed"} if fail else {}
        return self.http.post(SUBMIT_PATH, json=body, headers=headers)

    def force(self, code: int) -> httpx.Response:
        return self.http.post(SUBMIT_PATH, json={}, headers={"Prefer": f"code={code}"})

    def advance(self, seconds: float) -> None:
        self._advance(seconds)

    def spent(self) -> Hashable:
        answer = self.http.get(CREDITS_PATH)
        assert answer.status_code == 200, answer.text
        credits: float = answer.json()["credits"]
        return credits


class InProcessFake:
    """The fake's app in this process through Starlette's TestClient, on a VirtualClock."""

    name = "fake-inprocess"

    def __init__(self) -> None:
        self.clock = VirtualClock()
        with clean_environment():  # FakeSettings reads FAKESERVER_* on construction
            settings = FakeSettings(api_keys=[FAKE_KEY], public_url=INPROCESS_BASE)
        self.app = create_app(settings, clock=self.clock)
        self.admin = self._client({})

    def _client(self, headers: dict[str, str]) -> httpx.Client:
        return TestClient(self.app, base_url=INPROCESS_BASE, headers=headers)

    @contextlib.contextmanager
    def session(self, scenario: Scenario) -> Iterator[Session]:
        self.admin.post("/__admin/reset").raise_for_status()
        session = FakeSession(self._client, self.admin, self.clock.advance)
        try:
            yield session
        finally:
            session.close()

    def close(self) -> None:
        self.admin.close()


class HttpFake:
    """`python -m fakeserver` under uvicorn, its virtual clock moved over /__admin."""

    name = "fake-http"

    def __init__(self) -> None:
        with clean_environment():
            self.server: ServerProcess = start_server(
                "fakeserver", "--api-key", FAKE_KEY, "--clock", "virtual"
            )
        self.admin = httpx.Client(base_url=self.server.url)

    def _client(self, headers: dict[str, str]) -> httpx.Client:
        return httpx.Client(base_url=self.server.url, headers=headers)

    def _advance(self, seconds: float) -> None:
        self.admin.post("/__admin/clock/advance", json={"seconds": seconds}).raise_for_status()

    @contextlib.contextmanager
    def session(self, scenario: Scenario) -> Iterator[Session]:
        self.admin.post("/__admin/reset").raise_for_status()
        session = FakeSession(self._client, self.admin, self._advance)
        try:
            yield session
        finally:
            session.close()

    def close(self) -> None:
        self.admin.close()
        self.server.stop()


# -- the cassettes -----------------------------------------------------------------------


class CassetteSession(HttpSession):
    """A replay: any key, no clock (the next recorded answer is the next moment)."""

    def __init__(self, scenario: Scenario) -> None:
        super().__init__(
            "any-key-replay-ignores-keys",
            lambda headers: httpx.Client(base_url=CANONICAL_BASE, headers=headers),
        )
        self.scenario = scenario

    def submit(self, body: Any, *, fail: bool = False) -> httpx.Response:
        # Whether the run fails was decided when the cassette was recorded.
        return self.http.post(SUBMIT_PATH, json=body)

    def force(self, code: int) -> httpx.Response:
        assert self.scenario.cassette == f"error_{code}", self.scenario
        return self.http.post(SUBMIT_PATH, json={})

    def advance(self, seconds: float) -> None:
        pass

    def spent(self) -> Hashable:
        pytest.skip("cassettes: no cassette records a balance")


class CassetteReplay:
    """The committed cassettes, each scenario replaying the one that holds it."""

    name = "cassettes"

    @contextlib.contextmanager
    def session(self, scenario: Scenario) -> Iterator[Session]:
        if scenario.cassette is None:
            pytest.skip(f"cassettes: {scenario.no_cassette}")
        # Record mode `none`: a request the cassette does not hold raises
        # CannotOverwriteExistingCassetteException; nothing reaches the network.
        with make_vcr().use_cassette(str(cassette_path(scenario.cassette))):
            session = CassetteSession(scenario)
            try:
                yield session
            finally:
                session.close()

    def close(self) -> None:
        pass


# -- the gateway -------------------------------------------------------------------------

# What the upstream (the fake) answers a poll with to make a run fail, as SEGMIND_API.md
# documents a FAILED answer. Scripted generously: a stale generation of an earlier scenario
# may take one.
UPSTREAM_FAILED = {"status": "FAILED", "error_message": "Workflow execution failed (scripted)"}
UPSTREAM_FAILED_TIMES = 20


class GatewaySession(HttpSession):
    """A fresh team on the gateway. Forcing an answer uses the gateway's own causes (a
    team's limits) or scripts the upstream fake (`/__admin/script`): the gateway does not
    forward `Prefer`, so the fake's per-request switch cannot reach through it."""

    def __init__(self, stack: GatewayStack, key: str) -> None:
        super().__init__(key, stack.client_factory)
        self.stack = stack

    def submit(self, body: Any, *, fail: bool = False) -> httpx.Response:
        if fail:
            self.stack.script_upstream(
                "poll", {"body": UPSTREAM_FAILED, "times": UPSTREAM_FAILED_TIMES}
            )
        return self.http.post(SUBMIT_PATH, json=body)

    def force(self, code: int) -> httpx.Response:
        if code == 406:  # the team's budget cannot pay for a run
            return self.client(self.stack.new_team({"daily_budget": 0})).post(SUBMIT_PATH, json={})
        if code == 429:  # the team may not submit at all this minute
            return self.client(self.stack.new_team({"submits_per_minute": 0})).post(
                SUBMIT_PATH, json={}
            )
        if code in (400, 502, 504):  # Segmind refuses or fails the submit upstream
            self.stack.script_upstream("submit", {"code": code})
            return self.http.post(SUBMIT_PATH, json={})
        if code == 403:
            pytest.skip("gateway: a team key may run every workflow the gateway serves (no 403)")
        if code == 500:
            pytest.skip(
                "gateway: an upstream 500 is answered 502 (the failure is upstream's; "
                "see test_gateway_answers_upstream_failures_as_a_gateway); "
                "nothing makes the gateway itself answer 500"
            )
        raise AssertionError(f"no way to make the gateway answer {code}")

    def advance(self, seconds: float) -> None:
        self.stack.clocks.sleep(seconds)

    def spent(self) -> Hashable:
        """The team's budget left and the upstream's submit count: bad input must neither
        cost the team nor reach the paid upstream."""
        answer = self.http.get(CREDITS_PATH)
        assert answer.status_code == 200, answer.text
        return (answer.json()["credits"], len(self.stack.stack.journal("submit")))


class GatewayStack:
    """The gateway in front of the fake (tests/stack.py), a fresh team per scenario."""

    name = "gateway"

    def __init__(self, db: Path) -> None:
        self._exit = contextlib.ExitStack()
        with clean_environment():
            self.stack: Stack = self._exit.enter_context(running_stack(db, "contract"))
        self.clocks = BothClocks(self.stack)
        self.admin = httpx.Client(headers={"x-admin-key": ADMIN_KEY})
        self._teams = itertools.count(1)

    @property
    def url(self) -> str:
        return self.stack.gateway.url

    def client_factory(self, headers: dict[str, str]) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=headers)

    def new_team(self, limits: dict[str, float] | None = None) -> str:
        made = self.admin.post(
            f"{self.url}/admin/teams",
            json={"name": f"contract-{next(self._teams)}", "limits": limits or {}},
        )
        assert made.status_code == 201, made.text
        key: str = made.json()["api_key"]
        return key

    def script_upstream(self, route: str, *responses: dict[str, Any]) -> None:
        self.admin.post(
            f"{self.stack.fake.url}/__admin/script",
            json={"route": route, "responses": list(responses)},
        ).raise_for_status()

    def reset_upstream(self) -> None:
        """Forget the fake's jobs, scripts and journal. Generations of earlier scenarios
        still running on the gateway then end FAILED (Segmind no longer knows them) and
        never take a later scenario's scripted answer for long."""
        self.admin.post(f"{self.stack.fake.url}/__admin/reset").raise_for_status()

    @contextlib.contextmanager
    def session(self, scenario: Scenario) -> Iterator[Session]:
        self.reset_upstream()
        session = GatewaySession(self, self.new_team())
        try:
            yield session
        finally:
            session.close()

    def close(self) -> None:
        self.clocks.close()
        self.admin.close()
        self._exit.close()


# -- real Segmind ------------------------------------------------------------------------


class LiveSession(HttpSession):
    """Real Segmind on the real clock. Only reached for scenarios it can play."""

    poll_interval = LIVE_POLL_INTERVAL

    def __init__(self, target: LiveSegmind) -> None:
        super().__init__(
            target.key,
            lambda headers: httpx.Client(base_url=CANONICAL_BASE, headers=headers, timeout=60.0),
        )
        self.target = target

    def submit(self, body: Any, *, fail: bool = False) -> httpx.Response:
        if fail:
            pytest.skip("live: real Segmind cannot be made to fail a run")
        if body == {}:
            # One paid run per module, shared by every check that submits the defaults.
            if self.target.default_run is None:
                self.target.default_run = self.http.post(SUBMIT_PATH, json=body)
            return self.target.default_run
        return self.http.post(SUBMIT_PATH, json=body)

    def force(self, code: int) -> httpx.Response:
        pytest.skip(f"live: real Segmind cannot be made to answer {code} on demand")

    def advance(self, seconds: float) -> None:
        # The one real wait in the suite: real Segmind's clock cannot be moved. Reached
        # only with SEGMIND_LIVE_RUN=1, never in CI.
        time.sleep(seconds)

    def spent(self) -> Hashable:
        answer = self.http.get(CREDITS_PATH)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        return (body["credits"], body["free-credits"])


class LiveSegmind:
    """https://api.segmind.com with $SEGMIND_API_KEY.

    Free by default: a wrong or missing key, an unknown workflow or request id, the
    credits endpoint. With `SEGMIND_LIVE_RUN=1` also the paid scenarios: the success
    checks share one real run (about $3.97, about 11 minutes), and invalid inputs are
    sent (real Segmind may or may not charge for them; the check says which).
    """

    name = "live"

    def __init__(self, key: str) -> None:
        self.key = key
        self.default_run: httpx.Response | None = None

    @contextlib.contextmanager
    def session(self, scenario: Scenario) -> Iterator[Session]:
        if scenario.live == "impossible":
            pytest.skip(f"live: {scenario.not_live}")
        if scenario.live == "paid" and not _LIVE_RUN:
            pytest.skip(
                f"live: {scenario.name} may be charged (a real run is ~$4, ~11 min); "
                "set SEGMIND_LIVE_RUN=1 as well to run it"
            )
        session = LiveSession(self)
        try:
            yield session
        finally:
            session.close()

    def close(self) -> None:
        pass
