"""The store contract: every rule, on both backends (SQLite file, PostgreSQL database).

The rules are written once (`proxy/rules/`); these tests hold each backend to them,
including where only the database can make them exact: admissions racing from several
processes, leases taken over and fenced, the outbox after a crash, cache expiry,
Idempotency-Key replays, and the schema's migrations.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from pathlib import Path

import anyio
import pytest

from proxy.core.config import TeamLimits
from proxy.db import StorageUnavailable, Team
from proxy.db.migrations import latest_version
from proxy.rules import (
    AdmissionRequest,
    Fence,
    IdempotencyMismatch,
    LeaseLost,
    LimitReached,
    TeamExists,
)
from proxy.store import Store, open_store
from tests.proxy.harness import blocking

pytestmark = pytest.mark.anyio

PRICE = 4.0
NOW = 1_790_000_000.0  # a fixed moment: budgets count by UTC day and month
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    opened = open_store(store_url)
    yield opened
    opened.close()


async def _team(store: Store, name: str = "alpha", **limits: float | None) -> Team:
    defaults = {"submits_per_minute": None, "max_concurrent": None}
    return await store.create_team(
        Team(uuid.uuid4().hex, name, NOW, TeamLimits(**{**defaults, **limits}), "whsec_test")
    )


def _ask(team: Team, scope: str | None = None, **extra: object) -> AdmissionRequest:
    return AdmissionRequest(
        team=team,
        request_id=uuid.uuid4().hex,
        generation_id=uuid.uuid4().hex,
        scope_key=scope or uuid.uuid4().hex,
        workflow_id="contract",
        inputs={"scope": scope},
        price=PRICE,
        instance="gateway-a",
        **extra,  # type: ignore[arg-type]
    )


async def test_a_team_name_is_taken_once(store: Store) -> None:
    await _team(store, "alpha")
    with pytest.raises(TeamExists):
        await _team(store, "alpha")


async def test_identical_requests_share_one_run_and_a_finished_one_is_a_hit(store: Store) -> None:
    team = await _team(store)
    first = await store.admit(_ask(team, "same"), NOW)
    joined = await store.admit(_ask(team, "same"), NOW)
    assert (first.request.cache_status, joined.request.cache_status) == ("MISS", "JOIN")
    assert joined.generation.id == first.generation.id
    fence = Fence("gateway-a", first.token or 0)
    await store.mark_submitted(first.generation.id, "up-1", NOW, NOW + 5, fence)
    await store.record_status(
        first.generation.id, "COMPLETED", NOW + 10, fence=fence, output="{}", terminal=True,
        cache_ttl=100.0,
    )  # fmt: skip
    hit = await store.admit(_ask(team, "same"), NOW + 50)
    assert hit.request.cache_status == "HIT"
    assert hit.generation.id == first.generation.id
    # The cache lasts cache_ttl: after it, the same request is a new, paid run.
    expired = await store.admit(_ask(team, "same"), NOW + 111)
    assert expired.request.cache_status == "MISS"
    assert await store.spent(team.id, NOW) == (2 * PRICE, 2 * PRICE)


async def test_an_idempotency_key_replays_and_refuses_another_body(store: Store) -> None:
    team = await _team(store)
    first = await store.admit(_ask(team, "a", idempotency_key="k1", fingerprint="f1"), NOW)
    again = await store.admit(_ask(team, "a", idempotency_key="k1", fingerprint="f1"), NOW + 1)
    assert again.replayed
    assert again.request.id == first.request.id
    with pytest.raises(IdempotencyMismatch):
        await store.admit(_ask(team, "b", idempotency_key="k1", fingerprint="f2"), NOW + 2)
    assert await store.spent(team.id, NOW) == (PRICE, PRICE)


async def test_runs_that_fill_a_budget_exactly_are_all_admitted(store: Store) -> None:
    # Spend adds up in floats: 0.1 + 0.1 + 0.1 is 0.30000000000000004, and the run that
    # fills a budget of 0.3 must not be refused for a rounding error.
    team = await _team(store, daily_budget=0.3)
    for _ in range(3):
        await store.admit(replace(_ask(team), price=0.1), NOW)
    with pytest.raises(LimitReached):
        await store.admit(replace(_ask(team), price=0.1), NOW)


async def test_a_failed_run_is_refunded_once(store: Store) -> None:
    team = await _team(store)
    admitted = await store.admit(_ask(team), NOW)
    fence = Fence("gateway-a", admitted.token or 0)
    for _ in range(2):
        await store.record_status(
            admitted.generation.id, "FAILED", NOW + 1, fence=fence, error="boom", terminal=True,
            refund=True,
        )  # fmt: skip
    assert await store.spent(team.id, NOW) == (0.0, 0.0)


async def test_a_completed_run_is_never_refunded(store: Store) -> None:
    # The rule holds whatever its caller asks: a result delivered is paid for.
    team = await _team(store)
    admitted = await store.admit(_ask(team), NOW)
    fence = Fence("gateway-a", admitted.token or 0)
    await store.record_status(
        admitted.generation.id, "COMPLETED", NOW + 1, fence=fence, output="[]", terminal=True,
        refund=True,
    )  # fmt: skip
    assert await store.spent(team.id, NOW) == (PRICE, PRICE)


async def test_a_finished_run_queues_one_webhook_per_request_but_the_answered_one(
    store: Store,
) -> None:
    team = await _team(store)
    url = "https://hooks.example.com/done"
    paid = await store.admit(_ask(team, "s", webhook_url=url), NOW)
    joined = await store.admit(_ask(team, "s", webhook_url=url), NOW)
    await store.record_status(
        paid.generation.id, "COMPLETED", NOW + 1, fence=Fence("gateway-a", paid.token or 0),
        output="{}", terminal=True, answered=paid.request.id,
    )  # fmt: skip
    due = await store.due_messages(NOW + 1, 10)
    assert [m.request_id for m in due] == [joined.request.id]


async def test_a_stalled_writer_that_lost_its_lease_is_fenced_off(store: Store) -> None:
    team = await _team(store)
    admitted = await store.admit(_ask(team), NOW)
    old = Fence("gateway-a", admitted.token or 0)
    await store.claim_send(admitted.generation.id, NOW, 50, old)
    await store.mark_submitted(admitted.generation.id, "up-1", NOW, NOW + 5, old)
    # gateway-a's heartbeat lapsed (it never beat): gateway-b takes the run over.
    await store.heartbeat("gateway-b", NOW + 30)
    [(run, token)] = await store.claim_runs("gateway-b", NOW)
    assert run.id == admitted.generation.id
    assert token > old.token
    with pytest.raises(LeaseLost):
        await store.record_status(run.id, "COMPLETED", NOW + 2, fence=old, terminal=True)
    with pytest.raises(LeaseLost):
        await store.record_poll_failure(run.id, NOW + 2, NOW + 9, old)
    done = await store.record_status(
        run.id, "FAILED", NOW + 3, fence=Fence("gateway-b", token), error="x", terminal=True
    )
    assert done.status == "FAILED"
    # A second sweeper finds nothing left to take: a run is never claimed twice.
    await store.heartbeat("gateway-c", NOW + 30)
    assert await store.claim_runs("gateway-c", NOW + 100) == []


async def test_an_upstream_id_the_store_missed_is_recorded_late_whoever_holds_the_run(
    store: Store,
) -> None:
    # gateway-a sent the run; its store failed as Segmind answered, and meanwhile gateway-b
    # took the run over. Only a knows the id: it is recorded under b's lease all the same.
    team = await _team(store)
    admitted = await store.admit(_ask(team), NOW)
    old = Fence("gateway-a", admitted.token or 0)
    await store.claim_send(admitted.generation.id, NOW, 50, old)
    await store.heartbeat("gateway-b", NOW + 30)
    [(run, _)] = await store.claim_runs("gateway-b", NOW)
    late = await store.record_late_upstream_id(run.id, "up-late", NOW + 2, NOW + 9)
    assert late is not None
    assert (late.status, late.upstream_id, late.next_poll_at) == ("QUEUED", "up-late", NOW + 9)
    # Its retry after a commit whose answer was lost finds it done, and changes nothing.
    again = await store.record_late_upstream_id(run.id, "up-late", NOW + 3, NOW + 10)
    assert again is not None
    assert again.next_poll_at == NOW + 9


async def test_an_upstream_id_for_a_run_given_up_meanwhile_is_not_recorded(store: Store) -> None:
    team = await _team(store)
    admitted = await store.admit(_ask(team), NOW)
    fence = Fence("gateway-a", admitted.token or 0)
    await store.claim_send(admitted.generation.id, NOW, 50, fence)
    await store.record_status(
        admitted.generation.id, "FAILED", NOW + 1, fence=fence, error="cannot be known",
        terminal=True,
    )  # fmt: skip
    assert await store.record_late_upstream_id(admitted.generation.id, "up", NOW + 2, NOW) is None
    assert (await store.generation(admitted.generation.id)).upstream_id is None


async def test_a_restarted_instance_fences_off_its_own_earlier_lease(store: Store) -> None:
    # A process restarted under the same id takes its runs back under new tokens: a write
    # still in flight from before the restart names the instance, but the old token.
    team = await _team(store)
    admitted = await store.admit(_ask(team), NOW)
    old = Fence("gateway-a", admitted.token or 0)
    await store.heartbeat("gateway-a", NOW + 30)
    [(run, token)] = await store.claim_runs("gateway-a", NOW, own=True)
    assert token > old.token
    with pytest.raises(LeaseLost):
        await store.record_status(run.id, "FAILED", NOW + 1, fence=old, error="x", terminal=True)
    with pytest.raises(LeaseLost):
        await store.mark_submitted(run.id, "up-1", NOW + 1, NOW + 5, old)


async def test_a_hint_brings_a_run_forward_once_and_names_nothing_else(store: Store) -> None:
    team = await _team(store)
    admitted = await store.admit(_ask(team), NOW)
    fence = Fence("gateway-a", admitted.token or 0)
    await store.claim_send(admitted.generation.id, NOW, 50, fence)
    await store.mark_submitted(admitted.generation.id, "up-hinted", NOW, NOW + 600, fence)
    heard: list[str] = []
    store.subscribe(heard.append)
    if store.backend.name == "postgresql":  # its listener connects on a thread of its own
        for _ in range(500):
            if store.backend.hears_everyone:
                break
            await anyio.sleep(0.01)
        assert store.backend.hears_everyone
    assert await store.hint(["up-unknown", "GRAPH_RUN"], NOW + 10) == []
    assert await store.hint(["up-hinted", "up-unknown"], NOW + 10) == [admitted.generation.id]
    assert (await store.generation(admitted.generation.id)).next_poll_at == NOW + 10
    # Repeated: no second early poll, even after the first one was made.
    await store.record_status(
        admitted.generation.id, "PROCESSING", NOW + 11, fence=fence, next_poll_at=NOW + 500
    )
    assert await store.hint(["up-hinted"], NOW + 20) == []
    assert (await store.generation(admitted.generation.id)).next_poll_at == NOW + 500
    named = f"hint:{admitted.generation.id}"  # only the hinted run's loop wakes
    for _ in range(500):  # the notice's trip: bounded, never a fixed sleep
        if named in heard:
            break
        await anyio.sleep(0.01)
    assert named in heard


async def test_a_terminal_state_never_changes(store: Store) -> None:
    team = await _team(store)
    admitted = await store.admit(_ask(team, "s"), NOW)
    run_id = admitted.generation.id
    fence = Fence("gateway-a", admitted.token or 0)
    await store.record_status(
        run_id, "FAILED", NOW + 1, fence=fence, error="boom", terminal=True, refund=True
    )
    # A late COMPLETED (a poll answer that overtook the failure) changes nothing: the run
    # stays FAILED and refunded, and is never cached for the next identical request.
    late = await store.record_status(
        run_id, "COMPLETED", NOW + 2, output="late", terminal=True, cache_ttl=3600.0
    )
    assert (late.status, late.output) == ("FAILED", None)
    assert await store.spent(team.id, NOW) == (0.0, 0.0)
    again = await store.admit(_ask(team, "s"), NOW + 3)
    assert again.request.cache_status.value == "MISS"


async def test_an_outbox_message_is_delivered_at_least_once_after_a_crash(store: Store) -> None:
    team = await _team(store)
    url = "https://hooks.example.com/x"
    admitted = await store.admit(_ask(team, webhook_url=url), NOW)
    await store.record_status(
        admitted.generation.id, "FAILED", NOW, fence=Fence("gateway-a", admitted.token or 0),
        error="x", terminal=True,
    )  # fmt: skip
    [message] = await store.due_messages(NOW, 10)
    assert await store.claim(message.id, NOW, NOW + 30)
    assert not await store.claim(message.id, NOW + 1, NOW + 31)  # held by the first taker
    # The taker died before recording an attempt: the message is due again at its lease's end.
    assert await store.due_messages(NOW + 29, 10) == []
    assert [m.id for m in await store.due_messages(NOW + 30, 10)] == [message.id]
    assert await store.claim(message.id, NOW + 30, NOW + 60)


async def test_the_upstream_window_never_holds_more_than_its_budget(store: Store) -> None:
    granted = []
    for step in range(480):  # four minutes in half seconds
        at = NOW + step / 2
        if await store.take_upstream("poll", at, 6) == 0:
            granted.append(at)
    assert len(granted) >= 18  # the budget is used, not only respected
    assert all(sum(1 for t in granted if start <= t < start + 60) <= 6 for start in granted), (
        "a 60 s span held more calls than the budget"
    )


async def test_after_an_upstream_429_no_call_goes_before_the_pause_ends(store: Store) -> None:
    await store.pause_upstream(NOW + 30)
    for kind in ("submit", "poll"):
        assert await store.take_upstream(kind, NOW, 6) == pytest.approx(30)
        assert await store.take_upstream(kind, NOW + 29, 6) == pytest.approx(1)
    assert await store.take_upstream("submit", NOW + 30, 6) == 0


def _race(url: str, team: str | Sequence[str], per_process: int, identical: bool) -> Counter[str]:
    """Three processes admit `per_process` requests each, all at once (for one team, or
    for the team named for each process)."""
    teams = [team] * 3 if isinstance(team, str) else list(team)
    flags = [str(per_process), "1" if identical else "0"]
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.store.admitter", url, name, *flags],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for name in teams
    ]
    try:
        for process in processes:
            assert process.stdout is not None
            assert process.stdout.readline().strip() == "ready"
        for process in processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        outcomes: Counter[str] = Counter()
        for process in processes:
            out, _ = process.communicate(timeout=60)
            outcomes.update(json.loads(out))
        return outcomes
    finally:
        for process in processes:
            process.kill()


async def test_concurrent_submits_from_three_processes_admit_exactly_the_limit(
    store: Store, store_url: str
) -> None:
    await _team(store, "racers", max_concurrent=7)
    outcomes = _race(store_url, "racers", 67, identical=False)
    assert outcomes == {"MISS": 7, "max_concurrent": 194}


async def test_identical_submits_from_three_processes_make_one_paid_run(
    store: Store, store_url: str
) -> None:
    team = await _team(store, "twins")
    outcomes = _race(store_url, "twins", 67, identical=True)
    assert outcomes == {"MISS": 1, "JOIN": 200}
    assert await store.spent(team.id, time.time()) == (PRICE, PRICE)  # charged once, today
    assert await store.waiting_runs() == 1


async def test_identical_submits_from_three_processes_of_two_teams_make_one_paid_run(
    store: Store, store_url: str
) -> None:
    # A cache shared across teams: each team's lock is its own, so only the scope key's
    # lock keeps two identical requests from both paying for a run.
    await _team(store, "sharer-a")
    await _team(store, "sharer-b")
    outcomes = _race(store_url, ["sharer-a", "sharer-b", "sharer-b"], 67, identical=True)
    assert outcomes == {"MISS": 1, "JOIN": 200}


async def test_a_budget_is_never_overshot_by_one_run(store: Store, store_url: str) -> None:
    await _team(store, "spenders", daily_budget=10 * PRICE + 1.0)
    outcomes = _race(store_url, "spenders", 67, identical=False)
    assert outcomes == {"MISS": 10, "daily_budget": 191}


def test_a_store_made_before_migrations_upgrades_in_place(tmp_path: Path) -> None:
    """A SQLite store as the gateway made it before versioned migrations: no version
    table, no fencing tokens, no webhook hosts. Opening it upgrades it, keeping its rows."""
    import sqlite3

    from proxy.db.migrations import BASE

    path = tmp_path / "old.sqlite"
    old = sqlite3.connect(path)
    old.executescript(
        BASE.format(double="REAL", bytes="BLOB", serial="", bigint="INTEGER").replace(
            "    webhook_secret_previous TEXT,\n    webhook_previous_until REAL\n",
            "    webhook_secret_placeholder TEXT\n",
        )
    )
    old.execute(
        "INSERT INTO teams (id, name, created_at, limits) VALUES ('t1', 'old', 1.0, ?)",
        (TeamLimits().model_dump_json(),),
    )
    old.execute(
        "INSERT INTO outbox (id, request_id, team_id, url, event, body, state, created_at, "
        "updated_at, next_attempt_at) VALUES ('m1', 'r1', 't1', 'https://Hooks.Example.com/a', "
        "'job.failed', x'7b7d', 'pending', 1.0, 1.0, 1.0)"
    )
    old.commit()
    old.close()
    store = open_store(str(path), create=False)
    try:
        assert blocking(store.team("old")).id == "t1"
        [message] = blocking(store.due_messages(2.0, 10, skip_hosts=["elsewhere.example.com"]))
        assert message.id == "m1"
        assert blocking(store.due_messages(2.0, 10, skip_hosts=["hooks.example.com"])) == []
    finally:
        store.close()
    versions = sqlite3.connect(path).execute("SELECT version FROM schema_migrations").fetchall()
    assert sorted(v for (v,) in versions) == list(range(1, latest_version() + 1))


async def test_a_revocation_on_one_replica_reaches_another(store: Store, store_url: str) -> None:
    """Replica B remembers a key's team; replica A revokes the key: B refuses it as soon as
    the store tells it (PostgreSQL: a notice; SQLite: B reads the auth version each time)."""
    other = open_store(store_url)
    try:
        other.watch()
        store.watch()
        if other.backend.name == "postgresql":  # its listener connects on a thread of its own
            for _ in range(500):
                if other.backend.hears_everyone:
                    break
                await anyio.sleep(0.01)
            assert other.backend.hears_everyone
        await _team(store, "keyed")
        await store.add_key("keyed", "hash-1", "prefix-1", NOW)
        assert (await other.team_for_key("hash-1")) is not None
        assert (await other.team_for_key("hash-1")) is not None  # now from memory
        assert await store.revoke_keys(NOW, prefix="prefix-1") == 1
        for _ in range(500):  # the notice's trip: bounded, never a fixed sleep
            if await other.team_for_key("hash-1") is None:
                break
            await anyio.sleep(0.01)
        assert await other.team_for_key("hash-1") is None
    finally:
        other.close()


async def test_a_later_run_overtakes_a_waiting_one_only_while_slots_are_plenty(
    store: Store,
) -> None:
    team = await _team(store)
    first, second = [await store.admit(_ask(team), NOW) for _ in range(2)]
    fence = Fence("gateway-a", second.token or 0)
    # Room for both in the window: the later run need not wait for the earlier one's sender.
    assert await store.claim_send(second.generation.id, NOW, 3, fence) == 0.0
    third = await store.admit(_ask(team), NOW)
    # Three a minute, two spent: the one slot left is the first run's; the third waits.
    assert await store.take_upstream("submit", NOW, 3) == 0.0
    wait = await store.claim_send(third.generation.id, NOW, 3, Fence("gateway-a", third.token or 0))
    assert wait > 0
    assert (
        await store.claim_send(first.generation.id, NOW, 3, Fence("gateway-a", first.token or 0))
        == 0.0
    )


async def test_a_team_and_its_first_key_are_made_together_or_not_at_all(store: Store) -> None:
    await store.create_team(
        Team(uuid.uuid4().hex, "first", NOW, TeamLimits(), None), ("same-hash", "prefix-a")
    )
    with pytest.raises(StorageUnavailable):  # the key's hash is taken: the unit rolls back
        await store.create_team(
            Team(uuid.uuid4().hex, "second", NOW, TeamLimits(), None), ("same-hash", "prefix-b")
        )
    assert [team.name for team in await store.teams()] == ["first"]


async def test_a_counted_submit_takes_one_turn_of_the_rate_and_admission_no_second(
    store: Store,
) -> None:
    """An image preflight counts its submit first (`count_submit`), refused or not; the
    admission that follows answers with that decision and takes no second turn."""
    team = await _team(store, submits_per_minute=2)
    rate = await store.count_submit(team, NOW)
    assert rate is not None
    assert rate.remaining == 1
    counted = _ask(team, submit_counted=True, counted_rate=rate)
    admitted = await store.admit(counted, NOW)
    assert admitted.rate == rate
    await store.count_submit(team, NOW)  # the second of two
    with pytest.raises(LimitReached):
        await store.count_submit(team, NOW)
    with pytest.raises(LimitReached):
        await store.admit(_ask(team), NOW)
