"""The fair queue of paid submits, on both backends, with three processes taking slots at
once: weighted shares within one slot of exact while teams are backlogged, no slot idle
while a run waits, no run sent twice, and first in, first out within a team of equal
urgency (more urgent first)."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from proxy.core.config import TeamLimits
from proxy.db import Team
from proxy.rules import AdmissionRequest
from proxy.rules.budget import MARGIN, WINDOW
from proxy.store import Store, open_store

pytestmark = pytest.mark.anyio

NOW = 1_790_000_000.0
REPO = Path(__file__).resolve().parents[2]
PER_MINUTE = 6
STEP = WINDOW + MARGIN  # every call of the step before has left the window: 6 free slots


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    opened = open_store(store_url)
    yield opened
    opened.close()


async def _team(store: Store, name: str, weight: float) -> Team:
    limits = TeamLimits(
        submits_per_minute=None,
        max_concurrent=None,
        daily_budget=None,
        monthly_budget=None,
        weight=weight,
    )
    return await store.create_team(Team(uuid.uuid4().hex, name, NOW, limits, None))


async def _admit(store: Store, team: Team, count: int, at: float, priority: int = 3) -> list[str]:
    ids = []
    for i in range(count):
        ask = AdmissionRequest(
            team=team,
            request_id=uuid.uuid4().hex,
            generation_id=uuid.uuid4().hex,
            scope_key=uuid.uuid4().hex,
            workflow_id="contract",
            inputs={},
            price=1.0,
            priority=priority,
        )
        ids.append((await store.admit(ask, at + i * 1e-3)).generation.id)
    return ids


@contextmanager
def _senders(url: str, runs: list[str]) -> Iterator[list[subprocess.Popen[str]]]:
    """Three processes, each holding every third run, as leases would spread them."""
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.store.sender", url, str(PER_MINUTE)],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    try:
        for i, process in enumerate(processes):
            assert process.stdout is not None
            assert process.stdin is not None
            assert process.stdout.readline().strip() == "ready"
            process.stdin.write(json.dumps(runs[i::3]) + "\n")
            process.stdin.flush()
        yield processes
        for process in processes:
            assert process.stdin is not None
            process.stdin.write("stop\n")
            process.stdin.flush()
            process.wait(timeout=30)
    finally:
        for process in processes:
            process.kill()
            process.wait()
            for stream in (process.stdin, process.stdout):
                if stream is not None:
                    stream.close()


def _step(processes: list[subprocess.Popen[str]], at: float) -> list[str]:
    """Every process tries every run it holds at `at`, all at once; the runs sent."""
    for process in processes:
        assert process.stdin is not None
        process.stdin.write(f"{at}\n")
        process.stdin.flush()
    sent: list[str] = []
    for process in processes:
        assert process.stdout is not None
        sent += json.loads(process.stdout.readline())
    return sent


async def test_three_processes_share_the_slots_by_weight_in_order(
    store: Store, store_url: str
) -> None:
    light, heavy = await _team(store, "light", 1), await _team(store, "heavy", 2)
    # The light team's whole flood is admitted first: admission order must not matter.
    queues = {"light": await _admit(store, light, 24, NOW), "heavy": []}
    queues["heavy"] = await _admit(store, heavy, 24, NOW + 1)
    team_of = {g: name for name, ids in queues.items() for g in ids}
    everyone = [g for ids in zip(queues["light"], queues["heavy"], strict=True) for g in ids]
    sent: list[str] = []
    with _senders(store_url, everyone) as processes:
        at = NOW + 2
        while len(sent) < len(everyone):
            step = _step(processes, at)
            waiting = len(everyone) - len(sent)
            # No slot idle while a run waits; never more than the window holds.
            assert len(step) == min(PER_MINUTE, waiting), (at, step)
            sent += step
            shares = {name: sum(team_of[g] == name for g in sent) for name in queues}
            if all(shares[name] < len(ids) for name, ids in queues.items()):
                # Both still backlogged: the light team has a third of the slots, +-1.
                assert abs(shares["light"] - len(sent) / 3) <= 1, shares
            for name, ids in queues.items():  # first in, first out within each team
                assert set(ids[: shares[name]]) == {g for g in sent if team_of[g] == name}
            at += STEP
    assert len(sent) == len(set(sent)) == len(everyone)  # each run sent once, all sent
    assert await store.waiting_runs() == 0


async def test_a_team_back_from_idle_goes_next_and_urgency_orders_its_own_runs(
    store: Store,
) -> None:
    flood, single = await _team(store, "flood", 1), await _team(store, "single", 1)
    floods = await _admit(store, flood, 8, NOW)
    for i, g in enumerate(floods[:PER_MINUTE]):  # the flood alone takes the whole window
        assert await store.claim_send(g, NOW + i, PER_MINUTE) == 0
    later = NOW + 10
    urgent = (await _admit(store, flood, 1, later, priority=0))[0]
    (other,) = await _admit(store, single, 1, later)
    free = NOW + STEP  # the first call has left the window, the other five not yet
    # One slot frees: it is the other team's, though the flood's runs came first.
    assert await store.claim_send(floods[6], free, PER_MINUTE) > 0
    assert await store.claim_send(urgent, free, PER_MINUTE) > 0
    place = await store.queue_place(urgent, free, PER_MINUTE)
    assert place is not None
    assert place.position == 2
    assert await store.claim_send(other, free, PER_MINUTE) == 0
    # The next slot: the flood's own urgent run overtakes its earlier runs.
    second = free + 1
    assert await store.claim_send(floods[6], second, PER_MINUTE) > 0
    assert await store.claim_send(urgent, second, PER_MINUTE) == 0
    assert await store.queue_place(urgent, second, PER_MINUTE) is None
    place = await store.queue_place(floods[7], second, PER_MINUTE)
    # Behind floods[6], each a slot later: when the calls at NOW + 2 and NOW + 3 leave.
    assert place is not None
    assert place.position == 2
    assert place.send_at == pytest.approx(NOW + 3 + STEP)


async def test_polls_go_by_need_and_by_team_share_where_slots_are_short(store: Store) -> None:
    busy, other = await _team(store, "busy", 1), await _team(store, "other", 1)
    runs = await _admit(store, busy, 4, NOW)
    (single,) = await _admit(store, other, 1, NOW)
    # All five in flight upstream; their next polls were due at these times.
    due = {runs[0]: NOW + 30, runs[1]: NOW + 10, runs[2]: NOW + 20, runs[3]: NOW + 40}
    due[single] = NOW + 35
    for g, at in due.items():
        await store.mark_submitted(g, f"up-{g}", NOW, at)
    later = NOW + 50  # every poll is overdue
    for i in range(PER_MINUTE - 2):  # the window has two slots left
        assert await store.take_upstream("poll", NOW + i, PER_MINUTE) == 0
    # Not the busy team's third most overdue, nor its least: they wait.
    assert await store.take_upstream("poll", later, PER_MINUTE, runs[0]) > 0
    assert await store.take_upstream("poll", later, PER_MINUTE, runs[3]) > 0
    # The other team's one run has its share though four of the busy team's are more due.
    assert await store.take_upstream("poll", later, PER_MINUTE, single) == 0
    # Polled: the poller writes what it heard and when to poll next.
    await store.record_status(single, "PROCESSING", later, next_poll_at=later + 60, polled=True)
    # The most overdue of the busy team goes; the window is then full.
    assert await store.take_upstream("poll", later, PER_MINUTE, runs[1]) == 0
    assert await store.take_upstream("poll", later, PER_MINUTE, runs[2]) > 0
