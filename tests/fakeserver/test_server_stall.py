"""A `FakeServer` (the `segmind_server` fixture) whose run was polled many times while its
virtual clock stood still says so when it stops, naming the fix; one whose clock moved
on says nothing."""

from __future__ import annotations

import httpx
import pytest

from fakeserver.testing import SegmindClockWarning
from fakeserver.testing.server import FakeServer
from fakeserver.testing.stall import STALL_POLLS

URL = "/workflows/68628fe34727e611dfa219b4-v4"


def poll_unmoved(fake: FakeServer) -> None:
    with httpx.Client(base_url=fake.url, headers={"x-api-key": fake.api_key}) as http:
        poll_url = http.post(URL, json={}).json()["poll_url"]
        for _ in range(STALL_POLLS):
            assert http.get(poll_url).json()["status"] == "QUEUED"


def test_polls_at_a_standing_clock_are_reported_when_the_server_stops() -> None:
    fake = FakeServer()
    try:
        poll_unmoved(fake)
    finally:
        with pytest.warns(SegmindClockWarning, match=r'advance\(seconds\).*clock="system"'):
            fake.stop()


def test_a_clock_moved_after_the_polls_says_nothing() -> None:
    with FakeServer() as fake:  # warnings are errors in this suite: none may come
        poll_unmoved(fake)
        fake.advance(1800)
