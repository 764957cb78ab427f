"""A test's server is stopped with everything it started: `ServerProcess.stop` ends the
server's process group, so a gateway killed before it could stop its embedded fake
(`--with-fake`) still leaves no fake running after the test."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from tests.processes import alive, descendants
from tests.servers import start_server


def test_stopping_a_killed_gateway_also_ends_its_embedded_fake(tmp_path: Path) -> None:
    server = start_server("proxy", "--db", str(tmp_path / "gateway.sqlite"), "--with-fake")
    children: list[int] = []
    try:
        children = descendants(server.proc.pid)
        assert children, "the gateway started no fake"
        os.kill(server.proc.pid, signal.SIGKILL)  # no chance to stop its fake
        server.stop()
        for pid in children:  # the kernel tears a killed process down soon, not at once
            deadline = time.monotonic() + 10
            while alive(pid) and time.monotonic() < deadline:
                time.sleep(0.02)
        assert [pid for pid in children if alive(pid)] == []
    finally:
        server.stop()
        for pid in children:  # were the assertion to fail: still leave nothing running
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
