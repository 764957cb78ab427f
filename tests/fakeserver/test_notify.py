"""The fake's notifications of ended runs (`--notify-url`), from a real process to a real
receiver on loopback: when, what, how many get lost, and a receiver that is down."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx

from tests.receiver import Receiver, eventually
from tests.servers import ServerProcess, refused_port

SUBMIT = "/workflows/68628fe34727e611dfa219b4-v4"
KEY = "test-key-notify"

StartFake = Callable[..., ServerProcess]


def _submit(http: httpx.Client, seconds: float) -> str:
    answer = http.post(SUBMIT, json={}, headers={"Prefer": f"duration={seconds}"})
    assert answer.status_code == 200, answer.text
    request_id: str = answer.json()["request_id"]
    return request_id


def test_a_run_is_notified_its_delay_after_it_ends(
    fake_process: StartFake, listening_receiver: Receiver
) -> None:
    url = listening_receiver.url
    server = fake_process("--api-key", KEY, "--clock", "virtual", "--notify-url", url,
                          "--notify-delay", "5")  # fmt: skip
    with httpx.Client(base_url=server.url, headers={"x-api-key": KEY}) as http:
        request_id = _submit(http, 100)
        http.post("/__admin/clock/advance", json={"seconds": 104})
        assert http.get("/__admin/notify").json()["pending"] == 1  # ended, not yet due
        http.post("/__admin/clock/advance", json={"seconds": 1})
        [received] = eventually(lambda: listening_receiver.received, what="the notification")
        body = json.loads(received.body)
        assert body["event_type"] == "GRAPH_RUN"
        assert body["data"]["request_id"] == request_id
        assert body["data"]["status"] == "COMPLETED"
        assert body["data"]["poll_url"].endswith(f"/workflows/request/{request_id}")
        assert KEY not in received.body.decode()
        eventually(lambda: http.get("/__admin/notify").json()["sent"] == 1, what="counted")


def test_a_dead_receiver_or_a_dropped_notification_never_holds_the_fake_up(
    fake_process: StartFake,
) -> None:
    with refused_port() as port:
        server = fake_process("--api-key", KEY, "--clock", "virtual",
                              "--notify-url", f"http://127.0.0.1:{port}/hook")  # fmt: skip
        with httpx.Client(base_url=server.url, headers={"x-api-key": KEY}) as http:
            runs = [_submit(http, 50) for _ in range(3)]
            http.post("/__admin/clock/advance", json={"seconds": 60})
            eventually(lambda: http.get("/__admin/notify").json()["failed"] == 3, what="failed")
            assert {http.get(f"/workflows/request/{r}").json()["status"] for r in runs} == {
                "COMPLETED"
            }
            dropped = http.post("/__admin/notify", json={"drop_rate": 1.0}).json()
            assert dropped["drop_rate"] == 1.0
            _submit(http, 50)
            http.post("/__admin/clock/advance", json={"seconds": 60})
            eventually(lambda: http.get("/__admin/notify").json()["dropped"] == 1, what="drop")
            refused = http.post("/__admin/notify", json={"url": "ftp://x", "drop_rate": 2})
            assert refused.status_code == 400
            assert "http(s) URL" in refused.json()["error"]
