"""NUL from outside, through the whole gateway, on both store backends.

A receiver answering `200 "ok\\x00nul"` made PostgreSQL refuse the attempt's row: the
message stayed pending with no attempt and was sent again at every lease's end (13 times
in 9 minutes). A NUL in a path or query (`/workflows/request/ab%00cd`, `?team=a%00b`) was
a 503 "store unavailable, retry" there, which invites retries forever: it is a 400."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from proxy.db import StorageUnavailable
from tests.postgres import postgres_database
from tests.proxy.harness import Harness, start_harness, stop_harness
from tests.proxy.test_webhooks import RUN, Receiver, outbox, submit

pytestmark = pytest.mark.anyio

MakeOn = Callable[..., Any]
ADMIN_KEY = "test-admin-key-nul-0123"


@pytest.fixture(params=["sqlite", "postgresql"])
async def make_on(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MakeOn]:
    """Makes a harness on a SQLite file, or on a fresh PostgreSQL database."""
    async with AsyncExitStack() as stack:

        async def make(**settings: Any) -> Harness:
            db: Path | str = tmp_path / "nul.sqlite"
            if request.param == "postgresql":
                db = stack.enter_context(postgres_database("gw_nul"))
            harness = await start_harness(db, **settings)
            stack.push_async_callback(stop_harness, harness)
            return harness

        yield make


async def test_a_receivers_nul_is_recorded_once_and_never_redelivered(
    make_on: MakeOn,
) -> None:
    receiver = Receiver()
    harness = await make_on(webhook_transport=httpx.ASGITransport(app=receiver.app))
    receiver.clock = harness.clock.now
    key = harness.team("alpha")
    request_id = await submit(harness, key, receiver.script("/hook", (200, {}, "ok\x00nul")))
    await harness.advance(RUN)
    message, attempts = await outbox(harness, request_id)
    assert message.state == "delivered"
    assert [(a.status_code, a.response) for a in attempts] == [(200, "ok\ufffdnul")]
    for _ in range(10):  # ten leases' worth of time: nothing is sent again
        await harness.advance(60)
    assert len(receiver.to("/hook")) == 1


@pytest.mark.parametrize(
    "path",
    [
        "/workflows/request/ab%00cd",
        "/v1/usage?team=a%00b",
        "/v1/usage?since=2026-01-01%00",
        "/admin/usage?team=a%00b",
        "/admin/requests/ab%00cd/webhooks",
        "/admin/teams/a%00b/keys",
    ],
)
async def test_a_nul_in_a_path_or_query_is_a_400(make_on: MakeOn, path: str) -> None:
    harness = await make_on(admin_key=ADMIN_KEY)
    key = harness.team("alpha")
    method = "POST" if path.endswith("/keys") else "GET"
    answer = await harness.http.request(
        method, path, headers={"x-api-key": key, "x-admin-key": ADMIN_KEY}
    )
    assert answer.status_code == 400, answer.text
    assert "NUL" in answer.json()["error"]


async def test_an_attempt_the_store_refuses_is_recorded_without_its_answer_not_looped(
    make_on: MakeOn, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Whatever else a store may refuse in a receiver's words, the attempt is recorded
    without them (and logged), never left to be sent again at every lease's end."""
    receiver = Receiver()
    harness = await make_on(webhook_transport=httpx.ASGITransport(app=receiver.app))
    receiver.clock = harness.clock.now
    store = harness.gateway.store
    record = store.record_attempt

    async def refusing(*args: Any, **kwargs: Any) -> None:
        if "poison" in (kwargs.get("response") or ""):
            raise StorageUnavailable()  # as a backend reports a row it could not write
        await record(*args, **kwargs)

    monkeypatch.setattr(store, "record_attempt", refusing)
    key = harness.team("alpha")
    request_id = await submit(harness, key, receiver.script("/hook", (200, {}, "poison")))
    await harness.advance(RUN)
    message, attempts = await outbox(harness, request_id)
    assert message.state == "delivered"
    assert [(a.status_code, a.response) for a in attempts] == [(200, None)]
    assert "could not be recorded" in caplog.text
    for _ in range(10):
        await harness.advance(60)
    assert len(receiver.to("/hook")) == 1
