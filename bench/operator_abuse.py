"""Benchmark: the operators' surfaces under abuse with no key (issue 23, items 1 and 4).

    .venv/bin/python bench/operator_abuse.py [--quick] [--json]

Real processes on loopback (the fake Segmind and the gateway, as `webhook_receivers.py`
starts them: a fresh SQLite store, virtual clock, an admin key set).

1. memory: the gateway's resident set idle (VmRSS, after a few admin requests), then 10
   clients at once each POST a 150 MB body to /admin/teams with no admin key (chunked, so
   nothing declares its size up front), sending as fast as the gateway reads; the
   gateway's peak resident set (VmHWM) after. Goal: peak under idle + 50 MB (the issue:
   one 200 MB body took it from 62 MB to 677 MB).
2. wrong admin keys: one client (127.0.0.1) sends 200 wrong X-Admin-Key to /admin/teams,
   200 wrong bearers to /metrics and 12 wrong console logins each naming another client in
   X-Forwarded-For (the gateway trusts no proxy here); how many were answered 401 (goal:
   10 in all, the rest 429). Meanwhile another client (127.0.0.2) presents the right key:
   its answer and median latency beside the same request on the idle gateway (goal: 200),
   then logs in to the console (goal: 303).

A benchmark, not a test: it exits 0 whether or not a goal is met, and 2 when its run is
invalid (a server did not start). `measure(quick)` returns the figures for hardening.py.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from typing import Any

import httpx
from _load import HOST
from webhook_receivers import ADMIN_KEY, Invalid, _memory_mb, servers

BODY_MB = 150
CLIENTS = 10
CHUNK = 1024 * 1024
PEAK_GOAL_OVER_IDLE_MB = 50.0
WRONG_KEYS = 200
OTHER_CLIENT = "127.0.0.2"  # a second loopback address: another client to the gateway
LATENCY_SAMPLES = 20


def _unauthenticated_upload(port: int, sent: list[int], answers: list[str]) -> None:
    """POST /admin/teams with a chunked 150 MB body and no key, as fast as it is read."""
    taken = 0
    answer = "no answer"
    with socket.create_connection((HOST, port), timeout=30) as sock:
        sock.sendall(
            b"POST /admin/teams HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )
        chunk = f"{CHUNK:x}\r\n".encode() + b" " * CHUNK + b"\r\n"
        try:
            for _ in range(BODY_MB):
                sock.sendall(chunk)
                taken += CHUNK
            sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the gateway answered and closed: what it read is what counts
        try:
            sock.settimeout(10)
            answer = sock.recv(64).split(b"\r\n")[0].decode("latin-1") or "closed"
        except OSError as exc:
            answer = type(exc).__name__
    sent.append(taken)
    answers.append(answer)


def _client(address: str) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=30)


def _right_key_ms(http: httpx.Client, url: str) -> tuple[float, int]:
    """Median latency of the right key's GET /admin/teams, and the last status."""
    times, status = [], 0
    for _ in range(LATENCY_SAMPLES):
        start = time.perf_counter()
        status = http.get(f"{url}/admin/teams", headers={"x-admin-key": ADMIN_KEY}).status_code
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), status


def _login(http: httpx.Client, url: str, key: str, **headers: str) -> int:
    origin = {"origin": url, "sec-fetch-site": "same-origin", **headers}
    return http.post(f"{url}/admin/ui/login", data={"admin_key": key}, headers=origin).status_code


def measure(quick: bool) -> dict[str, Any]:
    figures: dict[str, Any] = {"quick": quick, "clients": CLIENTS, "body_mb": BODY_MB}
    with (
        tempfile.TemporaryDirectory(prefix="bench-operators-") as directory,
        servers(directory) as (_fake, gateway),
        _client("127.0.0.1") as guesser,
        _client(OTHER_CLIENT) as operator,
    ):
        url = f"http://{HOST}:{gateway.port}"
        # Idle: the right key from the operator's client, once the path is warm.
        _right_key_ms(operator, url)
        figures["idle_right_key_ms"], _ = _right_key_ms(operator, url)
        time.sleep(0.5)
        figures["idle_rss_mb"] = _memory_mb(gateway.pid, "VmRSS")

        # 1. memory under 10 unauthenticated 150 MB bodies at once
        sent: list[int] = []
        answers: list[str] = []
        uploads = [
            threading.Thread(target=_unauthenticated_upload, args=(gateway.port, sent, answers))
            for _ in range(CLIENTS)
        ]
        started = time.monotonic()
        for upload in uploads:
            upload.start()
        for upload in uploads:
            upload.join(120)
        figures["upload_seconds"] = time.monotonic() - started
        time.sleep(0.5)
        figures["peak_rss_mb"] = _memory_mb(gateway.pid, "VmHWM")
        figures["peak_over_idle_mb"] = figures["peak_rss_mb"] - figures["idle_rss_mb"]
        figures["bytes_pushed_mb"] = sum(sent) / 2**20
        figures["upload_answers"] = dict(Counter(answers))
        figures["goal_memory_met"] = figures["peak_over_idle_mb"] < PEAK_GOAL_OVER_IDLE_MB

        # 2. wrong admin keys from one client, the right key from another meanwhile
        statuses: Counter[str] = Counter()

        def guess() -> None:
            for n in range(WRONG_KEYS):
                wrong = {"x-admin-key": f"guess-{n:06d}"}
                admin = guesser.get(f"{url}/admin/teams", headers=wrong).status_code
                bearer = {"authorization": f"Bearer guess-{n:06d}"}
                scrape = guesser.get(f"{url}/metrics", headers=bearer).status_code
                statuses.update([f"admin {admin}", f"metrics {scrape}"])
            for n in range(12):
                rotated = {"x-forwarded-for": f"203.0.113.{n + 1}"}
                statuses[f"login {_login(guesser, url, 'guess-guess-guess', **rotated)}"] += 1

        guessing = threading.Thread(target=guess)
        guessing.start()
        busy_ms, busy_status = _right_key_ms(operator, url)  # while the guesses come
        guessing.join(120)
        figures["wrong_key_answers"] = dict(statuses)
        figures["wrong_keys_sent"] = 2 * WRONG_KEYS + 12
        figures["wrong_keys_401"] = sum(n for k, n in statuses.items() if k.endswith(" 401"))
        figures["busy_right_key_ms"] = busy_ms
        figures["other_client_right_key_status"] = busy_status
        figures["other_client_login_status"] = _login(operator, url, ADMIN_KEY)
        figures["guesser_right_key_status"] = guesser.get(
            f"{url}/admin/teams", headers={"x-admin-key": ADMIN_KEY}
        ).status_code
        figures["goal_limits_met"] = (
            figures["wrong_keys_401"] <= 10
            and busy_status == 200
            and figures["other_client_login_status"] == 303
        )
    return figures


def report(f: dict[str, Any]) -> str:
    return "\n".join([
        f"gateway idle RSS                         {f['idle_rss_mb']:8.1f} MB",
        f"peak RSS, {f['clients']} x {f['body_mb']} MB unauthenticated bodies  "
        f"{f['peak_rss_mb']:8.1f} MB (+{f['peak_over_idle_mb']:.1f} MB over idle; "
        f"{f['bytes_pushed_mb']:.0f} MB pushed, answers {f['upload_answers']})",
        f"wrong admin keys answered 401            {f['wrong_keys_401']} of "
        f"{f['wrong_keys_sent']} ({f['wrong_key_answers']})",
        f"right key from another client meanwhile  {f['other_client_right_key_status']}, "
        f"{f['busy_right_key_ms']:.1f} ms (idle {f['idle_right_key_ms']:.1f} ms, "
        f"{f['busy_right_key_ms'] / f['idle_right_key_ms']:.2f}x); console login "
        f"{f['other_client_login_status']}; the guesser's own right key "
        f"{f['guesser_right_key_status']}",
        f"goal: peak under idle + {PEAK_GOAL_OVER_IDLE_MB:g} MB "
        f"({'met' if f['goal_memory_met'] else 'MISSED'}); at most 10 wrong keys a minute per "
        f"client, the right key open to another ({'met' if f['goal_limits_met'] else 'MISSED'})",
    ])  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the same run (it is short)")
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
