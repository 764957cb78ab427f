"""What `make run` prints is meant to be pasted: the Python snippet is taken from a real
`python -m proxy serve --with-fake --demo-team` process and run, as its own interpreter,
against that gateway until the four videos are there. The fake runs 1000x faster than
Segmind (~0.7 s), so the whole test takes a few seconds of real time."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from proxy.cli.embedded import READY_SECONDS as EMBEDDED_READY_SECONDS
from tests.servers import ServerProcess, ready_seconds, start_server

RULE = "-" * 72


@pytest.fixture
def run_gateway(tmp_path: Path) -> Iterator[ServerProcess]:
    server = start_server(
        "proxy", "--db", str(tmp_path / "gateway.sqlite"), "--with-fake",
        "--fake-args", "--time-scale 0.001", "--demo-team",
    )  # fmt: skip
    yield server
    server.stop()


def printed_until_listening(server: ServerProcess) -> str:
    """What the gateway printed before serving: all flushed once /healthz answers."""
    printed = server.printed()
    assert "gateway listening on" in printed, printed
    return printed


def test_the_printed_python_snippet_runs_one_job_to_its_four_videos(
    run_gateway: ServerProcess,
) -> None:
    printed = printed_until_listening(run_gateway)
    blocks = printed.split(RULE + "\n")
    assert len(blocks) == 3, f"expected one snippet between two rules:\n{printed}"
    snippet = blocks[1]
    key = re.search(r"api key: +(sgw_\S+)", printed)
    assert key is not None, printed
    assert f'api_key="{key[1]}"' in snippet
    assert f'base_url="{run_gateway.url}"' in snippet
    assert re.search(r"webhook secret: whsec_\S+", printed), printed
    assert f"curl -s -X POST {run_gateway.url}/workflows/" in printed

    # Pasted into a fresh interpreter: exactly what a reader of `make run` would do.
    ran = subprocess.run(
        [sys.executable, "-c", snippet], capture_output=True, text=True, timeout=60
    )
    assert ran.returncode == 0, ran.stderr
    videos = dict(re.findall(r"^scene (\d): (\S+)$", ran.stdout, re.MULTILINE))
    assert sorted(videos) == ["1", "2", "3", "4"], ran.stdout
    first = httpx.get(videos["1"], timeout=10)
    assert first.status_code == 200
    assert first.content[4:8] == b"ftyp"


def test_stopping_the_gateway_stops_its_embedded_fake(run_gateway: ServerProcess) -> None:
    printed = printed_until_listening(run_gateway)
    fake = re.search(r"the fake Segmind at (http://\S+)", printed)
    assert fake is not None, printed
    assert httpx.get(f"{fake[1]}/healthz", timeout=5).status_code == 200

    run_gateway.stop()  # SIGTERM, as a service manager would send it

    assert run_gateway.proc.returncode == 128 + 15, run_gateway.output
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{fake[1]}/healthz", timeout=5)


def test_the_printed_console_address_and_admin_key_log_in(run_gateway: ServerProcess) -> None:
    printed = printed_until_listening(run_gateway)
    console = re.search(r"console: +(http://\S+/admin/ui)$", printed, re.MULTILINE)
    admin_key = re.search(r"admin key: +(\S+)$", printed, re.MULTILINE)
    assert console is not None, printed
    assert admin_key is not None, printed
    assert console[1] == f"{run_gateway.url}/admin/ui"
    same_origin = {"origin": run_gateway.url, "sec-fetch-site": "same-origin"}
    logged_in = httpx.post(f"{console[1]}/login", data={"admin_key": admin_key[1]},
                           headers=same_origin)  # fmt: skip
    assert logged_in.status_code == 303, logged_in.text
    teams = httpx.get(f"{console[1]}/teams", cookies=logged_in.cookies)
    assert teams.status_code == 200
    assert 'data-team="demo"' in teams.text


def test_a_gateway_with_its_fake_gets_longer_to_start_than_its_fake_gets() -> None:
    # Were both deadlines equal, a slow start of the embedded fake would end as our timeout
    # (a flake) rather than as the gateway's own message about its fake.
    argv = [sys.executable, "-m", "proxy", "serve", "--with-fake"]
    assert ready_seconds(argv) > EMBEDDED_READY_SECONDS
    assert ready_seconds(argv) - EMBEDDED_READY_SECONDS >= ready_seconds(argv[:-1])
