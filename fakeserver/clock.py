"""Clocks: the one source of time for job durations, expiry and rate-limit windows.

Tests hand the app a `VirtualClock` and move it with `advance()` (or the admin endpoint
`POST /__admin/clock/advance`), so no test ever sleeps through a job. The `SystemClock`
follows wall time but can be moved forward too, so a running demo server can skip ahead.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "SystemClock", "VirtualClock"]

# A fixed, recognisable start for virtual time: 2026-01-01T00:00:00Z.
VIRTUAL_EPOCH = 1_767_225_600.0


@runtime_checkable
class Clock(Protocol):
    """Seconds since the Unix epoch, moved forward on demand."""

    def now(self) -> float: ...

    def advance(self, seconds: float) -> float: ...


class SystemClock:
    """Wall-clock time plus an offset that only ever grows."""

    def __init__(self) -> None:
        self._offset = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        return time.time() + self._offset

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError(f"a clock only moves forward; got {seconds} seconds")
        with self._lock:
            self._offset += seconds
        return self.now()


class VirtualClock:
    """Time that stands still until a test moves it."""

    def __init__(self, start: float = VIRTUAL_EPOCH) -> None:
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError(f"a clock only moves forward; got {seconds} seconds")
        with self._lock:
            self._now += seconds
            return self._now
