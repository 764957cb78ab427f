"""The official `segmind` SDK waits 300 s by default: a real ~11-minute run needs
`max_wait_time=1800`.

`SegmindClient().pixelflows.run(...)` polls every `poll_interval` seconds (`time.sleep`)
until `time.time()` has moved `max_wait_time` seconds (default 300) since its first poll,
then returns `{"status": "TIMEOUT", ...}` (no exception), leaving the paid run going. Here
it runs, unchanged, through a real gateway process in front of a real fake whose runs take
what Segmind's take (`--time-scale 1`, 674 s: the median of real runs). Both servers are on
virtual clocks, and the SDK module's own `time` is the test's: its `sleep` advances both
servers' clocks and its `time` reads the fake's, so eleven minutes pass in a few seconds of
real time and the SDK's code path is the one a caller's process takes.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from segmind import SegmindClient
from segmind.pixelflows import PixelFlows

from tests.stack import WORKFLOW, BothClocks, Stack, running_stack

RUN_SECONDS = "674"  # Segmind's median run; pinned so the test does not hang on a draw
SDK_DEFAULT_WAIT = 300  # segmind 1.3's max_wait_time default
LONG_ENOUGH_WAIT = 1800  # the fake's (and Segmind's) longest run: what docs/client.md advises


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    fake_args = ("--time-scale", "1", "--duration-min", RUN_SECONDS,
                 "--duration-max", RUN_SECONDS)  # fmt: skip
    with running_stack(tmp_path / "gateway.sqlite", "sdk", *fake_args) as running:
        yield running


@pytest.fixture
def clocks(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[BothClocks]:
    """The SDK's `time` module, as `segmind.pixelflows` sees it, on the servers' clocks."""
    both = BothClocks(stack)
    # `segmind.pixelflows` the attribute is an instance the package makes; the module is this.
    module = sys.modules[PixelFlows.__module__]
    monkeypatch.setattr(module, "time", SimpleNamespace(time=both.now, sleep=both.sleep))
    yield both
    both.close()


def run_through_the_gateway(stack: Stack, **wait: Any) -> dict[str, Any]:
    sdk = SegmindClient(api_key=stack.team_key)
    try:
        answer: dict[str, Any] = sdk.pixelflows.run(
            workflow_url=f"{stack.gateway.url}/workflows/{WORKFLOW}",
            data={"Scene_1": "A lighthouse keeper at dawn"},
            poll_interval=10,
            **wait,
        )
        return answer
    finally:
        sdk._client.close()  # segmind 1.3.0 has no close(); its httpx client holds a socket


def test_the_sdk_gives_up_on_a_real_length_run_by_default(stack: Stack, clocks: BothClocks) -> None:
    started = clocks.now()
    answer = run_through_the_gateway(stack)  # max_wait_time left at its default
    waited = clocks.now() - started
    assert answer == {
        "status": "TIMEOUT",
        "error_message": f"Request timed out after {SDK_DEFAULT_WAIT} seconds",
    }
    # It gave up after its 300 s, long before the run's 674 s were over: the run goes on,
    # paid for, with nobody waiting for it.
    assert SDK_DEFAULT_WAIT < waited < float(RUN_SECONDS)
    assert len(stack.journal("submit")) == 1


def test_the_sdk_completes_a_real_length_run_with_max_wait_time_1800(
    stack: Stack, clocks: BothClocks
) -> None:
    started = clocks.now()
    answer = run_through_the_gateway(stack, max_wait_time=LONG_ENOUGH_WAIT)
    waited = clocks.now() - started
    assert answer["status"] == "COMPLETED", answer
    # The SDK parsed the output string: one video per scene.
    videos = [item["value"] for item in answer["output"]]
    assert [v["type"] for v in videos] == ["video"] * 4
    assert all(v["data"].endswith(".mp4") for v in videos)
    assert float(RUN_SECONDS) <= waited < LONG_ENOUGH_WAIT
    assert len(stack.journal("submit")) == 1
