"""A real S3 API server on loopback for the output store's tests: moto's server mode
(`moto[server]`, in the test extra), started as a process of its own on a port it picks.

Where moto cannot be started the test skips, saying why; but not when `CI` is set: there
it fails, so CI can never pass by skipping the S3 backend.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from fakeserver.testing.processes import LoggedProcess

__all__ = ["MotoServer", "moto_server", "s3_environment"]

READY_SECONDS = 30.0
RUNNING = re.compile(r"Running on (http://127\.0\.0\.1:\d+)")
REGION = "us-east-1"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: the S3 backend's tests must run, not skip)")
    pytest.skip(reason)


@dataclass
class MotoServer(LoggedProcess):
    url: str
    proc: subprocess.Popen[bytes]
    log: Path
    output: str | None = None

    def bucket(self) -> str:
        """A new, empty bucket of this server's (S3's CreateBucket: an unsigned PUT is
        accepted by moto)."""
        name = f"outputs-{secrets.token_hex(6)}"
        httpx.put(f"{self.url}/{name}", timeout=10.0).raise_for_status()
        return name


@contextlib.contextmanager
def moto_server() -> Iterator[MotoServer]:
    if importlib.util.find_spec("moto") is None or importlib.util.find_spec("flask") is None:
        _unavailable("moto[server] is not installed (pip install -e '.[test]')")
    handle, name = tempfile.mkstemp(prefix="moto-", suffix=".log")
    os.close(handle)
    log = Path(name)
    argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", "0"]
    with log.open("ab") as sink:
        proc = subprocess.Popen(
            argv, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            process_group=0,
        )  # fmt: skip
    server = MotoServer("", proc, log)
    try:
        deadline = time.monotonic() + READY_SECONDS
        while not server.url:
            if proc.poll() is not None or time.monotonic() > deadline:
                _unavailable(f"moto's server did not start:\n{server.stop()}")
            if found := RUNNING.search(server.printed()):
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(found[1], timeout=1.0).status_code == 200:
                        server.url = found[1]
                        break
            # Waiting for a process to bind, not for a job: no clock is involved.
            threading.Event().wait(0.05)
        yield server
    finally:
        server.stop()


def s3_environment(server: MotoServer) -> dict[str, str]:
    """The AWS_* variables a gateway reads to reach this server (moto accepts any key)."""
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": REGION,
        "AWS_ENDPOINT_URL_S3": server.url,
    }
