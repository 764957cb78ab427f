from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.proxy.harness import Harness, start_harness, stop_harness

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
