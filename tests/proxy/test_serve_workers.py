"""`python -m proxy serve --workers N`: N processes on one port and one store, each its own
instance (heartbeat, leases) under the parent's id, all answering; SIGTERM to the parent
alone stops every worker gracefully and leaves no process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from tests.receiver import eventually
from tests.servers import start_server

ADMIN_KEY = "test-admin-key-workers-5b7e2c"


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_two_workers_share_the_port_and_the_store_and_stop_together(tmp_path: Path) -> None:
    env = {"PROXY_ADMIN_KEY": ADMIN_KEY}
    server = start_server(
        "proxy", "--workers", "2", "--db", str(tmp_path / "gateway.sqlite"),
        "--with-fake", "--instance-id", "gw", env=env,
    )  # fmt: skip
    try:
        admin = {"x-admin-key": ADMIN_KEY}

        def instances() -> list[str]:
            answer = httpx.get(f"{server.url}/admin/instances", headers=admin, timeout=10)
            return sorted(i["id"] for i in answer.json()["instances"] if i["alive"])

        eventually(lambda: instances() == ["gw/1", "gw/2"], 30, "both workers beat")
        # The kernel hands connections to either worker: both answer, over fresh connections.
        served = {
            httpx.get(f"{server.url}/healthz", headers={"connection": "close"}).status_code
            for _ in range(20)
        }
        assert served == {200}
        printed = server.printed()
        assert "(2 workers)" in printed
        assert printed.count("gateway listening on") == 1  # the banner, once

        server.proc.send_signal(signal.SIGTERM)  # the parent only, as a service manager does
        assert server.proc.wait(timeout=60) == 0
        eventually(lambda: not _group_alive(server.proc.pid), 10, "every worker has stopped")
    finally:
        server.stop()


def test_workers_refuse_a_virtual_clock(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "proxy", "serve", "--workers", "2", "--clock", "virtual",
         "--port", "0", "--db", str(tmp_path / "g.sqlite"), "--with-fake"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "system clock" in done.stderr
