"""Benchmark: the dollars image preflight saves on runs whose character image is dead.

    .venv/bin/python bench/preflight.py [--dead 20] [--live 20]

Real processes, side by side: the fake Segmind with `--dead-image-host 127.0.0.1` (a run
whose Character_Image is on that host is accepted, charged, then FAILED, as Segmind fails
an image it cannot load) and a gateway in front of it, once with `image_preflight` off and
once on, both on virtual clocks. Each submits `--dead` runs whose image is on a closed
loopback port and `--live` runs whose image a local HTTP server serves (as `localhost`),
every one a fresh MISS. Printed per mode: the answers, the runs that ended FAILED but were
paid for, and the dollars the fake charged; then the dollars preflight saved. A benchmark,
not a test: it exits 0 either way.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.servers import ServerProcess, start_server  # noqa: E402

UPSTREAM_KEY = "bench-upstream-key-preflight"
ADMIN_KEY = "bench-admin-key-preflight-7e1"
WORKFLOW = "68628fe34727e611dfa219b4-v4"
PRICE = 3.9674
PNG = b"\x89PNG\r\n\x1a\n" + bytes(1024)
DEAD_IMAGE = "http://127.0.0.1:9/character.png"  # the discard port: nothing listens


class _Image(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("content-type", "image/png")
        self.send_header("content-length", str(len(PNG)))
        self.end_headers()
        self.wfile.write(PNG)

    def log_message(self, format: str, *args: Any) -> None:  # quiet: a benchmark prints figures
        pass


def run(mode: str, dead: int, live: int, image_url: str, workdir: Path) -> dict[str, Any]:
    fake = start_server(
        "fakeserver", "--api-key", UPSTREAM_KEY, "--clock", "virtual", "--plan", "unlimited",
        "--dead-image-host", "127.0.0.1", "--credits", "100000",
    )  # fmt: skip
    gateway: ServerProcess | None = None
    http = httpx.Client(timeout=30.0)
    try:
        gateway = start_server(
            "proxy", "--upstream-url", fake.url, "--db", str(workdir / f"{mode}.sqlite"),
            "--clock", "virtual",
            env={
                "SEGMIND_API_KEY": UPSTREAM_KEY,
                "PROXY_ADMIN_KEY": ADMIN_KEY,
                "PROXY_IMAGE_PREFLIGHT": "true" if mode == "on" else "false",
                "PROXY_IMAGE_ALLOW_NETWORKS": '["127.0.0.0/8", "::1/128"]',
            },
        )  # fmt: skip
        admin = {"x-admin-key": ADMIN_KEY}
        unlimited = dict.fromkeys(("submits_per_minute", "max_concurrent", "daily_budget"))
        made = http.post(
            f"{gateway.url}/admin/teams",
            json={"name": "bench", "limits": {**unlimited, "monthly_budget": None}},
            headers=admin,
        )
        made.raise_for_status()
        key = {"x-api-key": made.json()["api_key"]}
        answers: dict[int, int] = {}
        accepted: list[str] = []
        images = [DEAD_IMAGE] * dead + [image_url] * live
        for n, image in enumerate(images):
            body = {"Character_Image": image, "Scene_1": f"Scene number {n}"}
            answer = http.post(f"{gateway.url}/workflows/{WORKFLOW}", json=body, headers=key)
            answers[answer.status_code] = answers.get(answer.status_code, 0) + 1
            if answer.status_code == 200:
                accepted.append(answer.json()["request_id"])
        for _ in range(40):  # 40 virtual minutes: every run has ended
            http.post(f"{fake.url}/__admin/clock/advance", json={"seconds": 60}).raise_for_status()
            http.post(
                f"{gateway.url}/admin/clock/advance", json={"seconds": 60}, headers=admin
            ).raise_for_status()
        states = [
            http.get(f"{gateway.url}/workflows/request/{rid}", headers=key).json()["status"]
            for rid in accepted
        ]
        charged = (
            100000
            - http.get(
                f"{fake.url}/v1/get-user-credits", headers={"x-api-key": UPSTREAM_KEY}
            ).json()["credits"]
        )
        return {
            "answers": answers,
            "failed_paid": states.count("FAILED"),
            "completed": states.count("COMPLETED"),
            "charged": charged,
        }
    finally:
        http.close()
        if gateway is not None:
            gateway.stop()
        fake.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dead", type=int, default=20, help="runs with a dead image")
    parser.add_argument("--live", type=int, default=20, help="runs with a live image")
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Image)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    image_url = f"http://localhost:{server.server_address[1]}/character.png"
    try:
        with tempfile.TemporaryDirectory(prefix="bench-preflight-") as directory:
            results = {
                mode: run(mode, args.dead, args.live, image_url, Path(directory))
                for mode in ("off", "on")
            }
    finally:
        server.shutdown()
    print(f"{args.dead} runs with a dead image, {args.live} with a live one; ${PRICE} a run")
    for mode, result in results.items():
        print(
            f"preflight {mode:>3}: answers {result['answers']}, "
            f"{result['failed_paid']} paid runs FAILED, {result['completed']} COMPLETED, "
            f"${result['charged']:.2f} charged upstream"
        )
    saved = results["off"]["charged"] - results["on"]["charged"]
    wasted = results["off"]["failed_paid"] * PRICE
    print(
        f"saved by preflight: ${saved:.2f} "
        f"(= {results['off']['failed_paid']} paid failures x ${PRICE}: ${wasted:.2f})"
    )


if __name__ == "__main__":
    main()
