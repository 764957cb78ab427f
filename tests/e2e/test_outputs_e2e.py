"""Kept outputs end to end, real processes (the fake and the gateway under uvicorn, both on
virtual clocks): a run's four URLs are the gateway's; `curl` fetches each whole and by
range; a tampered, expired or other team's URL is refused; the URLs outlive the fake's
outputs and the fake itself; an identical request days later is a HIT with working URLs.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.receiver import Receiver, eventually
from tests.stack import ADMIN_KEY, UPSTREAM_KEY, WORKFLOW, Stack, running_stack

ADMIN = {"x-admin-key": ADMIN_KEY}
DAY = 86400.0
FAKE_OUTPUT_TTL = 7200.0  # the fake deletes outputs two hours after a run: short, for tests


def outputs_env(tmp_path: Path) -> dict[str, str]:
    return {
        "PROXY_OUTPUTS": str(tmp_path / "kept"),
        # The fake's asset URLs are on loopback: its host and network are allowed here.
        "PROXY_OUTPUT_ALLOW_HOSTS": '["127.0.0.1"]',
        "PROXY_OUTPUT_ALLOW_NETWORKS": '["127.0.0.0/8"]',
    }


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with running_stack(
        tmp_path / "gateway.sqlite", "e2e", "--output-ttl", str(FAKE_OUTPUT_TTL),
        env=outputs_env(tmp_path),
    ) as built:  # fmt: skip
        yield built


def advance(stack: Stack, seconds: float, *, fake: bool = True) -> None:
    if fake:
        httpx.post(
            f"{stack.fake.url}/__admin/clock/advance", json={"seconds": seconds}
        ).raise_for_status()
    httpx.post(
        f"{stack.gateway.url}/admin/clock/advance", json={"seconds": seconds}, headers=ADMIN
    ).raise_for_status()


def submit(stack: Stack, key: str, inputs: dict[str, str], **headers: str) -> httpx.Response:
    answer = httpx.post(
        f"{stack.gateway.url}/workflows/{WORKFLOW}",
        json=inputs,
        headers={"x-api-key": key, **headers},
    )
    assert answer.status_code == 200, answer.text
    return answer


def poll(stack: Stack, key: str, request_id: str) -> dict[str, Any]:
    answer = httpx.get(
        f"{stack.gateway.url}/workflows/request/{request_id}", headers={"x-api-key": key}
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def urls_of(answer: dict[str, Any]) -> list[str]:
    return [entry["value"]["data"] for entry in json.loads(answer["output"])]


def fake_urls(stack: Stack) -> list[str]:
    """The asset URLs the fake gave the gateway for its (one) run."""
    upstream_id = str(stack.journal("poll")[-1]["path"]).rsplit("/", 1)[1]
    answer = httpx.get(
        f"{stack.fake.url}/workflows/request/{upstream_id}", headers={"x-api-key": UPSTREAM_KEY}
    ).json()
    return urls_of(answer)


def curl(url: str, target: Path, *headers: str) -> tuple[int, bytes]:
    """`curl -o` with no header but those given: what a `<video src>` or a script does."""
    args = [arg for header in headers for arg in ("-H", header)]
    done = subprocess.run(
        ["curl", "-sS", "-o", str(target), "-w", "%{http_code}", *args, url],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    return int(done.stdout), target.read_bytes() if target.exists() else b""


def test_kept_outputs_outlive_segmind_and_make_a_lasting_cache(
    stack: Stack, tmp_path: Path, receiver: Receiver
) -> None:
    request_id = submit(
        stack, stack.team_key, {"Scene_1": "A lighthouse at dawn"},
        **{"X-Webhook-Url": receiver.url},
    ).json()["request_id"]  # fmt: skip
    advance(stack, 1900)
    done = poll(stack, stack.team_key, request_id)
    assert done["status"] == "COMPLETED"
    assert done["outputs_kept"] is True
    urls = urls_of(done)
    assert len(urls) == 4
    assert all(u.startswith(f"{stack.gateway.url}/v1/outputs/") for u in urls)
    # The fake's originals, fetched from the fake while it still has them.
    segmind_urls = fake_urls(stack)
    originals = [httpx.get(u).content for u in segmind_urls]
    assert all(o[4:8] == b"ftyp" for o in originals)
    for n, url in enumerate(urls):
        status, data = curl(url, tmp_path / f"scene_{n}.mp4")
        assert status == 200
        assert hashlib.sha256(data).hexdigest() == hashlib.sha256(originals[n]).hexdigest()
        status, part = curl(url, tmp_path / f"part_{n}", "Range: bytes=0-99")
        assert (status, len(part), part) == (206, 100, originals[n][:100])
    head = httpx.head(urls[0])
    assert head.headers["content-type"] == "video/mp4"
    assert head.headers["accept-ranges"] == "bytes"
    assert head.headers["content-length"] == str(len(originals[0]))
    assert httpx.get(urls[0], headers={"if-none-match": head.headers["etag"]}).status_code == 304

    # The webhook carries the gateway's URLs too, each fetchable.
    [delivered] = eventually(lambda: receiver.received, what="the job.completed webhook")
    hooked = json.loads(delivered.body)["data"]
    assert hooked["outputs_kept"] is True
    assert all(httpx.get(u).status_code == 200 for u in hooked["videos"].values())

    # Tampered with, or handed to another team: 403. Another team's key: nothing.
    tampered = urls[0].replace("signature=", "signature=x")
    assert httpx.get(tampered).status_code == 403
    other = httpx.post(f"{stack.gateway.url}/admin/teams", json={"name": "other"}, headers=ADMIN)
    other_key = other.json()["api_key"]
    # The signature covers the team: the URL re-pointed at any other team is refused.
    mine = urls[0].split("/v1/outputs/")[1].split("/")[0]
    assert httpx.get(urls[0].replace(f"/{mine}/", f"/{'0' * len(mine)}/")).status_code == 403
    assert (
        httpx.get(
            f"{stack.gateway.url}/workflows/request/{request_id}", headers={"x-api-key": other_key}
        ).status_code
        == 404
    )

    # Segmind's copies expire, then the fake is gone altogether: the URLs still work.
    advance(stack, FAKE_OUTPUT_TTL)
    assert [httpx.get(u).status_code for u in segmind_urls] == [404] * 4
    stack.fake.stop()
    for n, url in enumerate(urls):
        status, data = curl(url, tmp_path / f"again_{n}.mp4")
        assert status == 200
        assert data == originals[n]

    # Three days later an identical request is a HIT, with fresh URLs that work; the
    # first URLs (valid 24 h) have expired.
    advance(stack, 3 * DAY, fake=False)
    hit = submit(stack, stack.team_key, {"Scene_1": "A lighthouse at dawn"})
    assert hit.headers["x-cache-status"] == "HIT"
    again = poll(stack, stack.team_key, hit.json()["request_id"])
    assert again["status"] == "COMPLETED"
    fresh = urls_of(again)
    assert fresh != urls
    for n, url in enumerate(fresh):
        status, data = curl(url, tmp_path / f"hit_{n}.mp4")
        assert (status, data) == (200, originals[n])
    expired = httpx.get(urls[0])
    assert expired.status_code == 403
    assert "expired" in expired.json()["error"]
