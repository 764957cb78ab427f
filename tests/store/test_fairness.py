"""One team's flood of admissions does not queue in front of another team's: a process
sends one admission per team at a time to the store (whose writer or workers would
otherwise serve them in arrival order)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from proxy.core.config import TeamLimits
from proxy.db import Team
from proxy.rules import AdmissionRequest
from proxy.store import open_store

pytestmark = pytest.mark.anyio

NOW = 1_790_000_000.0


def _ask(team: Team) -> AdmissionRequest:
    return AdmissionRequest(
        team=team,
        request_id=uuid.uuid4().hex,
        generation_id=uuid.uuid4().hex,
        scope_key=uuid.uuid4().hex,
        workflow_id="fairness",
        inputs={},
        price=4.0,
    )


async def test_another_teams_admission_is_not_queued_behind_a_flood(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "store.sqlite"))  # one writer thread: arrival order
    try:
        unlimited = TeamLimits(submits_per_minute=None, max_concurrent=None)
        flood, other = [
            await store.create_team(Team(uuid.uuid4().hex, name, NOW, unlimited, None))
            for name in ("flood", "other")
        ]
        finished: list[str] = []

        async def admit(team: Team) -> None:
            await store.admit(_ask(team), NOW)
            finished.append(team.name)

        # The flood's ten arrive first, then the other team's one.
        await asyncio.gather(*(admit(flood) for _ in range(10)), admit(other))
        assert finished.index("other") <= 1, finished
    finally:
        store.close()
