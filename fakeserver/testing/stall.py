"""A warning for the one way a test of polling code hangs: polls while the clock stands still.

The in-process fake runs on a virtual clock. Code that polls a run and waits between polls
in a way the mock does not turn into clock advances (`advance_on_sleep=False`, a sleep bound
before the mock started, a wait on another thread) polls forever at one fake instant, and
nothing reports it. `StallWatch` notices a run polled unfinished `STALL_POLLS` times at one
fake time, or twice `STALL_SECONDS` of real time apart, and warns once per run, on the
calling thread, naming the fix. Under `pytest -W error` the warning is an error raised in
the code under test: the test fails at once instead of hanging.
"""

from __future__ import annotations

import json
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ..clock import Clock

__all__ = [
    "STALL_POLLS",
    "STALL_SECONDS",
    "SegmindClockWarning",
    "StallWatch",
    "stalled_in_journal",
]

#: Unfinished polls of one run at one fake time before the warning.
STALL_POLLS = 10
#: Real seconds between two unfinished polls of a run at one fake time before the warning
#: (a real `time.sleep(7)` between polls warns at the second poll).
STALL_SECONDS = 3.0
UNFINISHED = ("QUEUED", "PROCESSING")


class SegmindClockWarning(UserWarning):
    """Code under test polls a run while the fake's clock stands still."""


@dataclass
class _Seen:
    fake_time: float
    first_wall: float
    polls: int = 0
    warned: bool = False


class StallWatch:
    """Counts unfinished polls per run at one fake time; warns when they cannot progress."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._runs: dict[str, _Seen] = {}
        self._lock = threading.Lock()

    def polled(self, path: str, status: int, body: bytes) -> None:
        if status != 200 or _state(body) not in UNFINISHED:
            return
        now, wall = self._clock.now(), time.monotonic()
        with self._lock:
            seen = self._runs.get(path)
            if seen is None or seen.fake_time != now:
                seen = self._runs[path] = _Seen(now, wall, warned=seen.warned if seen else False)
            seen.polls += 1
            stalled = seen.polls >= STALL_POLLS or (
                seen.polls >= 2 and wall - seen.first_wall >= STALL_SECONDS
            )
            if not stalled or seen.warned:
                return
            seen.warned = True
            polls = seen.polls
        run = path.rsplit("/", 1)[-1]
        warnings.warn(
            f"mock_segmind: run {run} was polled {polls} times while the fake's clock stood "
            f"still at {now:g} s, so it can never finish. Let the code's sleeps move the clock "
            "(mock_segmind(advance_on_sleep=True), the default; it counts only sleeps on the "
            "thread that entered the mock, looked up as time.sleep or asyncio.sleep), or move "
            "it from the test: segmind.advance(seconds).",
            SegmindClockWarning,
            stacklevel=2,
        )


def _state(body: bytes) -> object:
    try:
        answer = json.loads(body)
    except ValueError:
        return None
    return answer.get("status") if isinstance(answer, dict) else None


def stalled_in_journal(
    polls: Iterable[dict[str, Any]], now: float, state_of: Callable[[str], str]
) -> str | None:
    """For a fake served as a process (`FakeServer`), read after the fact from its journal:
    a warning's text if a run was polled `STALL_POLLS` times at the fake's current time and
    is still unfinished now (so the clock stood still through those polls), else None."""
    counted = Counter(e["path"] for e in polls if e.get("status") == 200 and e.get("at") == now)
    for path, times in counted.most_common():
        if times < STALL_POLLS:
            break
        run = path.rsplit("/", 1)[-1]
        if state_of(run) in UNFINISHED:
            return (
                f"segmind_server: run {run} was polled {times} times while the fake's virtual "
                f"clock stood still at {now:g} s, so it could never finish. Move it from the "
                "test (segmind_server.advance(seconds)), or give the server a clock that "
                'keeps real time: @pytest.mark.segmind(clock="system", time_scale=0.01).'
            )
    return None
