"""The fake upstream, started beside the gateway when there is no Segmind key: the out-of-
the-box `make run`. It runs as its own process (`python -m fakeserver`): the gateway never
imports the fake, so the two cannot share a misreading of the contract.

Its video URLs name its port, and the gateway caches them: a restarted `make run` gives the
fake the port it had before (`serve` remembers it in the store), so cached results stay
downloadable across restarts."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time

import httpx
from pydantic import SecretStr

__all__ = ["EmbeddedFake", "start_fake", "terminate"]

READY_SECONDS = 20.0
LISTENING = re.compile(r"listening on (http://\S+)")  # the fake's first line, once bound


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

    # A context manager too: leaving `with start_fake() as fake:` stops it, however the
    # block ends.
    def __enter__(self) -> EmbeddedFake:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def terminate(process: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM, `grace` seconds to finish (a server drains its connections), then SIGKILL."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def start_fake(
    host: str = "127.0.0.1", extra_args: list[str] | None = None, port: int | None = None
) -> EmbeddedFake:
    """Start the fake with a fresh key on `port` if it can bind it (else on a port it
    picks); return once it answers."""
    key = "fake-upstream-" + secrets.token_hex(12)
    for attempt in (port, 0) if port else (0,):
        fake = _start(host, attempt, key, extra_args or [])
        if fake is not None:
            return fake
    raise RuntimeError(f"the embedded fake could not listen on {host}")


def _start(host: str, port: int, key: str, extra_args: list[str]) -> EmbeddedFake | None:
    """The fake on `port` (0: one it picks and keeps, named in its start-up line: no port
    is guessed here and released for it to bind, which another process could take in
    between); None if it could not bind `port`."""
    argv = [sys.executable, "-m", "fakeserver", "--host", host, "--port", str(port),
            *extra_args]  # fmt: skip
    # The key goes by environment, not argv, where anyone on the machine could read it (ps).
    env = {**os.environ, "FAKESERVER_API_KEYS": json.dumps([key])}
    with tempfile.TemporaryFile() as out:
        # Our own interpreter running our own module; no outside input reaches argv[0:3].
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.DEVNULL, env=env)  # noqa: S603
        deadline = time.monotonic() + READY_SECONDS
        url = None
        while time.monotonic() < deadline:
            if process.poll() is not None:
                if port and url is None:
                    return None  # its port is taken: the caller tries another
                raise RuntimeError(f"the embedded fake exited with code {process.returncode}")
            if url is None:
                out.seek(0)
                bound = LISTENING.search(out.read().decode(errors="replace"))
                url = bound and bound[1]
            try:
                if url and httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                    return EmbeddedFake(url, int(url.rsplit(":", 1)[1]), key, process)
            except httpx.TransportError:
                pass
            time.sleep(0.05)
    terminate(process, grace=5.0)
    raise RuntimeError(f"the embedded fake did not answer within {READY_SECONDS:.0f} s")
