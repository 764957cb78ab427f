"""The store's reads for the console (`Store.runs_in_flight` and the rest), on both
backends: what they answer is what the rules wrote, joined and summed the same way on
SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from proxy.rules import Fence, UnknownTeam
from proxy.store import Store, open_store
from tests.store.test_contract import NOW, _ask, _team

pytestmark = pytest.mark.anyio


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    opened = open_store(store_url)
    yield opened
    opened.close()


async def test_runs_requests_and_endpoints_as_the_rules_wrote_them(store: Store) -> None:
    alpha, beta = await _team(store, "alpha"), await _team(store, "beta")
    url = "https://hooks.example.com/done"
    paid = await store.admit(_ask(alpha, "same", webhook_url=url), NOW)
    joined = await store.admit(_ask(alpha, "same", webhook_url=url), NOW + 1)
    other = await store.admit(_ask(beta, "other"), NOW + 2)

    flying = await store.runs_in_flight()
    assert [(r.generation.id, r.team_name, r.requests) for r in flying] == [
        (paid.generation.id, "alpha", 2), (other.generation.id, "beta", 1),
    ]  # fmt: skip
    fence = Fence("gateway-a", paid.token or 0)
    await store.mark_submitted(paid.generation.id, "up-1", NOW + 5, NOW + 10, fence)
    # Three upstream polls: one said PROCESSING, one failed, one said COMPLETED; the submit's
    # own status write is no poll.
    await store.record_status(paid.generation.id, "PROCESSING", NOW + 300, fence=fence,
                              next_poll_at=NOW + 400, polled=True)  # fmt: skip
    await store.record_poll_failure(paid.generation.id, NOW + 400, NOW + 500, fence)
    await store.record_status(
        paid.generation.id, "COMPLETED", NOW + 605, fence=fence, output="{}", terminal=True,
        cache_ttl=1000.0, answered=paid.request.id, polled=True,
    )  # fmt: skip
    hit = await store.admit(_ask(alpha, "same"), NOW + 700)

    assert [r.generation.id for r in await store.runs_in_flight()] == [other.generation.id]
    recent = await store.recent_requests(10, "alpha")
    assert [(v.request.id, v.request.cache_status, v.team_name) for v in recent] == [
        (hit.request.id, "HIT", "alpha"),
        (joined.request.id, "JOIN", "alpha"),
        (paid.request.id, "MISS", "alpha"),
    ]
    assert all(v.generation.status == "COMPLETED" for v in recent)
    assert len(await store.recent_requests(10)) == 4
    with pytest.raises(UnknownTeam):
        await store.recent_requests(10, "nobody")
    assert await store.finished_durations() == [600.0]
    assert await store.finished_polls() == [(600.0, 3)]

    # The joined request's message waits (the answered one has none); the endpoint sums it.
    [endpoint] = await store.endpoints()
    assert (endpoint.team_name, endpoint.url, endpoint.messages, endpoint.pending) == (
        "alpha", url, 1, 1,
    )  # fmt: skip
    [(message, team_name)] = await store.recent_messages()
    assert (message.request_id, team_name, message.id) == (
        joined.request.id, "alpha", endpoint.last_message_id,
    )  # fmt: skip
    await store.record_attempt(
        message.id, NOW + 606, status_code=500, latency_ms=3.0, response="no", error="HTTP 500",
        state="failed", next_attempt_at=None,
    )  # fmt: skip
    [endpoint] = await store.endpoints()
    assert (endpoint.attempts, endpoint.failed, endpoint.last_error) == (1, 1, "HTTP 500")


async def test_the_upstream_pause_and_named_kv_rows(store: Store) -> None:
    assert await store.upstream_pause() == (0.0, 0.0)
    await store.pause_upstream(NOW + 30)
    assert (await store.upstream_pause())[0] == NOW + 30
    await store.kv_set("console.session.a", "1")
    await store.kv_set("console.session.b", "2")
    await store.kv_set("consoleXsession.c", "3")
    assert sorted(await store.kv_named("console.session.")) == [
        ("console.session.a", "1"), ("console.session.b", "2"),
    ]  # fmt: skip
    await store.kv_delete("console.session.a", "console.session.b")
    assert await store.kv_named("console.session.") == []
    with pytest.raises(ValueError, match="wildcards"):
        await store.kv_named("console_")


async def test_lookups_by_id_and_pages_of_requests(store: Store) -> None:
    alpha, beta = await _team(store, "alpha"), await _team(store, "beta")
    paid = await store.admit(_ask(alpha, "same"), NOW)
    joined = await store.admit(_ask(alpha, "same"), NOW + 1)
    other = await store.admit(_ask(beta, "other"), NOW + 2)
    fence = Fence("gateway-a", paid.token or 0)
    await store.mark_submitted(paid.generation.id, "up-1", NOW + 5, NOW + 10, fence)
    await store.record_status(paid.generation.id, "PROCESSING", NOW + 300, fence=fence,
                              next_poll_at=NOW + 400, polled=True)  # fmt: skip

    # Any team's request by its id, with its team and its run.
    found = await store.request_view(joined.request.id)
    assert found is not None
    assert (found.team_name, found.generation.id) == ("alpha", paid.generation.id)
    assert await store.request_view("f" * 32) is None
    # A run by its own id or by Segmind's, with its upstream polls.
    by_id, by_upstream = await store.run_by_id(paid.generation.id), await store.run_by_id("up-1")
    assert by_id is not None
    assert by_upstream is not None
    assert by_id[0].id == by_upstream[0].id == paid.generation.id
    assert by_id[1] == 1
    assert await store.run_by_id("nothing") is None
    assert [v.request.id for v in await store.run_requests(paid.generation.id)] == [
        paid.request.id, joined.request.id,
    ]  # fmt: skip
    # Pages back in time, of all teams or of one.
    first = await store.requests_page(2)
    assert [v.request.id for v in first] == [other.request.id, joined.request.id]
    older = await store.requests_page(2, None, first[-1].request.created_at)
    assert [v.request.id for v in older] == [paid.request.id]
    assert [v.request.id for v in await store.requests_page(5, "beta")] == [other.request.id]
    with pytest.raises(UnknownTeam):
        await store.requests_page(5, "nobody")
