"""The gateway's one source of time: poll schedules, quota windows, budgets, cache TTLs.

`SystemClock` is wall time (budgets reset at UTC midnight and month start, so it must be
wall time, not monotonic). `VirtualClock` stands still until `advance()`; sleepers wake
when the time they wait for is reached, so tests never sleep through a job.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections.abc import Iterator
from typing import Protocol

import anyio

__all__ = ["Clock", "SystemClock", "VirtualClock", "fail_after"]

VIRTUAL_EPOCH = 1_767_225_600.0  # 2026-01-01T00:00:00Z


class Clock(Protocol):
    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(max(seconds, 0.0))


class VirtualClock:
    """Time that moves only when told; must be used from one event loop."""

    def __init__(self, start: float = VIRTUAL_EPOCH) -> None:
        self._now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._order), future))
        await future

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError(f"a clock only moves forward; got {seconds} seconds")
        self._now += seconds
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)
        return self._now

    @property
    def next_deadline(self) -> float | None:
        """When the earliest sleeper wakes (tests step straight to it)."""
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)
        return self._sleepers[0][0] if self._sleepers else None

    @property
    def sleepers(self) -> int:
        return sum(1 for *_, f in self._sleepers if not f.done())


@contextlib.contextmanager
def fail_after(clock: Clock, seconds: float) -> Iterator[None]:
    """`anyio.fail_after` on `clock`: the block is cancelled, and `TimeoutError` raised, once
    `seconds` pass on it. On the system clock that is real time; on a virtual one, only a
    test moving it ends the block, so a deadline's test never waits through it."""
    with anyio.CancelScope() as scope:

        def ring(alarm: asyncio.Future[None]) -> None:
            if not alarm.cancelled():
                scope.cancel()

        alarm = asyncio.ensure_future(clock.sleep(seconds))
        alarm.add_done_callback(ring)
        try:
            yield
        finally:
            alarm.cancel()
    if scope.cancelled_caught:
        raise TimeoutError(f"not done within {seconds:g} s")
