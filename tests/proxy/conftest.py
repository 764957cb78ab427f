from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.proxy.harness import Harness, start_harness, stop_harness
from tests.servers import start_server

MakeHarness = Callable[..., Awaitable[Harness]]


@pytest.fixture
async def make_harness(tmp_path: Path) -> AsyncIterator[MakeHarness]:
    started: list[Harness] = []

    async def make(**settings: Any) -> Harness:
        harness = await start_harness(tmp_path / f"gateway{len(started)}.sqlite", **settings)
        started.append(harness)
        return harness

    yield make
    for harness in started:
        await stop_harness(harness)


@pytest.fixture
async def harness(make_harness: MakeHarness) -> Harness:
    return await make_harness()


@pytest.fixture(scope="module")
def asset_host() -> Iterator[str]:
    """A real asset host on loopback that misbehaves on demand (tests/hostile_assets.py)."""
    server = start_server("tests.hostile_assets")
    try:
        yield server.url
    finally:
        server.stop()
