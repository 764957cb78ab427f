"""Upstream faults on the paid submit, and bad input that must never reach the upstream.

Segmind's answers are scripted on the real fake (`faults.script("submit", ...)`); network
faults, which need a socket, reach the gateway's client as the httpx errors a socket would
give (the harness's `UpstreamTransport`). Rules under test: a paid submit is never sent
twice by accident, a team pays nothing for a run that cannot have started, pays (by
default) for one that may have, and its concurrency slot comes back either way.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import pytest

from proxy.core.config import PRICE
from proxy.services.upstream import REFUSED_WINDOW, SUBMIT_CONNECT_TRIES
from tests.proxy.conftest import MakeHarness
from tests.proxy.harness import UPSTREAM_KEY, WORKFLOW, Harness

pytestmark = pytest.mark.anyio

KNIGHT = {"Scene_1": "A knight crossing a frozen lake"}
BUDGET = 100.0


def upstream_submits(harness: Harness) -> list[dict[str, Any]]:
    return harness.upstream_calls("submit")


def error_of(answer: httpx.Response, status: int) -> str:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    message = answer.json()["error"]
    assert isinstance(message, str)
    assert message
    assert UPSTREAM_KEY not in answer.text
    return message


async def assert_nothing_charged_and_slot_free(
    harness: Harness, key: str, charged: float = 0.0
) -> None:
    """The team's budget is whole (or less `charged`) and its one concurrency slot is free."""
    assert await harness.credits(key) == pytest.approx(BUDGET - charged)
    submits = len(upstream_submits(harness))
    answer = await harness.submit(key, {"Scene_1": "A fresh run after the failure"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-cache-status"] == "MISS"
    assert len(upstream_submits(harness)) == submits + 1


# -- Segmind refuses the submit -----------------------------------------------------------


@pytest.mark.parametrize("code", [401, 403])
async def test_upstream_refusing_the_gateways_key_is_502_misconfigured(
    harness: Harness, code: int, caplog: pytest.LogCaptureFixture
) -> None:
    key = harness.team("alpha", max_concurrent=1)
    harness.fake_state.faults.script("submit", [{"code": code}])
    message = error_of(await harness.submit(key, KNIGHT), 502)
    assert "gateway misconfigured" in message
    assert [e["status"] for e in upstream_submits(harness)] == [code]  # not retried
    # Logged loudly, for the operators, who must fix the key; never with the key.
    loud = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("SEGMIND_API_KEY" in r.getMessage() for r in loud)
    assert all(UPSTREAM_KEY not in r.getMessage() for r in caplog.records)
    await assert_nothing_charged_and_slot_free(harness, key)


async def test_upstream_out_of_credits_is_503(harness: Harness) -> None:
    key = harness.team("alpha", max_concurrent=1)
    harness.fake_state.faults.script("submit", [{"code": 406}])
    answer = await harness.submit(key, KNIGHT)
    message = error_of(answer, 503)
    assert "out of credits" in message
    assert int(answer.headers["retry-after"]) > 0
    assert len(upstream_submits(harness)) == 1
    await assert_nothing_charged_and_slot_free(harness, key)


async def test_upstream_400_is_passed_through_with_its_message(harness: Harness) -> None:
    key = harness.team("alpha", max_concurrent=1)
    said = "Scene_1 was refused by the content policy"
    harness.fake_state.faults.script("submit", [{"code": 400, "message": said}])
    message = error_of(await harness.submit(key, KNIGHT), 400)
    assert said in message
    assert len(upstream_submits(harness)) == 1
    await assert_nothing_charged_and_slot_free(harness, key)


@pytest.mark.parametrize(("code", "answered"), [(500, 502), (502, 502), (504, 504)])
async def test_an_upstream_5xx_on_submit_is_never_retried(
    harness: Harness, code: int, answered: int
) -> None:
    key = harness.team("alpha", max_concurrent=1)
    harness.fake_state.faults.script("submit", [{"code": code}])
    answer = await harness.submit(key, KNIGHT)
    message = error_of(answer, answered)
    assert answer.headers["retry-after"]
    # The job may have started: a second submit could be paid twice, so there is none,
    # even once time has passed. But Segmind answered that it failed: the team pays nothing.
    assert "nothing was charged" in message
    await harness.advance(120)
    assert [e["status"] for e in upstream_submits(harness)] == [code]
    await assert_nothing_charged_and_slot_free(harness, key)


async def test_an_upstream_429_on_submit_is_held_and_sent_after_retry_after(
    harness: Harness,
) -> None:
    """Segmind's rate limiter refused the run, so none started: the caller is answered at
    once (QUEUED, with its request id), and the gateway sends it when Segmind allows."""
    key = harness.team("alpha")
    harness.fake_state.faults.script("submit", [{"code": 429, "headers": {"Retry-After": "3"}}])
    answer = await harness.submit(key, KNIGHT)
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-cache-status"] == "MISS"
    request_id = answer.json()["request_id"]
    polled = (await harness.poll(key, request_id)).json()
    assert polled["status"] == "QUEUED"
    # Held, first in the fair queue, and not sent before Segmind's Retry-After.
    assert polled["queue"]["position"] == 1
    assert polled["queue"]["estimated_send_in"] == pytest.approx(3.0)
    await harness.advance(2)  # sooner than Segmind asked: no second try yet
    assert len(upstream_submits(harness)) == 1
    await harness.advance(8)
    assert [e["status"] for e in upstream_submits(harness)] == [429, 200]
    done = await harness.advance_until_done(key, request_id)
    assert done["status"] == "COMPLETED"
    assert await harness.credits(key) == pytest.approx(BUDGET - PRICE)


async def test_an_upstream_429_that_persists_holds_the_run_and_fails_nothing(
    harness: Harness,
) -> None:
    key = harness.team("alpha", max_concurrent=1)
    harness.fake_state.faults.script(
        "submit", [{"code": 429, "headers": {"Retry-After": "1"}, "times": 3}]
    )
    answer = await harness.submit(key, KNIGHT)
    assert answer.status_code == 200, answer.text
    await harness.gateway.poller.settle()  # its sender has asked the budget
    for _ in range(10):
        await harness.advance(2)
        if len(upstream_submits(harness)) == 4:
            break
    assert [e["status"] for e in upstream_submits(harness)] == [429, 429, 429, 200]
    done = await harness.advance_until_done(key, answer.json()["request_id"])
    assert done["status"] == "COMPLETED"
    assert await harness.credits(key) == pytest.approx(BUDGET - PRICE)


async def test_a_refused_connection_is_retried_since_nothing_was_sent(harness: Harness) -> None:
    key = harness.team("alpha")
    harness.upstream_transport.refuse_connections = 2
    answer = await harness.drive(harness.submit(key, KNIGHT))
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-cache-status"] == "MISS"
    assert [e["status"] for e in upstream_submits(harness)] == [200]
    assert harness.upstream_transport.refuse_connections == 0


async def test_refusals_seen_by_two_calls_are_an_outage_answered_at_once(
    harness: Harness,
) -> None:
    # One submit refused is tried again (a blip); once another call was refused too, the
    # upstream is down and the retry pauses would only hold each caller: one try, answered.
    key = harness.team("alpha")
    transport = harness.upstream_transport
    transport.refuse_connections = 100
    first = await harness.drive(harness.submit(key, KNIGHT), step=0.5)
    assert "nothing was charged" in error_of(first, 502)
    assert transport.refuse_connections == 100 - SUBMIT_CONNECT_TRIES
    # Not driven: it must answer without sleeping on the gateway's clock at all.
    second = await asyncio.wait_for(harness.submit(key, {"Scene_1": "A second run"}), 30)
    assert "nothing was charged" in error_of(second, 502)
    assert transport.refuse_connections == 100 - SUBMIT_CONNECT_TRIES - 1
    # Quiet for longer than the window: a refusal is a blip again, and the retry succeeds.
    await harness.advance(REFUSED_WINDOW + 1)
    transport.refuse_connections = 1
    third = await harness.drive(harness.submit(key, {"Scene_1": "A third run"}), step=0.5)
    assert third.status_code == 200, third.text
    assert upstream_submits(harness)[-1]["status"] == 200
    await assert_nothing_charged_and_slot_free(harness, key, charged=PRICE)


async def test_a_submit_whose_answer_timed_out_is_not_retried(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The request reached Segmind and started a run; only its answer never came. A retry
    # would start (and pay for) a second run: only a connection that never opened is retried.
    key = harness.team("alpha", max_concurrent=1)
    transport = harness.upstream_transport
    deliver = transport.handle_async_request

    async def answer_lost(request: httpx.Request) -> httpx.Response:
        await deliver(request)
        raise httpx.ReadTimeout("timed out reading the answer", request=request)

    monkeypatch.setattr(transport, "handle_async_request", answer_lost)
    answer = await harness.drive(harness.submit(key, KNIGHT))
    assert "may have started" in error_of(answer, 504)
    await harness.advance(120)
    assert len(upstream_submits(harness)) == 1
    assert len(harness.fake_state.jobs) == 1
    monkeypatch.undo()
    await assert_nothing_charged_and_slot_free(harness, key, charged=PRICE)


@pytest.mark.parametrize(
    "fault",
    [
        {"fault": "reset", "after": True},
        {"fault": "empty", "after": True},
        {"fault": "garbage", "after": True},
        {"fault": "malformed", "after": True},
        {"fault": "reset"},
    ],
    ids=["reset-after", "empty-after", "garbage-after", "malformed-after", "reset"],
)
async def test_a_broken_connection_on_submit_is_not_retried(
    harness: Harness, fault: dict[str, Any]
) -> None:
    key = harness.team("alpha", max_concurrent=1)
    harness.fake_state.faults.script("submit", [fault])
    answer = await harness.submit(key, KNIGHT)
    assert "may have started" in error_of(answer, 502)
    await harness.advance(120)
    # The request may have been (with `after`: was) served: once only. The gateway
    # cannot tell which, so the team pays as for a failed run (`failed_runs`).
    assert len(upstream_submits(harness)) == 1
    assert len(harness.fake_state.jobs) == (1 if fault.get("after") else 0)
    await assert_nothing_charged_and_slot_free(harness, key, charged=PRICE)


async def test_requests_joined_to_a_submit_that_fails_see_it_fail(harness: Harness) -> None:
    key = harness.team("alpha")
    # The first submit meets a 429 and is held, so a second request can join it; then
    # Segmind fails the held submit: both requests see it FAILED, and nobody pays.
    harness.fake_state.faults.script(
        "submit", [{"code": 429, "headers": {"Retry-After": "2"}}, {"code": 502}]
    )
    first = await harness.submit(key, KNIGHT)
    assert first.status_code == 200, first.text
    joined = await harness.submit(key, KNIGHT)
    assert joined.headers["x-cache-status"] == "JOIN"
    await harness.advance(10)
    for answer in (first, joined):
        polled = (await harness.poll(key, answer.json()["request_id"])).json()
        assert polled["status"] == "FAILED"
        assert "Segmind failed to submit" in polled["error_message"]
        assert UPSTREAM_KEY not in str(polled)
    assert await harness.credits(key) == pytest.approx(BUDGET)
    # Never cached: the same request is a fresh run.
    again = await harness.submit(key, KNIGHT)
    assert again.headers["x-cache-status"] == "MISS"


async def test_a_teams_prefer_header_never_reaches_the_upstream(harness: Harness) -> None:
    # The fake obeys Prefer; a team must not be able to steer the paid upstream with it.
    key = harness.team("alpha")
    answer = await harness.submit(key, KNIGHT, Prefer="code=500, outcome=failed, duration=1")
    assert answer.status_code == 200, answer.text
    done = await harness.advance_until_done(key, answer.json()["request_id"], step=60)
    assert done["status"] == "COMPLETED"
    assert harness.upstream_calls("submit")[0]["fault"] is None


# -- bad input never reaches the upstream and never costs ----------------------------------

TOO_LARGE = 65536 + 1  # the default max_body_bytes, plus one


async def _chunks(data: bytes) -> Any:
    for start in range(0, len(data), 4096):
        yield data[start : start + 4096]


BAD_REQUESTS: list[tuple[str, dict[str, Any], int]] = [
    ("malformed JSON", {"content": b'{"Scene_1": "A knight'}, 400),
    ("not JSON at all", {"content": b"Scene_1=A knight"}, 400),
    ("a scene of the wrong type", {"json": {"Scene_1": 5}}, 400),
    ("a null scene", {"json": {"Scene_2": None}}, 400),
    ("an empty scene", {"json": {"Scene_3": "   "}}, 400),
    ("a scene too long", {"json": {"Scene_4": "x" * 1001}}, 400),
    ("an unknown input", {"json": {"Scene_5": "A fifth scene"}}, 400),
    ("a bad Character_Image", {"json": {"Character_Image": "ftp://example.com/me.jpg"}}, 400),
    ("a Character_Image that is no URL", {"json": {"Character_Image": "me.jpg"}}, 400),
    ("an array body", {"json": [KNIGHT]}, 400),
    ("a string body", {"json": "A knight"}, 400),
    ("a null body", {"content": b"null"}, 400),
    ("a body too large", {"json": {"Scene_1": "x" * TOO_LARGE}}, 413),
    ("a streamed body too large", {"content": b"x" * TOO_LARGE, "stream": True}, 413),
    ("an unknown workflow", {"json": KNIGHT, "path": "/workflows/no-such-workflow"}, 404),
    ("a webhook URL that is no URL", {"json": KNIGHT, "headers": {"X-Webhook-Url": "x"}}, 400),
    ("an Idempotency-Key too long", {"json": KNIGHT, "headers": {"Idempotency-Key": "k" * 256}},
     400),
]  # fmt: skip


@pytest.mark.parametrize(
    ("request_", "status"),
    [pytest.param(request, status, id=name) for name, request, status in BAD_REQUESTS],
)
async def test_bad_input_is_a_4xx_json_error_with_no_upstream_call_and_no_cost(
    harness: Harness, request_: dict[str, Any], status: int
) -> None:
    key = harness.team("alpha")
    request = dict(request_)
    path = request.pop("path", WORKFLOW)
    headers = {"x-api-key": key, **request.pop("headers", {})}
    if request.pop("stream", False):
        request["content"] = _chunks(request["content"])  # no Content-Length to go by
    answer = await harness.http.post(path, headers=headers, **request)
    error_of(answer, status)
    assert harness.fake_state.journal.entries() == []  # not one upstream call of any kind
    assert await harness.credits(key) == pytest.approx(BUDGET)
    # Nor does it use up the team's submit rate: ten good submits still pass in a burst.
    answers = [await harness.submit(key, {"Scene_1": f"run {n}"}) for n in range(10)]
    assert [a.status_code for a in answers] == [200] * 10


async def test_bad_input_is_refused_even_when_a_cached_run_would_answer(
    make_harness: MakeHarness,
) -> None:
    harness = await make_harness()
    key = harness.team("alpha")
    first = await harness.submit(key, KNIGHT)
    await harness.advance_until_done(key, first.json()["request_id"])
    error_of(await harness.submit(key, {**KNIGHT, "Scene_2": 7}), 400)
    assert len(upstream_submits(harness)) == 1
