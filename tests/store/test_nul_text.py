"""Text from outside the gateway may hold NUL: a receiver's answer (`200 "ok\\x00nul"`, or a
gzip body sent regardless of Accept-Encoding), an upstream error, an upstream request id.
PostgreSQL's text cannot hold it ("text fields cannot contain NUL"), and the write that
failed left the webhook pending with no attempt, sent again every lease, forever. Both
backends store it, as U+FFFD, and read back the same thing; a lookup by an id holding
NUL finds nothing instead of failing."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from proxy.core.config import TeamLimits
from proxy.db import Team
from proxy.rules import AdmissionRequest, Fence, UnknownTeam
from proxy.store import Store, open_store

pytestmark = pytest.mark.anyio

NOW = 1_790_000_000.0
NUL = "ok\x00nul"
KEPT = "ok\ufffdnul"


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    opened = open_store(store_url)
    yield opened
    opened.close()


async def test_text_with_nul_from_outside_is_stored_on_both_backends(store: Store) -> None:
    limits = TeamLimits(submits_per_minute=None, max_concurrent=None)
    team = await store.create_team(Team(uuid.uuid4().hex, "alpha", NOW, limits, "whsec_test"))
    ask = AdmissionRequest(
        team=team, request_id=uuid.uuid4().hex, generation_id=uuid.uuid4().hex,
        scope_key=uuid.uuid4().hex, workflow_id="contract", inputs={"a": NUL}, price=1.0,
        instance="gateway-a", webhook_url="https://hooks.example.com/x",
        idempotency_key="idem\x00key",
    )  # fmt: skip
    admitted = await store.admit(ask, NOW)
    fence = Fence("gateway-a", admitted.token or 0)
    gid = admitted.generation.id
    await store.mark_submitted(gid, "up\x00stream", NOW, NOW + 7, fence=fence)
    await store.record_status(gid, "FAILED", NOW + 1, fence=fence, error=NUL, terminal=True)
    run = await store.generation(gid)
    assert run is not None
    assert (run.upstream_id, run.error) == ("up\ufffdstream", KEPT)

    [message] = await store.due_messages(NOW + 1, 10)
    assert await store.claim(message.id, NOW + 1, NOW + 31)
    await store.record_attempt(
        message.id, NOW + 1, status_code=200, latency_ms=3.0, response=NUL, error=NUL,
        state="delivered", next_attempt_at=None,
    )  # fmt: skip
    [(stored, attempts)] = await store.messages_for_request(team.id, admitted.request.id)
    assert (stored.state, stored.attempts) == ("delivered", 1)
    assert [(a.status_code, a.response, a.error) for a in attempts] == [(200, KEPT, KEPT)]
    assert await store.due_messages(NOW + 3600, 10) == [], "delivered, never sent again"


async def test_a_lookup_by_an_id_holding_nul_finds_nothing(store: Store) -> None:
    team = await store.create_team(Team(uuid.uuid4().hex, "alpha", NOW, TeamLimits(), "whsec_test"))
    assert await store.request(team.id, "ab\x00cd") is None
    with pytest.raises(UnknownTeam):
        await store.team("a\x00b")
    assert await store.hint(["ab\x00cd"], NOW) == []
