from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from fakeserver import CHARACTER_VIDEO_ID, FakeSettings, VirtualClock, create_app
from fakeserver.state import FakeState

KEY = "test-key-alpha"
OTHER_KEY = "test-key-beta"
BASE = "http://fake.test"
SUBMIT = f"/workflows/{CHARACTER_VIDEO_ID}"


@dataclass
class Fake:
    app: Starlette
    clock: VirtualClock
    http: TestClient
    state: FakeState

    def submit(self, body: Any = None, **headers: str) -> Any:
        return self.http.post(SUBMIT, json={} if body is None else body, headers=headers)

    def poll(self, request_id: str, **headers: str) -> Any:
        return self.http.get(f"/workflows/request/{request_id}", headers=headers)

    def journal(self, route: str | None = None) -> list[dict[str, Any]]:
        params = {"route": route} if route else {}
        entries: list[dict[str, Any]] = self.http.get("/__admin/journal", params=params).json()[
            "entries"
        ]
        return entries


@pytest.fixture
def make_fake() -> Iterator[Callable[..., Fake]]:
    clients: list[TestClient] = []

    def factory(**settings: Any) -> Fake:
        settings.setdefault("api_keys", [KEY, OTHER_KEY])
        settings.setdefault("public_url", BASE)
        settings.setdefault("seed", 7)
        clock = VirtualClock()
        app = create_app(FakeSettings(**settings), clock=clock)
        http = TestClient(app, base_url=BASE, headers={"x-api-key": KEY})
        clients.append(http)
        return Fake(app, clock, http, app.state.fake)

    yield factory
    for http in clients:
        http.close()


@pytest.fixture
def fake(make_fake: Callable[..., Fake]) -> Fake:
    return make_fake()
