"""Webhook delivery against hostile receivers: a huge answer, a trickled answer, and one
team's many receivers, each on a real loopback socket through the gateway's real
SSRF-guarded transport (loopback allowlisted), the gateway in-process on virtual clocks.

The receivers here speak raw HTTP/1.1, since what is under test is what crosses the wire:
how much of an answer the gateway reads, how long it lets an attempt run, and how many
connections one team's receivers get at once. The gateway's deadline is on its clock, which
the tests move; the real waits are for work crossing a socket, bounded only in case it
never comes.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import SocketAttribute, SocketStream
from anyio.streams.buffered import BufferedByteReceiveStream

from proxy.core.webhooks import host_of
from proxy.db.tx import RESPONSE_EXCERPT
from proxy.services.deliverer import host_share, team_share
from proxy.store import open_store
from tests.proxy.harness import SAFETY, Harness
from tests.proxy.test_webhooks import HANG, KNIGHT, RUN, MakeHarness, outbox, submit
from tests.raw_http import read_request

pytestmark = pytest.mark.anyio

FLOOD_BYTES = 64 * 1024 * 1024  # what the flooding receiver offers (the was 400 MB)
CHUNK = 64 * 1024
TRICKLE_EVERY = 0.05  # real seconds between the trickling receivers' bytes
DEADLINE = 30.0  # the attempt's deadline (webhook_timeout), virtual: only advance() passes it
OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
GENEROUS = {"submits_per_minute": 1000, "max_concurrent": 100}


@dataclass
class Arrival:
    path: str
    address: str  # the loopback address the connection came in on


@dataclass
class HostileReceiver:
    """HTTP/1.1 on loopback, one request per connection; what it answers depends on the
    path's first segment:

    /flood...        200 with a `FLOOD_BYTES` body, sent as fast as the gateway takes it
    /trickle-head... a status line, then a header one byte every `TRICKLE_EVERY` s, forever
    /trickle-body... 200 with a 1 MB content-length, then one body byte every `TRICKLE_EVERY` s
    /hold...         nothing, until `release` is set; then 200
    anything else    200 "ok" at once
    """

    port: int = 0
    arrivals: list[Arrival] = field(default_factory=list)
    flood_sent: list[int] = field(default_factory=list)  # bytes sent, per finished flood
    flood_whole: list[bool] = field(default_factory=list)  # did the gateway take it all?
    release: anyio.Event = field(default_factory=anyio.Event)
    trickled: int = 0  # bytes the trickling paths have sent after their first chunk
    _arrived: anyio.Event = field(default_factory=anyio.Event)

    def url(self, path: str, address: str = "127.0.0.1") -> str:
        return f"http://{address}:{self.port}{path}"

    def count(self, prefix: str, address: str | None = None) -> int:
        return sum(
            1 for a in self.arrivals if a.path.startswith(prefix) and address in (None, a.address)
        )

    async def wait_for(self, prefix: str, count: int, address: str | None = None) -> None:
        """Until `count` requests reached paths starting with `prefix`."""
        with anyio.fail_after(SAFETY):
            while self.count(prefix, address) < count:
                self._arrived = anyio.Event()
                await self._arrived.wait()

    async def trickling(self) -> None:
        """Until a trickle is well under way: what came first (the status line) has been in
        the gateway's socket for several of its event loop's turns."""
        with anyio.fail_after(SAFETY):
            while self.trickled < 3:
                self._arrived = anyio.Event()
                await self._arrived.wait()

    async def _trickle(self, stream: SocketStream) -> None:
        while True:
            await anyio.sleep(TRICKLE_EVERY)
            await stream.send(b"a")
            self.trickled += 1
            self._arrived.set()

    async def handle(self, stream: SocketStream) -> None:
        async with stream:
            try:
                reader = BufferedByteReceiveStream(stream)
                request_line, _, _ = await read_request(reader)
                path = request_line.split(" ")[1]
                address = str(stream.extra(SocketAttribute.local_address)[0])  # noqa: S610
                self.arrivals.append(Arrival(path, address))
                self._arrived.set()
                await self._answer(stream, path)
            except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError, OSError):
                return

    async def _answer(self, stream: SocketStream, path: str) -> None:
        if path.startswith("/flood"):
            await self._flood(stream)
        elif path.startswith("/trickle-head"):
            await stream.send(b"HTTP/1.1 200 OK\r\nx-trickle: ")
            await self._trickle(stream)
        elif path.startswith("/trickle-body"):
            await stream.send(b"HTTP/1.1 200 OK\r\ncontent-length: 1048576\r\n\r\nstarted ")
            await self._trickle(stream)
        else:
            if path.startswith("/hold"):
                await self.release.wait()
            await stream.send(OK)

    async def _flood(self, stream: SocketStream) -> None:
        head = f"HTTP/1.1 200 OK\r\ncontent-length: {FLOOD_BYTES}\r\n\r\n".encode()
        await stream.send(head)
        sent, chunk = 0, b"a" * CHUNK
        try:
            while sent < FLOOD_BYTES:
                await stream.send(chunk)
                sent += CHUNK
        except (anyio.BrokenResourceError, OSError):
            pass  # the gateway hung up: what it had not taken is never sent
        self.flood_sent.append(sent)
        self.flood_whole.append(sent >= FLOOD_BYTES)
        self._arrived.set()


@asynccontextmanager
async def serving(*addresses: str) -> AsyncIterator[HostileReceiver]:
    """One `HostileReceiver` listening on one port of each loopback address given."""
    receiver = HostileReceiver()
    async with AsyncExitStack() as stack:
        for address in addresses or ("127.0.0.1",):
            tcp = await stack.enter_async_context(
                await anyio.create_tcp_listener(local_host=address, local_port=receiver.port)
            )
            receiver.port = tcp.extra(SocketAttribute.local_port)  # noqa: S610 (anyio)
            tasks = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(tasks.cancel_scope.cancel)
            tasks.start_soon(tcp.serve, receiver.handle)
        try:
            yield receiver
        finally:
            receiver.release.set()


async def loopback(make_harness: MakeHarness, **settings: Any) -> Harness:
    return await make_harness(webhook_allow_networks=["127.0.0.0/8"], **settings)


async def past_the_deadline(harness: Harness, receiver: HostileReceiver) -> None:
    """Once the receiver trickles, move the gateway's clock through the attempt's deadline
    (`DEADLINE`) and wait until the attempt is recorded."""
    await receiver.trickling()
    await harness.advance(DEADLINE)


# -- a huge answer --------------------------------------------------------------------------


async def test_a_huge_answer_is_not_read_past_a_few_kilobytes(make_harness: MakeHarness) -> None:
    harness = await loopback(make_harness, webhook_timeout=HANG)
    team = harness.new_team("alpha")
    async with serving() as receiver:
        request_id = await submit(harness, team.key, receiver.url("/flood"))
        await harness.advance(RUN)  # the attempt is made and recorded
        with anyio.fail_after(SAFETY):
            while not receiver.flood_sent:  # noqa: ASYNC110 (the sender's own loop ends it)
                await anyio.sleep(0.01)
    message, [attempt] = await outbox(harness, request_id)
    assert (message.state, attempt.status_code, attempt.error) == ("delivered", 200, None)
    assert attempt.response == "a" * RESPONSE_EXCERPT
    # The gateway hung up after the first few KB: the receiver could not send the rest
    # (what it did send before noticing is what the two sockets' kernel buffers hold).
    assert receiver.flood_whole == [False]
    assert receiver.flood_sent[0] < FLOOD_BYTES // 4


# -- one deadline for the whole attempt -----------------------------------------------------


async def test_a_status_line_trickled_byte_by_byte_is_cut_off_at_the_deadline(
    make_harness: MakeHarness,
) -> None:
    # Each byte comes well within the deadline, so only a deadline for the whole attempt
    # (not one per read) ever ends it.
    harness = await loopback(make_harness, webhook_timeout=DEADLINE)
    team = harness.new_team("alpha")
    async with serving() as receiver:
        request_id = await submit(harness, team.key, receiver.url("/trickle-head"))
        await harness.advance(RUN, webhooks=False)
        await past_the_deadline(harness, receiver)
    message, [attempt] = await outbox(harness, request_id)
    assert message.state == "pending"  # retried on the schedule, like any timeout
    assert (attempt.status_code, attempt.error) == (None, "no answer within 30 s")


async def test_a_2xx_whose_answer_trickles_counts_and_keeps_what_came_by_the_deadline(
    make_harness: MakeHarness,
) -> None:
    harness = await loopback(make_harness, webhook_timeout=DEADLINE)
    team = harness.new_team("alpha")
    async with serving() as receiver:
        request_id = await submit(harness, team.key, receiver.url("/trickle-body"))
        await harness.advance(RUN, webhooks=False)
        await past_the_deadline(harness, receiver)
    message, [attempt] = await outbox(harness, request_id)
    # The receiver said 200 in time: it has the message, so it is not sent again.
    assert (message.state, attempt.status_code, attempt.error) == ("delivered", 200, None)
    assert str(attempt.response).startswith("started a")


# -- one team's receivers take at most its share --------------------------------------------


async def fill_with_one_team(harness: Harness, receiver: HostileReceiver, urls: list[str]) -> None:
    """Team "hog" queues one hanging message per URL: one paid run, then free cache HITs."""
    hog = harness.new_team("hog", **GENEROUS)
    await submit(harness, hog.key, urls[0])
    await harness.advance(RUN, webhooks=False)
    for url in urls[1:]:
        await submit(harness, hog.key, url)  # a HIT: its message is due at once


@pytest.mark.parametrize("spread", ["paths", "hosts"])
async def test_one_teams_many_hanging_receivers_leave_slots_for_another_team(
    make_harness: MakeHarness, spread: str
) -> None:
    # Eight slots; the hog team's twelve receivers are on twelve paths of one host, or on
    # twelve loopback hosts: either way, the per-endpoint share alone would let them take
    # every slot, for as long as each answer takes.
    concurrency, receivers = 8, 12
    harness = await loopback(make_harness, webhook_timeout=HANG, webhook_concurrency=concurrency)
    hosts = [f"127.0.0.{n}" for n in range(1, receivers + 1)] if spread == "hosts" else []
    async with serving(*hosts) as receiver:
        urls = [
            receiver.url(f"/hold-{n}", hosts[n] if hosts else "127.0.0.1") for n in range(receivers)
        ]
        await fill_with_one_team(harness, receiver, urls)
        share = team_share(concurrency, 1)
        await receiver.wait_for("/hold", share)
        other = harness.new_team("other")
        await submit(harness, other.key, receiver.url("/prompt"), {"Scene_1": "A bard"})
        await harness.advance(RUN, webhooks=False)
        # The hog's receivers hang until released (their deadline is on the clock, which
        # stands still): /prompt arrives only through a slot the hog could not take.
        await receiver.wait_for("/prompt", 1)
        assert receiver.count("/hold") == share == concurrency // 2
        receiver.release.set()
        await harness.settle_webhooks()
        # Released, the hog's other messages go in turn; nothing was lost.
        await receiver.wait_for("/hold", receivers)


async def test_a_host_many_teams_use_leaves_slots_for_every_other_host(
    make_harness: MakeHarness,
) -> None:
    concurrency = 8
    harness = await loopback(make_harness, webhook_timeout=HANG, webhook_concurrency=concurrency)
    async with serving("127.0.0.1", "127.0.0.2") as receiver:
        held: Counter[str] = Counter()
        for name in ("a", "b", "c"):
            team = harness.new_team(name, **GENEROUS)
            scene = {"Scene_1": f"A knight of {name}"}
            await submit(harness, team.key, receiver.url(f"/hold-{name}-0"), scene)
            await harness.advance(RUN, webhooks=False)
            for n in range(1, 6):
                await submit(harness, team.key, receiver.url(f"/hold-{name}-{n}"), scene)
            teams_sending = len(held) + 1
            fits = min(
                team_share(concurrency, teams_sending),
                host_share(concurrency) - sum(held.values()),
            )
            if fits:
                await receiver.wait_for(f"/hold-{name}", fits)
            held[name] = receiver.count(f"/hold-{name}")
        # a: half the slots; b: a third; c: what the host's share leaves, nothing.
        assert list(held.values()) == [4, 2, 0]
        assert receiver.count("/hold", "127.0.0.1") == host_share(concurrency) == 6
        elsewhere = harness.new_team("elsewhere")
        await submit(harness, elsewhere.key, receiver.url("/prompt", "127.0.0.2"), KNIGHT)
        await harness.advance(RUN, webhooks=False)
        await receiver.wait_for("/prompt", 1)


def test_the_shares_for_the_default_64_slots() -> None:
    # Alone, a team may hold half; beside others, an equal share with one kept back.
    assert [team_share(64, n) for n in (1, 2, 3, 63, 64)] == [32, 21, 16, 1, 1]
    assert host_share(64) == 48
    assert (team_share(1, 1), host_share(1), host_share(2)) == (1, 1, 2)


# -- the batch read -------------------------------------------------------------------------


async def test_the_batch_read_leaves_out_teams_and_hosts_at_their_share(tmp_path: Path) -> None:
    # The hog's many due messages come first; left out by team, or by host in any of its
    # spellings, they no longer fill the batch in front of another team's.
    store = open_store(str(tmp_path / "outbox.sqlite"))
    hog_urls = [
        "http://127.0.0.1/a",
        "http://127.1/b",
        "HTTP://0x7f000001:80/c",
        "http://127.0.0.1:9/d",
    ]
    rows = [("hog", url, float(n)) for n, url in enumerate(hog_urls * 5)]
    rows.append(("other", "https://hooks.example/x", 100.0))
    with sqlite3.connect(tmp_path / "outbox.sqlite") as db:
        db.executemany(
            "INSERT INTO outbox (id, request_id, team_id, url, event, body, state, "
            "next_attempt_at, created_at, updated_at, host) "
            "VALUES (?, 'r', ?, ?, 'job.completed', x'7b7d', 'pending', ?, 0, 0, ?)",
            # The host as the store records it when it queues a message (proxy/rules/outbox).
            [(f"msg_{n}", team, url, due, host_of(url)) for n, (team, url, due) in enumerate(rows)],
        )
    try:
        assert [m.team_id for m in await store.due_messages(200.0, 3)] == ["hog"] * 3
        by_team = await store.due_messages(200.0, 3, skip_teams=["hog"])
        by_host = await store.due_messages(200.0, 3, skip_hosts=["127.0.0.1"])
        assert [m.team_id for m in by_team + by_host] == ["other", "other"]
        assert await store.next_due_at(skip_teams=["hog"]) == 100.0
        assert await store.next_due_at(skip_hosts=["127.0.0.1"]) == 100.0
        assert await store.due_messages(200.0, 3, skip_hosts=["hooks.example", "127.0.0.1"]) == []
    finally:
        store.close()
