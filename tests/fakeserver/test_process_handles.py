"""Every harness handle that starts a process stops it: leaving its `with` block, however the
block ends, and at the latest when Python exits. Each case runs in a Python of its own, which
prints the process ids it started and then ends; the test then checks that no process of
those groups is left (none re-parented to PID 1)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap

import pytest

CASES = {
    "fake, with, failing": """
        with FakeServer() as fake:
            print(fake.process.proc.pid, flush=True)
            raise RuntimeError("the test failed")
    """,
    "fake, never stopped": """
        fake = FakeServer()
        print(fake.process.proc.pid, flush=True)
    """,
    "gateway and fake, with, failing": """
        with FakeServer() as fake, Gateway(fake) as gateway:
            print(fake.process.proc.pid, gateway.process.proc.pid, flush=True)
            raise RuntimeError("the test failed")
    """,
    "gateway and fake, never stopped": """
        fake = FakeServer()
        gateway = Gateway(fake)
        print(fake.process.proc.pid, gateway.process.proc.pid, flush=True)
    """,
    "the gateway's embedded fake, with, failing": """
        with start_fake() as fake:
            print(fake.process.pid, flush=True)
            raise RuntimeError("the gateway failed to start")
    """,
}
PRELUDE = """
from fakeserver.testing.gateway import Gateway
from fakeserver.testing.server import FakeServer
from proxy.cli.embedded import start_fake
"""


def group_alive(pid: int) -> bool:
    """The process, or any process of the group it leads, is still there."""
    for signal_ in (os.killpg, os.kill):
        try:
            signal_(pid, 0)
        except ProcessLookupError:
            continue
        return True
    return False


@pytest.mark.parametrize("case", CASES)
def test_no_process_outlives_its_handle_or_python(case: str) -> None:
    code = PRELUDE + textwrap.dedent(CASES[case])
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    pids = [int(pid) for pid in done.stdout.split()]
    assert pids, done.stderr
    try:
        assert [pid for pid in pids if group_alive(pid)] == [], done.stderr
    finally:
        for pid in pids:  # were the test to fail, leave nothing behind it either
            if group_alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, 9)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, 9)
