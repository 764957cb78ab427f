"""Real server processes for tests: uvicorn on a loopback port the system picks, stopped
afterwards."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from fakeserver.testing.processes import LoggedProcess, track
from proxy.cli.embedded import READY_SECONDS as EMBEDDED_READY_SECONDS

__all__ = ["ServerProcess", "launch", "refused_port", "start_server"]

READY_SECONDS = 20.0


def ready_seconds(argv: list[str]) -> float:
    """How long a server gets to answer: a gateway started `--with-fake` first waits up to
    the embedded fake's own deadline, so ours must outlast that one (were both equal, a slow
    fake start would be reported as our timeout instead of the gateway's own message)."""
    return READY_SECONDS + (EMBEDDED_READY_SECONDS if "--with-fake" in argv else 0.0)


# The line both servers print once bound: "gateway listening on http://127.0.0.1:PORT",
# "fake Segmind listening on ...".
LISTENING = re.compile(r"listening on (http://[^\s:]+:(\d+))")


@contextlib.contextmanager
def refused_port() -> Iterator[int]:
    """A loopback port that refuses connections while the block runs: bound and never
    listened on, so nothing else can take it meanwhile (a port merely found free could be)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        yield port


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
    """`python -m <module> --host 127.0.0.1 --port 0 ...`, returned once /healthz answers."""
    argv = [sys.executable, "-m", module, "--host", "127.0.0.1", "--port", "0", *args]
    return launch(argv, env={**os.environ, **(env or {})})


def launch(
    argv: list[str], *, env: dict[str, str], cwd: Path | None = None, name: str | None = None
) -> ServerProcess:
    """Start a server (`python -m proxy serve` or `python -m fakeserver`, whatever its
    --port) and return it once /healthz answers, at the address its start-up line names.

    With --port 0 the server binds a port the system picks and keeps it: no port is
    guessed here and released before the server binds it, which another process could
    take in between. `name` prefixes its log file (default: the module run)."""
    handle, log_name = tempfile.mkstemp(prefix=f"{name or Path(argv[2]).name}-", suffix=".log")
    os.close(handle)
    log = Path(log_name)
    with log.open("ab") as sink:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(
            argv,
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            process_group=0,  # so `stop` can end whatever the server started, too
        )
    track(proc)  # stopped at exit, were its test to forget it
    server = ServerProcess("", 0, proc, log, argv)
    ready = ready_seconds(argv)
    deadline = time.monotonic() + ready
    # Waiting for a process to listen, not for a job: the clock of the fake is not involved.
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{argv[2:4]} exited early:\n{server.stop()}")
        if not server.url and (bound := LISTENING.search(server.printed())):
            server.url, server.port = bound[1], int(bound[2])
        try:
            if server.url and httpx.get(f"{server.url}/healthz", timeout=1.0).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    output = server.stop()
    raise RuntimeError(f"{argv[2:4]} did not answer /healthz in {ready:g} s:\n{output}")
