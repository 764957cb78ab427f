"""The pytest plugin as another team meets it: test files of theirs, run by pytest in a
subprocess of this venv (where the package, and so its `pytest11` entry point, is
installed): the fixtures, the `segmind` marker, clean-up after a failing test, and
pytest-xdist workers each with their own fake."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fakeserver.testing.gateway import Gateway
from fakeserver.testing.server import FakeServer

THEIR_TESTS = """
import asyncio, time

import httpx, pytest, requests, requests.adapters

URL = "https://api.segmind.com/workflows/68628fe34727e611dfa219b4-v4"


@pytest.mark.segmind(plan="free", credits=5, time_scale=0.01, advance_on_sleep=True)
def test_marker_options(segmind_fake):
    headers = {"x-api-key": segmind_fake.api_key}
    queued = requests.post(URL, json={}, headers=headers).json()
    time.sleep(30)  # a 0.01-scaled run is over in well under 30 s of the fake's clock
    assert requests.get(queued["poll_url"], headers=headers).json()["status"] == "COMPLETED"
    assert requests.post(URL, json={}, headers=headers).status_code == 406


@pytest.mark.parametrize("segmind_fake", [{"failure_rate": 1.0}], indirect=True)
def test_indirect_options(segmind_fake):
    queued = httpx.post(URL, json={}, headers={"x-api-key": "k"}).json()
    segmind_fake.advance(1800)
    assert httpx.get(queued["poll_url"], headers={"x-api-key": "k"}).json()["status"] == "FAILED"


@pytest.mark.segmind(plan="free")
def test_server_options(segmind_server):
    codes = [httpx.get(segmind_server.url + "/v1/get-user-credits",
                       headers={"x-api-key": "k"}).status_code for _ in range(6)]
    assert codes == [200] * 5 + [429]


def test_the_fake_and_a_server_side_by_side(segmind_fake, segmind_server):
    assert httpx.get(segmind_server.url + "/healthz").status_code == 200  # passes through
    assert httpx.post(URL, json={}, headers={"x-api-key": "k"}).status_code == 200
    assert segmind_fake.counts() == {"submit": 1}
"""

FAILING_THEN_CLEAN = """
import asyncio, time

import requests, requests.adapters


def test_fails_inside_the_fixture(segmind_fake):
    raise AssertionError("on purpose")


def test_nothing_left_patched():
    assert type(time.sleep).__name__ == "builtin_function_or_method"
    assert asyncio.sleep.__module__ == "asyncio.tasks"
    assert requests.adapters.HTTPAdapter.send.__module__ == "requests.adapters"
"""

BAD_OPTIONS = """
import pytest


@pytest.mark.segmind(plan="gold")
def test_bad_plan(segmind_fake):
    pass
"""


def run_pytest(tmp_path: Path, source: str, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_theirs.py").write_text(source)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-W", "error", "-p", "no:cacheprovider", "-q",
         "test_theirs.py", *args],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_fixtures_and_options_under_xdist_workers(tmp_path: Path) -> None:
    done = run_pytest(tmp_path, THEIR_TESTS, "-n", "2", "-v")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 passed" in done.stdout, done.stdout
    assert "created: 2/2 workers" in done.stdout, done.stdout


def test_a_failing_test_leaves_nothing_patched(tmp_path: Path) -> None:
    done = run_pytest(tmp_path, FAILING_THEN_CLEAN, "-p", "no:xdist")
    assert "1 failed, 1 passed" in done.stdout, done.stdout + done.stderr
    assert "on purpose" in done.stdout


def test_bad_marker_options_fail_the_test_with_the_fakes_message(tmp_path: Path) -> None:
    done = run_pytest(tmp_path, BAD_OPTIONS, "-p", "no:xdist")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "segmind_fake: bad @pytest.mark.segmind options" in done.stdout
    assert "plan must be one of free, pro, unlimited" in done.stdout


def test_the_gateway_runs_a_job_with_the_sdk_on_its_clock(
    segmind_gateway: Gateway, segmind_server: FakeServer
) -> None:
    from client import Client

    with Client(
        api_key=segmind_gateway.api_key, base_url=segmind_gateway.url,
        clock=segmind_gateway.clock,
    ) as sdk:  # fmt: skip
        result = sdk.wait(sdk.submit({}))
    assert len(result.videos) == 4
    assert segmind_gateway.fake is segmind_server
    assert [e["key"] for e in segmind_server.journal("submit")] == ["key-1"]
    assert segmind_gateway.api_key not in segmind_server.process.printed()


@pytest.mark.segmind(api_keys=["only-key"], credits=1)
def test_the_marker_reaches_fixtures_in_this_suite_too(segmind_server: FakeServer) -> None:
    import httpx

    answer = httpx.post(
        f"{segmind_server.url}/workflows/68628fe34727e611dfa219b4-v4",
        json={}, headers={"x-api-key": "only-key"},
    )  # fmt: skip
    assert answer.status_code == 406
