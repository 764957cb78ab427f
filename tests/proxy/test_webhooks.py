"""Webhook delivery through the whole gateway, in-process and on the virtual clocks.

The gateway runs in front of the real fake (see harness.py); its deliverer sends either
to an in-process Starlette receiver (an `httpx.ASGITransport` in place of the
SSRF-guarded sockets: deterministic, and `harness.advance` settles every attempt), or,
where real network behaviour matters (refused connections, timeouts, a hanging
receiver), through the real guarded transport to a small HTTP server on loopback, with
loopback allowlisted. Every delivery is verified as a team's receiver would: with
`client.verify_webhook`, the team's secret, and the gateway's (virtual) time.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import json
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import anyio
import httpx
import pytest
from anyio.abc import Listener, SocketAttribute, SocketListener, SocketStream
from anyio.streams.buffered import BufferedByteReceiveStream
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from client import InvalidWebhook, WebhookEvent, verify_webhook
from proxy.core.config import PRICE
from proxy.core.webhooks import MAX_BODY_BYTES, RETRY_SCHEDULE, message_id
from proxy.db import Attempt, OutboxMessage
from proxy.db.sqlite import SQLiteBackend
from proxy.store import open_store
from tests.proxy.harness import SAFETY, UPSTREAM_KEY, Harness
from tests.raw_http import read_request

pytestmark = pytest.mark.anyio

MakeHarness = Callable[..., Awaitable[Harness]]

# A public IP literal: the submit-time SSRF check passes without DNS, and the ASGI
# transport keeps every delivery in-process (nothing is ever sent to this address).
HOOKS = "https://93.184.215.14"
WORKFLOW_ID = "68628fe34727e611dfa219b4-v4"
KNIGHT = {"Scene_1": "A knight"}
RUN = 2000.0  # virtual seconds that finish any run of the fake's default distribution
# A webhook deadline (on the gateway's clock) longer than the clock moves of a test, so a
# held receiver's attempt stays in flight until released, however many runs end meanwhile.
HANG = 10 * RUN
ADMIN_KEY = "test-admin-key-webhooks-4c1d"
ADMIN = {"x-admin-key": ADMIN_KEY}


# -- receivers ------------------------------------------------------------------------------


@dataclass
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # the gateway's virtual time when it arrived

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]

    @property
    def data(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)["data"]
        return data

    def verify(self, secret: str) -> WebhookEvent:
        """As the team's receiver would, at the gateway's time (it signs with its clock)."""
        now = dt.datetime.fromtimestamp(self.at, dt.UTC)
        return verify_webhook(self.body, self.headers, secret, now=now)


Answer: TypeAlias = "int | tuple[int, dict[str, str], str] | Callable[[Delivery], Answer]"


def _answer(answer: Answer, delivery: Delivery) -> tuple[int, dict[str, str], str]:
    while callable(answer):
        answer = answer(delivery)
    if isinstance(answer, int):
        return answer, {}, "ok" if answer < 300 else f"answer {answer}"
    return answer


class Receiver:
    """An in-process receiver: records every request, answers each path from its script
    (in order), then 200."""

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        self.scripts: dict[str, list[Answer]] = {}
        self.clock: Callable[[], float] = lambda: 0.0
        self.app = Starlette(routes=[Route("/{path:path}", self.handle, methods=["POST"])])

    def script(self, path: str, *answers: Answer) -> str:
        """Queue answers for `path`; returns the webhook URL to submit."""
        self.scripts.setdefault(path, []).extend(answers)
        return f"{HOOKS}{path}"

    def to(self, path: str) -> list[Delivery]:
        return [d for d in self.deliveries if d.path == path]

    async def handle(self, request: Request) -> Response:
        delivery = Delivery(
            request.url.path, dict(request.headers), await request.body(), self.clock()
        )
        self.deliveries.append(delivery)
        queue = self.scripts.get(delivery.path)
        status, headers, text = _answer(queue.pop(0) if queue else 200, delivery)
        return Response(text, status, headers)


class SocketReceiver:
    """HTTP/1.1 on 127.0.0.1, one request per connection, for what only a real socket
    shows (refused connections, timeouts). `hold` makes the matching requests hang until
    released; every other request is answered 200."""

    def __init__(self, clock: Callable[[], float], port: int) -> None:
        self.clock = clock
        self.port = port
        self.deliveries: list[Delivery] = []
        self.hold: set[str] = set()  # paths whose requests hang
        self.release = anyio.Event()
        self.arrived = anyio.Event()  # set on every arrival (replaced after each wait)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def to(self, path: str) -> list[Delivery]:
        return [d for d in self.deliveries if d.path == path]

    async def handle(self, stream: SocketStream) -> None:
        async with stream:
            try:
                reader = BufferedByteReceiveStream(stream)
                request_line, headers, body = await read_request(reader)
                path = request_line.split(" ")[1]
                self.deliveries.append(Delivery(path, headers, body, self.clock()))
                self.arrived.set()
                if path in self.hold:
                    await self.release.wait()
                await stream.send(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
                )
            except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError):
                return

    async def wait_for(self, path: str, count: int, seconds: float = SAFETY) -> list[Delivery]:
        """Until `count` requests reached `path`: work crossing a real socket, bounded only
        in case it never comes (no deadline of the gateway's is real time)."""
        with anyio.fail_after(seconds):
            while len(self.to(path)) < count:
                self.arrived = anyio.Event()
                await self.arrived.wait()
        return self.to(path)


@asynccontextmanager
async def listening(
    receiver: SocketReceiver, bound: socket.socket | None = None
) -> AsyncIterator[SocketReceiver]:
    """Serve `receiver` until the block ends: on `bound` (a socket bound to its port, which
    it takes over), else on its port, 0 for one the system picks."""
    tcp: Listener[SocketStream]
    if bound is not None:
        bound.listen()
        tcp = await SocketListener.from_socket(bound)
    else:
        tcp = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=receiver.port)
    async with tcp:
        receiver.port = tcp.extra(SocketAttribute.local_port)  # noqa: S610 (anyio, not Django)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(tcp.serve, receiver.handle)
            try:
                yield receiver
            finally:
                receiver.release.set()
                tasks.cancel_scope.cancel()


# -- fixtures and helpers -------------------------------------------------------------------

HooksFactory = Callable[..., Awaitable[tuple[Harness, Receiver]]]


@pytest.fixture
def hooks(make_harness: MakeHarness) -> HooksFactory:
    """A harness whose webhooks go to a fresh in-process `Receiver`."""

    async def make(**settings: Any) -> tuple[Harness, Receiver]:
        receiver = Receiver()
        transport = httpx.ASGITransport(app=receiver.app)
        harness = await make_harness(webhook_transport=transport, **settings)
        receiver.clock = lambda: harness.clock.now()
        return harness, receiver

    return make


async def submit(harness: Harness, key: str, url: str, body: Any = None, **headers: str) -> str:
    answer = await harness.submit(
        key, KNIGHT if body is None else body, **{"X-Webhook-Url": url}, **headers
    )
    assert answer.status_code == 200, answer.text
    request_id: str = answer.json()["request_id"]
    return request_id


async def outbox(harness: Harness, request_id: str) -> tuple[OutboxMessage, list[Attempt]]:
    """The request's one webhook message and its attempts, read from the store."""
    [(message, attempts)] = await harness.gateway.store.messages_for_request(None, request_id)
    return message, attempts


async def until_due(harness: Harness, request_id: str) -> None:
    """Move the clocks to just past the message's next attempt."""
    message, _ = await outbox(harness, request_id)
    assert message.state == "pending", message
    assert message.next_attempt_at is not None, message
    await harness.advance(message.next_attempt_at - harness.clock.now() + 0.001)


def assert_clean(deliveries: list[Delivery]) -> None:
    """Small bodies, and never the upstream key anywhere in what a receiver gets."""
    assert deliveries
    for delivery in deliveries:
        assert len(delivery.body) < MAX_BODY_BYTES <= 20_000
        assert UPSTREAM_KEY not in delivery.body.decode()
        assert UPSTREAM_KEY not in json.dumps(delivery.headers)
        assert delivery.headers["content-type"] == "application/json"


# -- one signed delivery per request --------------------------------------------------------


async def test_a_completed_run_is_delivered_once_signed_with_the_team_secret(
    hooks: HooksFactory,
) -> None:
    harness, receiver = await hooks()
    team = harness.new_team("alpha")
    assert team.webhook_secret
    assert team.webhook_secret.startswith("whsec_")
    other = harness.new_team("beta")
    url = receiver.script("/hooks/alpha")
    request_id = await submit(harness, team.key, url)
    await harness.advance(100)
    assert receiver.deliveries == []  # nothing before the run ends
    await harness.advance(RUN)

    [delivery] = receiver.deliveries
    event = delivery.verify(team.webhook_secret)
    assert event.type == "job.completed"
    assert event.webhook_id == delivery.id == message_id(request_id, "job.completed")
    assert delivery.headers["webhook-timestamp"] == str(int(delivery.at))
    assert delivery.headers["webhook-signature"].startswith("v1,")
    assert len(delivery.headers["webhook-signature"].split(" ")) == 1
    with pytest.raises(InvalidWebhook):  # another team's secret does not verify it
        delivery.verify(str(other.webhook_secret))

    polled = (await harness.poll(team.key, request_id)).json()
    output = json.loads(polled["output"])
    document = json.loads(delivery.body)
    assert document["type"] == "job.completed"
    assert document["timestamp"].endswith("Z")
    data = document["data"]
    assert data["request_id"] == request_id
    assert data["workflow_id"] == WORKFLOW_ID
    assert data["status"] == "COMPLETED"
    assert data["output"] == output  # decoded, not a JSON string inside JSON
    assert data["videos"] == {
        item["keyname"].split("_")[1]: item["value"]["data"] for item in output
    }
    assert sorted(data["videos"]) == ["1", "2", "3", "4"]
    assert data["error"] is None
    assert data["cache_status"] == "MISS"
    assert data["cost"] == PRICE
    assert event.result.request_id == request_id
    assert sorted(event.result.videos) == [1, 2, 3, 4]

    message, attempts = await outbox(harness, request_id)
    assert (message.state, message.attempts, message.next_attempt_at) == ("delivered", 1, None)
    assert [a.status_code for a in attempts] == [200]
    await harness.advance(200_000)  # exactly one: nothing more, however long we wait
    assert len(receiver.deliveries) == 1
    assert_clean(receiver.deliveries)


@pytest.mark.parametrize(("failed_runs", "cost"), [("charge", PRICE), ("refund", 0.0)])
async def test_a_failed_run_sends_job_failed_with_its_error(
    hooks: HooksFactory, failed_runs: str, cost: float
) -> None:
    harness, receiver = await hooks(fake={"failure_rate": 1.0}, failed_runs=failed_runs)
    team = harness.new_team("alpha")
    request_id = await submit(harness, team.key, receiver.script("/hook"))
    await harness.advance(RUN)
    polled = (await harness.poll(team.key, request_id)).json()
    assert polled["status"] == "FAILED"

    [delivery] = receiver.deliveries
    event = delivery.verify(str(team.webhook_secret))
    assert event.type == "job.failed"
    assert event.failed
    assert delivery.id == message_id(request_id, "job.failed")
    data = delivery.data
    assert data["request_id"] == request_id
    assert data["status"] == "FAILED"
    assert data["error"] == polled["error_message"]
    assert data["error"]
    assert data["videos"] == {}
    assert data["output"] is None
    assert data["cache_status"] == "MISS"
    assert data["cost"] == cost
    assert_clean(receiver.deliveries)


async def test_every_request_gets_its_own_delivery_hit_and_join_included(
    hooks: HooksFactory,
) -> None:
    harness, receiver = await hooks()
    team = harness.new_team("alpha")
    secret = str(team.webhook_secret)
    miss = await submit(harness, team.key, receiver.script("/miss"))
    join = await submit(harness, team.key, receiver.script("/join"))
    silent = await harness.submit(team.key, KNIGHT)  # a JOIN without a webhook: no message
    assert silent.headers["x-cache-status"] == "JOIN"
    await harness.advance(RUN)
    assert sorted(d.path for d in receiver.deliveries) == ["/join", "/miss"]

    hit = await submit(harness, team.key, receiver.script("/hit"))
    await harness.settle_webhooks()  # a HIT is answered, and delivered, at once
    keyed = await submit(harness, team.key, receiver.script("/keyed"), **{"Idempotency-Key": "k"})
    replay = await harness.submit(
        team.key, KNIGHT, **{"X-Webhook-Url": f"{HOOKS}/keyed", "Idempotency-Key": "k"}
    )
    assert replay.json()["request_id"] == keyed  # the same request: no second message
    await harness.advance(200_000)

    by_path = {d.path: d for d in receiver.deliveries}
    assert len(receiver.deliveries) == len(by_path) == 4
    expected = {"/miss": (miss, "MISS"), "/join": (join, "JOIN"), "/hit": (hit, "HIT"),
                "/keyed": (keyed, "HIT")}  # fmt: skip
    videos = by_path["/miss"].data["videos"]
    for path, (request_id, cache_status) in expected.items():
        delivery = by_path[path]
        event = delivery.verify(secret)
        assert event.type == "job.completed"
        assert delivery.id == message_id(request_id, "job.completed")
        data = delivery.data
        assert data["request_id"] == request_id
        assert data["cache_status"] == cache_status
        assert data["status"] == "COMPLETED"
        assert data["videos"] == videos
        assert data["cost"] == (PRICE if cache_status == "MISS" else 0.0)
    assert len({d.id for d in receiver.deliveries}) == 4
    assert len(harness.upstream_calls("submit")) == 1
    assert_clean(receiver.deliveries)


async def test_a_submit_that_fails_in_its_answer_sends_no_webhook_but_its_joiners_get_one(
    hooks: HooksFactory,
) -> None:
    # The first caller learns of the failure in its own (502) answer, which carries no
    # request id it could match a webhook to; a request that joined it was answered 200
    # with an id, so only that one is told by webhook.
    harness, receiver = await hooks()
    team = harness.new_team("alpha")
    # Its first connection is refused (nothing sent), so it is still in flight when the
    # second request joins; then Segmind fails it.
    harness.upstream_transport.refuse_connections = 1
    harness.fake_state.faults.script("submit", [{"code": 502}])
    first = asyncio.ensure_future(
        harness.submit(team.key, KNIGHT, **{"X-Webhook-Url": receiver.script("/first")})
    )
    await harness.clock.wait_for_sleepers(1)
    joined = await submit(harness, team.key, receiver.script("/joined"))
    await harness.advance(10)
    failed = await first
    assert failed.status_code == 502, failed.text
    await harness.advance(200_000)
    [delivery] = receiver.deliveries
    assert delivery.path == "/joined"
    assert delivery.data["request_id"] == joined
    assert delivery.verify(str(team.webhook_secret)).failed
    assert_clean(receiver.deliveries)


async def test_a_join_to_a_failed_run_is_told_it_failed(hooks: HooksFactory) -> None:
    harness, receiver = await hooks(fake={"failure_rate": 1.0})
    team = harness.new_team("alpha")
    first = await submit(harness, team.key, receiver.script("/a"))
    joined = await submit(harness, team.key, receiver.script("/b"))
    await harness.advance(RUN)
    deliveries = {d.data["request_id"]: d for d in receiver.deliveries}
    assert sorted(deliveries) == sorted([first, joined])
    assert deliveries[joined].data["cache_status"] == "JOIN"
    assert deliveries[joined].data["cost"] == 0.0
    assert all(d.verify(str(team.webhook_secret)).failed for d in deliveries.values())


# -- retries on the virtual clock -----------------------------------------------------------


async def test_a_500_is_retried_about_5_s_later_with_the_same_id_and_a_fresh_timestamp(
    hooks: HooksFactory,
) -> None:
    harness, receiver = await hooks()
    team = harness.new_team("alpha")
    request_id = await submit(harness, team.key, receiver.script("/hook", 500, 200))
    await harness.advance(RUN)
    [first] = receiver.deliveries
    message, [attempt] = await outbox(harness, request_id)
    assert (message.state, attempt.status_code) == ("pending", 500)
    assert message.next_attempt_at is not None
    assert 4.0 <= message.next_attempt_at - attempt.at <= 6.0  # 5 s +-20%
    await harness.advance(message.next_attempt_at - harness.clock.now() - 0.01)
    assert len(receiver.deliveries) == 1  # not a moment early
    await harness.advance(0.02)
    _first_again, second = receiver.deliveries
    assert 4.0 <= second.at - first.at <= 6.0 + 0.01  # 5 s +-20%, seen 0.01 s after it fell due
    assert second.id == first.id  # receivers de-duplicate on it
    assert int(second.headers["webhook-timestamp"]) - int(first.headers["webhook-timestamp"]) >= 4
    assert second.headers["webhook-signature"] != first.headers["webhook-signature"]
    assert second.body == first.body  # the same message, re-signed at its own time
    assert first.verify(str(team.webhook_secret)).webhook_id == first.id
    assert second.verify(str(team.webhook_secret)).webhook_id == first.id
    message, attempts = await outbox(harness, request_id)
    assert (message.state, [a.status_code for a in attempts]) == ("delivered", [500, 200])


async def test_the_schedule_runs_its_course_then_the_message_fails(hooks: HooksFactory) -> None:
    harness, receiver = await hooks()
    team = harness.new_team("alpha")
    request_id = await submit(harness, team.key, receiver.script("/down", *[503] * 20))
    await harness.advance(RUN)
    for made, expected in enumerate(RETRY_SCHEDULE[1:], start=1):
        message, attempts = await outbox(harness, request_id)
        assert len(attempts) == made == len(receiver.deliveries)
        assert message.state == "pending"
        assert message.next_attempt_at is not None
        delay = message.next_attempt_at - attempts[-1].at
        assert expected * 0.8 <= delay <= expected * 1.2, (made, delay)
        await until_due(harness, request_id)
    message, attempts = await outbox(harness, request_id)
    assert len(attempts) == len(RETRY_SCHEDULE) == 8
    assert message.state == "failed"
    assert message.next_attempt_at is None
    assert "503" in str(message.last_error)
    assert len({d.id for d in receiver.deliveries}) == 1
    await harness.advance(400_000)
    assert len(receiver.deliveries) == 8


async def test_the_schedule_is_configurable(hooks: HooksFactory) -> None:
    harness, receiver = await hooks(webhook_schedule=[0, 60, 600])
    team = harness.new_team("alpha")
    request_id = await submit(harness, team.key, receiver.script("/down", *[500] * 5))
    await harness.advance(RUN)
    message, attempts = await outbox(harness, request_id)
    assert message.next_attempt_at is not None
    assert 48 <= message.next_attempt_at - attempts[0].at <= 72
    await until_due(harness, request_id)
    message, attempts = await outbox(harness, request_id)
    assert message.next_attempt_at is not None
    assert 480 <= message.next_attempt_at - attempts[1].at <= 720
    await until_due(harness, request_id)
    message, attempts = await outbox(harness, request_id)
    assert (message.state, len(attempts)) == ("failed", 3)


def retry_at(seconds: float) -> Callable[[Delivery], Answer]:
    """A 429 whose Retry-After is an HTTP date `seconds` after the gateway's time."""

    def answer(delivery: Delivery) -> Answer:
        moment = dt.datetime.fromtimestamp(delivery.at + seconds, dt.UTC)
        return 429, {"Retry-After": email.utils.format_datetime(moment, usegmt=True)}, "slow"

    return answer


@pytest.mark.parametrize(
    ("answer", "low", "high"),
    [
        pytest.param((429, {"Retry-After": "120"}, "slow down"), 120, 120, id="seconds"),
        pytest.param((429, {"Retry-After": "9999999"}, "slow down"), 3600, 3600, id="clamped"),
        pytest.param(retry_at(600), 599, 601, id="http-date"),
        pytest.param((503, {"Retry-After": "90"}, "maintenance"), 90, 90, id="503"),
        pytest.param((429, {"Retry-After": "1"}, "slow down"), 4, 6, id="never-sooner"),
    ],
)
async def test_retry_after_is_honoured_and_clamped(
    hooks: HooksFactory, answer: Answer, low: float, high: float
) -> None:
    harness, receiver = await hooks()
    team = harness.new_team("alpha")
    request_id = await submit(harness, team.key, receiver.script("/hook", answer, 200))
    await harness.advance(RUN)
    message, [attempt] = await outbox(harness, request_id)
    assert message.state == "pending"
    assert message.next_attempt_at is not None
    assert low - 0.01 <= message.next_attempt_at - attempt.at <= high + 0.01
    await harness.advance(message.next_attempt_at - harness.clock.now() - 0.5)
    assert len(receiver.deliveries) == 1
    await until_due(harness, request_id)
    assert len(receiver.deliveries) == 2
    assert (await outbox(harness, request_id))[0].state == "delivered"


async def test_a_redirect_is_not_followed_and_is_retried(hooks: HooksFactory) -> None:
    harness, receiver = await hooks()
    team = harness.new_team("alpha")
    moved = (302, {"Location": f"{HOOKS}/elsewhere"}, "")
    request_id = await submit(harness, team.key, receiver.script("/moved", moved, 200))
    await harness.advance(RUN)
    message, [attempt] = await outbox(harness, request_id)
    assert (message.state, attempt.status_code) == ("pending", 302)
    assert receiver.to("/elsewhere") == []
    await until_due(harness, request_id)
    assert [d.path for d in receiver.deliveries] == ["/moved", "/moved"]
    assert (await outbox(harness, request_id))[0].state == "delivered"


async def test_410_disables_the_endpoint_for_that_team(hooks: HooksFactory) -> None:
    harness, receiver = await hooks()
    team = harness.new_team("alpha")
    other = harness.new_team("beta")
    gone = receiver.script("/gone", 410)
    first = await submit(harness, team.key, gone)
    await harness.advance(RUN)
    message, [attempt] = await outbox(harness, first)
    assert (message.state, attempt.status_code, message.next_attempt_at) == ("disabled", 410, None)
    assert "410" in str(message.last_error)

    later = await submit(harness, team.key, gone)  # a HIT: its message is queued at once
    elsewhere = await submit(harness, team.key, receiver.script("/fine"))
    theirs = await submit(harness, other.key, gone)  # another team's endpoint: still on
    await harness.advance(RUN + 200_000)
    message, attempts = await outbox(harness, later)
    assert (message.state, attempts) == ("disabled", [])
    assert [d.data["request_id"] for d in receiver.to("/gone")] == [first, theirs]
    assert [d.data["request_id"] for d in receiver.to("/fine")] == [elsewhere]
    assert (await outbox(harness, theirs))[0].state == "delivered"


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 422])
async def test_other_4xx_stop_at_once(hooks: HooksFactory, status: int) -> None:
    harness, receiver = await hooks()
    team = harness.new_team("alpha")
    request_id = await submit(harness, team.key, receiver.script("/hook", status, 200))
    await harness.advance(RUN)
    await harness.advance(200_000)
    message, attempts = await outbox(harness, request_id)
    assert (message.state, message.next_attempt_at) == ("failed", None)
    assert [a.status_code for a in attempts] == [status]
    assert str(status) in str(message.last_error)
    assert len(receiver.deliveries) == 1


# -- real sockets: refused connections, timeouts, a hanging receiver ------------------------


async def test_a_refused_connection_is_retried(make_harness: MakeHarness) -> None:
    harness = await make_harness(webhook_allow_networks=["127.0.0.0/8"])
    team = harness.new_team("alpha")
    # Bound but not listening: connections are refused, and no other process can take the
    # port before the receiver listens on it (closing it again after `listening` is a no-op).
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        receiver = SocketReceiver(lambda: harness.clock.now(), bound.getsockname()[1])
        request_id = await submit(harness, team.key, receiver.url("/hook"))
        await harness.advance(RUN)
        message, [attempt] = await outbox(harness, request_id)
        assert message.state == "pending"
        assert attempt.status_code is None
        assert "ConnectError" in str(attempt.error)
        async with listening(receiver, bound):
            await until_due(harness, request_id)
            [delivery] = await receiver.wait_for("/hook", 1)
    assert delivery.verify(str(team.webhook_secret)).webhook_id == message.id
    message, attempts = await outbox(harness, request_id)
    assert (message.state, [a.status_code for a in attempts]) == ("delivered", [None, 200])


async def test_a_receiver_that_answers_too_late_is_retried(make_harness: MakeHarness) -> None:
    harness = await make_harness(webhook_allow_networks=["127.0.0.0/8"], webhook_timeout=30)
    team = harness.new_team("alpha")
    async with listening(SocketReceiver(lambda: harness.clock.now(), 0)) as receiver:
        request_id = await submit(harness, team.key, receiver.url("/slow"))
        receiver.hold.add("/slow")
        await harness.advance(RUN, webhooks=False)
        await receiver.wait_for("/slow", 1)
        # In flight: the deadline is the clock's.
        assert (await outbox(harness, request_id))[1] == []
        await harness.advance(30)
        message, [attempt] = await outbox(harness, request_id)
        assert message.state == "pending"
        assert attempt.status_code is None
        assert attempt.error == "no answer within 30 s"
        receiver.hold.clear()
        await until_due(harness, request_id)
    first, second = receiver.to("/slow")
    assert first.id == second.id
    assert second.verify(str(team.webhook_secret)).webhook_id == first.id
    message, attempts = await outbox(harness, request_id)
    assert (message.state, [a.status_code for a in attempts]) == ("delivered", [None, 200])


async def test_a_hanging_receiver_never_delays_another_teams_delivery(
    make_harness: MakeHarness,
) -> None:
    harness = await make_harness(webhook_allow_networks=["127.0.0.0/8"], webhook_timeout=HANG)
    slow, fast = harness.new_team("slow"), harness.new_team("fast")
    async with listening(SocketReceiver(lambda: harness.clock.now(), 0)) as receiver:
        receiver.hold.add("/slow")
        stuck = await submit(harness, slow.key, receiver.url("/slow"))
        prompt = await submit(harness, fast.key, receiver.url("/fast"))
        await harness.advance(RUN, webhooks=False)  # both runs end: both messages are due
        await receiver.wait_for("/slow", 1)  # it has its request, and does not answer
        # /slow hangs until released (its deadline is on the clock, which stands still), so
        # /fast arrives only through a slot of its own; the waits below are safety bounds.
        [delivery] = await receiver.wait_for("/fast", 1)
        assert delivery.verify(str(fast.webhook_secret)).result.request_id == prompt
        with anyio.fail_after(SAFETY):
            # The delivery finishes on its own task; its outcome is only in the store.
            while (await outbox(harness, prompt))[0].state != "delivered":  # noqa: ASYNC110
                await anyio.sleep(0.01)
        message, attempts = await outbox(harness, stuck)
        assert (message.state, attempts) == ("pending", [])  # still waiting on the slow one
        receiver.release.set()
        await harness.settle_webhooks()
    assert (await outbox(harness, stuck))[0].state == "delivered"
    assert len(receiver.to("/slow")) == 1


async def test_many_messages_to_one_hanging_receiver_do_not_hold_up_another_team(
    make_harness: MakeHarness,
) -> None:
    harness = await make_harness(
        webhook_allow_networks=["127.0.0.0/8"], webhook_timeout=HANG, webhook_concurrency=2
    )
    slow, fast = harness.new_team("slow"), harness.new_team("fast")
    async with listening(SocketReceiver(lambda: harness.clock.now(), 0)) as receiver:
        receiver.hold.add("/slow")
        for scene in ("A", "B", "C"):
            await submit(harness, slow.key, receiver.url("/slow"), {"Scene_1": scene})
        await harness.advance(RUN, webhooks=False)
        # Two slots in all, and one endpoint may hold at most half of them: one /slow
        # delivery hangs, the other two wait their turn instead of taking every slot.
        await receiver.wait_for("/slow", 1)
        await submit(harness, fast.key, receiver.url("/fast"))
        await harness.advance(RUN, webhooks=False)
        try:
            await receiver.wait_for("/fast", 1)
            assert len(receiver.to("/slow")) == 1
        finally:
            receiver.release.set()
            await harness.settle_webhooks()
        assert len(receiver.to("/slow")) == 3  # the others went once the slot was free


async def test_a_backlog_to_one_hanging_receiver_does_not_hide_other_due_messages(
    make_harness: MakeHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The deliverer reads due messages a batch at a time; with the batch shrunk to 2,
    # a hanging endpoint's backlog is bigger than a batch, as 100+ messages would be.
    monkeypatch.setattr("proxy.services.deliverer.BATCH", 2)
    harness = await make_harness(
        webhook_allow_networks=["127.0.0.0/8"], webhook_timeout=HANG, webhook_concurrency=4
    )
    slow, fast = harness.new_team("slow"), harness.new_team("fast")
    async with listening(SocketReceiver(lambda: harness.clock.now(), 0)) as receiver:
        receiver.hold.add("/slow")
        for _ in range(5):  # one run, four joined to it: five messages, due first
            await submit(harness, slow.key, receiver.url("/slow"))
        await harness.advance(RUN, webhooks=False)
        await receiver.wait_for("/slow", 2)  # its share of the slots, hanging
        await submit(harness, fast.key, receiver.url("/fast"))
        await harness.advance(RUN, webhooks=False)
        try:
            await receiver.wait_for("/fast", 1)
            assert len(receiver.to("/slow")) == 2
        finally:
            receiver.release.set()
            await harness.settle_webhooks()
        assert len(receiver.to("/slow")) == 5


# -- secret rotation ------------------------------------------------------------------------


async def test_after_a_rotation_both_secrets_verify_until_the_overlap_ends(
    hooks: HooksFactory,
) -> None:
    harness, receiver = await hooks(admin_key=ADMIN_KEY, webhook_secret_overlap=600)
    team = harness.new_team("alpha")
    old = str(team.webhook_secret)
    url = receiver.script("/hook")
    await submit(harness, team.key, url)
    await harness.advance(RUN)

    rotated = await harness.http.post("/admin/teams/alpha/webhook-secret", headers=ADMIN)
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["webhook_secret"]
    assert new.startswith("whsec_")
    assert new != old
    assert rotated.json()["overlap_seconds"] == 600
    await submit(harness, team.key, url)  # a HIT: delivered at once
    await harness.settle_webhooks()
    await harness.advance(590)
    await submit(harness, team.key, url)
    await harness.settle_webhooks()
    await harness.advance(11)  # the overlap is over
    await submit(harness, team.key, url)
    await harness.settle_webhooks()

    before, during, late, after = receiver.deliveries
    assert len(before.headers["webhook-signature"].split(" ")) == 1
    before.verify(old)
    with pytest.raises(InvalidWebhook):
        before.verify(new)
    for delivery in (during, late):
        assert len(delivery.headers["webhook-signature"].split(" ")) == 2
        assert delivery.verify(old).webhook_id == delivery.verify(new).webhook_id == delivery.id
    assert len(after.headers["webhook-signature"].split(" ")) == 1
    after.verify(new)
    with pytest.raises(InvalidWebhook):
        after.verify(old)
    assert old not in json.dumps(after.headers)
    assert new not in json.dumps(after.headers)
    unknown = await harness.http.post("/admin/teams/nobody/webhook-secret", headers=ADMIN)
    assert unknown.status_code == 404


# -- admin: attempts, resend, recover -------------------------------------------------------


async def test_the_admin_api_lists_attempts_and_resends_a_message(hooks: HooksFactory) -> None:
    harness, receiver = await hooks(admin_key=ADMIN_KEY)
    team = harness.new_team("alpha")
    long_answer: tuple[int, dict[str, str], str] = (500, {}, "x" * 5000)
    request_id = await submit(harness, team.key, receiver.script("/hook", long_answer, 200))
    await harness.advance(RUN)
    await until_due(harness, request_id)

    path = f"/admin/requests/{request_id}/webhooks"
    assert (await harness.http.get(path)).status_code == 401
    answer = await harness.http.get(path, headers=ADMIN)
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert report["request_id"] == request_id
    [message] = report["messages"]
    webhook_id = message_id(request_id, "job.completed")
    assert message["webhook_id"] == webhook_id
    assert message["event"] == "job.completed"
    assert message["state"] == "delivered"
    assert message["url"] == f"{HOOKS}/hook"
    failed, delivered = message["attempts"]
    assert [failed["attempt"], delivered["attempt"]] == [1, 2]
    assert [failed["status_code"], delivered["status_code"]] == [500, 200]
    assert failed["response"] == "x" * 512  # truncated
    assert failed["error"] == "the receiver answered 500"
    assert delivered["response"] == "ok"
    assert delivered["error"] is None
    assert all(a["latency_ms"] >= 0 for a in (failed, delivered))
    assert 4.0 <= delivered["at"] - failed["at"] <= 6.0 + 0.001  # until_due: 1 ms past due
    missing = await harness.http.get("/admin/requests/nope/webhooks", headers=ADMIN)
    assert missing.status_code == 404
    assert "no webhook messages" in missing.json()["error"]

    resent = await harness.http.post(f"/admin/webhooks/{webhook_id}/resend", headers=ADMIN)
    assert resent.status_code == 200, resent.text
    assert resent.json()["webhook_id"] == webhook_id
    assert resent.json()["state"] == "pending"
    await harness.settle_webhooks()
    assert [d.id for d in receiver.deliveries] == [webhook_id] * 3
    assert receiver.deliveries[-1].body == receiver.deliveries[0].body
    receiver.deliveries[-1].verify(str(team.webhook_secret))
    message_now, attempts = await outbox(harness, request_id)
    assert (message_now.state, len(attempts)) == ("delivered", 3)
    nothing = await harness.http.post("/admin/webhooks/msg_nope/resend", headers=ADMIN)
    assert nothing.status_code == 404


async def test_a_resend_re_enables_a_disabled_endpoint(hooks: HooksFactory) -> None:
    harness, receiver = await hooks(admin_key=ADMIN_KEY)
    team = harness.new_team("alpha")
    gone = receiver.script("/gone", 410)
    request_id = await submit(harness, team.key, gone)
    await harness.advance(RUN)
    assert (await outbox(harness, request_id))[0].state == "disabled"
    webhook_id = message_id(request_id, "job.completed")
    resent = await harness.http.post(f"/admin/webhooks/{webhook_id}/resend", headers=ADMIN)
    assert resent.status_code == 200
    await harness.settle_webhooks()
    assert (await outbox(harness, request_id))[0].state == "delivered"
    later = await submit(harness, team.key, gone)  # the endpoint is on again
    await harness.settle_webhooks()
    assert (await outbox(harness, later))[0].state == "delivered"
    assert [d.id for d in receiver.deliveries][:2] == [webhook_id] * 2


async def test_recover_queues_again_every_failed_message_since_a_time(hooks: HooksFactory) -> None:
    harness, receiver = await hooks(admin_key=ADMIN_KEY)
    team = harness.new_team("alpha")
    old = await submit(harness, team.key, receiver.script("/old", 400))
    await harness.advance(RUN)
    await harness.advance(100)
    since = harness.clock.now()
    recent = await submit(harness, team.key, receiver.script("/recent", 400))  # a HIT
    fine = await submit(harness, team.key, receiver.script("/fine"))
    await harness.settle_webhooks()
    assert [(await outbox(harness, r))[0].state for r in (old, recent, fine)] == [
        "failed", "failed", "delivered"]  # fmt: skip

    iso = dt.datetime.fromtimestamp(since, dt.UTC).isoformat().replace("+00:00", "Z")
    answer = await harness.http.post("/admin/webhooks/recover", json={"since": iso}, headers=ADMIN)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"queued": 1}
    await harness.settle_webhooks()
    assert [(await outbox(harness, r))[0].state for r in (old, recent, fine)] == [
        "failed", "delivered", "delivered"]  # fmt: skip
    first, again = receiver.to("/recent")
    assert first.id == again.id == message_id(recent, "job.completed")

    everything = await harness.http.post(
        "/admin/webhooks/recover", json={"since": 0, "team": "alpha"}, headers=ADMIN
    )
    assert everything.json() == {"queued": 1}
    await harness.settle_webhooks()
    assert (await outbox(harness, old))[0].state == "delivered"
    assert len(receiver.to("/fine")) == 1  # a delivered message is never recovered
    bad = await harness.http.post(
        "/admin/webhooks/recover", json={"since": "yesterday"}, headers=ADMIN
    )
    assert bad.status_code == 400
    assert "ISO 8601" in bad.json()["error"]


async def cli(db: Path, *args: str) -> Any:
    """`python -m proxy admin ARGS --db DB --json`, its JSON answer."""
    done = await anyio.run_process(
        [sys.executable, "-m", "proxy", "admin", *args, "--db", str(db), "--json"],
        cwd=db.parent,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    return json.loads(done.stdout)


async def test_the_cli_lists_resends_recovers_and_rotates(
    hooks: HooksFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The CLI writes the store from another process, on real time: start the clocks at
    # real time, and let the running gateway look for such messages every 50 ms.
    monkeypatch.setattr("proxy.services.deliverer.IDLE_CHECK", 0.05)
    harness, receiver = await hooks(clock_start=time.time())
    db = Path(harness.gateway.settings.db)
    team = harness.new_team("alpha")
    refused = await submit(harness, team.key, receiver.script("/refused", 400, 200))
    retried = await submit(harness, team.key, receiver.script("/retried", *[500] * 5))
    await harness.advance(RUN)
    await harness.advance(1)
    recent = await submit(harness, team.key, receiver.script("/recent", 400, 200))  # a HIT
    await harness.settle_webhooks()
    # One message is waiting on the clock for its retry; the CLI's must not wait for it.
    assert (await outbox(harness, retried))[0].state == "pending"

    report = await cli(db, "webhooks", refused)
    [message] = report["messages"]
    webhook_id = message_id(refused, "job.completed")
    assert (message["webhook_id"], message["state"]) == (webhook_id, "failed")
    assert [a["status_code"] for a in message["attempts"]] == [400]

    since = dt.datetime.fromtimestamp(harness.clock.now() - 0.5, dt.UTC).isoformat()
    assert await cli(db, "recover", "--since", since) == {"queued": 1}
    await wait_for_state(harness, recent, "delivered")
    assert (await outbox(harness, refused))[0].state == "failed"  # older than --since

    resent = await cli(db, "resend", webhook_id)
    assert (resent["webhook_id"], resent["state"]) == (webhook_id, "pending")
    await wait_for_state(harness, refused, "delivered")
    first, again = receiver.to("/refused")
    assert first.id == again.id == webhook_id
    again.verify(str(team.webhook_secret))

    rotated = await cli(db, "rotate-secret", "alpha")
    new = rotated["webhook_secret"]
    assert new.startswith("whsec_")
    assert new != team.webhook_secret
    await submit(harness, team.key, receiver.script("/rotated"))
    await harness.settle_webhooks()
    [delivery] = receiver.to("/rotated")
    assert delivery.verify(new).webhook_id == delivery.verify(str(team.webhook_secret)).webhook_id


async def wait_for_state(harness: Harness, request_id: str, state: str) -> None:
    """A change made by another process is picked up by the gateway within its idle check
    (real time, shortened to 50 ms here): wait for it, for real."""
    with anyio.fail_after(SAFETY):
        while (await outbox(harness, request_id))[0].state != state:  # noqa: ASYNC110
            await anyio.sleep(0.02)


def test_the_cli_explains_an_unknown_request(tmp_path: Path) -> None:
    db = tmp_path / "empty.sqlite"
    open_store(str(db)).close()  # admin commands never create a store
    done = subprocess.run(
        [sys.executable, "-m", "proxy", "admin", "webhooks", "nope", "--db", str(db)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "no webhook messages for request 'nope'" in done.stderr


# -- SSRF at submit -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1/hook", "loopback"),
        ("http://10.0.0.1/hook", "private"),
        ("http://169.254.169.254/latest/meta-data/", "metadata"),
        ("http://user:secret@93.184.215.14/hook", "credentials"),
        ("ftp://93.184.215.14/hook", "http"),
    ],
)
async def test_a_webhook_url_that_is_not_public_is_refused_at_submit(
    make_harness: MakeHarness, url: str, reason: str
) -> None:
    harness = await make_harness()  # the default: an empty allowlist
    team = harness.new_team("alpha")
    before = await harness.credits(team.key)
    answer = await harness.submit(team.key, KNIGHT, **{"X-Webhook-Url": url})
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert "X-Webhook-Url" in error
    assert reason in error
    assert "secret" not in error  # credentials are never echoed
    assert harness.upstream_calls("submit") == []
    assert await harness.credits(team.key) == before
    backend = harness.gateway.store.backend
    assert isinstance(backend, SQLiteBackend)
    db = backend._connection()
    assert db.execute("SELECT COUNT(*) FROM requests").fetchone()[0] == 0
    assert db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 0
