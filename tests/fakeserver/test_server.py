"""The fake as a real uvicorn process: whole flows, socket faults, the sample script, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable

import httpx
import pytest

from fakeserver.testing import PRODUCT_PAGE_SCRIPT
from tests.servers import ServerProcess

SAMPLE = PRODUCT_PAGE_SCRIPT
SUBMIT = "/workflows/68628fe34727e611dfa219b4-v4"
KEY = "test-key-live"

StartFake = Callable[..., ServerProcess]


def test_a_whole_flow_over_http_on_the_virtual_clock(fake_process: StartFake) -> None:
    server = fake_process("--api-key", KEY, "--clock", "virtual", "--seed", "1")
    with httpx.Client(base_url=server.url, headers={"x-api-key": KEY}) as http:
        queued = http.post(SUBMIT, json={"Scene_1": "On a boat"}).json()
        assert queued["poll_url"].startswith(server.url)
        assert http.get(queued["poll_url"]).json() == {"status": "QUEUED"}
        http.post("/__admin/clock/advance", json={"seconds": 1800})
        done = http.get(queued["poll_url"]).json()
        assert done["status"] == "COMPLETED"
        video = http.get(json.loads(done["output"])[0]["value"]["data"])
        assert video.content[4:8] == b"ftyp"


def test_without_keys_it_prints_and_accepts_the_demo_key(fake_process: StartFake) -> None:
    server = fake_process()
    answer = httpx.post(f"{server.url}{SUBMIT}", json={}, headers={"x-api-key": "fake-demo-key"})
    assert answer.status_code == 200
    assert "accepting the demo key: fake-demo-key" in server.stop()


def test_public_url_is_used_in_poll_urls(fake_process: StartFake) -> None:
    server = fake_process("--api-key", KEY, "--public-url", "https://fake.example/")
    answer = httpx.post(f"{server.url}{SUBMIT}", json={}, headers={"x-api-key": KEY}).json()
    assert answer["poll_url"].startswith("https://fake.example/workflows/request/")


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        # A reset (or a close with no reply) reaches httpx either as a read error or as a
        # disconnect, depending on which the kernel delivers first; both mean "no answer".
        ("reset", (httpx.ReadError, httpx.RemoteProtocolError)),
        ("empty", (httpx.RemoteProtocolError, httpx.ReadError)),
        ("garbage", httpx.RemoteProtocolError),
    ],
)
def test_socket_faults_are_real_under_uvicorn(
    fake_process: StartFake, fault: str, error: type[Exception] | tuple[type[Exception], ...]
) -> None:
    server = fake_process("--api-key", KEY)
    headers = {"x-api-key": KEY, "Prefer": f"fault={fault}"}
    with pytest.raises(error):
        httpx.post(f"{server.url}{SUBMIT}", json={}, headers=headers)
    # The server survives and the journal says what happened.
    entries = httpx.get(f"{server.url}/__admin/journal").json()["entries"]
    assert entries[-1]["fault"] == fault
    assert httpx.get(f"{server.url}/healthz").status_code == 200


def test_a_delay_trips_a_client_read_timeout(fake_process: StartFake) -> None:
    server = fake_process("--api-key", KEY)
    headers = {"x-api-key": KEY, "Prefer": "delay=2000"}
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(f"{server.url}/v1/get-user-credits", headers=headers, timeout=0.2)


def test_a_trickled_body_arrives_whole(fake_process: StartFake) -> None:
    server = fake_process("--api-key", KEY)
    headers = {"x-api-key": KEY, "Prefer": "trickle=100"}
    answer = httpx.get(f"{server.url}/v1/get-user-credits", headers=headers)
    assert answer.json() == {"credits": 1000.0, "free-credits": 0.0}


def test_a_submit_can_be_cut_off_after_the_job_was_created(fake_process: StartFake) -> None:
    server = fake_process("--api-key", KEY)
    script = {"route": "submit", "responses": [{"fault": "reset", "after": True}]}
    httpx.post(f"{server.url}/__admin/script", json=script)
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        httpx.post(f"{server.url}{SUBMIT}", json={}, headers={"x-api-key": KEY})
    credits = httpx.get(f"{server.url}/v1/get-user-credits", headers={"x-api-key": KEY}).json()
    assert credits["credits"] == pytest.approx(1000 - 3.9674)


def _sample_script(url: str, key: str) -> str:
    """The product page's script, with only its URL and key changed."""
    code = SAMPLE.read_text().replace('"YOUR_API_KEY"', repr(key))
    return code.replace("https://api.segmind.com/workflows/", f"{url}/workflows/")


# Run before the script, in its process: its `time.sleep(7)` between polls moves the
# fake's virtual clock 7 s instead of waiting, so the run takes the polls a real one would
# and the test takes well under a second. The script's own text is unchanged.
SLEEP_ADVANCES_THE_FAKE = """
import time, httpx
def _sleep(seconds, _url={url!r}):
    httpx.post(_url + "/__admin/clock/advance", json={{"seconds": seconds}}).raise_for_status()
time.sleep = _sleep
"""


def test_the_product_page_sample_script_completes_unchanged(fake_process: StartFake) -> None:
    # ~7 s runs on a clock that stands still but for the script's sleeps: its first poll
    # sees the run unfinished, and it completes after a few of its 7-second sleeps.
    server = fake_process("--api-key", KEY, "--clock", "virtual", "--time-scale", "0.01")
    script = _sample_script(server.url, KEY)
    assert script.count(server.url) == 1
    prelude = SLEEP_ADVANCES_THE_FAKE.format(url=server.url)
    done = subprocess.run(
        [sys.executable, "-c", prelude + script],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "Request queued:" in done.stdout
    assert "Generation complete: [{'keyname': 'Scene_1_Video'" in done.stdout
    assert done.stdout.count("scene_") == 4
    journal = httpx.get(f"{server.url}/__admin/journal", params={"route": "poll"}).json()
    assert len(journal["entries"]) > 1, (
        "the run was still going at the first poll, as a real one is"
    )


def test_bad_flags_fail_with_a_clear_message() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "fakeserver", "--plan", "gold"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode != 0
    assert "plan must be one of free, pro, unlimited" in done.stderr
