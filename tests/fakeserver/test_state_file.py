"""`--state-file`: the fake keeps its jobs, credits and virtual time across a restart, as
Segmind keeps its runs when one of its servers restarts. Real processes: the fake is
SIGKILLed (nothing flushed at exit) and started again on the same port and file."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx

from tests.servers import ServerProcess, start_server

KEY = "test-fake-state-key-7a1c"
WORKFLOW = "68628fe34727e611dfa219b4-v4"


def start(state: Path, port: int = 0) -> ServerProcess:
    return start_server(
        "fakeserver", "--api-key", KEY, "--clock", "virtual", "--state-file", str(state),
        "--credits", "100", *(("--port", str(port)) if port else ()),
    )  # fmt: skip


def test_a_restarted_fake_answers_for_the_runs_it_had(tmp_path: Path) -> None:
    state = tmp_path / "fake-state.json"
    fake = start(state)
    try:
        submitted = httpx.post(
            f"{fake.url}/workflows/{WORKFLOW}",
            json={"Scene_1": "Before the restart"},
            headers={"x-api-key": KEY},
        )
        assert submitted.status_code == 200, submitted.text
        poll_url = submitted.json()["poll_url"]
        moved = httpx.post(f"{fake.url}/__admin/clock/advance", json={"seconds": 60})
        before = httpx.get(poll_url, headers={"x-api-key": KEY}).json()
        assert before["status"] in ("QUEUED", "PROCESSING")
        os.kill(fake.proc.pid, signal.SIGKILL)
    finally:
        fake.stop()

    again = start(state, port=fake.port)
    try:
        clock = httpx.get(f"{again.url}/__admin/clock").json()["now"]
        assert clock == moved.json()["now"]  # time goes on from where it was
        assert httpx.get(poll_url, headers={"x-api-key": KEY}).json() == before
        credits = httpx.get(f"{again.url}/v1/get-user-credits", headers={"x-api-key": KEY})
        assert credits.json()["credits"] < 100  # the run stays charged
        httpx.post(f"{again.url}/__admin/clock/advance", json={"seconds": 3600 - 61})
        done = httpx.get(poll_url, headers={"x-api-key": KEY}).json()
        assert done["status"] == "COMPLETED"
    finally:
        again.stop()


def test_without_a_state_file_a_restart_forgets(tmp_path: Path) -> None:
    fake = start_server("fakeserver", "--api-key", KEY, "--clock", "virtual")
    try:
        submitted = httpx.post(
            f"{fake.url}/workflows/{WORKFLOW}", json={}, headers={"x-api-key": KEY}
        )
        poll_url = submitted.json()["poll_url"]
    finally:
        fake.stop()
    again = start_server("fakeserver", "--api-key", KEY, "--clock", "virtual",
                         "--port", str(fake.port))  # fmt: skip
    try:
        assert httpx.get(poll_url, headers={"x-api-key": KEY}).status_code == 404
    finally:
        again.stop()
