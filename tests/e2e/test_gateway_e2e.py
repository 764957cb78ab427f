"""End to end through real processes: the fake and the gateway, each under uvicorn on a
free loopback port, both on virtual clocks moved over HTTP. Third-party callers (the
official `segmind` SDK, the product page's sample script) change only URL and key.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from segmind import SegmindClient

from client import Client
from fakeserver.testing import PRODUCT_PAGE_SCRIPT
from tests.receiver import eventually
from tests.stack import (
    ADMIN_KEY,
    WORKFLOW,
    BothClocks,
    Stack,
    running_stack,
    start_gateway,
)

SAMPLE = PRODUCT_PAGE_SCRIPT


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with running_stack(tmp_path / "gateway.sqlite") as built:
        yield built


@pytest.fixture
def clocks(stack: Stack) -> Iterator[BothClocks]:
    both = BothClocks(stack)
    yield both
    both.close()


def test_our_client_runs_and_downloads_through_the_gateway(
    stack: Stack, clocks: BothClocks, tmp_path: Path
) -> None:
    with Client(stack.team_key, base_url=stack.gateway.url, clock=clocks) as client:
        result = client.run({"Scene_1": "A lighthouse keeper at dawn"})
        saved = client.download(result, tmp_path / "videos")
    assert sorted(result.videos) == [1, 2, 3, 4]
    assert sorted(p.name for p in saved.values()) == [f"scene_{n}.mp4" for n in (1, 2, 3, 4)]
    assert all(p.read_bytes()[4:8] == b"ftyp" for p in saved.values())
    assert len(stack.journal("submit")) == 1


def test_the_official_sdk_works_through_the_gateway(stack: Stack, clocks: BothClocks) -> None:
    sdk = SegmindClient(api_key=stack.team_key)
    try:
        queued = sdk.pixelflows.run(
            workflow_url=f"{stack.gateway.url}/workflows/{WORKFLOW}",
            data={"Scene_2": "A robot painting"},
            poll=False,
        )
        assert queued["poll_url"].startswith(stack.gateway.url)
        clocks.sleep(1900)
        done = sdk.pixelflows.get_status(poll_url=queued["poll_url"])
        # Identical again: answered from the cache, so polling finishes at once.
        again = sdk.pixelflows.run(
            workflow_url=f"{stack.gateway.url}/workflows/{WORKFLOW}",
            data={"Scene_2": "A robot painting"},
            poll=True,
            poll_interval=0.01,
            max_wait_time=10,
        )
    finally:
        sdk._client.close()  # segmind 1.3.0 has no close(); its httpx client holds a socket
    assert done["status"] == "COMPLETED"
    assert again["status"] == "COMPLETED"
    assert len(stack.journal("submit")) == 1


def test_the_product_page_sample_completes_through_the_gateway(
    stack: Stack, clocks: BothClocks
) -> None:
    # Warm the cache with the sample's own inputs (all defaults), so the script's first
    # poll already reads COMPLETED and it never sits through its own 7-second sleep.
    with Client(stack.team_key, base_url=stack.gateway.url, clock=clocks) as client:
        client.run({})
    script = SAMPLE.read_text().replace('"YOUR_API_KEY"', repr(stack.team_key))
    script = script.replace("https://api.segmind.com/workflows/", f"{stack.gateway.url}/workflows/")
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert "Generation complete: [{'keyname': 'Scene_1_Video'" in done.stdout
    assert len(stack.journal("submit")) == 1  # the sample's run was a cache hit


def test_a_killed_gateway_resumes_its_runs_after_restart(stack: Stack, clocks: BothClocks) -> None:
    headers = {"x-api-key": stack.team_key}
    queued = httpx.post(
        f"{stack.gateway.url}/workflows/{WORKFLOW}", json={"Scene_3": "A storm"}, headers=headers
    ).json()
    os.kill(stack.gateway.proc.pid, signal.SIGKILL)
    stack.gateway.stop()
    stack.gateway = start_gateway(stack.fake.url, stack.db)
    clocks.sleep(1900)
    poll_url = queued["poll_url"].replace(
        queued["poll_url"].split("/workflows/")[0], stack.gateway.url
    )
    answer = httpx.get(poll_url, headers=headers).json()
    assert answer["status"] == "COMPLETED"
    assert len(json.loads(answer["output"])) == 4
    assert len(stack.journal("submit")) == 1


def test_a_second_gateway_on_the_store_takes_over_the_runs_of_one_killed(
    stack: Stack, tmp_path: Path
) -> None:
    # Two more gateways on the stack's store, with one-second leases (the default is 30 s):
    # the only real waiting here is for a's lease to lapse, never for a job.
    lease = {"PROXY_LEASE_SECONDS": "1"}
    stack.gateway.stop()  # (cleanly) so that only b is there to take the run over
    a = start_gateway(stack.fake.url, stack.db, {**lease, "PROXY_INSTANCE_ID": "lease-a"})
    b = start_gateway(stack.fake.url, stack.db, {**lease, "PROXY_INSTANCE_ID": "lease-b"})
    headers = {"x-api-key": stack.team_key}
    try:
        queued = httpx.post(
            f"{a.url}/workflows/{WORKFLOW}", json={"Scene_2": "A lantern"}, headers=headers
        ).json()
        os.kill(a.proc.pid, signal.SIGKILL)
        a.stop()
        eventually(lambda: "took over 1 runs" in b.printed(), what="b took a's run over")
        with httpx.Client(headers={"x-admin-key": ADMIN_KEY}) as admin:

            def advanced_and_done() -> bool:
                # The fake's and b's clocks move together, as one Segmind time.
                admin.post(f"{stack.fake.url}/__admin/clock/advance", json={"seconds": 100})
                admin.post(f"{b.url}/admin/clock/advance", json={"seconds": 100})
                answer = httpx.get(
                    f"{b.url}/workflows/request/{queued['request_id']}", headers=headers
                )
                return bool(answer.json()["status"] == "COMPLETED")

            eventually(advanced_and_done, what="b polled a's run to its end")
    finally:
        a.stop()
        b.stop()
    assert len(stack.journal("submit")) == 1
