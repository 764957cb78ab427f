"""Kept outputs end to end, real processes (the fake and the gateway under uvicorn, both on
virtual clocks): a run's four URLs are the gateway's; `curl` fetches each whole and by
range; a tampered, expired or other team's URL is refused; the URLs outlive the fake's
outputs and the fake itself; an identical request days later is a HIT with working URLs.
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import json
import os
import re
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.moto import moto_server, s3_environment
from tests.receiver import Receiver, eventually
from tests.servers import ServerProcess, start_server
from tests.stack import ADMIN_KEY, UPSTREAM_KEY, WORKFLOW, Stack, gateway_env, running_stack

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


def console_page(stack: Stack, path: str) -> str:
    """A console page as an operator sees it, logged in with the admin key."""
    with httpx.Client(base_url=stack.gateway.url) as http:
        origin = {"origin": stack.gateway.url, "sec-fetch-site": "same-origin"}
        login = http.post("/admin/ui/login", data={"admin_key": ADMIN_KEY}, headers=origin)
        assert login.status_code == 303, login.text
        page = http.get(path)
        assert page.status_code == 200, page.text
        return page.text


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


def completed(stack: Stack, prompt: str, receiver: Receiver) -> tuple[str, dict[str, Any]]:
    """A run submitted with a webhook and followed (virtual clock) to COMPLETED: its
    request id and the completed poll answer."""
    headers = {"X-Webhook-Url": receiver.url}
    request_id = submit(stack, stack.team_key, {"Scene_1": prompt}, **headers).json()["request_id"]
    advance(stack, 1900)
    done = poll(stack, stack.team_key, request_id)
    assert done["status"] == "COMPLETED"
    return request_id, done


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
    request_id, done = completed(stack, "A lighthouse at dawn", receiver)
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

    # The console's request page links the gateway's copies too, and says so.
    page = console_page(stack, f"/admin/ui/requests/{request_id}")
    assert "Kept by the gateway" in page
    linked = re.findall(r'<a href="([^"]+/v1/outputs/[^"]+)"', page)
    assert len(linked) == 4
    assert all(httpx.get(html.unescape(u)).status_code == 200 for u in linked)
    assert not any(u in page for u in fake_urls(stack))

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


def test_outputs_that_cannot_be_kept_complete_with_segminds_urls_saying_why(
    tmp_path: Path, receiver: Receiver
) -> None:
    # Each hostile behaviour has its own test against a real misbehaving host
    # (tests/proxy/test_mirror.py); here, through the processes, files over the limit.
    env = {**outputs_env(tmp_path), "PROXY_OUTPUT_MAX_BYTES": "1000"}
    with running_stack(tmp_path / "gateway.sqlite", "e2e", env=env) as stack:
        request_id, done = completed(stack, "Too large to keep", receiver)
        assert done["outputs_kept"] is False
        assert "bytes, over output_max_bytes (1,000)" in done["outputs_note"]
        assert urls_of(done) == fake_urls(stack)
        assert all(httpx.get(u).status_code == 200 for u in urls_of(done))
        [delivered] = eventually(lambda: receiver.received, what="the job.completed webhook")
        hooked = json.loads(delivered.body)["data"]
        assert hooked["outputs_kept"] is False
        assert hooked["outputs_note"] == done["outputs_note"]
        assert not list((tmp_path / "kept").rglob("*.mp4"))
        page = console_page(stack, f"/admin/ui/requests/{request_id}")
        assert "Not kept by the gateway (" in page
        assert "over output_max_bytes" in page


# -- two replicas on PostgreSQL sharing one bucket (moto's S3 server) ---------------------

ASSET_BYTES = 3_000_000
ASSET_RATE = 1_000_000  # bytes a second from the fake's storage: a copy takes ~3 s


def replica(fake_url: str, db: str, name: str, env: dict[str, str]) -> ServerProcess:
    return start_server(
        "proxy", "--upstream-url", fake_url, "--db", db, "--clock", "virtual",
        env={**gateway_env(fake_url), "PROXY_INSTANCE_ID": name, **env},
    )  # fmt: skip


def test_two_replicas_share_a_bucket_and_a_killed_copy_is_finished_by_the_other(
    tmp_path: Path, postgres_url: str, receiver: Receiver
) -> None:
    with moto_server() as s3:
        env = {
            **outputs_env(tmp_path),
            **s3_environment(s3),
            "PROXY_OUTPUTS": f"s3://{s3.bucket()}/kept",
            "PROXY_LEASE_SECONDS": "2",  # real seconds before a dead replica's runs move
        }
        fake = start_server(
            "fakeserver", "--api-key", UPSTREAM_KEY, "--clock", "virtual",
            "--output-ttl", str(FAKE_OUTPUT_TTL), "--asset-bytes", str(ASSET_BYTES),
            "--asset-rate", str(ASSET_RATE),
        )  # fmt: skip
        first = replica(fake.url, postgres_url, "replica-a", env)
        second = replica(fake.url, postgres_url, "replica-b", env)
        try:
            killed_mid_copy(tmp_path, fake, first, second, receiver, env, postgres_url)
        finally:
            for server in (first, second, fake):
                server.stop()


def killed_mid_copy(
    tmp_path: Path, fake: ServerProcess, first: ServerProcess, second: ServerProcess,
    receiver: Receiver, env: dict[str, str], db: str,
) -> None:  # fmt: skip
    made = httpx.post(f"{first.url}/admin/teams", json={"name": "e2e"}, headers=ADMIN)
    key = made.json()["api_key"]
    answer = httpx.post(
        f"{first.url}/workflows/{WORKFLOW}", json={"Scene_1": "Two replicas"},
        headers={"x-api-key": key, "X-Webhook-Url": receiver.url},
    )  # fmt: skip
    request_id = answer.json()["request_id"]
    httpx.post(f"{fake.url}/__admin/clock/advance", json={"seconds": 1900}).raise_for_status()
    for server in (second, first):
        # The first replica's advance returns only once its poll loops have settled, that
        # is after the copy: it is left running in a thread and the replica killed under it.
        threading.Thread(
            target=lambda url=server.url: _quietly_advance(url, 1900), daemon=True
        ).start()
    # The first replica polled (Segmind said COMPLETED) and is copying ~3 s per file.
    eventually(lambda: any(e.get("status") == 200 for e in _journal(fake, "poll")),
               what="the first replica's poll")  # fmt: skip
    threading.Event().wait(1.0)  # a third of the way into the copy (real bytes, real time)
    os.kill(first.proc.pid, signal.SIGKILL)
    first.stop()
    meanwhile = httpx.get(
        f"{second.url}/workflows/request/{request_id}", headers={"x-api-key": key}
    ).json()
    assert meanwhile["status"] != "COMPLETED"  # it was killed before recording it

    # The second replica takes the run over, polls it again and copies it whole.
    done = eventually(
        lambda: (
            answer := httpx.get(
                f"{second.url}/workflows/request/{request_id}", headers={"x-api-key": key}
            ).json()
        )["status"] == "COMPLETED" and answer,
        seconds=60, what="the takeover's copy",
    )  # fmt: skip
    assert done["outputs_kept"] is True
    urls = urls_of(done)
    assert all(u.startswith(f"{second.url}/v1/outputs/") for u in urls)
    upstream_id = str(_journal(fake, "poll")[-1]["path"]).rsplit("/", 1)[1]
    segmind_urls = urls_of(httpx.get(
        f"{fake.url}/workflows/request/{upstream_id}", headers={"x-api-key": UPSTREAM_KEY}
    ).json())  # fmt: skip
    # A Range from the first byte skips the fake's throttle: the originals, quickly.
    originals = [httpx.get(u, headers={"range": "bytes=0-"}).content for u in segmind_urls]
    assert [len(o) for o in originals] == [ASSET_BYTES] * 4
    for n, url in enumerate(urls):
        status, data = curl(url, tmp_path / f"b_{n}.mp4")
        assert status == 200
        assert hashlib.sha256(data).digest() == hashlib.sha256(originals[n]).digest()
        status, part = curl(url, tmp_path / f"b_part_{n}", "Range: bytes=0-99")
        assert (status, part) == (206, originals[n][:100])

    # The webhook went out once, after the copy, with URLs that work.
    [delivered] = eventually(lambda: receiver.received, what="the job.completed webhook")
    hooked = json.loads(delivered.body)["data"]
    assert hooked["outputs_kept"] is True
    assert all(httpx.get(u).status_code == 200 for u in hooked["videos"].values())
    assert len(_journal(fake, "submit")) == 1  # nothing was paid twice

    # The fake's outputs expire: a replica that copied nothing serves the same objects.
    httpx.post(f"{fake.url}/__admin/clock/advance", json={"seconds": FAKE_OUTPUT_TTL})
    assert [httpx.get(u).status_code for u in segmind_urls] == [404] * 4
    head = httpx.head(urls[0])
    assert (head.status_code, head.headers["content-length"]) == (200, str(ASSET_BYTES))
    assert httpx.get(urls[0].replace("signature=", "signature=x")).status_code == 403
    fake.stop()
    # Restarted to answer with presigned redirects to the bucket instead of streaming.
    restarted = replica(fake.url, db, "replica-a", {**env, "PROXY_OUTPUTS_SERVE": "redirect"})
    try:
        for n, url in enumerate(urls):
            other = url.replace(second.url, restarted.url)
            moved = httpx.get(other)
            assert moved.status_code == 307
            assert moved.headers["location"].startswith(env["AWS_ENDPOINT_URL_S3"])
            data = httpx.get(other, follow_redirects=True).content
            assert hashlib.sha256(data).digest() == hashlib.sha256(originals[n]).digest()
        # Three days on, the fake gone: an identical request is a HIT with working URLs.
        _quietly_advance(restarted.url, 3 * DAY)
        hit = httpx.post(
            f"{restarted.url}/workflows/{WORKFLOW}", json={"Scene_1": "Two replicas"},
            headers={"x-api-key": key},
        )  # fmt: skip
        assert hit.headers["x-cache-status"] == "HIT"
        again = httpx.get(hit.json()["poll_url"], headers={"x-api-key": key}).json()
        fresh = urls_of(again)
        assert fresh != urls
        for n, url in enumerate(fresh):
            data = httpx.get(url, follow_redirects=True).content
            assert data == originals[n]
    finally:
        restarted.stop()


def _quietly_advance(url: str, seconds: float) -> None:
    with contextlib.suppress(httpx.HTTPError):
        httpx.post(
            f"{url}/admin/clock/advance", json={"seconds": seconds}, headers=ADMIN, timeout=60
        )


def _journal(fake: ServerProcess, route: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = httpx.get(
        f"{fake.url}/__admin/journal", params={"route": route}
    ).json()["entries"]
    return entries
