"""The official `segmind` SDK and this client share jobs on a real fake process.

The fake runs under uvicorn on its virtual clock; the client's clock advances it through
`POST /__admin/clock/advance`, so an eleven-minute job takes no real time.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import pytest
from segmind import SegmindClient

from client import Client
from tests.servers import ServerProcess

WORKFLOW = "68628fe34727e611dfa219b4-v4"
KEY = "sdk-key-1"


class AdminClock:
    """The fake's virtual clock, read and moved over HTTP."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url)

    def now(self) -> float:
        now: float = self.http.get("/__admin/clock").json()["now"]
        return now

    def sleep(self, seconds: float) -> None:
        self.http.post("/__admin/clock/advance", json={"seconds": seconds}).raise_for_status()


@contextmanager
def sdk_client() -> Iterator[SegmindClient]:
    sdk = SegmindClient(api_key=KEY)
    try:
        yield sdk
    finally:
        sdk._client.close()  # segmind 1.3.0 offers no close(); its httpx client holds a socket


@pytest.fixture
def server(fake_process: Callable[..., ServerProcess]) -> ServerProcess:
    return fake_process("--api-key", KEY, "--clock", "virtual")


def test_a_job_submitted_by_the_sdk_is_awaited_by_the_client(server: ServerProcess) -> None:
    with sdk_client() as sdk:
        queued = sdk.pixelflows.run(
            workflow_url=f"{server.url}/workflows/{WORKFLOW}",
            data={"Scene_1": "A pilot in the rain"},
            poll=False,
        )
    clock = AdminClock(server.url)
    with Client(KEY, base_url=server.url, clock=clock) as client:
        result = client.wait(queued["poll_url"])
    clock.http.close()
    assert result.request_id == queued["request_id"]
    assert sorted(result.videos) == [1, 2, 3, 4]


def test_a_job_submitted_by_the_client_reads_the_same_through_the_sdk(
    server: ServerProcess,
) -> None:
    clock = AdminClock(server.url)
    with Client(KEY, base_url=server.url, clock=clock) as client:
        result = client.run({"Scene_2": "A cat on a piano"})
    clock.http.close()
    with sdk_client() as sdk:
        seen = sdk.pixelflows.get_status(
            poll_url=f"{server.url}/workflows/request/{result.request_id}"
        )
    assert seen["status"] == "COMPLETED"
    output = seen["output"]  # the SDK decodes the JSON string itself
    items = json.loads(output) if isinstance(output, str) else output
    urls = [item["value"]["data"] for item in items]
    assert urls == [result.video(n) for n in range(1, 5)]
