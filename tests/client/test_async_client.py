"""The async driver runs the same core: the same answers give the same behaviour."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from client import (
    AsyncClient,
    BadGateway,
    ConnectError,
    GenerationFailed,
    Progress,
    TransportTimeout,
)
from tests.client.doubles import (
    API_KEY,
    BASE,
    JOB_ID,
    AsyncFakeClock,
    Recorder,
    TopRNG,
    completed,
    queued,
    reply,
)

pytestmark = pytest.mark.anyio


def make(*script: Any, clock: AsyncFakeClock | None = None) -> tuple[AsyncClient, Recorder]:
    recorder = Recorder(list(script))

    async def handler(request: httpx.Request) -> httpx.Response:
        return recorder(request)

    client = AsyncClient(
        API_KEY,
        base_url=BASE,
        transport=httpx.MockTransport(handler),
        clock=clock or AsyncFakeClock(),
        rng=TopRNG(),
    )
    return client, recorder


async def test_run_with_a_coroutine_callback_and_download(tmp_path: Path) -> None:
    clock = AsyncFakeClock()
    client, recorder = make(
        queued(),
        reply(200, {"status": "PROCESSING", "output": ""}),
        completed(),
        *[reply(200, b"video-bytes")] * 4,
        clock=clock,
    )
    seen: list[str] = []

    async def on_update(progress: Progress) -> None:
        if progress.status:
            seen.append(progress.status.status)

    async with client:
        result = await client.run(on_update=on_update)
        saved = await client.download(result, tmp_path)
    assert seen == ["PROCESSING", "COMPLETED"]
    assert clock.sleeps == [7.0]
    assert saved["scene_3"].read_bytes() == b"video-bytes"
    assert json.loads(recorder.requests[0].content)["Scene_1"].startswith("Model on lighthouse")


async def test_submit_retry_rules_match_the_sync_client() -> None:
    client, recorder = make(httpx.ConnectError("refused"), queued())
    async with client:
        await client.submit()
    assert recorder.count("POST") == 2
    assert len({r.headers["Idempotency-Key"] for r in recorder.requests}) == 1

    client, recorder = make(reply(502, {"error": "down"}))
    async with client:
        with pytest.raises(BadGateway):
            await client.submit()
    assert recorder.count("POST") == 1

    client, recorder = make(httpx.ReadTimeout("slow"))
    async with client:
        with pytest.raises(TransportTimeout) as caught:
            await client.submit()
    assert not isinstance(caught.value, ConnectError)
    assert recorder.count("POST") == 1


async def test_failed_jobs_raise() -> None:
    client, _ = make(reply(200, {"status": "FAILED", "error": "bad photo"}))
    async with client:
        with pytest.raises(GenerationFailed, match="bad photo"):
            await client.wait(JOB_ID)


async def test_status_and_credits() -> None:
    client, _ = make(
        reply(200, {"status": "QUEUED"}), reply(200, {"credits": 5, "free-credits": 1})
    )
    async with client:
        assert (await client.status(JOB_ID)).request_id == JOB_ID
        assert (await client.credits()).total == 6.0
