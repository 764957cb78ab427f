"""`python -m proxy demo` (`make demo`): one complete four-scene generation, start to finish.

It starts the gateway (`python -m proxy serve --with-fake`, so the time-scaled fake Segmind
runs beside it) on loopback with a throwaway store, makes a team with a webhook secret,
listens for that team's webhook on loopback, submits one job with the project's SDK,
shows its progress, checks that the webhook arrives with a valid signature, downloads the
four videos and stops everything, also on Ctrl-C, SIGTERM or SIGHUP (the gateway and its
fake share the demo's process group, so a signal to the group reaches them all). Nothing
leaves the machine, and the upstream key (the fake's, made up by the gateway process)
never reaches this process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import queue
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import IO

import httpx
from rich.console import Console

# The CLI's progress display (a live panel on a terminal, a line per change elsewhere):
# the demo shows what `python -m client generate` shows, rather than a look of its own.
from client import (
    DEFAULT_POLL_INTERVAL,
    CharacterVideoInputs,
    Client,
    InvalidWebhook,
    JobResult,
    Progress,
    ProgressDisplay,
    SegmindError,
    WebhookEvent,
    verify_webhook,
)
from proxy.cli.embedded import terminate
from proxy.core.config import ProxySettings
from proxy.db import StoreError
from proxy.services.accounts import create_team
from proxy.store import open_store
from proxy.store.backends import location

__all__ = ["add_arguments", "run_demo"]

DEFAULT_TIME_SCALE = 0.01  # ~7 s runs instead of ~11 min
DEFAULT_OUT = Path("demo-videos")
HOST = "127.0.0.1"
READY_SECONDS = 30.0  # the gateway starts the fake first, then itself
LONGEST_RUN_SECONDS = 1800.0  # the fake's --duration-max: a run never takes longer
# Polls are answered from the gateway's store, so polling often costs Segmind nothing; the
# floor keeps a fast demo well inside the team's default 600 polls a minute.
MIN_POLL_INTERVAL = 0.25
LOG_TAIL_LINES = 20
# Settings a developer's shell may carry: the demo must run against the fake, never against
# real Segmind with a real key, and no local override may steer it elsewhere.
_SCRUBBED_ENV_PREFIXES = ("SEGMIND_", "PROXY_")


class DemoError(Exception):
    """A step of the demo went wrong; the message says which and what to do."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    scale = DEFAULT_TIME_SCALE
    add("--time-scale", type=float, default=scale,
        help=f"the fake's run durations times this (default {scale}: ~7 s runs)")  # fmt: skip
    add("--out", type=Path, default=DEFAULT_OUT,
        help=f"directory for the four videos (default ./{DEFAULT_OUT}/)")  # fmt: skip
    add("--port", type=int, default=0, help="the gateway's port (default: a free one)")
    add("--receiver-port", type=int, default=0,
        help="the webhook receiver's port (default: a free one)")  # fmt: skip
    add("--db", type=Path, help="the gateway's SQLite store (default: a temporary file)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


# -- the webhook receiver ----------------------------------------------------------------


@dataclass(frozen=True)
class Arrival:
    """One delivery as the receiver saw it: verified (`event`) or refused (`error`)."""

    arrived: float  # time.time() when the body was read
    event: WebhookEvent | None
    error: str | None


class Receiver:
    """A team's webhook endpoint on loopback: verifies each delivery with the team's
    secret, answers 204 (or 400 when the signature is wrong) and queues what it saw."""

    path = "/hooks/segmind"

    def __init__(self, secret: str, port: int = 0) -> None:
        arrivals: queue.Queue[Arrival] = queue.Queue()
        self.arrivals = arrivals

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                arrived = time.time()
                try:
                    event = verify_webhook(body, dict(self.headers.items()), secret)
                except InvalidWebhook as exc:
                    arrivals.put(Arrival(arrived, None, str(exc)))
                    self.send_response(400)
                else:
                    arrivals.put(Arrival(arrived, event, None))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                """Quiet: the demo reports deliveries itself."""

        try:
            self.server = ThreadingHTTPServer((HOST, port), Handler)
        except OSError as exc:
            raise DemoError(
                f"the webhook receiver cannot listen on {HOST}:{port} ({exc.strerror}); "
                "pick another --receiver-port or leave it out for a free one"
            ) from exc
        self.url = f"http://{HOST}:{self.server.server_address[1]}{self.path}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    def next(self, timeout: float) -> Arrival:
        try:
            return self.arrivals.get(timeout=timeout)
        except queue.Empty:
            raise DemoError(
                f"no webhook reached {self.url} within {timeout:.0f} s of the job ending; "
                "the gateway log below says why (look for 'webhook')"
            ) from None


# -- the gateway process -----------------------------------------------------------------


class GatewayProcess:
    """`python -m proxy serve --with-fake` on loopback, its output in a log file."""

    def __init__(self, port: int, db: Path, time_scale: float, log: Path) -> None:
        self.url = f"http://{HOST}:{port}"
        self.log = log
        argv = [sys.executable, "-m", "proxy", "serve", "--host", HOST, "--port", str(port),
                "--db", str(db), "--with-fake", "--fake-args", f"--time-scale {time_scale}",
                "--log-level", "WARNING"]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUBBED_ENV_PREFIXES)}
        with log.open("wb") as sink:
            # Our own interpreter and module; the only values are numbers and our temp paths.
            # In the demo's own process group, not a session of its own: whatever stops the
            # group (Ctrl-C at a terminal, `kill -- -PGID`, a test's or CI's teardown, even
            # SIGKILL) stops the gateway and its fake with it, so none is left running.
            self.process = subprocess.Popen(  # noqa: S603
                argv, stdout=sink, stderr=subprocess.STDOUT, env=env
            )

    def wait_ready(self, seconds: float = READY_SECONDS) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise DemoError(
                    f"the gateway exited with code {self.process.returncode} before answering "
                    "(its log is below; a port in use? leave --port out for a free one)"
                )
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)  # waiting for a process to listen
        raise DemoError(f"the gateway did not answer {self.url}/healthz within {seconds:.0f} s")

    def stop(self) -> None:
        terminate(self.process, grace=10.0)  # the gateway stops its fake on the way out

    def __enter__(self) -> GatewayProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


# -- the run -----------------------------------------------------------------------------


def _in_segmind_time(progress: Progress, scale: float) -> Progress:
    """Progress as a real run would show it: the display's bar measures ~674 s runs."""
    return dataclasses.replace(
        progress,
        elapsed=progress.elapsed / scale,
        state_seconds={name: s / scale for name, s in progress.state_seconds.items()},
    )


def _latency_ms(event: WebhookEvent, arrived: float) -> str:
    """From the moment the gateway recorded the end (the body's timestamp) to arrival."""
    if event.timestamp is None:
        return "?"
    try:
        ended = datetime.fromisoformat(event.timestamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return "?"
    return f"{max(arrived - ended, 0.0) * 1000:.0f} ms"


def _generate(
    args: argparse.Namespace, gateway: GatewayProcess, key: str, receiver: Receiver, out: IO[str]
) -> None:
    console = Console(file=out, highlight=False, soft_wrap=True)
    say = console.print
    inputs = CharacterVideoInputs()  # the product page's photo and four scenes
    scale = args.time_scale
    poll_interval = max(DEFAULT_POLL_INTERVAL * scale, MIN_POLL_INTERVAL)
    with Client(api_key=key, base_url=gateway.url) as client:
        started = time.time()
        handle = client.submit(inputs, webhook_url=receiver.url)
        say(f"submitted job {handle.request_id} ({handle.status}), webhook to {receiver.url}")
        for n in range(1, 5):
            say(f"  scene {n}: {getattr(inputs, f'scene_{n}')}")
        say(f"progress, in Segmind time (this fake runs {1 / scale:g}x faster):")
        with ProgressDisplay(console, handle.request_id) as display:
            result: JobResult = client.wait(
                handle,
                poll_interval=poll_interval,
                timeout=LONGEST_RUN_SECONDS * scale + 60,
                on_update=lambda p: display.update(_in_segmind_time(p, scale)),
            )
        waited = time.time() - started
        say(f"job {result.status} after {waited:.1f} s, {len(result.videos)} videos")

        arrival = receiver.next(timeout=30.0)
        if arrival.event is None:
            raise DemoError(f"a webhook arrived but did not verify: {arrival.error}")
        event = arrival.event
        say(
            f"webhook {event.type} for {event.result.request_id} arrived verified "
            f"(Standard Webhooks signature, the team's secret): "
            f"{arrival.arrived - started:.1f} s after submit, "
            f"{_latency_ms(event, arrival.arrived)} after the gateway saw the run end"
        )
        if event.result.request_id != handle.request_id:
            raise DemoError(f"the webhook names {event.result.request_id}, not our job")

        files = client.download(result, args.out)
    say(f"saved {len(files)} videos:")
    for path in files.values():
        say(f"  {path.resolve()}  ({path.stat().st_size:,} bytes)")
    if len(files) != 4:
        raise DemoError(f"expected four videos, got {len(files)}: {json.dumps(result.raw_output)}")


#: Signals that ask the demo to stop: each is turned into the KeyboardInterrupt Ctrl-C
#: raises, so every one of them stops the gateway and the fake on the way out.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class _Stopped(KeyboardInterrupt):
    """A stop signal arrived; the exit code is 128 + its number, as a shell reports it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _stop_signals_interrupt() -> Iterator[None]:
    """SIGTERM (`kill PID`) and SIGHUP (the terminal closed) stop the demo as Ctrl-C does.

    A signal the demo was started with ignored stays ignored: a shell starts a background
    job (`python -m proxy demo &` in a script) with SIGINT ignored, `nohup` with SIGHUP
    ignored, and they asked for that. SIGTERM is always honoured, so such a demo can still
    be stopped cleanly. The first stop signal interrupts; later ones are ignored while the
    gateway and the fake are stopped (bounded by `GatewayProcess.stop`), so a second
    Ctrl-C or a group-wide SIGTERM cannot cut the clean-up short and leave them running.
    Only the main thread may set handlers; elsewhere nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    honoured = [
        signum
        for signum, handler in previous.items()
        if signum == signal.SIGTERM or handler is not signal.SIG_IGN
    ]

    def interrupt(signum: int, frame: FrameType | None) -> None:
        for each in honoured:
            signal.signal(each, signal.SIG_IGN)  # from now on: stopping already
        raise _Stopped(signum)

    for signum in honoured:
        signal.signal(signum, interrupt)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            if handler is not None:  # None: set outside Python, so nothing to restore
                signal.signal(signum, handler)


def run_demo(args: argparse.Namespace, out: IO[str] | None = None) -> int:
    """Run the demo; 0 on success, 1 when a step failed, 128 + the signal when stopped
    (130 for Ctrl-C, 143 for SIGTERM)."""
    sink = out or sys.stdout

    def say(line: str) -> None:
        print(line, file=sink, flush=True)

    if not args.time_scale > 0:
        print(f"demo: --time-scale must be above 0, got {args.time_scale}", file=sys.stderr)
        return 2
    started = time.monotonic()
    gateway: GatewayProcess | None = None
    with _stop_signals_interrupt(), tempfile.TemporaryDirectory(prefix="gateway-demo-") as tmp:
        try:
            db = args.db or Path(tmp) / "gateway.sqlite"
            name = f"demo-{secrets.token_hex(3)}"  # a fresh team: its own budget and cache
            try:
                store = open_store(str(db))
                try:
                    limits = ProxySettings().default_limits
                    team = asyncio.run(create_team(store, name, limits, time.time()))
                finally:
                    store.close()
            except StoreError as exc:
                raise DemoError(
                    f"cannot use {location(str(db))} as the gateway's store ({exc})"
                ) from exc
            assert team.webhook_secret is not None  # a new team always gets one
            port = args.port or _free_port()
            say(
                f"gateway on http://{HOST}:{port} with the fake Segmind beside it, time scale "
                f"{args.time_scale:g}; store {location(str(db))}{'' if args.db else ' (temporary)'}"
            )
            say(f"team {name!r} created, with a webhook secret")
            gateway = GatewayProcess(port, db, args.time_scale, Path(tmp) / "gateway.log")
            with Receiver(team.webhook_secret, args.receiver_port) as receiver:
                gateway.wait_ready()
                say(f"webhook receiver listening on {receiver.url}")
                _generate(args, gateway, team.key, receiver, sink)
        except KeyboardInterrupt as exc:
            signum = exc.signum if isinstance(exc, _Stopped) else signal.SIGINT
            name = signal.Signals(signum).name
            print(f"\ninterrupted ({name}): stopping the gateway and the fake", file=sys.stderr)
            return 128 + signum
        except (DemoError, SegmindError, OSError) as exc:
            print(f"demo failed: {exc}", file=sys.stderr)
            if gateway is not None and (tail := gateway.tail()):
                print(f"the gateway's last log lines:\n{tail}", file=sys.stderr)
            return 1
        finally:
            if gateway is not None:
                gateway.stop()
    say(f"done in {time.monotonic() - started:.1f} s; the gateway and the fake are stopped")
    return 0
