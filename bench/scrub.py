"""What scrubbing the API key out of every answer costs, beside what reading the answer costs.

The client scrubs every answer where it enters (`client._boundary.scrub_response`), in
every spelling a server may echo the key in. This times, in one run and side by side:
reading a poll answer (`response.json()`), scrubbing it when it is clean (the usual case:
one search per header and per decoding of the body), and scrubbing it when it echoes the
key (the answer is rebuilt). Figures are printed as ratios to the read; nothing is
asserted. `--quick` runs fewer rounds.

    python bench/scrub.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import time
from collections.abc import Callable

import httpx

from client._boundary import scrub_response
from client._errors import Scrubber
from proxy.core.logs import Redactor

# Made afresh each run, never a committed literal: random hex with the two characters
# JSON must escape (`"` and a backslash) in the middle, the scrubber's hardest case.
KEY = f'bench-{secrets.token_hex(8)}"\\{secrets.token_hex(6)}'
OUTPUT = json.dumps(
    [
        {"keyname": f"Scene_{n}_Video", "value": {"data": f"https://cdn.test/{n}.mp4"}}
        for n in range(1, 5)
    ]
)
HEADERS = [
    ("content-type", "application/json"),
    ("x-request-id", "0123456789abcdef0123456789abcdef"),
    ("date", "Wed, 02 Dec 2026 02:00:00 GMT"),
]


def answer(body: dict[str, object]) -> httpx.Response:
    request = httpx.Request("GET", "https://api.segmind.com/workflows/request/" + "0" * 32)
    return httpx.Response(200, headers=HEADERS, content=json.dumps(body).encode(), request=request)


def per_call(work: Callable[[], object], rounds: int) -> float:
    """Best of five runs of `rounds` calls, in microseconds per call."""
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(rounds):
            work()
        best = min(best, time.perf_counter() - start)
    return best / rounds * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    rounds = 300 if parser.parse_args().quick else 3000
    scrubber = Scrubber(KEY)
    clean = answer({"status": "COMPLETED", "request_id": "0" * 32, "output": OUTPUT})
    dirty = answer({"status": "FAILED", "error_message": f"bad key {KEY}", "error": KEY})
    assert scrub_response(clean, scrubber) is clean
    assert KEY not in scrub_response(dirty, scrubber).text
    read = per_call(clean.json, rounds)
    figures = {
        "read the answer (response.json())": read,
        "scrub a clean answer": per_call(lambda: scrub_response(clean, scrubber), rounds),
        "scrub an answer echoing the key": per_call(
            lambda: scrub_response(dirty, scrubber), rounds
        ),
    }
    print(f"poll answer of {len(clean.content)} bytes, key of {len(KEY)} characters")
    for name, micros in figures.items():
        print(f"  {name:38} {micros:8.1f} us   {micros / read:6.1f}x the read")
    # The gateway's log formatter masks every finished line. Before: the key as is and
    # JSON-escaped, as literal strings; now: every spelling (`secret_pattern`).
    line = json.dumps(
        {
            "ts": "2026-12-02T02:00:00.000Z",
            "level": "INFO",
            "logger": "proxy.gateway",
            "msg": "generation finished",
            "request_id": "0" * 32,
            "status": "COMPLETED",
        }
    )
    literal = re.compile("|".join(map(re.escape, {KEY, json.dumps(KEY)[1:-1]})))
    before = per_call(lambda: literal.search(line), rounds)
    spelled = Redactor([KEY])
    now = per_call(lambda: spelled.contains_secret(line), rounds)
    print(f"log line of {len(line)} characters, search for the key:")
    print(f"  {'literal forms (before)':38} {before:8.1f} us   1.0x")
    print(f"  {'every spelling (now)':38} {now:8.1f} us   {now / before:6.1f}x")
    print(
        "goal: scrubbing costs microseconds per answer, nothing beside a network round "
        "trip (milliseconds) or a poll every few seconds; ratios above are to the JSON read"
    )


if __name__ == "__main__":
    main()
