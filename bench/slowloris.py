"""Benchmark: half-open connections (slowloris) against the gateway, and a normal client.

    .venv/bin/python bench/slowloris.py            # 300 connections, a 30 s window
    .venv/bin/python bench/slowloris.py --quick    # 60 connections, a 12 s window

The gateway runs as a real process (`python -m proxy serve`, a fresh SQLite store in a
temporary directory, its default connection settings unless `--header-timeout` says
otherwise; no upstream call is made). A team is made over the admin API. Then:

1. idle: a normal client (its own loopback address, 127.0.0.2) makes sequential
   `GET /v1/get-user-credits` requests with the team key, each on a new connection, and
   the latency to the full answer is recorded;
2. attack: N sockets, spread over source addresses 127.0.1.x (50 to an address, below the
   per-client cap, so the head deadline and not the cap is what is measured), each send a
   partial request head (`POST /workflows/x HTTP/1.1\r\nHost: a\r\n`) and then one header
   byte every `--drip` seconds. For `--window` seconds the script records when the server
   closes each one (recv returns b"" or the connection is reset; a 408 before it is
   counted too);
3. while at least 90% of the attack sockets are still open, the normal client repeats its
   requests: how many are served, and their median latency as a ratio to the idle one.

Goal (issue 10, item 7): at least 90% of 300 half-open connections closed within 30 s,
while a normal client is still served. A benchmark, not a test: it exits 0 whether or not
the goal is met, 2 when its run is invalid (the gateway did not start or died, or the
attack sockets could not be opened). `measure(quick)` returns the figures as a dict for
bench/hardening.py.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import resource
import selectors
import signal
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _load import HOST, Server, free_port, start_server, stop_server, wait_until_answers

ROOT = Path(__file__).resolve().parent.parent
ADMIN_KEY = "bench-admin-key-slowloris-7c1e4b9a"
PARTIAL_HEAD = b"POST /workflows/x HTTP/1.1\r\nHost: a\r\n"
NORMAL_SOURCE = "127.0.0.2"
PER_ADDRESS = 50  # attack sockets from one source address: below max_connections_per_client
IO_TIMEOUT = 10.0  # seconds any one normal request may take before it counts as not served
WARMUP = 10  # normal requests made, and not counted, before the idle ones
STILL_OPEN = 0.9  # the normal client measures "during the attack" while this share is open


@dataclass
class Attack:
    opened_at: list[float] = field(default_factory=list)
    closed_at: dict[int, float] = field(default_factory=dict)
    answered: int = 0  # sockets that got an answer (408) before the close
    open_failures: int = 0

    def still_open(self) -> int:
        return len(self.opened_at) - len(self.closed_at)


def _gateway(db: str, header_timeout: float | None) -> Server:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROXY_", "SEGMIND_"))}
    env.update(
        SEGMIND_API_KEY="bench-upstream-key-never-used",
        PROXY_ADMIN_KEY=ADMIN_KEY,
        PROXY_LOG_LEVEL="WARNING",  # one access line per normal request would be noise
    )
    if header_timeout is not None:
        env["PROXY_HEADER_TIMEOUT"] = str(header_timeout)
    argv = [sys.executable, "-m", "proxy", "serve", "--host", HOST, "--port", str(port),
            "--db", db, "--upstream-url", "http://127.0.0.1:9"]  # fmt: skip
    server = start_server("gateway", argv, port, cwd=str(ROOT), env=env)
    wait_until_answers(server, "/healthz")
    return server


def _http(port: int, raw: bytes, source: str) -> tuple[int, bytes]:
    """One request on a new connection (Connection: close); the status and the body."""
    with socket.create_connection((HOST, port), IO_TIMEOUT, (source, 0)) as s:
        s.settimeout(IO_TIMEOUT)
        s.sendall(raw)
        data = b""
        for _ in range(1000):  # bounded: these answers are a few hundred bytes
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    if not data.startswith(b"HTTP/1.1 "):
        raise OSError(f"not an HTTP answer: {data[:40]!r}")
    return int(data[9:12]), data.partition(b"\r\n\r\n")[2]


def _make_team(port: int) -> str:
    body = json.dumps({"name": "bench"}).encode()
    raw = (
        f"POST /admin/teams HTTP/1.1\r\nHost: {HOST}\r\nX-Admin-Key: {ADMIN_KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + body
    status, answer = _http(port, raw, NORMAL_SOURCE)
    if status != 201:
        raise RuntimeError(f"could not make a team: {status} {answer[:200]!r}")
    key: str = json.loads(answer)["api_key"]
    return key


def _normal_request(port: int, key: str) -> float | None:
    """Seconds to a full 200 answer to a credits read (a store lookup), or None."""
    raw = (
        f"GET /v1/get-user-credits HTTP/1.1\r\nHost: {HOST}\r\nx-api-key: {key}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    start = time.perf_counter()
    try:
        status, _ = _http(port, raw, NORMAL_SOURCE)
    except OSError:
        return None
    return time.perf_counter() - start if status == 200 else None


def _open_attack(port: int, count: int, attack: Attack) -> dict[int, socket.socket]:
    socks: dict[int, socket.socket] = {}
    for i in range(count):
        source = f"127.0.1.{1 + i // PER_ADDRESS}"
        try:
            s = socket.create_connection((HOST, port), IO_TIMEOUT, (source, 0))
            s.sendall(PARTIAL_HEAD)
        except OSError:
            attack.open_failures += 1
            continue
        s.setblocking(False)
        socks[len(attack.opened_at)] = s
        attack.opened_at.append(time.monotonic())
    return socks


def _drive_attack(
    socks: dict[int, socket.socket], attack: Attack, window: float, drip: float
) -> None:
    """Until `window` seconds after the last open (or every socket is closed): read what
    the server sends, and drip one header byte into each open socket every `drip` s."""
    selector = selectors.DefaultSelector()
    for i, s in socks.items():
        selector.register(s, selectors.EVENT_READ, i)
    end = (attack.opened_at[-1] if attack.opened_at else time.monotonic()) + window
    next_drip = time.monotonic() + drip
    got_answer: set[int] = set()

    def closed(i: int) -> None:
        if i not in attack.closed_at:
            attack.closed_at[i] = time.monotonic()
            selector.unregister(socks[i])
            socks[i].close()

    while attack.still_open() and time.monotonic() < end:
        now = time.monotonic()
        for key, _ in selector.select(timeout=max(0.0, min(next_drip, end) - now)):
            i = key.data
            try:
                chunk = socks[i].recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                chunk = b""
            except BlockingIOError:
                continue
            if chunk:
                got_answer.add(i)
            else:
                closed(i)
        if time.monotonic() >= next_drip:
            next_drip += drip
            for i in [i for i in socks if i not in attack.closed_at]:
                try:
                    socks[i].send(b"X")  # one more byte of a header name, never finished
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError as exc:
                    if exc.errno in (errno.EPIPE, errno.ECONNRESET):
                        closed(i)
                    else:
                        raise
    attack.answered = len(got_answer)
    selector.close()


def _raise_file_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def measure(
    quick: bool,
    *,
    connections: int | None = None,
    window: float | None = None,
    drip: float = 2.0,
    samples: int | None = None,
    header_timeout: float | None = None,
) -> dict[str, Any]:
    """Run the bench once and return its figures (see the module docstring)."""
    connections = connections or (60 if quick else 300)
    window = window or (12.0 if quick else 30.0)
    samples = samples or (20 if quick else 50)
    _raise_file_limit(connections + 256)
    with tempfile.TemporaryDirectory(prefix="bench-slowloris-") as tmp:
        server = _gateway(str(Path(tmp) / "gateway.sqlite"), header_timeout)
        try:
            key = _make_team(server.port)
            for _ in range(WARMUP):  # first requests pay for imports and caches
                _normal_request(server.port, key)
            idle = [_normal_request(server.port, key) for _ in range(samples)]
            attack = Attack()
            socks = _open_attack(server.port, connections, attack)
            during: list[float | None] = []

            def normal_client() -> None:
                end = time.monotonic() + window
                while (
                    len(during) < samples
                    and time.monotonic() < end
                    and attack.still_open() >= STILL_OPEN * len(attack.opened_at)
                ):
                    during.append(_normal_request(server.port, key))

            client = threading.Thread(target=normal_client, daemon=True)
            client.start()
            try:
                _drive_attack(socks, attack, window, drip)
            finally:
                client.join(IO_TIMEOUT + window)
                for i, s in socks.items():
                    if i not in attack.closed_at:
                        s.close()
            alive = server.proc.poll() is None
            output = server.output()
        finally:
            stop_server(server)
    opened = len(attack.opened_at)
    closed_in_window = sum(
        1 for i, t in attack.closed_at.items() if t - attack.opened_at[i] <= window
    )
    idle_ok = [t for t in idle if t is not None]
    during_ok = [t for t in during if t is not None]
    idle_ms = statistics.median(idle_ok) * 1000 if idle_ok else None
    during_ms = statistics.median(during_ok) * 1000 if during_ok else None
    share = closed_in_window / connections
    close_times = sorted(t - attack.opened_at[i] for i, t in attack.closed_at.items())
    return {
        "connections": connections,
        "opened": opened,
        "open_failures": attack.open_failures,
        "window_seconds": window,
        "drip_seconds": drip,
        "closed_within_window": closed_in_window,
        "share_closed": share,
        "answered_before_close": attack.answered,
        "median_seconds_to_close": statistics.median(close_times) if close_times else None,
        "normal_idle_served": len(idle_ok),
        "normal_idle_tried": len(idle),
        "normal_during_served": len(during_ok),
        "normal_during_tried": len(during),
        "idle_median_ms": idle_ms,
        "attack_median_ms": during_ms,
        "latency_ratio": during_ms / idle_ms if idle_ms and during_ms else None,
        "goal_met": share >= 0.9 and bool(during_ok) and len(during_ok) == len(during),
        "valid": alive and opened == connections,
        "server_output": "" if alive else output,
    }


def report(figures: dict[str, Any]) -> None:
    f = figures
    print(f"half-open connections opened: {f['opened']}/{f['connections']} "
          f"(partial head, then a header byte every {f['drip_seconds']:g} s)")  # fmt: skip
    median = f["median_seconds_to_close"]
    print(
        f"closed by the server within {f['window_seconds']:g} s: "
        f"{f['closed_within_window']}/{f['connections']} ({f['share_closed']:.1%}); "
        f"answered (408) before closing: {f['answered_before_close']}; median time to "
        f"close: {'-' if median is None else f'{median:.2f} s'}"
    )
    print(f"normal client, idle server: {f['normal_idle_served']}/{f['normal_idle_tried']} "
          f"served, median {_ms(f['idle_median_ms'])}")  # fmt: skip
    print(
        f"normal client, during the attack (>= {STILL_OPEN:.0%} of it open): "
        f"{f['normal_during_served']}/{f['normal_during_tried']} served, median "
        f"{_ms(f['attack_median_ms'])}; ratio to idle: "
        f"{'-' if f['latency_ratio'] is None else format(f['latency_ratio'], '.2f')}"
    )
    if not f["valid"]:
        print("INVALID run: the gateway died or the attack sockets could not all be opened")
        if f["server_output"]:
            print(f["server_output"], file=sys.stderr)
    met = "met" if f["goal_met"] else "NOT met"
    print(
        f"goal: at least 90% of {f['connections']} half-open connections closed within "
        f"{f['window_seconds']:g} s, a normal client still served: {f['share_closed']:.1%} "
        f"closed, {f['normal_during_served']}/{f['normal_during_tried']} served ({met})"
    )


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} ms"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="60 connections, a 12 s window")
    p.add_argument("--connections", type=int, help="half-open sockets (default 300)")
    p.add_argument("--window", type=float, help="seconds to watch them (default 30)")
    p.add_argument("--drip", type=float, default=2.0, help="seconds between header bytes")
    p.add_argument("--samples", type=int, help="normal requests per phase (default 50)")
    p.add_argument(
        "--header-timeout", type=float, help="the gateway's header_timeout (default: its own)"
    )
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    figures = measure(
        args.quick,
        connections=args.connections,
        window=args.window,
        drip=args.drip,
        samples=args.samples,
        header_timeout=args.header_timeout,
    )
    report(figures)
    return 0 if figures["valid"] else 2


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
