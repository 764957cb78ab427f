"""The time source of waiting, injectable so that tests never really sleep.

A test passes an object whose `sleep` advances a virtual clock (for instance the fake
server's), and a job of eleven minutes finishes in milliseconds.
"""

from __future__ import annotations

import time
from typing import Protocol

import anyio

__all__ = ["AsyncClock", "AsyncSystemClock", "Clock", "SystemClock"]


class Clock(Protocol):
    """Seconds on any monotonic scale, and a way to let them pass."""

    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class AsyncClock(Protocol):
    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock: `time.monotonic` and `time.sleep`."""

    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class AsyncSystemClock:
    """The real clock for `AsyncClient`: `time.monotonic` and `anyio.sleep`."""

    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)
