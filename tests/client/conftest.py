"""Fixtures for the client's tests: no real sleeping, no real network, a clean environment."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from client import Client
from tests.client.doubles import API_KEY, BASE, FakeClock, Recorder, TopRNG


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_client(clock: FakeClock) -> Iterator[Callable[..., tuple[Client, Recorder]]]:
    made: list[Client] = []

    def make(*script: Any, **kwargs: Any) -> tuple[Client, Recorder]:
        recorder = Recorder(list(script))
        kwargs.setdefault("api_key", API_KEY)
        kwargs.setdefault("base_url", BASE)
        kwargs.setdefault("clock", clock)
        kwargs.setdefault("rng", TopRNG())
        client = Client(transport=httpx.MockTransport(recorder), **kwargs)
        made.append(client)
        return client, recorder

    yield make
    for c in made:
        c.close()
