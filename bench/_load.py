"""Shared pieces of the bench scripts: server subprocesses and a raw HTTP/1.1 load generator.

The load generator is deliberately primitive so that it is never the bottleneck: asyncio
streams on uvloop, request bytes written by hand, the status line and Content-Length parsed
by hand, keep-alive connections, a closed loop of N concurrent connections. Run it in a
process of its own (the bench scripts use `multiprocessing`), so it gets a core of its own.

Every loop here is bounded both in count and in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import multiprocessing
import os
import signal
import socket
import subprocess
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, TypeVar

__all__ = [
    "HOST",
    "Connection",
    "PhaseResult",
    "Server",
    "build_request",
    "close_all",
    "cpu_share",
    "free_port",
    "load_entry",
    "machine_cpu_seconds",
    "merge_phases",
    "open_all",
    "pin_to",
    "proc_cpu_seconds",
    "run_async",
    "run_in_load_process",
    "run_phase",
    "start_server",
    "stop_server",
    "wait_until_answers",
]

HOST = "127.0.0.1"
READY_SECONDS = 20.0  # a server must answer this soon after start
READY_ATTEMPTS = 400
STOP_GRACE_SECONDS = 5.0
PHASE_GRACE_SECONDS = 10.0  # a phase may overrun its duration by this much, then is cancelled
MAX_ERRORS_PER_CONNECTION = 10  # transport errors after which a connection gives up
HEAD_LIMIT = 64 * 1024

T = TypeVar("T")


def free_port(host: str = HOST) -> int:
    """A port nothing listens on right now (bind to 0, read it back, release it)."""
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


# --- server processes -------------------------------------------------------------------


@dataclass
class Server:
    name: str
    host: str
    port: int
    argv: list[str]
    proc: subprocess.Popen[bytes]
    log: IO[bytes]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self, limit: int = 4000) -> str:
        """The last `limit` characters the process printed (stdout and stderr)."""
        with contextlib.suppress(OSError, ValueError):
            self.log.flush()
            self.log.seek(0)
            return self.log.read().decode("utf-8", "replace")[-limit:]
        return ""


def start_server(
    name: str,
    argv: Sequence[str],
    port: int,
    *,
    host: str = HOST,
    cwd: str | None = None,
    env: dict[str, str] | None = None,
) -> Server:
    """Start `argv` as a subprocess; its output goes to a temporary file (see `output()`)."""
    # Closed by stop_server(), which every caller reaches through try/finally.
    log = tempfile.TemporaryFile()  # noqa: SIM115
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
        )
    except BaseException:
        log.close()
        raise
    return Server(name, host, port, list(argv), proc, log)


def stop_server(server: Server) -> None:
    """Terminate, wait, then kill if it will not go; close its log."""
    proc = server.proc
    try:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_GRACE_SECONDS)
    finally:
        server.log.close()


def _get_status(host: str, port: int, path: str, timeout: float) -> int:
    """Status code of one `GET path` on a fresh connection (blocking, for readiness checks)."""
    raw = build_request("GET", path, host, [("connection", "close")])
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(raw)
        data = b""
        for _ in range(64):  # bounded: a status line is in the first few bytes
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
            if b"\r\n" in data:
                break
    if not data.startswith(b"HTTP/1.") or len(data) < 12:
        raise OSError(f"not an HTTP answer: {data[:40]!r}")
    return int(data[9:12])


def wait_until_answers(server: Server, path: str, timeout: float = READY_SECONDS) -> None:
    """Return once `GET path` answers 200; raise with the server's output if it never does."""
    deadline = time.monotonic() + timeout
    for _ in range(READY_ATTEMPTS):
        if time.monotonic() > deadline:
            break
        code = server.proc.poll()
        if code is not None:
            raise RuntimeError(f"{server.name} exited with {code}:\n{server.output()}")
        with contextlib.suppress(OSError, ValueError):
            if _get_status(server.host, server.port, path, timeout=1.0) == 200:
                return
        time.sleep(0.05)
    raise RuntimeError(
        f"{server.name} did not answer GET {path} with 200 within {timeout} s:\n{server.output()}"
    )


def pin_to(pid: int, cpus: set[int]) -> bool:
    """Restrict a process (0: this one) to `cpus`; False where the OS does not allow it."""
    setaffinity = getattr(os, "sched_setaffinity", None)
    if setaffinity is None:
        return False
    try:
        setaffinity(pid, cpus)
    except OSError:
        return False
    return True


def machine_cpu_seconds() -> float | None:
    """Busy CPU seconds of the whole machine so far, all cores (Linux /proc); None elsewhere."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            line = f.readline()
    except OSError:
        return None
    ticks = [int(t) for t in line.split()[1:9]]  # user nice system idle iowait irq softirq steal
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int | str) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            stat = f.read()
    except OSError:
        return None
    # Fields after the parenthesised command name: ppid is field 4, utime and stime 14, 15.
    return stat[stat.rindex(")") + 2 :].split()


def proc_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds a process and the processes it started (a server's forked
    workers) have used so far (Linux /proc); None elsewhere."""
    fields = _stat_fields(pid)
    if fields is None:
        return None
    total = int(fields[11]) + int(fields[12])
    for child in _children(pid):
        found = _stat_fields(child)
        if found is not None:
            total += int(found[11]) + int(found[12])
    return total / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    """Every live descendant of `pid`."""
    parents: dict[int, list[int]] = {}
    with contextlib.suppress(OSError):
        for entry in os.listdir("/proc"):
            if entry.isdigit() and (fields := _stat_fields(entry)) is not None:
                parents.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


# --- the client -----------------------------------------------------------------------------


def build_request(
    method: str,
    path: str,
    host: str,
    headers: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
) -> bytes:
    """The bytes of one HTTP/1.1 request (keep-alive unless a `connection` header says not)."""
    lines = [f"{method} {path} HTTP/1.1", f"host: {host}"]
    lines += [f"{name}: {value}" for name, value in headers]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"content-length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class ProtocolError(ValueError):
    """An answer this client does not read (no Content-Length, a bad status line)."""


class Connection:
    """One keep-alive HTTP/1.1 connection; one request at a time."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    @property
    def is_open(self) -> bool:
        return self._writer is not None

    async def open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """(Re)connect; the connection is idle and ready for its first request."""
        self.close()
        reader, writer = await asyncio.open_connection(self.host, self.port, limit=HEAD_LIMIT)
        self._reader, self._writer = reader, writer
        return reader, writer

    def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        """Send `raw`, read one answer: (status, body). Opens the connection if needed."""
        reader, writer = self._reader, self._writer
        if reader is None or writer is None:
            reader, writer = await self.open()
        # A small request on an idle keep-alive connection: the write never backs up, so
        # no drain() (the next write waits for this answer anyway).
        writer.write(raw)
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 "):
            raise ProtocolError(f"bad status line {head[:40]!r}")
        status = int(head[9:12])
        lower = head.lower()
        at = lower.find(b"\r\ncontent-length:")
        if at < 0:
            raise ProtocolError("answer without content-length")
        end = lower.index(b"\r\n", at + 17)
        length = int(head[at + 17 : end])
        body = await reader.readexactly(length) if length else b""
        if lower.find(b"\r\nconnection: close") >= 0:
            self.close()
        return status, body


async def open_all(conns: Sequence[Connection]) -> None:
    await asyncio.gather(*(c.open() for c in conns))


def close_all(conns: Sequence[Connection]) -> None:
    for c in conns:
        c.close()


@dataclass
class PhaseResult:
    """What one phase did: counts, wall time, latencies and the CPU both sides used."""

    name: str
    requests: int = 0  # answered, of any status
    seconds: float = 0.0
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)  # transport errors by kind
    latencies: list[float] = field(default_factory=list)  # seconds, one per answer
    client_cpu: float = 0.0  # CPU seconds of the load process during the phase
    server_cpu: float | None = None  # CPU seconds of the server during the phase
    machine_cpu: float | None = None  # busy CPU seconds of the whole machine, all cores
    timed_out: bool = False

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    @property
    def not_ok(self) -> int:
        """Answers other than 200, plus transport errors."""
        return sum(n for code, n in self.statuses.items() if code != 200) + sum(
            self.errors.values()
        )

    @property
    def other_cpu(self) -> float | None:
        """CPU seconds used by everything but the load process and the server: other
        programs (noise), but also kernel work not charged to a process (softirq)."""
        if self.machine_cpu is None or self.server_cpu is None:
            return None
        return max(0.0, self.machine_cpu - self.server_cpu - self.client_cpu)

    def percentile(self, q: float) -> float:
        """Nearest-rank percentile of the latencies, in seconds (nan if none)."""
        if not self.latencies:
            return math.nan
        ordered = sorted(self.latencies)
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]

    def merged(self, other: PhaseResult) -> PhaseResult:
        def add(a: float | None, b: float | None) -> float | None:
            return None if a is None or b is None else a + b

        return PhaseResult(
            name=self.name,
            requests=self.requests + other.requests,
            seconds=self.seconds + other.seconds,
            statuses=self.statuses + other.statuses,
            errors=self.errors + other.errors,
            latencies=self.latencies + other.latencies,
            client_cpu=self.client_cpu + other.client_cpu,
            server_cpu=add(self.server_cpu, other.server_cpu),
            machine_cpu=add(self.machine_cpu, other.machine_cpu),
            timed_out=self.timed_out or other.timed_out,
        )


RequestFor = Callable[[int, int], bytes]  # (connection index, its request number) -> bytes
OnAnswer = Callable[[int, bytes], None]  # (status, body)


async def run_phase(
    name: str,
    conns: Sequence[Connection],
    request_for: RequestFor,
    *,
    seconds: float,
    max_requests: int,
    server_pid: int | None = None,
    on_answer: OnAnswer | None = None,
) -> PhaseResult:
    """A closed loop: every connection sends its next request as soon as its answer is in.

    Stops after `max_requests` requests or `seconds`, whichever comes first; a phase still
    running `PHASE_GRACE_SECONDS` after that is cancelled and marked `timed_out`. The
    connections are opened afresh first, outside the timing: a server closes keep-alive
    connections left idle (uvicorn after 5 s), as those of a previous phase may have been.
    """
    result = PhaseResult(name)
    latencies = result.latencies
    statuses: dict[int, int] = {}
    issued = 0
    perf = time.perf_counter

    async def drive(index: int, conn: Connection) -> None:
        nonlocal issued
        errors = 0
        seq = 0
        while issued < max_requests and perf() < deadline:
            issued += 1
            raw = request_for(index, seq)
            seq += 1
            start = perf()
            try:
                status, body = await conn.request(raw)
            except (OSError, EOFError, asyncio.IncompleteReadError, ValueError) as exc:
                # IncompleteReadError and LimitOverrunError are EOFError / Exception
                # subclasses; ValueError covers ProtocolError and bad numbers.
                result.errors[type(exc).__name__] += 1
                conn.close()
                errors += 1
                if errors >= MAX_ERRORS_PER_CONNECTION:
                    return
                continue
            latencies.append(perf() - start)
            statuses[status] = statuses.get(status, 0) + 1
            if on_answer is not None:
                on_answer(status, body)

    await asyncio.wait_for(open_all(conns), PHASE_GRACE_SECONDS)
    cpu0 = time.process_time()
    server0 = proc_cpu_seconds(server_pid) if server_pid else None
    machine0 = machine_cpu_seconds()
    started = perf()
    deadline = started + seconds
    tasks = [asyncio.ensure_future(drive(i, c)) for i, c in enumerate(conns)]
    try:
        await asyncio.wait_for(asyncio.gather(*tasks), seconds + PHASE_GRACE_SECONDS)
    except TimeoutError:
        result.timed_out = True
        close_all(conns)
    result.seconds = perf() - started
    result.client_cpu = time.process_time() - cpu0
    server1 = proc_cpu_seconds(server_pid) if server_pid else None
    machine1 = machine_cpu_seconds()
    if server0 is not None and server1 is not None:
        result.server_cpu = server1 - server0
    if machine0 is not None and machine1 is not None:
        result.machine_cpu = machine1 - machine0
    result.statuses.update(statuses)
    result.requests = len(latencies)
    return result


def run_async(main: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on uvloop when it is installed (it is, with uvicorn[standard])."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - the plain loop is slower but still works
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


# --- the load process and the report, shared by every benchmark ---------------------------


def load_entry(
    drive: Callable[[Any], Coroutine[Any, Any, Any]], plan: Any, out: Any, cpu: int | None = None
) -> None:
    """Body of a load process: run `drive(plan)`, send back ("ok", results) or the error."""
    # Ctrl-C reaches the whole process group: the parent handles it and stops this process.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        if cpu is not None:
            pin_to(0, {cpu})
        out.send(("ok", run_async(drive(plan))))
    except BaseException:
        out.send(("error", traceback.format_exc()))
    finally:
        out.close()


def run_in_load_process(
    target: Callable[[Any, Any], None], plan: Any, budget: float
) -> tuple[str, Any]:
    """Run `target(plan, pipe)` in a spawned process (the other core), wait up to `budget`
    seconds for its ("ok" | "error", payload), and always reap the process."""
    ctx = multiprocessing.get_context("spawn")
    receiver, sender = ctx.Pipe(duplex=False)
    worker = ctx.Process(target=target, args=(plan, sender), name="bench-load")
    worker.start()
    sender.close()
    try:
        if not receiver.poll(budget):
            raise RuntimeError(f"the load process did not finish within {budget:.0f} s")
        try:
            kind, payload = receiver.recv()
        except EOFError:
            raise RuntimeError(
                f"the load process died (exit code {worker.exitcode}) without a result"
            ) from None
        worker.join(5)
        return str(kind), payload
    finally:
        if worker.is_alive():
            worker.terminate()
            worker.join(5)
            if worker.is_alive():
                worker.kill()
                worker.join(5)


def merge_phases(results: Sequence[PhaseResult]) -> PhaseResult:
    total = results[0]
    for r in results[1:]:
        total = total.merged(r)
    return total


def cpu_share(cpu: float | None, seconds: float) -> str:
    return "n/a" if cpu is None or seconds <= 0 else f"{100 * cpu / seconds:.0f}%"
