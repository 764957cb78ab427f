"""Notifications of finished runs: the fake's stand-in for Segmind's account webhook.

Segmind can call a URL when a workflow run ends (events `GRAPH_RUN` and `NODE_RUN`,
configured in its console); neither the payload nor any signature is documented. The
body sent here is a guess, shaped like a typical event: `event_type`, `event_id`, a
timestamp and `data` with the `request_id`, `workflow_id`, the final `status` and the
`poll_url`. Receivers should trust none of it but the id.

A run is notified `delay` seconds of the fake's clock after it ends (runs that end by
time only: not `outcome=never`, not `polls=N`); a seeded share `drop_rate` of the
notifications is never sent, as a lost delivery. Sending never holds the fake up: each
call has `SEND_TIMEOUT` seconds in all, its answer is not read, at most `IN_FLIGHT` go at
once, and a receiver that is down or slow costs only a counted failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import random
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from .clock import Clock
from .jobs import Job, JobState, Outcome

__all__ = ["Notifier", "NotifySettings", "event_body", "running"]

TICK = 0.05  # real seconds between looks at the clock for runs that have ended
SEND_TIMEOUT = 5.0  # real seconds one notification may take in all
IN_FLIGHT = 8  # notifications being sent at once
EVENT = "GRAPH_RUN"


@dataclass(frozen=True)
class NotifySettings:
    url: str | None = None
    delay: float = 0.0  # seconds of the fake's clock after a run ends
    drop_rate: float = 0.0  # share of notifications never sent

    def __post_init__(self) -> None:
        if self.url is not None and not (
            isinstance(self.url, str) and self.url.startswith(("http://", "https://"))
        ):
            raise ValueError(f"url must be an http(s) URL; got {self.url!r}")
        if not self.delay >= 0:
            raise ValueError(f"delay must be 0 or more seconds; got {self.delay!r}")
        if not 0.0 <= self.drop_rate <= 1.0:
            raise ValueError(f"drop_rate must be in [0, 1]; got {self.drop_rate!r}")


def event_body(job: Job, base_url: str, event_id: str, at: float) -> dict[str, Any]:
    """The notification for a run that ended (a guessed shape; see the module's doc)."""
    status = JobState.COMPLETED if job.plan.outcome is Outcome.COMPLETED else JobState.FAILED
    return {
        "event_type": EVENT,
        "event_id": event_id,
        "timestamp": datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z"),
        "data": {
            "request_id": job.id,
            "workflow_id": job.workflow_id,
            "status": status.value,
            "poll_url": f"{base_url}/workflows/request/{job.id}",
        },
    }


class Notifier:
    def __init__(
        self, settings: NotifySettings, clock: Clock, base_url: str, seed: int | None = None
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.base_url = base_url
        self._rng = random.Random(None if seed is None else seed + 1)  # apart from the jobs'
        self._due: list[tuple[float, int, Job]] = []  # (when the run ends, order, job)
        self._order = itertools.count()
        self._lock = threading.Lock()
        self._sending: set[asyncio.Task[None]] = set()
        self.counts = {"sent": 0, "dropped": 0, "failed": 0}

    def configure(self, settings: NotifySettings) -> None:
        self.settings = settings

    def schedule(self, job: Job) -> None:
        """Remember a new run, to notify once it ends (only while a URL is set)."""
        plan = job.plan
        if self.settings.url is None or plan.outcome is Outcome.NEVER:
            return
        if plan.polls_per_state is not None:
            return  # it ends by polls, not by time: no moment to notify at
        with self._lock:
            heapq.heappush(self._due, (job.created_at + plan.duration, next(self._order), job))

    def reset(self) -> None:
        with self._lock:
            self._due.clear()
            self.counts = dict.fromkeys(self.counts, 0)

    def status(self) -> dict[str, Any]:
        with self._lock:
            pending = len(self._due)
        return {
            "url": self.settings.url,
            "delay": self.settings.delay,
            "drop_rate": self.settings.drop_rate,
            "pending": pending,
            "in_flight": len(self._sending),
            **self.counts,
        }

    def _take_due(self, limit: int) -> list[Job]:
        now, delay = self.clock.now(), self.settings.delay
        due: list[Job] = []
        with self._lock:
            while self._due and len(due) < limit and self._due[0][0] + delay <= now:
                due.append(heapq.heappop(self._due)[2])
        return due

    async def run(self) -> None:
        """Send notifications as runs end, until cancelled."""
        async with httpx.AsyncClient(timeout=SEND_TIMEOUT, follow_redirects=False) as http:
            try:
                while True:
                    await asyncio.sleep(TICK)
                    for job in self._take_due(IN_FLIGHT - len(self._sending)):
                        self._start(http, job)
            finally:
                for task in list(self._sending):
                    task.cancel()
                await asyncio.gather(*self._sending, return_exceptions=True)

    def _start(self, http: httpx.AsyncClient, job: Job) -> None:
        url = self.settings.url
        if url is None:
            return
        if self._rng.random() < self.settings.drop_rate:
            self.counts["dropped"] += 1
            return
        body = event_body(job, self.base_url, f"{self._rng.getrandbits(128):032x}",
                          self.clock.now())  # fmt: skip
        task = asyncio.get_running_loop().create_task(self._send(http, url, body))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, http: httpx.AsyncClient, url: str, body: dict[str, Any]) -> None:
        try:
            # One deadline for the whole call; the answer's body is never read.
            async with asyncio.timeout(SEND_TIMEOUT), http.stream("POST", url, json=body) as answer:
                ok = answer.status_code < 300
        except (httpx.HTTPError, TimeoutError, OSError):
            ok = False
        self.counts["sent" if ok else "failed"] += 1


@contextlib.asynccontextmanager
async def running(notifier: Notifier) -> AsyncIterator[None]:
    """The notifier's loop, for as long as the app runs."""
    task = asyncio.get_running_loop().create_task(notifier.run(), name="fake notifications")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
