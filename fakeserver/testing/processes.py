"""A command run as a server for a test: a free loopback port, its output kept, stopped after.

The server is started with `--port 0` and says where it listens on its first lines; that
address is read back, so no port is picked by us and then lost to another process (two
pytest-xdist workers starting servers at once each get their own). Its output goes to a
file, not a pipe nobody reads (a pipe fills at 64 KiB and blocks a chatty server), and is
quoted whole in any error.

Every handle is a context manager whose exit stops the server's whole process group, however
the block ends; a server still running when Python exits (a handle never stopped, an
interrupted test run) is stopped by an `atexit` hook, so none is left re-parented to PID 1.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx

__all__ = ["LoggedProcess", "ServiceProcess", "end_server", "track"]

READY_SECONDS = 30.0
STOP_SECONDS = 10.0

#: Servers started and not yet stopped, for the `atexit` hook.
_running: set[subprocess.Popen[bytes]] = set()
_running_lock = threading.Lock()


def track(proc: subprocess.Popen[bytes]) -> None:
    """Stop `proc` (a group leader) when Python exits, unless `end_server` has already."""
    with _running_lock:
        _running.add(proc)


@atexit.register
def _stop_left_running() -> None:
    with _running_lock:
        left = list(_running)
    for proc in left:
        end_server(proc)


class StopsOnExit:
    """A handle on what it started, stopped when its `with` block ends, on failure too."""

    def stop(self) -> object:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class LoggedProcess(StopsOnExit):
    """A server process (leading its own group) whose output goes to the file `log`."""

    proc: subprocess.Popen[bytes]
    log: Path
    output: str | None  # everything it printed, once stopped

    def printed(self) -> str:
        """What the server has printed so far (everything, once stopped)."""
        if self.output is not None:
            return self.output
        return self.log.read_bytes().decode(errors="replace")

    def stop(self) -> str:
        """Stop the server and its children (once); returns everything it printed."""
        if self.output is None:
            end_server(self.proc)
            self.output = self.printed()
            self.log.unlink(missing_ok=True)
        return self.output


class ServiceProcess(LoggedProcess):
    """`argv` started in a process group of its own; `url` once `/healthz` answers."""

    def __init__(self, argv: list[str], env: dict[str, str], listening: str) -> None:
        """`listening`: a regex whose group 1 is the URL the server prints once bound."""
        self.argv = argv
        handle, name = tempfile.mkstemp(prefix="segmind-test-", suffix=".log")
        os.close(handle)
        self.log = Path(name)
        with self.log.open("ab") as sink:  # the child keeps its own copy of the descriptor
            # argv is the harness's own command (sys.executable -m ...), never test input.
            self.proc = subprocess.Popen(  # noqa: S603
                argv, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env, process_group=0,  # stop() ends whatever the server started, too
            )  # fmt: skip
        track(self.proc)
        self.output: str | None = None
        try:
            self.url = self._wait_until_ready(re.compile(listening))
        except BaseException:
            self.stop()
            raise

    def _wait_until_ready(self, listening: re.Pattern[str]) -> str:
        # Waiting for a process to bind and answer, not for a job: no clock of a fake moves.
        deadline = time.monotonic() + READY_SECONDS
        url = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self._name} exited at start-up:\n{self.stop()}")
            if url is None and (found := listening.search(self.printed())):
                url = found.group(1)
            if url is not None:
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                        return url
            # Not time.sleep: under mock_segmind(advance_on_sleep=True) that moves a clock.
            threading.Event().wait(0.05)
        raise RuntimeError(
            f"{self._name} did not answer /healthz within {READY_SECONDS:g} s:\n{self.stop()}"
        )

    @property
    def _name(self) -> str:
        return " ".join(self.argv[1:4])


def end_server(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, `STOP_SECONDS` to finish, then SIGKILL; then its whole process group (a
    gateway's embedded fake, were the gateway killed before it could stop it)."""
    with _running_lock:
        _running.discard(proc)
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
