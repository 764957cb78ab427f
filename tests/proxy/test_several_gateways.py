"""Several gateway processes on one store: each run is polled by one of them, the runs of
a process that stopped (cleanly, or by dying) are taken over by another, and all of them
draw on one company-wide upstream budget.

Two real gateways run in-process on one SQLite file in front of one fake, on the same job
clock; b's upstream transport notes b's polls, so the fake's journal tells whose each poll
was. Liveness runs on wall clocks the tests drive (`VirtualClock`), so a lapsed lease
takes no real waiting.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette

from proxy.app import create_app
from proxy.core.clock import VirtualClock
from proxy.services.gateway import Gateway
from proxy.services.poller import SUBMIT_GRACE
from tests.proxy.harness import (
    GATEWAY_URL,
    Harness,
    UpstreamTransport,
    admission_for,
    start_harness,
    stop_harness,
)

pytestmark = pytest.mark.anyio

LEASE = 30.0
SHORT_RUNS = {"time_scale": 0.1}  # runs of about 67 s instead of 11 minutes
KNIGHT = {"Scene_1": "A knight"}
DRAGON = {"Scene_1": "A dragon"}


class CountingTransport(UpstreamTransport):
    """The shared fake, with the polls this one gateway sent."""

    def __init__(self, app: Starlette) -> None:
        super().__init__(app)
        self.polls: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and "/workflows/request/" in request.url.path:
            self.polls.append(request.url.path.rsplit("/", 1)[1])
        return await super().handle_async_request(request)


@dataclass
class Pair:
    """Gateway `a` (the harness's) and gateway `b`, on one store file, fake and job clock."""

    harness: Harness
    a_wall: VirtualClock
    b: Gateway
    b_http: httpx.AsyncClient
    b_wall: VirtualClock
    b_upstream: CountingTransport
    team_id: str = ""
    a_stopped: bool = False

    @property
    def a(self) -> Gateway:
        return self.harness.gateway

    def a_polls(self) -> Counter[str]:
        """Upstream ids a polled: every poll the fake saw, less b's."""
        seen = Counter(
            str(e["path"]).rsplit("/", 1)[1] for e in self.harness.upstream_calls("poll")
        )
        return seen - Counter(self.b_polls())

    def b_polls(self) -> Counter[str]:
        return Counter(self.b_upstream.polls)

    async def stop_a(self) -> None:
        await self.a.stop()
        self.a_stopped = True

    async def advance(self, seconds: float) -> None:
        """Move the job clock (both gateways and the fake) and settle both pollers."""
        await self.harness.advance(seconds)
        await self.b.poller.settle()

    async def beat(self, rounds: int = 1, *, a: bool = True) -> None:
        """Move the wall clocks one heartbeat interval at a time (a's too unless `a=False`,
        as if a were frozen), each time waiting for the heartbeat's round to finish."""
        hearts = [(self.b_wall, self.b)]
        if a and not self.a_stopped:
            hearts.append((self.a_wall, self.a))
        for _ in range(rounds):
            for wall, gateway in hearts:
                for _ in range(1000):  # its loop goes back to sleep in a few turns
                    if wall.sleepers:
                        break
                    await asyncio.sleep(0)
                due = gateway.heartbeat.sweeps + 1
                wall.advance(LEASE / 3)
                await gateway.heartbeat.wait_for_sweeps(due)
            await self.b.poller.settle()
            if not self.a_stopped:
                await self.a.poller.settle()

    async def submit(self, http: httpx.AsyncClient, key: str, body: dict[str, str]) -> str:
        answer = await http.post(
            "/workflows/68628fe34727e611dfa219b4-v4", json=body, headers={"x-api-key": key}
        )
        assert answer.status_code == 200, answer.text
        assert answer.headers["x-cache-status"] == "MISS"
        request_id: str = answer.json()["request_id"]
        return request_id

    async def status(self, http: httpx.AsyncClient, key: str, request_id: str) -> str:
        answer = await http.get(f"/workflows/request/{request_id}", headers={"x-api-key": key})
        assert answer.status_code == 200, answer.text
        status: str = answer.json()["status"]
        return status

    async def generation(self, request_id: str) -> tuple[str, str]:
        """The generation id and upstream id of a request's run."""
        found = await self.b.store.request(self.team_id, request_id)
        assert found is not None
        generation = found[1]
        assert generation.upstream_id is not None
        return generation.id, generation.upstream_id


MakePair = Callable[..., Awaitable[Pair]]


@pytest.fixture
async def make_pair(tmp_path: Path) -> AsyncIterator[MakePair]:
    made: list[Pair] = []

    async def make(**settings: Any) -> Pair:
        db = tmp_path / f"shared{len(made)}.sqlite"
        # Started at real time, so the admin CLI (on real time) reads their heartbeats right.
        started = time.time()
        a_wall, b_wall = VirtualClock(start=started), VirtualClock(start=started)
        settings = {"instance_id": "gateway-a", "lease_seconds": LEASE, **settings}
        harness = await start_harness(db, fake=SHORT_RUNS, wall_clock=a_wall, **settings)
        b_upstream = CountingTransport(harness.fake)
        b_settings = harness.gateway.settings.model_copy(update={"instance_id": "gateway-b"})
        b_app = create_app(
            b_settings, clock=harness.clock, upstream_transport=b_upstream, wall_clock=b_wall
        )
        b: Gateway = b_app.state.gateway
        await b.start()
        b_http = httpx.AsyncClient(transport=httpx.ASGITransport(app=b_app), base_url=GATEWAY_URL)
        made.append(Pair(harness, a_wall, b, b_http, b_wall, b_upstream))
        return made[-1]

    yield make
    for built in made:
        await built.b_http.aclose()
        await built.b.stop()
        if built.a_stopped:
            await built.harness.http.aclose()
        else:
            await stop_harness(built.harness)


@pytest.fixture
async def pair(make_pair: MakePair) -> Pair:
    return await make_pair()


async def team(pair: Pair) -> str:
    made = pair.harness.new_team("alpha")
    pair.team_id = (await pair.a.store.team("alpha")).id
    return made.key


async def test_two_gateways_on_one_store_poll_each_run_once(pair: Pair) -> None:
    key = await team(pair)
    knight = await pair.submit(pair.harness.http, key, KNIGHT)
    dragon = await pair.submit(pair.b_http, key, DRAGON)
    assert (pair.a.poller.tracked, pair.b.poller.tracked) == (1, 1)
    await pair.beat(4)  # heartbeats and sweeps on both: neither takes the other's run
    assert (pair.a.poller.tracked, pair.b.poller.tracked) == (1, 1)

    for _ in range(40):
        await pair.advance(7)
    for http in (pair.harness.http, pair.b_http):  # either answers for both runs
        assert await pair.status(http, key, knight) == "COMPLETED"
        assert await pair.status(http, key, dragon) == "COMPLETED"
    assert set(pair.a_polls()) == {(await pair.generation(knight))[1]}
    assert set(pair.b_polls()) == {(await pair.generation(dragon))[1]}
    assert len(pair.harness.upstream_calls("submit")) == 2


async def test_a_frozen_gateways_runs_are_taken_over_once_its_lease_lapses(pair: Pair) -> None:
    key = await team(pair)
    knight = await pair.submit(pair.harness.http, key, KNIGHT)
    await pair.advance(7)
    assert sum(pair.a_polls().values()) == 1

    await pair.beat(3, a=False)  # a's heartbeat (good for LEASE s) still holds: b waits
    assert pair.b.poller.tracked == 0
    await pair.beat(1, a=False)  # now it has lapsed
    assert pair.b.poller.tracked == 1
    generation_id = (await pair.generation(knight))[0]
    assert await pair.b.store.lease_holder(generation_id) == "gateway-b"

    for _ in range(20):
        await pair.advance(7)
    assert await pair.status(pair.harness.http, key, knight) == "COMPLETED"
    # a woke once more, saw the run was b's and stopped; b polled it to the end.
    assert sum(pair.a_polls().values()) == 1
    assert pair.a.poller.tracked == 0
    assert sum(pair.b_polls().values()) >= 1
    assert len(pair.harness.upstream_calls("submit")) == 1


async def test_a_cleanly_stopped_gateways_runs_are_taken_over_at_the_next_sweep(
    pair: Pair,
) -> None:
    key = await team(pair)
    knight = await pair.submit(pair.harness.http, key, KNIGHT)
    await pair.stop_a()  # releases its leases: nobody has to wait LEASE seconds
    await pair.beat(1)
    assert pair.b.poller.tracked == 1
    for _ in range(20):
        await pair.b.poller.settle()
        pair.harness.fake_clock.advance(7)
        pair.harness.clock.advance(7)
    await pair.b.poller.settle()
    assert await pair.status(pair.b_http, key, knight) == "COMPLETED"
    assert len(pair.harness.upstream_calls("submit")) == 1
    assert sum(pair.b_polls().values()) >= 1


async def test_a_run_its_dead_gateway_was_submitting_is_failed_not_resubmitted(
    pair: Pair,
) -> None:
    key = await team(pair)
    store = pair.a.store
    ask = admission_for(await store.team("alpha"), KNIGHT, instance="gateway-c")
    # What a third gateway leaves when it dies between admitting a run and Segmind's answer.
    await store.heartbeat("gateway-c", pair.b_wall.now() + LEASE)
    await store.admit(ask, pair.harness.clock.now())
    # Its budget slot taken and the request sent (SUBMITTING), no answer yet.
    assert await store.claim_send(ask.generation_id, pair.harness.clock.now(), 60) == 0

    await pair.beat(3)  # c's lease holds: its submit may still be under way
    assert await pair.status(pair.b_http, key, ask.request_id) == "QUEUED"
    await pair.beat(1)
    # c's lease lapsed and the run is b's, but c may be alive and still recording the id
    # Segmind gave it (its store failed at that moment): b waits SUBMIT_GRACE for that.
    assert await pair.status(pair.b_http, key, ask.request_id) == "QUEUED"
    await pair.advance(SUBMIT_GRACE)
    assert await pair.status(pair.b_http, key, ask.request_id) == "FAILED"
    assert pair.harness.upstream_calls("submit") == []  # it may have run: never sent again
    assert (pair.a.poller.tracked, pair.b.poller.tracked) == (0, 0)


# -- one upstream budget for all ------------------------------------------------------


async def test_the_upstream_budget_is_the_companys_across_processes(
    make_pair: MakePair,
) -> None:
    per_minute = 6  # one upstream call per 10 s after a burst of 6, for both together
    pair = await make_pair(upstream_requests_per_minute=per_minute)
    key = await team(pair)
    ids = [
        await pair.submit(http, key, {"Scene_1": f"run {n} via {name}"})
        for n in range(3)
        for name, http in (("a", pair.harness.http), ("b", pair.b_http))
    ]
    start = pair.harness.clock.now()
    for _ in range(200):
        await pair.advance(7)
        calls = pair.harness.upstream_calls("submit") + pair.harness.upstream_calls("poll")
        elapsed = pair.harness.clock.now() - start
        assert len(calls) <= per_minute + elapsed / (60 / per_minute) + 1e-9
        statuses = {await pair.status(pair.b_http, key, i) for i in ids}
        if statuses == {"COMPLETED"}:
            break
    else:
        pytest.fail(f"runs not finished: {statuses}")
    assert sum(pair.a_polls().values()) > 0  # both polled, within one budget
    assert sum(pair.b_polls().values()) > 0


async def test_an_upstream_429_seen_by_one_process_pauses_the_other(pair: Pair) -> None:
    key = await team(pair)
    await pair.submit(pair.harness.http, key, KNIGHT)
    await pair.submit(pair.b_http, key, DRAGON)
    pair.harness.fake_state.faults.script("poll", [{"code": 429, "headers": {"Retry-After": "30"}}])
    await pair.advance(7)
    statuses = [e["status"] for e in pair.harness.upstream_calls("poll")]
    assert statuses in ([429], [429, 200], [200, 429]), statuses
    for _ in range(4):  # up to 29 s after the 429: neither process polls
        await pair.advance(7)
    await pair.advance(1)
    assert len(pair.harness.upstream_calls("poll")) == len(statuses)
    await pair.advance(2)
    polls = [e["status"] for e in pair.harness.upstream_calls("poll")]
    assert polls[len(statuses) :] == [200, 200]


# -- what operators see ---------------------------------------------------------------

ADMIN_KEY = "test-admin-key-several-3e7a"


async def test_operators_see_each_process_alive_or_not_and_the_runs_it_polls(
    make_pair: MakePair,
) -> None:
    pair = await make_pair(admin_key=ADMIN_KEY)
    key = await team(pair)
    await pair.submit(pair.harness.http, key, KNIGHT)
    await pair.submit(pair.b_http, key, DRAGON)
    await pair.submit(pair.b_http, key, {"Scene_1": "A third run"})
    listed = (await pair.b_http.get("/admin/instances", headers={"x-admin-key": ADMIN_KEY})).json()
    assert listed["this"] == "gateway-b"
    assert [(i["id"], i["alive"], i["runs"]) for i in listed["instances"]] == [
        ("gateway-a", True, 1),
        ("gateway-b", True, 2),
    ]
    await pair.stop_a()
    done = await anyio.run_process(
        [sys.executable, "-m", "proxy", "admin", "list-instances", "--json",
         "--db", pair.b.settings.db],
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    instances = {i["id"]: i for i in json.loads(done.stdout)["instances"]}
    assert instances["gateway-a"]["alive"] is False  # a clean stop lapses it at once
    assert instances["gateway-b"]["alive"] is True
