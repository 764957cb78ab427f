"""Sleeps that move the fake's clock instead of waiting: `mock_segmind(advance_on_sleep=True)`.

Code that polls Segmind sleeps between polls (the product page's script: `time.sleep(7)`).
While this is on, `time.sleep(s)` and `asyncio.sleep(s)` called on the thread that entered
the mock advance the fake's clock by `s` and return at once (yielding to other threads and
tasks as a zero sleep does), so a whole run takes the polls a real one would and almost no
wall time, with the code under test unchanged.

Trade-offs, each on purpose:
- Only the entering thread's sleeps (and so the sleeps of async code on its event loop)
  count: a server or worker thread elsewhere in the test process keeps real time, so its
  idle loops do not race the fake's clock forward. Code under test that waits on a thread
  of its own needs `SegmindMock.advance()` instead.
- It patches the attributes `time.sleep` and `asyncio.sleep`: code that bound the function
  earlier (`from time import sleep` at import) keeps the real one.
- Every sleep on that thread moves the clock, a library's retry back-off included: that is
  time passing for the fake too, as it would.
Both are restored when the mock exits, however it exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any
from unittest import mock

from ..clock import Clock

__all__ = ["sleeps_advance"]


@contextlib.contextmanager
def sleeps_advance(clock: Clock) -> Iterator[None]:
    """While open, sleeps on this thread advance `clock` instead of waiting."""
    owner = threading.get_ident()
    real_sleep, real_async_sleep = time.sleep, asyncio.sleep

    def sleep(seconds: float) -> None:
        if threading.get_ident() != owner:
            real_sleep(seconds)
            return
        if seconds < 0:
            raise ValueError("sleep length must be non-negative")
        clock.advance(seconds)
        real_sleep(0)

    async def async_sleep(delay: float, result: Any = None) -> Any:
        if threading.get_ident() != owner:
            return await real_async_sleep(delay, result)
        if delay > 0:
            clock.advance(delay)
        return await real_async_sleep(0, result)

    with mock.patch("time.sleep", sleep), mock.patch("asyncio.sleep", async_sleep):
        yield
