"""`mock_segmind()`: Segmind's hosts answered in-process for requests and httpx, sync and
async, sessions and module functions; forced answers; sleeps as clock advances; and
nothing left patched afterwards, however the block ends."""

from __future__ import annotations

import asyncio
import json
import runpy
import threading
import time
from typing import Any

import httpcore
import httpx
import pytest
import requests
import requests.adapters

from fakeserver.testing import (
    PRODUCT_PAGE_SCRIPT,
    SegmindClockWarning,
    SegmindMock,
    active_mock,
    mock_segmind,
    stall,
)
from tests.servers import ServerProcess

SAMPLE = PRODUCT_PAGE_SCRIPT
URL = "https://api.segmind.com/workflows/68628fe34727e611dfa219b4-v4"
KEY = {"x-api-key": "test-key"}


def patched_now() -> dict[str, object]:
    """What the interceptors and the sleeps replace while a mock is active."""
    return {
        "requests": requests.adapters.HTTPAdapter.send,
        "httpcore": httpcore.ConnectionPool.handle_request,
        "httpcore async": httpcore.AsyncConnectionPool.handle_async_request,
        "time.sleep": time.sleep,
        "asyncio.sleep": asyncio.sleep,
    }


def test_the_product_page_script_completes_unchanged_under_the_default_mock(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with mock_segmind() as segmind:  # sleeps move the clock unless told otherwise
        started = segmind.now()
        runpy.run_path(str(SAMPLE), run_name="__main__")
    out = capsys.readouterr().out
    assert "Generation complete: [{'keyname': 'Scene_1_Video'" in out
    polls = segmind.journal("poll")
    # A real run's worth of 7 s sleeps: the first polls saw it unfinished.
    assert len(polls) > 40
    assert segmind.now() - started == pytest.approx(7 * (len(polls) - 1))
    assert all(entry["key"] == "key-1" for entry in polls)


def test_requests_module_functions_and_sessions_reach_the_fake() -> None:
    with mock_segmind() as segmind:
        queued = requests.post(URL, json={}, headers=KEY, timeout=10).json()
        assert queued["poll_url"].startswith("https://api.segmind.com/workflows/request/")
        with requests.Session() as session:
            polled = session.get(queued["poll_url"], headers=KEY, timeout=10)
            assert polled.json() == {"status": "QUEUED"}
        segmind.advance(1800)
        done = requests.get(queued["poll_url"], headers=KEY, timeout=10).json()
        video = json.loads(done["output"])[0]["value"]["data"]
        # The videos are served too.
        assert requests.get(video, timeout=10).content[4:8] == b"ftyp"
    assert segmind.counts() == {"submit": 1, "poll": 2}


def test_httpx_sync_module_functions_and_clients_reach_the_fake() -> None:
    with mock_segmind() as segmind:
        assert httpx.post(URL, json={}, headers=KEY).status_code == 200
        with httpx.Client(headers=KEY) as http:
            assert http.get("https://api.segmind.com/v1/get-user-credits").json() == {
                "credits": pytest.approx(1000 - 3.9674),
                "free-credits": 0.0,
            }
    assert segmind.counts() == {"submit": 1, "credits": 1}


@pytest.mark.anyio
async def test_httpx_async_clients_reach_the_fake_and_async_sleeps_advance() -> None:
    async with (
        mock_segmind(advance_on_sleep=True) as segmind,
        httpx.AsyncClient(headers=KEY) as http,
    ):
        queued = (await http.post(URL, json={})).json()
        status = "QUEUED"
        while status not in ("COMPLETED", "FAILED"):
            await asyncio.sleep(7)
            status = (await http.get(queued["poll_url"])).json()["status"]
    assert status == "COMPLETED"
    assert segmind.counts()["poll"] > 40


def test_forced_prefer_tokens_and_scripts_reach_the_code_under_test() -> None:
    with mock_segmind() as segmind:
        segmind.force("code=429", route="submit")
        segmind.script("poll", {"code": 502, "times": 2})
        assert segmind.pending() == {"submit": 1, "poll": 2}
        limited = requests.post(URL, json={}, headers=KEY, timeout=10)
        assert (limited.status_code, limited.headers["Retry-After"]) == (429, "1")
        segmind.force("outcome=failed, duration=10", route="submit")
        queued = httpx.post(URL, json={}, headers=KEY).json()
        assert [httpx.get(queued["poll_url"], headers=KEY).status_code for _ in "ab"] == [502] * 2
        segmind.advance(10)
        assert httpx.get(queued["poll_url"], headers=KEY).json()["status"] == "FAILED"
        assert segmind.job_state(queued["request_id"]) == "FAILED"
        assert segmind.pending() == {}
        assert [e["status"] for e in segmind.journal("submit")] == [429, 200]


@pytest.mark.parametrize(
    ("fault", "httpx_error"),
    [("reset", httpx.ReadError), ("empty", httpx.RemoteProtocolError),
     ("garbage", httpx.RemoteProtocolError)],
)  # fmt: skip
def test_network_faults_are_each_librarys_own_errors(
    fault: str, httpx_error: type[Exception]
) -> None:
    with mock_segmind() as segmind:
        segmind.force(f"fault={fault}", times=2)
        with pytest.raises(requests.ConnectionError, match=f"fault={fault}"):
            requests.post(URL, json={}, headers=KEY, timeout=10)
        with pytest.raises(httpx_error, match=f"fault={fault}"):
            httpx.post(URL, json={}, headers=KEY)
        assert [e["fault"] for e in segmind.journal()] == [fault, fault]


def test_bad_forced_tokens_and_options_fail_at_the_call() -> None:
    with pytest.raises(ValueError, match="plan must be one of"):
        mock_segmind(plan="gold")
    with mock_segmind() as segmind:
        with pytest.raises(ValueError, match="Prefer code=418 cannot be forced"):
            segmind.force("code=418")
        with pytest.raises(ValueError, match="route must be one of"):
            segmind.force("code=429", route="poll-url")
        with pytest.raises(ValueError, match="script route must be one of"):
            segmind.script("polls", {"code": 502})


def test_keys_credits_and_plan_are_options() -> None:
    with mock_segmind(api_keys=["only-key"], credits=5, plan="free") as segmind:
        assert segmind.api_key == "only-key"

        def submit(headers: dict[str, str]) -> int:
            return requests.post(URL, json={}, headers=headers, timeout=10).status_code

        assert submit({"x-api-key": "other"}) == 401
        mine = {"Authorization": "Bearer only-key"}
        assert submit(mine) == 200
        assert segmind.credits() == pytest.approx(5 - 3.9674)
        assert submit(mine) == 406
        segmind.set_credits(100)
        codes = [submit(mine) for _ in range(4)]
        assert codes == [200, 200, 200, 429]  # five requests a minute on the free plan


def test_other_hosts_pass_through(fake_process: Any) -> None:
    server: ServerProcess = fake_process("--api-key", "k")
    with mock_segmind() as segmind:
        assert requests.get(f"{server.url}/healthz", timeout=10).json() == {"status": "ok"}
        assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
    assert segmind.counts() == {}


def test_nothing_stays_patched_after_an_exit_or_a_failure() -> None:
    before = patched_now()
    with mock_segmind(advance_on_sleep=True):
        assert patched_now()["time.sleep"] is not before["time.sleep"]
        assert patched_now()["requests"] is not before["requests"]
    assert patched_now() == before
    with pytest.raises(ZeroDivisionError), mock_segmind(advance_on_sleep=True):
        _ = 1 / 0
    assert patched_now() == before
    with pytest.raises(RuntimeError, match="no mock_segmind"):
        active_mock()


def test_a_second_mock_inside_the_first_is_refused_and_leaves_the_first_working() -> None:
    with mock_segmind() as segmind:
        with pytest.raises(RuntimeError, match="already active"):  # noqa: SIM117
            with mock_segmind():
                pass
        assert requests.post(URL, json={}, headers=KEY, timeout=10).status_code == 200
        assert active_mock() is segmind


def test_only_the_entering_threads_sleeps_advance_the_clock() -> None:
    with mock_segmind(advance_on_sleep=True) as segmind:
        start = segmind.now()
        other = threading.Thread(target=time.sleep, args=(0.01,))
        other.start()
        other.join()
        assert segmind.now() == start
        time.sleep(700)
        assert segmind.now() == start + 700


@mock_segmind(credits=10)
def test_as_a_decorator() -> None:
    segmind: SegmindMock = active_mock()
    assert requests.post(URL, json={}, headers=KEY, timeout=10).status_code == 200
    assert segmind.credits("test-key") == pytest.approx(10 - 3.9674)


@pytest.mark.anyio
@mock_segmind()
async def test_as_a_decorator_of_an_async_test() -> None:
    async with httpx.AsyncClient() as http:
        assert (await http.post(URL, json={}, headers=KEY)).status_code == 200
    assert active_mock().counts() == {"submit": 1}


def test_polls_while_the_clock_stands_still_warn_naming_the_fix() -> None:
    with mock_segmind(advance_on_sleep=False) as segmind:
        queued = requests.post(URL, json={}, headers=KEY, timeout=10).json()
        for _ in range(stall.STALL_POLLS - 1):  # warnings are errors here: none yet
            requests.get(queued["poll_url"], headers=KEY, timeout=10)
        with pytest.warns(SegmindClockWarning, match=r"advance_on_sleep=True.*advance\(") as seen:
            requests.get(queued["poll_url"], headers=KEY, timeout=10)
        assert f"polled {stall.STALL_POLLS} times" in str(seen[0].message)
        for _ in range(stall.STALL_POLLS):  # once per run, not once per poll
            requests.get(queued["poll_url"], headers=KEY, timeout=10)
        segmind.advance(1800)  # once the clock moves, the same loop finishes
        assert requests.get(queued["poll_url"], headers=KEY, timeout=10).json()["status"] in (
            "COMPLETED",
            "FAILED",
        )


def test_two_polls_far_apart_in_real_time_at_one_fake_time_warn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The product page's script with real sleeps: its second poll comes 7 s later.
    monkeypatch.setattr(stall, "STALL_SECONDS", 0.05)
    with mock_segmind(advance_on_sleep=False), httpx.Client(headers=KEY) as http:
        poll_url = http.post(URL, json={}).json()["poll_url"]
        http.get(poll_url)
        threading.Event().wait(0.1)
        with pytest.warns(SegmindClockWarning, match="stood still"):
            http.get(poll_url)


def test_polls_that_see_the_clock_move_do_not_warn() -> None:
    with mock_segmind() as segmind, httpx.Client(headers=KEY) as http:
        poll_url = http.post(URL, json={}).json()["poll_url"]
        for _ in range(3 * stall.STALL_POLLS):
            http.get(poll_url)
            time.sleep(1)  # moves the fake's clock: no warning (warnings are errors here)
        assert segmind.counts()["poll"] == 3 * stall.STALL_POLLS
