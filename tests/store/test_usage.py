"""Usage reports from the store, on both backends: each request on its UTC day of
admission, each run on its day charged, refunds and failures counted with their run, and a
day's dollars equal to what the day's budget spend says."""

from __future__ import annotations

import datetime as dt
import sqlite3
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from proxy.core.config import TeamLimits
from proxy.db import Team
from proxy.db.migrations import latest_version
from proxy.rules import AdmissionRequest, BadPeriod, Fence, UnknownTeam
from proxy.store import Store, open_store
from tests.proxy.harness import blocking

pytestmark = pytest.mark.anyio

PRICE = 4.0
NOW = 1_790_000_000.0  # 2026-09-21 14:13:20 UTC
DAY = dt.date(2026, 9, 21)
NEXT = 86_400.0


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    opened = open_store(store_url)
    yield opened
    opened.close()


async def _team(store: Store, name: str) -> Team:
    limits = TeamLimits(submits_per_minute=None, max_concurrent=None)
    return await store.create_team(Team(uuid.uuid4().hex, name, NOW, limits, "whsec_test"))


def _ask(team: Team, scope: str) -> AdmissionRequest:
    return AdmissionRequest(
        team=team,
        request_id=uuid.uuid4().hex,
        generation_id=uuid.uuid4().hex,
        scope_key=scope,
        workflow_id="usage",
        inputs={"scope": scope},
        price=PRICE,
        instance="gateway-a",
    )


async def _finish(store: Store, admitted: object, status: str, at: float, refund: bool) -> None:
    generation_id, token = admitted.generation.id, admitted.token  # type: ignore[attr-defined]
    await store.record_status(
        generation_id, status, at, fence=Fence("gateway-a", token or 0), output="{}",
        terminal=True, cache_ttl=1000.0, refund=refund,
    )  # fmt: skip


async def test_a_day_of_runs_adds_up_per_team_and_day(store: Store) -> None:
    alpha, beta = await _team(store, "alpha"), await _team(store, "beta")
    done = await store.admit(_ask(alpha, "a"), NOW)  # MISS
    await store.admit(_ask(alpha, "a"), NOW + 1)  # JOIN
    await _finish(store, done, "COMPLETED", NOW + 10, refund=False)
    await store.admit(_ask(alpha, "a"), NOW + 20)  # HIT
    refunded = await store.admit(_ask(alpha, "b"), NOW + 30)  # MISS, fails, refunded
    await _finish(store, refunded, "FAILED", NOW + 40, refund=True)
    charged = await store.admit(_ask(alpha, "c"), NOW + 50)  # MISS, fails, charged
    await _finish(store, charged, "FAILED", NOW + 60, refund=False)
    await store.admit(_ask(alpha, "d"), NOW + 70)  # MISS, still running
    await store.admit(_ask(beta, "e"), NOW + NEXT)  # another team, the next day

    rows = await store.usage(DAY, DAY + dt.timedelta(days=1))
    assert [row.public() for row in rows] == [
        {"day": "2026-09-21", "team": "alpha", "runs_paid": 3, "hit": 1, "join": 1, "miss": 4,
         "failed": 2, "refunded": 1, "spent": 3 * PRICE, "saved": 2 * PRICE},
        {"day": "2026-09-22", "team": "beta", "runs_paid": 1, "hit": 0, "join": 0, "miss": 1,
         "failed": 0, "refunded": 0, "spent": PRICE, "saved": 0.0},
    ]  # fmt: skip
    # The day's dollars are the day's budget spend, refunds taken off.
    assert (await store.spent(alpha.id, NOW))[0] == rows[0].spent
    assert await store.usage(DAY, DAY, "beta") == []
    assert [row.team for row in await store.usage(DAY, DAY + dt.timedelta(days=1), "beta")] == [
        "beta"
    ]


async def test_a_report_refuses_days_out_of_order_too_many_or_an_unknown_team(
    store: Store,
) -> None:
    await _team(store, "alpha")
    with pytest.raises(BadPeriod, match="before it starts"):
        await store.usage(DAY, DAY - dt.timedelta(days=1))
    with pytest.raises(BadPeriod, match="at most 366 days"):
        await store.usage(DAY, DAY + dt.timedelta(days=366))
    assert await store.usage(DAY, DAY + dt.timedelta(days=365)) == []
    with pytest.raises(UnknownTeam):
        await store.usage(DAY, DAY, "nobody")


def test_requests_stored_before_the_day_column_are_given_their_day(tmp_path: Path) -> None:
    """A store made before the day step, with a day of requests: the migration writes each one's
    UTC day, so the report counts what was admitted before the upgrade too."""
    path = tmp_path / "old.sqlite"
    blocking(_seed_version_2(path))
    store = open_store(str(path), create=False)
    try:
        [row] = blocking(store.usage(DAY, DAY))
    finally:
        store.close()
    assert (row.team, row.miss, row.join, row.runs_paid, row.spent) == ("old", 1, 1, 1, PRICE)
    versions = sqlite3.connect(path).execute("SELECT MAX(version) FROM schema_migrations")
    assert versions.fetchone()[0] == latest_version()


async def _seed_version_2(path: Path) -> None:
    store = open_store(str(path))
    team = await _team(store, "old")
    await store.admit(_ask(team, "a"), NOW)
    await store.admit(_ask(team, "a"), NOW + 1)
    store.close()
    db = sqlite3.connect(path)
    # Back to a store without the day step: no day column (SQLite 3.35+ drops columns).
    db.execute("DROP INDEX requests_day")
    db.execute("ALTER TABLE requests DROP COLUMN day")
    db.execute("DELETE FROM schema_migrations WHERE name LIKE 'each request''s UTC day%'")
    db.commit()
    db.close()
