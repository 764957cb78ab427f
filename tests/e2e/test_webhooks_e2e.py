"""Webhooks end to end through real processes: the fake and the gateway each under uvicorn
on a free loopback port, both on virtual clocks moved over HTTP, and a receiver (Starlette
under uvicorn, in a thread) that verifies deliveries with the client's helper. The gateway
is killed with SIGKILL at the awkward moments and restarted on the same store: every
message still arrives, duplicates only under the same `webhook-id`.

Virtual time drives the runs and the retry schedule; the only real waits are for sockets
(a process to listen, a delivery to cross loopback), each bounded.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from client import verify_webhook
from proxy.core.config import PRICE
from proxy.core.webhooks import MAX_BODY_BYTES, message_id
from tests.receiver import Received, Receiver, eventually
from tests.servers import ServerProcess, start_server

UPSTREAM_KEY = "test-upstream-key-e2e-hooks-6b2d8f0a"
ADMIN_KEY = "test-admin-key-e2e-hooks-1f9c"
WORKFLOW = "68628fe34727e611dfa219b4-v4"
ADMIN = {"x-admin-key": ADMIN_KEY}


@dataclass
class Stack:
    fake: ServerProcess
    db: Path
    gateway: ServerProcess | None = None
    key: str = ""
    secret: str = ""
    outputs: list[str] = field(default_factory=list)

    def start_gateway(self) -> None:
        self.gateway = start_server(
            "proxy", "--upstream-url", self.fake.url, "--db", str(self.db), "--clock", "virtual",
            env={
                "SEGMIND_API_KEY": UPSTREAM_KEY,
                "PROXY_ADMIN_KEY": ADMIN_KEY,
                "PROXY_WEBHOOK_ALLOW_NETWORKS": '["127.0.0.0/8"]',
                # Restarted on a new port, it is still the one process: it keeps its id
                # and so takes its runs back at once.
                "PROXY_INSTANCE_ID": "e2e-webhooks-gateway",
            },
        )  # fmt: skip

    def kill_gateway(self) -> None:
        """SIGKILL: no shutdown, no flush, nothing finished."""
        assert self.gateway is not None
        os.kill(self.gateway.proc.pid, signal.SIGKILL)
        self.outputs.append(self.gateway.stop())
        self.gateway = None

    @property
    def url(self) -> str:
        assert self.gateway is not None
        return self.gateway.url

    def advance(self, seconds: float) -> float:
        """Move the fake's and the gateway's clocks; the gateway's time after."""
        httpx.post(
            f"{self.fake.url}/__admin/clock/advance", json={"seconds": seconds}
        ).raise_for_status()
        moved = httpx.post(
            f"{self.url}/admin/clock/advance", json={"seconds": seconds}, headers=ADMIN
        )
        moved.raise_for_status()
        now: float = moved.json()["now"]
        return now

    def submit(self, webhook_url: str, inputs: dict[str, str]) -> str:
        answer = httpx.post(
            f"{self.url}/workflows/{WORKFLOW}",
            json=inputs,
            headers={"x-api-key": self.key, "X-Webhook-Url": webhook_url},
        )
        assert answer.status_code == 200, answer.text
        request_id: str = answer.json()["request_id"]
        return request_id

    def message(self, request_id: str) -> dict[str, Any]:
        """The request's one webhook message and its attempts, from the admin API."""
        answer = httpx.get(f"{self.url}/admin/requests/{request_id}/webhooks", headers=ADMIN)
        assert answer.status_code == 200, answer.text
        [message] = answer.json()["messages"]
        found: dict[str, Any] = message
        return found


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    fake = start_server("fakeserver", "--api-key", UPSTREAM_KEY, "--clock", "virtual")
    built = Stack(fake, tmp_path / "gateway.sqlite")
    try:
        built.start_gateway()
        made = httpx.post(f"{built.url}/admin/teams", json={"name": "e2e"}, headers=ADMIN)
        assert made.status_code == 201, made.text
        built.key, built.secret = made.json()["api_key"], made.json()["webhook_secret"]
        yield built
    finally:
        if built.gateway is not None:
            built.outputs.append(built.gateway.stop())
        fake.stop()
    for output in built.outputs:  # nothing secret in any gateway's output either
        assert UPSTREAM_KEY not in output
        assert built.secret not in output
        assert "t0ken" not in output  # a webhook URL's query often carries a token


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver()
    yield made
    made.stop()


def check_delivery(received: Received, stack: Stack, request_id: str, now: float) -> None:
    """Verified with the team's secret at the gateway's time; the completion, in full."""
    event = verify_webhook(
        received.body, received.headers, stack.secret, now=dt.datetime.fromtimestamp(now, dt.UTC)
    )
    assert event.type == "job.completed"
    assert event.webhook_id == message_id(request_id, "job.completed")
    data = json.loads(received.body)["data"]
    assert data["request_id"] == request_id
    assert data["status"] == "COMPLETED"
    assert sorted(data["videos"]) == ["1", "2", "3", "4"]
    assert data["cache_status"] == "MISS"
    assert data["cost"] == PRICE
    assert len(received.body) < MAX_BODY_BYTES
    assert UPSTREAM_KEY not in received.body.decode()
    assert UPSTREAM_KEY not in json.dumps(received.headers)


def test_a_completion_reaches_a_receiver_that_was_down_across_kill_9(
    stack: Stack, receiver: Receiver
) -> None:
    request_id = stack.submit(receiver.url, {"Scene_1": "A lighthouse in a gale"})
    stack.advance(300)
    stack.kill_gateway()  # mid-job
    stack.start_gateway()
    stack.advance(1900)  # the run completes; the receiver is down (nothing listens)
    message = eventually(
        lambda: (m := stack.message(request_id))["attempts"] and m, what="a first attempt"
    )
    assert message["state"] == "pending"
    assert message["attempts"][0]["status_code"] is None
    assert "ConnectError" in message["attempts"][0]["error"]
    assert receiver.received == []

    stack.kill_gateway()  # with the message still owed
    receiver.start()
    stack.start_gateway()
    now = stack.advance(2000)  # past the retry, on the restarted gateway's clock
    eventually(lambda: stack.message(request_id)["state"] == "delivered", what="delivered")

    assert receiver.received
    assert {r.id for r in receiver.received} == {message["webhook_id"]}
    for received in receiver.received:
        check_delivery(received, stack, request_id, now)
    assert len(json.loads(receiver.received[0].body)["data"]["output"]) == 4
    assert len(httpx.get(f"{stack.fake.url}/__admin/journal", params={"route": "submit"})
               .json()["entries"]) == 1  # fmt: skip


def test_a_kill_9_in_the_middle_of_a_delivery_loses_nothing(
    stack: Stack, receiver: Receiver
) -> None:
    receiver.start()
    receiver.hang.set()  # it takes the request, and never answers
    request_id = stack.submit(receiver.url, {"Scene_2": "A robot painting"})
    first_now = stack.advance(1900)
    eventually(lambda: receiver.received, what="the first attempt reaches the receiver")
    message = stack.message(request_id)
    assert (message["state"], message["attempts"]) == ("pending", [])  # in flight

    stack.kill_gateway()  # the terminal state is stored; the delivery never finished
    receiver.hang.clear()
    stack.start_gateway()
    now = stack.advance(2000)  # past the dead attempt's lease
    eventually(lambda: stack.message(request_id)["state"] == "delivered", what="delivered")

    first, *again = receiver.received
    assert again, "delivered again after the restart"
    assert {r.id for r in receiver.received} == {message_id(request_id, "job.completed")}
    assert all(r.body == first.body for r in again)
    check_delivery(first, stack, request_id, first_now)
    for received in again:
        check_delivery(received, stack, request_id, now)
    attempts = stack.message(request_id)["attempts"]
    assert [a["status_code"] for a in attempts][-1] == 200
