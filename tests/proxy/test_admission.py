"""Admission: one paid run per identical request (HIT, JOIN, MISS), through the real gateway
in front of the real fake, on virtual time.

Costs are read where a team reads them, the gateway's `GET /v1/get-user-credits`; upstream
calls are counted in the fake's journal.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from typing import Any

import anyio
import pytest

from client._models import DEFAULT_CHARACTER_IMAGE, DEFAULT_SCENES
from proxy.core.config import PRICE, ProxySettings
from proxy.db import Admission, RequestRecord
from proxy.rules import AdmissionRequest
from tests.proxy.conftest import MakeHarness
from tests.proxy.harness import Harness

pytestmark = pytest.mark.anyio

KNIGHT = {"Scene_1": "A knight crossing a frozen lake"}
DRAGON = {"Scene_1": "A dragon asleep on a heap of gold"}
BUDGET = 100.0  # the default daily budget, the smallest of the defaults
SPELLED_OUT = {
    "Character_Image": DEFAULT_CHARACTER_IMAGE,
    "Scene_1": DEFAULT_SCENES[0],
    "Scene_2": DEFAULT_SCENES[1],
    "Scene_3": DEFAULT_SCENES[2],
    "Scene_4": DEFAULT_SCENES[3],
}


def accepted(answer: Any, status: str) -> str:
    """The request id of a 200 answer with the given X-Cache-Status."""
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-cache-status"] == status, answer.json()
    body: dict[str, Any] = answer.json()
    assert body["status"] == ("COMPLETED" if status == "HIT" else "QUEUED")  # the truth
    request_id: str = body["request_id"]
    return request_id


def upstream_submits(harness: Harness) -> int:
    return len(harness.upstream_calls("submit"))


async def sharing(harness: Harness, team: str, request_id: str) -> list[RequestRecord]:
    """Every request of the generation that a team's request belongs to, oldest first."""
    store = harness.gateway.store
    found = await store.request((await store.team(team)).id, request_id)
    assert found is not None
    return await store.requests_of(found[1].id)


async def completed(harness: Harness, key: str, request_id: str) -> dict[str, Any]:
    body = await harness.advance_until_done(key, request_id)
    assert body["status"] == "COMPLETED", body
    return body


# -- HIT ----------------------------------------------------------------------------------


async def test_a_finished_run_answers_a_hit_at_once_without_upstream_call_or_cost(
    harness: Harness,
) -> None:
    key = harness.team("alpha")
    assert await harness.credits(key) == pytest.approx(BUDGET)
    first = accepted(await harness.submit(key, KNIGHT), "MISS")
    assert await harness.credits(key) == pytest.approx(BUDGET - PRICE)
    done = await completed(harness, key, first)
    calls = len(harness.fake_state.journal.entries())

    hit = accepted(await harness.submit(key, KNIGHT), "HIT")
    assert hit != first
    answer = await harness.poll(key, hit)
    assert answer.json() == done  # the result at once, with no clock moved
    assert answer.headers["x-cache-status"] == "HIT"

    assert len(harness.fake_state.journal.entries()) == calls  # no submit, no poll
    assert upstream_submits(harness) == 1
    assert await harness.credits(key) == pytest.approx(BUDGET - PRICE)


# -- JOIN ---------------------------------------------------------------------------------


async def test_an_identical_request_in_flight_joins_the_running_generation(
    harness: Harness,
) -> None:
    key = harness.team("alpha")
    first = accepted(await harness.submit(key, KNIGHT), "MISS")
    await harness.advance(100)
    assert (await harness.poll(key, first)).json()["status"] == "PROCESSING"

    joined = accepted(await harness.submit(key, KNIGHT), "JOIN")
    assert joined != first
    answer = await harness.poll(key, joined)
    assert answer.json()["status"] == "PROCESSING"  # the running generation's own state
    assert answer.headers["x-cache-status"] == "JOIN"
    assert await harness.credits(key) == pytest.approx(BUDGET - PRICE)

    assert await completed(harness, key, joined) == await completed(harness, key, first)
    assert upstream_submits(harness) == 1


async def test_fifty_identical_concurrent_submits_make_one_upstream_submit(
    harness: Harness,
) -> None:
    key = harness.team("alpha", submits_per_minute=None)
    answers = await asyncio.gather(*(harness.submit(key, KNIGHT) for _ in range(50)))

    assert [a.status_code for a in answers] == [200] * 50
    assert Counter(a.headers["x-cache-status"] for a in answers) == {"MISS": 1, "JOIN": 49}
    ids = [a.json()["request_id"] for a in answers]
    assert len(set(ids)) == 50  # every request its own id, one generation
    assert upstream_submits(harness) == 1
    assert await harness.credits(key) == pytest.approx(BUDGET - PRICE)

    await completed(harness, key, ids[0])
    results = await asyncio.gather(*(harness.poll(key, i) for i in ids))
    assert len({json.dumps(r.json(), sort_keys=True) for r in results}) == 1
    assert results[0].json()["status"] == "COMPLETED"
    assert upstream_submits(harness) == 1


async def test_an_empty_body_and_the_spelled_out_defaults_share_one_generation(
    harness: Harness,
) -> None:
    key = harness.team("alpha")
    first = accepted(await harness.submit(key, {}), "MISS")
    accepted(await harness.submit(key, SPELLED_OUT), "JOIN")
    # Any order, any subset of the defaults (names as the workflow spells them).
    shuffled = list(SPELLED_OUT.items())
    random.Random(7).shuffle(shuffled)
    accepted(await harness.submit(key, dict(shuffled)), "JOIN")
    accepted(await harness.submit(key, {"Scene_2": DEFAULT_SCENES[1]}), "JOIN")
    await completed(harness, key, first)
    accepted(await harness.submit(key, SPELLED_OUT), "HIT")
    assert upstream_submits(harness) == 1
    assert [e["body"] for e in harness.upstream_calls("submit")] == [SPELLED_OUT]


async def test_the_join_survives_the_first_requester_going_away(harness: Harness) -> None:
    key = harness.team("alpha")
    # Hold the paid submit in flight: its first connection is refused (nothing sent), so
    # the gateway's submit waits on the virtual clock before it tries again.
    harness.upstream_transport.refuse_connections = 1
    first = asyncio.ensure_future(harness.submit(key, KNIGHT))
    await harness.clock.wait_for_sleepers(1)
    assert upstream_submits(harness) == 0

    first.cancel()  # the first requester hangs up mid-submit
    with pytest.raises(asyncio.CancelledError):
        await first
    joined = accepted(await harness.submit(key, KNIGHT), "JOIN")

    await harness.advance(10)
    await harness.submits_settled()
    requests = await sharing(harness, "alpha", joined)
    assert [r.cache_status.value for r in requests] == ["MISS", "JOIN"]
    await completed(harness, key, joined)
    for request in requests:  # the one who left can still poll its own id
        assert (await harness.poll(key, request.id)).json()["status"] == "COMPLETED"
    assert [e["status"] for e in harness.upstream_calls("submit")] == [200]
    assert await harness.credits(key) == pytest.approx(BUDGET - PRICE)


async def test_a_requester_gone_while_the_store_admits_leaves_no_run_orphaned(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The admission commits on the store's writer thread even if the caller is cancelled
    while waiting for it; the paid run it admitted must still be started and finished, or
    its reservation and concurrency slot would be held for ever (and joiners wait for ever).
    """
    key = harness.team("alpha", max_concurrent=1)
    store = harness.gateway.store
    real_admit = store.admit
    admitted, release = asyncio.Event(), asyncio.Event()

    async def admit_then_hold(ask: AdmissionRequest, now: float) -> Admission:
        admission = await real_admit(ask, now)  # committed
        admitted.set()
        with anyio.fail_after(10):
            await release.wait()  # the answer is not back to the caller yet
        return admission

    monkeypatch.setattr(store, "admit", admit_then_hold)
    first = asyncio.ensure_future(harness.submit(key, KNIGHT))
    await admitted.wait()
    first.cancel()  # the requester goes away while the store is admitting
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await first
    monkeypatch.undo()

    joined = accepted(await harness.submit(key, KNIGHT), "JOIN")
    await harness.submits_settled()
    assert upstream_submits(harness) == 1
    await completed(harness, key, joined)
    # Its slot is back: the team's one concurrent run may be a new one.
    accepted(await harness.submit(key, DRAGON), "MISS")


# -- forcing a fresh run ------------------------------------------------------------------


async def test_no_cache_forces_a_fresh_paid_run(harness: Harness) -> None:
    key = harness.team("alpha")
    first = accepted(await harness.submit(key, KNIGHT), "MISS")
    # In flight: no join.
    second = accepted(await harness.submit(key, KNIGHT, **{"Cache-Control": "no-cache"}), "MISS")
    await completed(harness, key, first)
    await completed(harness, key, second)
    # Finished: no hit.
    third = accepted(await harness.submit(key, KNIGHT, **{"Cache-Control": "no-cache"}), "MISS")
    assert len({first, second, third}) == 3
    assert upstream_submits(harness) == 3
    assert await harness.credits(key) == pytest.approx(BUDGET - 3 * PRICE)
    await completed(harness, key, third)
    accepted(await harness.submit(key, KNIGHT), "HIT")


# -- scope --------------------------------------------------------------------------------


async def test_the_cache_is_per_team_by_default(harness: Harness) -> None:
    alpha, beta = harness.team("alpha"), harness.team("beta")
    a1 = accepted(await harness.submit(alpha, KNIGHT), "MISS")
    b1 = accepted(await harness.submit(beta, KNIGHT), "MISS")  # in flight for alpha: no join
    await completed(harness, alpha, a1)
    await completed(harness, beta, b1)
    accepted(await harness.submit(alpha, KNIGHT), "HIT")
    accepted(await harness.submit(beta, KNIGHT), "HIT")
    assert upstream_submits(harness) == 2
    assert await harness.credits(alpha) == pytest.approx(BUDGET - PRICE)
    assert await harness.credits(beta) == pytest.approx(BUDGET - PRICE)


async def test_a_shared_cache_scope_is_one_generation_for_every_team(
    make_harness: MakeHarness,
) -> None:
    harness = await make_harness(cache_scope="shared")
    alpha, beta, gamma = harness.team("alpha"), harness.team("beta"), harness.team("gamma")
    a1 = accepted(await harness.submit(alpha, KNIGHT), "MISS")
    b1 = accepted(await harness.submit(beta, KNIGHT), "JOIN")
    await completed(harness, alpha, a1)
    assert (await harness.poll(beta, b1)).json()["status"] == "COMPLETED"
    accepted(await harness.submit(gamma, KNIGHT), "HIT")
    assert upstream_submits(harness) == 1
    assert await harness.credits(alpha) == pytest.approx(BUDGET - PRICE)
    assert await harness.credits(beta) == pytest.approx(BUDGET)
    assert await harness.credits(gamma) == pytest.approx(BUDGET)
    # Sharing a generation never shares a request: each team sees only its own ids.
    assert (await harness.poll(beta, a1)).status_code == 404
    assert (await harness.poll(alpha, b1)).status_code == 404


async def test_another_teams_request_id_is_not_found(harness: Harness) -> None:
    alpha, beta = harness.team("alpha"), harness.team("beta")
    request_id = accepted(await harness.submit(alpha, KNIGHT), "MISS")
    answer = await harness.poll(beta, request_id)
    assert answer.status_code == 404
    assert isinstance(answer.json()["error"], str)
    assert KNIGHT["Scene_1"] not in answer.text
    # Exactly what an id that never existed answers, but for the id itself.
    unknown = await harness.poll(beta, "0" * 32)
    assert unknown.status_code == 404
    assert unknown.json()["error"].replace("0" * 32, request_id) == answer.json()["error"]


# -- what is never cached, and for how long the rest is ------------------------------------


async def test_failed_generations_are_never_cached(make_harness: MakeHarness) -> None:
    harness = await make_harness(fake={"failure_rate": 1.0})
    key = harness.team("alpha")
    first = accepted(await harness.submit(key, KNIGHT), "MISS")
    joined = accepted(await harness.submit(key, KNIGHT), "JOIN")
    failed = await harness.advance_until_done(key, first)
    assert failed["status"] == "FAILED"
    assert failed["error_message"]
    assert (await harness.poll(key, joined)).json() == failed  # the joiner sees it too

    again = accepted(await harness.submit(key, KNIGHT), "MISS")
    assert upstream_submits(harness) == 2
    assert (await harness.advance_until_done(key, again))["status"] == "FAILED"
    accepted(await harness.submit(key, KNIGHT), "MISS")
    assert upstream_submits(harness) == 3


def test_the_default_cache_ttl_is_below_the_upstreams_result_lifetime() -> None:
    assert 0 < ProxySettings().cache_ttl < 3600


async def test_a_cached_result_expires_after_the_cache_ttl(make_harness: MakeHarness) -> None:
    harness = await make_harness(cache_ttl=600)
    key = harness.team("alpha")
    first = accepted(await harness.submit(key, KNIGHT), "MISS")
    await completed(harness, key, first)  # finished now, on the virtual clock
    await harness.advance(599)
    accepted(await harness.submit(key, KNIGHT), "HIT")
    await harness.advance(2)
    accepted(await harness.submit(key, KNIGHT), "MISS")
    assert upstream_submits(harness) == 2


async def test_a_cache_ttl_of_zero_caches_nothing(make_harness: MakeHarness) -> None:
    harness = await make_harness(cache_ttl=0)
    key = harness.team("alpha")
    await completed(harness, key, accepted(await harness.submit(key, KNIGHT), "MISS"))
    accepted(await harness.submit(key, KNIGHT), "MISS")
    assert upstream_submits(harness) == 2


# -- Idempotency-Key ----------------------------------------------------------------------


async def test_an_idempotency_key_replays_the_same_request(harness: Harness) -> None:
    key = harness.team("alpha")
    first = await harness.submit(key, KNIGHT, **{"Idempotency-Key": "order-1"})
    request_id = accepted(first, "MISS")
    assert "idempotent-replayed" not in first.headers

    again = await harness.submit(key, KNIGHT, **{"Idempotency-Key": "order-1"})
    assert accepted(again, "MISS") == request_id  # the original request, as it was answered
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["poll_url"] == first.json()["poll_url"]
    # An equivalent body (the same run) is the same request too.
    spelled = await harness.submit(key, {**SPELLED_OUT, **KNIGHT}, **{"Idempotency-Key": "order-1"})
    assert accepted(spelled, "MISS") == request_id

    await completed(harness, key, request_id)
    late = await harness.submit(key, KNIGHT, **{"Idempotency-Key": "order-1"})
    assert accepted(late, "MISS") == request_id
    assert late.headers["idempotent-replayed"] == "true"
    assert upstream_submits(harness) == 1
    assert await harness.credits(key) == pytest.approx(BUDGET - PRICE)
    assert len(await sharing(harness, "alpha", request_id)) == 1  # no second request at all


async def test_an_idempotency_key_reused_with_another_body_is_422(harness: Harness) -> None:
    key = harness.team("alpha")
    accepted(await harness.submit(key, KNIGHT, **{"Idempotency-Key": "order-1"}), "MISS")
    answer = await harness.submit(key, DRAGON, **{"Idempotency-Key": "order-1"})
    assert answer.status_code == 422
    assert "Idempotency-Key" in answer.json()["error"]
    assert upstream_submits(harness) == 1
    assert await harness.credits(key) == pytest.approx(BUDGET - PRICE)


async def test_idempotency_keys_belong_to_one_team(harness: Harness) -> None:
    alpha, beta = harness.team("alpha"), harness.team("beta")
    a = accepted(await harness.submit(alpha, KNIGHT, **{"Idempotency-Key": "k"}), "MISS")
    b = await harness.submit(beta, DRAGON, **{"Idempotency-Key": "k"})
    assert accepted(b, "MISS") != a
    assert "idempotent-replayed" not in b.headers
    assert upstream_submits(harness) == 2


async def test_an_idempotency_key_is_forgotten_after_its_window(make_harness: MakeHarness) -> None:
    harness = await make_harness(idempotency_ttl=100)
    key = harness.team("alpha")
    first = accepted(await harness.submit(key, KNIGHT, **{"Idempotency-Key": "k"}), "MISS")
    await harness.advance(101)
    # A new request now (joining the run still in flight), and the key may name another body.
    again = await harness.submit(key, KNIGHT, **{"Idempotency-Key": "k"})
    assert accepted(again, "JOIN") != first
    assert "idempotent-replayed" not in again.headers
    await harness.advance(101)
    accepted(await harness.submit(key, DRAGON, **{"Idempotency-Key": "k"}), "MISS")
    assert upstream_submits(harness) == 2
