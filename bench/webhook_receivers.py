"""Benchmark: the gateway's webhook deliverer against hostile receivers.

    .venv/bin/python bench/webhook_receivers.py          # 7 samples, waits up to 60 s
    .venv/bin/python bench/webhook_receivers.py --quick  # 3 samples, waits up to 30 s

Real processes on loopback: the fake Segmind (`python -m fakeserver`, virtual clock) and
the gateway (`python -m proxy`, virtual clock, a fresh SQLite store in a temporary
directory, loopback allowlisted for webhooks, every other setting its default: 64 delivery
slots, `webhook_timeout` 15 s on the gateway's virtual clock, which the bench moves only to
finish runs: a trickling receiver holds its slot throughout). The receivers are raw
HTTP/1.1 servers in this process (asyncio, in a thread). Two teams: "hog" and "other";
each pays for one run (the clocks are moved over the admin API until it is COMPLETED),
after which each submit of the same body is a free cache HIT whose webhook is due at once.

1. memory: the gateway's resident set idle (VmRSS), then a hog HIT whose receiver answers
   200 with a 400 MB body, sent as fast as the gateway reads it; the gateway's peak
   resident set (VmHWM) once the receiver has finished or been cut off. Goal: peak under
   300 MB (the issue: 400 MB pushed it past 1.2 GB).
2. fairness: "other"'s webhook delay (submit answered -> request at its receiver), first
   with nothing else being delivered, then while 80 hog HITs are being delivered to 80
   receivers (80 loopback hosts, a distinct path each) that answer a status line and then
   one header byte every 2 s, forever. Goal: under 20 s (the issue: not within 45 s). A
   delay not seen within the wait is printed as "> wait".

A benchmark, not a test: it exits 0 whether or not a goal is met, and 2 when its run is
invalid (a server did not start, setup did not complete, or "other"'s webhook did not
arrive even with nothing else being delivered). `measure(quick)` returns the figures as a
dict for bench/hardening.py.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from _load import HOST, Server, free_port, start_server, stop_server, wait_until_answers

ROOT = Path(__file__).resolve().parent.parent
UPSTREAM_KEY = "bench-upstream-key-webhooks-3b8d1f"
ADMIN_KEY = "bench-admin-key-webhooks-9e4a2c7d"
WORKFLOW = "/workflows/68628fe34727e611dfa219b4-v4"
FLOOD_BYTES = 400 * 1024 * 1024
FLOOD_CHUNK = 1024 * 1024
TRICKLERS = 80
TRICKLE_EVERY = 2.0  # seconds between a trickling receiver's bytes (well within 15 s)
TRICKLE_HOSTS = [f"127.0.2.{n}" for n in range(1, TRICKLERS + 1)]
PEAK_GOAL_MB = 300.0
DELAY_GOAL_S = 20.0
SETUP_SECONDS = 60.0
HTTP_TIMEOUT = 15.0
GENEROUS = {"submits_per_minute": None, "max_concurrent": None, "polls_per_minute": None}


class Invalid(RuntimeError):
    """The run cannot produce its figures (exit 2)."""


# --- the receivers ------------------------------------------------------------------------


@dataclass
class Receivers:
    """Every receiver, on one port of several loopback addresses; what each answers
    depends on its path: /flood, /trickle/N, anything else 200 at once."""

    port: int = field(default_factory=free_port)
    arrivals: dict[str, float] = field(default_factory=dict)  # path -> time.monotonic()
    flood_sent: int = 0
    flood_done: threading.Event = field(default_factory=threading.Event)
    trickling: int = 0  # connections being trickled to right now
    _loop: asyncio.AbstractEventLoop | None = None
    _stop: asyncio.Event | None = None
    _thread: threading.Thread | None = None

    def url(self, path: str, host: str = HOST) -> str:
        return f"http://{host}:{self.port}{path}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.decode("latin-1").split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            await reader.readexactly(length)
            path = head.split(b" ", 2)[1].decode()
            self.arrivals[path] = time.monotonic()
            if path == "/flood":
                await self._flood(writer)
            elif path.startswith("/trickle/"):
                await self._trickle(writer)
            else:
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _flood(self, writer: asyncio.StreamWriter) -> None:
        chunk = b"a" * FLOOD_CHUNK
        try:
            writer.write(f"HTTP/1.1 200 OK\r\ncontent-length: {FLOOD_BYTES}\r\n\r\n".encode())
            while self.flood_sent < FLOOD_BYTES:
                writer.write(chunk)
                await writer.drain()
                self.flood_sent += len(chunk)
        finally:
            self.flood_done.set()

    async def _trickle(self, writer: asyncio.StreamWriter) -> None:
        self.trickling += 1
        try:
            writer.write(b"HTTP/1.1 200 OK\r\nx-trickle: ")
            await writer.drain()
            stop = self._stop
            assert stop is not None
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), TRICKLE_EVERY)
                    return  # the bench is over
                writer.write(b"a")
                await writer.drain()  # raises once the gateway has hung up
        finally:
            self.trickling -= 1

    async def _serve(self, ready: threading.Event) -> None:
        self._stop = asyncio.Event()
        servers = [
            await asyncio.start_server(self._handle, host, self.port, limit=65536)
            for host in [HOST, *TRICKLE_HOSTS]
        ]
        ready.set()
        await self._stop.wait()
        for server in servers:
            server.close()
        for _ in range(100):  # the trickling receivers see the stop and hang up
            if not self.trickling:
                break
            await asyncio.sleep(0.05)

    def start(self) -> None:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._serve(ready))
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="receivers", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise Invalid("the receivers did not start listening")

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)


# --- the servers --------------------------------------------------------------------------


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROXY_", "SEGMIND_"))}
    env.update(
        SEGMIND_API_KEY=UPSTREAM_KEY,
        PROXY_ADMIN_KEY=ADMIN_KEY,
        PROXY_WEBHOOK_ALLOW_NETWORKS='["127.0.0.0/8"]',
        PROXY_LOG_LEVEL="WARNING",
        PROXY_IMAGE_PREFLIGHT="false",  # offline: the default image cannot be fetched
    )
    return env


@contextlib.contextmanager
def servers(directory: str) -> Iterator[tuple[Server, Server]]:
    fake_port, gateway_port = free_port(), free_port()
    python = sys.executable
    fake = start_server(
        "fake",
        [python, "-m", "fakeserver", "--host", HOST, "--port", str(fake_port),
         "--api-key", UPSTREAM_KEY, "--clock", "virtual", "--plan", "unlimited",
         "--log-level", "warning"],
        fake_port, cwd=str(ROOT), env=_env(),
    )  # fmt: skip
    gateway: Server | None = None
    try:
        gateway = start_server(
            "gateway",
            [python, "-m", "proxy", "--host", HOST, "--port", str(gateway_port),
             "--upstream-url", f"http://{HOST}:{fake_port}", "--db", f"{directory}/gw.sqlite",
             "--clock", "virtual"],
            gateway_port, cwd=str(ROOT), env=_env(),
        )  # fmt: skip
        for server in (fake, gateway):
            try:
                wait_until_answers(server, "/healthz")
            except Exception as exc:
                raise Invalid(f"{server.name} did not start: {exc}\n{server.output()}") from exc
        yield fake, gateway
    finally:
        if gateway is not None:
            stop_server(gateway)
        stop_server(fake)


def _memory_mb(pid: int, field_name: str) -> float:
    """VmRSS (now) or VmHWM (peak since start) of a process, in MB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1]) / 1024
    raise Invalid(f"/proc/{pid}/status has no {field_name} (not Linux?)")


@dataclass
class Gateway:
    http: httpx.Client
    fake_url: str
    url: str

    def team(self, name: str) -> str:
        made = self.http.post(
            f"{self.url}/admin/teams",
            json={"name": name, "limits": GENEROUS},
            headers={"x-admin-key": ADMIN_KEY},
        )
        if made.status_code != 201:
            raise Invalid(f"creating team {name}: {made.status_code} {made.text}")
        key: str = made.json()["api_key"]
        return key

    def submit(self, key: str, scene: str, webhook: str | None = None) -> httpx.Response:
        headers = {"x-api-key": key}
        if webhook:
            headers["x-webhook-url"] = webhook
        body = {"Scene_1": scene}
        return self.http.post(f"{self.url}{WORKFLOW}", json=body, headers=headers)

    def hit(self, key: str, scene: str, webhook: str) -> float:
        """Submit a cached body with a webhook; the time its answer came."""
        answer = self.submit(key, scene, webhook)
        if answer.status_code != 200 or answer.headers.get("x-cache-status") != "HIT":
            raise Invalid(f"expected a cache HIT: {answer.status_code} {answer.text[:300]}")
        return time.monotonic()

    def complete(self, key: str, scene: str) -> None:
        """One paid run of `scene` for the team, moved on the clocks until COMPLETED."""
        answer = self.submit(key, scene)
        if answer.status_code != 200:
            raise Invalid(f"submit: {answer.status_code} {answer.text[:300]}")
        request_id = answer.json()["request_id"]
        deadline = time.monotonic() + SETUP_SECONDS
        while time.monotonic() < deadline:
            for url, headers in (
                (f"{self.fake_url}/__admin/clock/advance", {}),
                (f"{self.url}/admin/clock/advance", {"x-admin-key": ADMIN_KEY}),
            ):
                self.http.post(url, json={"seconds": 60}, headers=headers).raise_for_status()
            poll = self.http.get(
                f"{self.url}/workflows/request/{request_id}", headers={"x-api-key": key}
            )
            status = poll.json().get("status")
            if status == "COMPLETED":
                return
            if status == "FAILED":
                raise Invalid(f"the setup run failed: {poll.text[:300]}")
        raise Invalid(f"the setup run did not complete within {SETUP_SECONDS:g} s")


def _arrival(receivers: Receivers, path: str, since: float, wait: float) -> float | None:
    """Seconds from `since` until `path` got its request; None if not within `wait`."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if path in receivers.arrivals:
            return max(receivers.arrivals[path] - since, 0.0)
        time.sleep(0.005)
    return None


def _settle(read: Any, seconds: float, limit: float) -> int:
    """`read()` once it has not changed for `seconds` (at most `limit` seconds)."""
    deadline = time.monotonic() + limit
    value, since = read(), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - since < seconds:
        time.sleep(0.05)
        now = read()
        if now != value:
            value, since = now, time.monotonic()
    result: int = value
    return result


# --- the run ------------------------------------------------------------------------------


def measure(quick: bool) -> dict[str, Any]:
    """Run both phases; the figures as a dict (delays in s, memory in MB)."""
    samples = 3 if quick else 7
    wait = 30.0 if quick else 60.0
    figures: dict[str, Any] = {"quick": quick, "trickling_receivers": TRICKLERS}
    receivers = Receivers()
    receivers.start()
    try:
        with (
            tempfile.TemporaryDirectory(prefix="bench-webhooks-") as directory,
            servers(directory) as (fake, gateway),
            httpx.Client(timeout=HTTP_TIMEOUT) as http,
        ):
            gw = Gateway(http, f"http://{HOST}:{fake.port}", f"http://{HOST}:{gateway.port}")
            hog, other = gw.team("hog"), gw.team("other")
            gw.complete(hog, "A knight")
            gw.complete(other, "A bard")

            # 1. memory
            for n in range(3):  # warm the delivery path once, so idle is really idle
                gw.hit(other, "A bard", receivers.url(f"/warm/{n}"))
                if _arrival(receivers, f"/warm/{n}", time.monotonic(), wait) is None:
                    raise Invalid("a webhook to an idle receiver did not arrive")
            time.sleep(0.5)
            figures["idle_rss_mb"] = _memory_mb(gateway.pid, "VmRSS")
            figures["peak_before_mb"] = _memory_mb(gateway.pid, "VmHWM")
            gw.hit(hog, "A knight", receivers.url("/flood"))
            receivers.flood_done.wait(wait * 2)
            time.sleep(0.5)  # the attempt is recorded after the connection is closed
            figures["flood_answered"] = receivers.flood_done.is_set()
            figures["flood_bytes_taken_mb"] = receivers.flood_sent / 2**20
            figures["peak_rss_mb"] = _memory_mb(gateway.pid, "VmHWM")
            figures["rss_after_mb"] = _memory_mb(gateway.pid, "VmRSS")
            figures["peak_over_idle"] = figures["peak_rss_mb"] / figures["idle_rss_mb"]

            # 2. fairness
            idle: list[float] = []
            for n in range(samples):
                path = f"/idle/{n}"
                since = gw.hit(other, "A bard", receivers.url(path))
                delay = _arrival(receivers, path, since, wait)
                if delay is None:
                    raise Invalid("other's webhook did not arrive with nothing else being sent")
                idle.append(delay)
            for n, host in enumerate(TRICKLE_HOSTS):
                gw.hit(hog, "A knight", receivers.url(f"/trickle/{n}", host))
            figures["trickled_connections"] = _settle(lambda: receivers.trickling, 1.0, 10.0)
            contended: list[float | None] = []
            for n in range(samples):
                path = f"/contended/{n}"
                since = gw.hit(other, "A bard", receivers.url(path))
                contended.append(_arrival(receivers, path, since, wait))
                if contended[-1] is None:
                    break  # the slots are held: a second wait would show nothing more
            figures["delay_idle_s"] = statistics.median(idle)
            arrived = [d for d in contended if d is not None]
            figures["delay_contended_s"] = (
                statistics.median(arrived) if len(arrived) == len(contended) else None
            )
            figures["wait_s"] = wait
            figures["still_trickling"] = receivers.trickling
    finally:
        receivers.stop()
    figures["goal_memory_met"] = figures["peak_rss_mb"] < PEAK_GOAL_MB
    contended_s = figures["delay_contended_s"]
    figures["goal_delay_met"] = contended_s is not None and contended_s < DELAY_GOAL_S
    return figures


def _delay_text(seconds: float | None, wait: float) -> str:
    return f"> {wait:g} s (not arrived)" if seconds is None else f"{seconds * 1000:.0f} ms"


def report(f: dict[str, Any]) -> str:
    contended = f["delay_contended_s"]
    ratio = (
        "n/a (never arrived)"
        if contended is None
        else f"{contended / max(f['delay_idle_s'], 1e-3):.2f}x"
    )
    lines = [
        "memory: one receiver answering 200 with a 400 MB body",
        f"  gateway idle RSS            {f['idle_rss_mb']:8.1f} MB",
        f"  gateway peak RSS (VmHWM)    {f['peak_rss_mb']:8.1f} MB   "
        f"({f['peak_over_idle']:.2f}x idle; peak before the flood {f['peak_before_mb']:.1f} MB)",
        f"  RSS after                   {f['rss_after_mb']:8.1f} MB",
        f"  body the receiver got out   {f['flood_bytes_taken_mb']:8.1f} MB of 400 "
        f"(finished or cut off: {f['flood_answered']})",
        f"fairness: 'other' team's webhook delay, {f['trickling_receivers']} 'hog' receivers "
        f"trickling 1 byte / {TRICKLE_EVERY:g} s",
        f"  no trickling receivers      {_delay_text(f['delay_idle_s'], f['wait_s']):>12}",
        f"  hog receivers trickling     {_delay_text(contended, f['wait_s']):>12}   "
        f"({ratio} the idle delay; {f['trickled_connections']} hog connections held)",
        f"goal: peak RSS under {PEAK_GOAL_MB:g} MB -> {f['peak_rss_mb']:.1f} MB "
        f"({'met' if f['goal_memory_met'] else 'NOT met'}); other team's webhook under "
        f"{DELAY_GOAL_S:g} s while {f['trickling_receivers']} receivers trickle -> "
        f"{_delay_text(contended, f['wait_s'])}, {ratio} idle "
        f"({'met' if f['goal_delay_met'] else 'NOT met'})",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter waits, fewer samples")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = parser.parse_args()
    try:
        figures = measure(args.quick)
    except Invalid as exc:
        print(f"INVALID: {exc}")
        return 2
    print(report(figures))
    if args.json:
        print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
