"""`python -m proxy serve --workers N`: N gateway processes on one port and one store, as
uvicorn's and gunicorn's users expect.

The parent binds the port, does everything done once (the embedded fake, the demo banner),
then forks the workers after it: each inherits the listening socket, so the kernel spreads
connections over them, and each builds its own app, under its own instance id (the
parent's, plus `/1`, `/2`...), so it heartbeats, leases and polls runs as any replica
does. The parent only supervises: SIGTERM or SIGINT to it reaches every worker, which stops
gracefully; a worker that dies takes the others down with it (a half-size gateway is
worse than a restart by the service manager). Fork, not spawn: the app and its settings
(secrets included) stay in memory, never pickled or put in an environment.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from types import FrameType

from proxy.core.config import ProxySettings

__all__ = ["serve_workers", "worker_settings"]

STOP_SECONDS = 30.0  # a worker's graceful stop, then SIGKILL
# How a worker ends when asked to: served and stopped, Ctrl-C, SIGTERM.
CLEAN = (0, 130, 128 + signal.SIGTERM, -signal.SIGINT, -signal.SIGTERM)


def worker_settings(settings: ProxySettings, number: int) -> ProxySettings:
    """Worker `number`'s settings: its own instance id under the parent's."""
    return settings.model_copy(update={"instance_id": f"{settings.instance}/{number}"})


def serve_workers(
    settings: ProxySettings,
    listener: socket.socket,
    workers: int,
    serve: Callable[[ProxySettings, socket.socket], int],
) -> int:
    """Fork `workers` processes each running `serve(its settings, listener)`; wait for
    them. Returns 0 when all stopped cleanly, else the first failure's code."""
    children: dict[int, int] = {}  # pid -> worker number
    for number in range(1, workers + 1):
        pid = os.fork()
        if pid == 0:  # the worker: serve, then leave without the parent's clean-up
            code = 1
            try:
                code = serve(worker_settings(settings, number), listener)
            except SystemExit as exited:  # SIGTERM, after uvicorn's graceful shutdown
                code = exited.code if isinstance(exited.code, int) else 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        children[pid] = number

    stopped: list[int] = []

    def forward(signum: int, frame: FrameType | None) -> None:
        # Always SIGTERM: after Ctrl-C the workers have their own SIGINT from the terminal,
        # and a second SIGINT would make uvicorn skip its graceful shutdown.
        stopped.append(signum)
        _signal_all(children, signal.SIGTERM)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    code = 0
    try:
        while children:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            children.pop(pid, None)
            exit_code = os.waitstatus_to_exitcode(status)
            if exit_code not in CLEAN and code == 0:
                code = exit_code if exit_code > 0 else 1
                print(f"gateway worker (pid {pid}) ended with {exit_code}: stopping the others",
                      file=sys.stderr, flush=True)  # fmt: skip
                _signal_all(children, signal.SIGTERM)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        _reap(children)
    if code == 0 and stopped and stopped[0] == signal.SIGINT:
        return 130  # as one process answers Ctrl-C
    return code


def _signal_all(children: dict[int, int], signum: int) -> None:
    for pid in list(children):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


def _reap(children: dict[int, int]) -> None:
    """Whatever is still running after the loop (an exception in the parent): stopped."""
    deadline = time.monotonic() + STOP_SECONDS
    _signal_all(children, signal.SIGTERM)
    while children and time.monotonic() < deadline:
        for pid in list(children):
            with contextlib.suppress(ChildProcessError):
                if os.waitpid(pid, os.WNOHANG)[0]:
                    children.pop(pid)
        time.sleep(0.05)
    _signal_all(children, signal.SIGKILL)
    for pid in list(children):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
