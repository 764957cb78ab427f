"""The fake upstream, started beside the gateway when there is no Segmind key: the out-of-
the-box `make run`. It runs as its own process (`python -m fakeserver`): the gateway never
imports the fake, so the two cannot share a misreading of the contract.

Its video URLs name its port, and the gateway caches them: a restarted `make run` gives the
fake the port it had before (`serve` remembers it in the store), so cached results stay
downloadable across restarts."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time

import httpx
from pydantic import SecretStr

__all__ = ["EmbeddedFake", "start_fake", "terminate"]

READY_SECONDS = 20.0


class EmbeddedFake:
    def __init__(self, url: str, port: int, key: str, process: subprocess.Popen[bytes]) -> None:
        self.url = url
        self.port = port
        self.key = key
        self.process = process

    def key_secret(self) -> SecretStr:
        return SecretStr(self.key)

    def stop(self) -> None:
        terminate(self.process, grace=5.0)


def terminate(process: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM, `grace` seconds to finish (a server drains its connections), then SIGKILL."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def _free_port(host: str, wanted: int = 0) -> int:
    """`wanted` if it can be bound now, else a free port the system picks."""
    for port in (wanted, 0) if wanted else (0,):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds it
            try:
                s.bind((host, port))
            except OSError:
                continue
            found: int = s.getsockname()[1]
            return found
    raise OSError(f"no free port on {host}")


def start_fake(
    host: str = "127.0.0.1", extra_args: list[str] | None = None, port: int | None = None
) -> EmbeddedFake:
    """Start the fake with a fresh key on `port` if it is free (else on a free port);
    return once it answers."""
    port = _free_port(host, port or 0)
    key = "fake-upstream-" + secrets.token_hex(12)
    argv = [sys.executable, "-m", "fakeserver", "--host", host, "--port", str(port),
            *(extra_args or [])]  # fmt: skip
    # The key goes by environment, not argv, where anyone on the machine could read it (ps).
    env = {**os.environ, "FAKESERVER_API_KEYS": json.dumps([key])}
    # Our own interpreter running our own module; no outside input reaches argv[0:3].
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, env=env)  # noqa: S603
    fake = EmbeddedFake(f"http://{host}:{port}", port, key, process)
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the embedded fake exited with code {process.returncode}")
        try:
            if httpx.get(f"{fake.url}/healthz", timeout=1.0).status_code == 200:
                return fake
        except httpx.TransportError:
            time.sleep(0.05)
    fake.stop()
    raise RuntimeError(f"the embedded fake did not answer within {READY_SECONDS:.0f} s")
