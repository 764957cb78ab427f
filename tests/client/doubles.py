"""Test doubles for the client: scripted transports, clocks that never sleep, canned answers."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

API_KEY = "sk-test-0123456789abcdef"
BASE = "https://api.test"
JOB_ID = "0123456789abcdef0123456789abcdef"
POLL_URL = f"{BASE}/workflows/request/{JOB_ID}"
Handler = Callable[[httpx.Request], httpx.Response]


class TopRNG:
    """Full jitter's worst case: always the top of the range."""

    def uniform(self, a: float, b: float) -> float:
        return b


@dataclass
class FakeClock:
    """A clock whose sleep only moves time; records every sleep."""

    t: float = 1000.0
    sleeps: list[float] = field(default_factory=list)

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds


@dataclass
class AsyncFakeClock:
    t: float = 1000.0
    sleeps: list[float] = field(default_factory=list)

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds


@dataclass
class Recorder:
    """A MockTransport handler that answers from a script and records the requests."""

    script: list[httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]]
    requests: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if not self.script:
            raise AssertionError(f"unexpected request {request.method} {request.url}")
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        if isinstance(step, httpx.Response):
            return step
        return step(request)

    def count(self, method: str) -> int:
        return sum(1 for r in self.requests if r.method == method)


def reply(
    status: int = 200, body: Any = None, headers: dict[str, str] | None = None
) -> httpx.Response:
    if body is None:
        return httpx.Response(status, headers=headers)
    if isinstance(body, bytes | str):
        return httpx.Response(status, content=body, headers=headers)
    return httpx.Response(status, json=body, headers=headers)


def queued(job_id: str = JOB_ID, poll_url: str = POLL_URL) -> httpx.Response:
    return reply(
        200,
        {"status": "QUEUED", "request_id": job_id, "poll_url": poll_url, "message": "queued"},
    )


def completed_output(n: int = 4) -> str:
    return json.dumps(
        [
            {
                "keyname": f"Scene_{i}_Video_{i}",
                "value": {"data": f"https://cdn.test/out/{i}.mp4", "type": "video"},
            }
            for i in range(1, n + 1)
        ]
    )


def completed(job_id: str = JOB_ID, output: str | None = None) -> httpx.Response:
    return reply(
        200, {"status": "COMPLETED", "request_id": job_id, "output": output or completed_output()}
    )
