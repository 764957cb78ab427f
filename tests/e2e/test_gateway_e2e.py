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
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from segmind import SegmindClient

from client import Client
from tests.servers import ServerProcess, start_server

UPSTREAM_KEY = "test-upstream-key-e2e-5d1c9a7b3f"
ADMIN_KEY = "test-admin-key-e2e-8e2f4a6c"
WORKFLOW = "68628fe34727e611dfa219b4-v4"
SAMPLE = Path(__file__).resolve().parents[1] / "data" / "product_page_sample.py.txt"


@dataclass
class Stack:
    fake: ServerProcess
    gateway: ServerProcess
    db: Path
    team_key: str

    def gateway_env(self) -> dict[str, str]:
        return gateway_env(self.fake.url)

    def journal(self, route: str) -> list[dict[str, object]]:
        entries: list[dict[str, object]] = httpx.get(
            f"{self.fake.url}/__admin/journal", params={"route": route}
        ).json()["entries"]
        return entries


class BothClocks:
    """A clock for `client.Client` whose sleep moves the fake's and the gateway's clocks;
    the gateway answers only once its poll loops have caught up."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.http = httpx.Client()

    def now(self) -> float:
        now: float = self.http.get(f"{self.stack.fake.url}/__admin/clock").json()["now"]
        return now

    def sleep(self, seconds: float) -> None:
        self.http.post(
            f"{self.stack.fake.url}/__admin/clock/advance", json={"seconds": seconds}
        ).raise_for_status()
        self.http.post(
            f"{self.stack.gateway.url}/admin/clock/advance",
            json={"seconds": seconds},
            headers={"x-admin-key": ADMIN_KEY},
        ).raise_for_status()

    def close(self) -> None:
        self.http.close()


def gateway_env(fake_url: str) -> dict[str, str]:
    return {"SEGMIND_API_KEY": UPSTREAM_KEY, "PROXY_ADMIN_KEY": ADMIN_KEY}


def start_gateway(fake_url: str, db: Path) -> ServerProcess:
    return start_server(
        "proxy", "--upstream-url", fake_url, "--db", str(db), "--clock", "virtual",
        env=gateway_env(fake_url),
    )  # fmt: skip


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    fake = start_server("fakeserver", "--api-key", UPSTREAM_KEY, "--clock", "virtual")
    db = tmp_path / "gateway.sqlite"
    try:
        gateway = start_gateway(fake.url, db)
    except BaseException:
        fake.stop()
        raise
    built = Stack(fake, gateway, db, "")
    try:
        made = httpx.post(
            f"{gateway.url}/admin/teams",
            json={"name": "e2e"},
            headers={"x-admin-key": ADMIN_KEY},
        )
        assert made.status_code == 201, made.text
        built.team_key = made.json()["api_key"]
        yield built
    finally:
        built.gateway.stop()
        fake.stop()


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
