"""The kept-outputs rules on both backends: copies recorded with the COMPLETED state, a
cache that lasts as long as they do, and retention and the size cap forgetting the least
recently used objects together with the cache entries that hand them out."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from proxy.core.outputs import KeptOutput
from proxy.rules import Fence
from proxy.store import Store, open_store
from tests.store.test_contract import NOW, _ask, _team

pytestmark = pytest.mark.anyio

DAY = 86400.0


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    opened = open_store(store_url)
    yield opened
    opened.close()


def copy(n: int, size: int = 1000) -> KeptOutput:
    return KeptOutput(
        index=n, keyname=f"Scene_{n}_Video", kind="video", source=f"https://up/{n}.mp4",
        sha256=f"{n:064x}", size=size, content_type="video/mp4",
    )  # fmt: skip


async def completed(
    store: Store, scope: str, kept: list[KeptOutput] | None, note: str | None = None,
    at: float = NOW, cache_ttl: float = 30 * DAY,
) -> str:  # fmt: skip
    team = await _team(store, f"team-{scope}")
    admitted = await store.admit(_ask(team, scope), at)
    fence = Fence("gateway-a", admitted.token or 0)
    await store.mark_submitted(admitted.generation.id, f"up-{scope}", at, at + 5, fence)
    await store.record_status(
        admitted.generation.id, "COMPLETED", at + 10, fence=fence, output="[]", terminal=True,
        cache_ttl=cache_ttl, kept=kept, mirror_note=note,
    )  # fmt: skip
    return admitted.generation.id


async def test_copies_are_recorded_with_the_completed_state(store: Store) -> None:
    run = await completed(store, "a", [copy(1), copy(2, 2000)])
    state = await store.kept_outputs(run)
    assert state is not None
    assert state.note is None
    assert [k.sha256 for k in state.kept] == [f"{1:064x}", f"{2:064x}"]
    assert await store.output_object(f"{2:064x}") == (2000, "video/mp4")
    summary = await store.outputs_summary()
    assert (summary.objects, summary.bytes, summary.failures) == (2, 3000, 0)


async def test_a_run_without_copies_says_why_and_counts_as_a_failure(store: Store) -> None:
    run = await completed(store, "b", None, note="could not keep Scene_1_Video: too large")
    state = await store.kept_outputs(run)
    assert state is not None
    assert state.kept == []
    assert state.note == "could not keep Scene_1_Video: too large"
    assert (await store.outputs_summary()).failures == 1
    assert await store.kept_outputs("never-completed") is None


async def test_identical_bytes_are_one_object_shared_by_runs(store: Store) -> None:
    await completed(store, "c", [copy(1)])
    await completed(store, "d", [copy(1)])
    assert (await store.outputs_summary()).objects == 1


async def test_retention_forgets_unused_objects_and_ends_their_cache_entry(store: Store) -> None:
    run = await completed(store, "e", [copy(1)])
    # Another run, used later: retention keeps it.
    fresh = await completed(store, "f", [copy(2)], at=NOW + 20 * DAY)
    assert await store.expire_outputs(NOW + 29 * DAY, 30 * DAY, None) == []
    dropped = await store.expire_outputs(NOW + 31 * DAY, 30 * DAY, None)
    assert dropped == [f"{1:064x}"]
    state = await store.kept_outputs(run)
    assert state is not None
    assert state.kept == []
    assert state.note is not None
    assert "retention" in state.note
    assert await store.output_object(f"{1:064x}") is None
    # Its cache entry ended in the same step: the same request is a new, paid run.
    team = await store.team("team-e")
    assert team is not None
    again = await store.admit(_ask(team, "e"), NOW + 31 * DAY)
    assert again.request.cache_status == "MISS"
    fresh_state = await store.kept_outputs(fresh)
    assert fresh_state is not None
    assert len(fresh_state.kept) == 1


async def test_a_hit_keeps_its_objects_in_use(store: Store) -> None:
    await completed(store, "g", [copy(3)])
    team = await store.team("team-g")
    assert team is not None
    hit = await store.admit(_ask(team, "g"), NOW + 25 * DAY)
    assert hit.request.cache_status == "HIT"
    await store.touch_outputs(hit.generation.id, NOW + 25 * DAY)
    assert await store.expire_outputs(NOW + 31 * DAY, 30 * DAY, None) == []


async def test_the_size_cap_forgets_the_least_recently_used_first(store: Store) -> None:
    await completed(store, "h", [copy(4, 600)], at=NOW)
    await completed(store, "i", [copy(5, 600)], at=NOW + 10)
    await completed(store, "j", [copy(6, 600)], at=NOW + 20)
    dropped = await store.expire_outputs(NOW + 30, 30 * DAY, 1300)
    assert dropped == [f"{4:064x}"]
    assert (await store.outputs_summary()).bytes == 1200


async def test_every_replica_signs_with_the_same_key(store: Store) -> None:
    first = await store.outputs_signing_key("candidate-one")
    second = await store.outputs_signing_key("candidate-two")
    assert first == second == "candidate-one"
