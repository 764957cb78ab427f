"""Real server processes for tests: uvicorn on a free loopback port, stopped afterwards."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from fakeserver.testing.processes import LoggedProcess

__all__ = ["ServerProcess", "free_port", "launch", "start_server"]

READY_SECONDS = 20.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class ServerProcess(LoggedProcess):
    url: str
    port: int
    proc: subprocess.Popen[bytes]
    # A file, not a pipe: a pipe nobody reads fills at 64 KiB and blocks a chatty server.
    log: Path
    argv: list[str] = field(default_factory=list)
    output: str | None = None


def start_server(module: str, *args: str, env: dict[str, str] | None = None) -> ServerProcess:
    """`python -m <module> --host 127.0.0.1 --port <free> ...`, returned once /healthz answers."""
    port = free_port()
    argv = [sys.executable, "-m", module, "--host", "127.0.0.1", "--port", str(port), *args]
    return launch(argv, port, env=env, name=module)


def launch(
    argv: list[str],
    port: int,
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    name: str = "server",
) -> ServerProcess:
    """Start `argv` (a server that listens on loopback `port`), returned once /healthz
    answers; for commands whose flags are given whole, as a README writes them."""
    handle, log_name = tempfile.mkstemp(prefix=f"{name}-", suffix=".log")
    os.close(handle)
    log = Path(log_name)
    with log.open("ab") as sink:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(
            argv,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            process_group=0,  # so `stop` can end whatever the server started, too
        )
    server = ServerProcess(f"http://127.0.0.1:{port}", port, proc, log, argv)
    deadline = time.monotonic() + READY_SECONDS
    # Waiting for a process to listen, not for a job: the clock of the fake is not involved.
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited early:\n{server.stop()}")
        try:
            if httpx.get(f"{server.url}/healthz", timeout=1.0).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    output = server.stop()
    raise RuntimeError(f"{name} did not answer /healthz in {READY_SECONDS} s:\n{output}")
