"""Wrong admin keys are limited per client, however the key is presented: X-Admin-Key (or a
bearer) on /admin/* and /metrics, and the console's login form share one count of 10 a
minute. A client past it is refused (429) before its key is compared, the right key too;
another client's right key always opens. Only failures count.

Before: X-Admin-Key had no limit at all (200 wrong keys, 200 x 401), and the login's limit
counted every attempt in one bucket per address, so behind a proxy one client's guesses
locked every operator out."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
import pytest

from proxy.core.clock import VirtualClock
from proxy.edge.auth import FAILED_KEYS_PER_MINUTE
from tests.proxy.harness import GATEWAY_URL, Harness

pytestmark = pytest.mark.anyio

MakeHarness = Callable[..., Awaitable[Harness]]
ADMIN_KEY = "test-admin-key-limits-0123"
METRICS_TOKEN = "test-metrics-token-limits-0123"
SAME_ORIGIN = {"origin": GATEWAY_URL, "sec-fetch-site": "same-origin"}


@asynccontextmanager
async def client(harness: Harness, address: str) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=harness.app, client=(address, 40000))
    async with httpx.AsyncClient(transport=transport, base_url=GATEWAY_URL) as http:
        yield http


async def gateway(make_harness: MakeHarness) -> tuple[Harness, VirtualClock]:
    wall = VirtualClock(1_790_000_000.0)
    harness = await make_harness(admin_key=ADMIN_KEY, metrics_token=METRICS_TOKEN, wall_clock=wall)
    return harness, wall


async def test_200_wrong_admin_keys_get_10_401s_and_the_rest_429s(
    make_harness: MakeHarness,
) -> None:
    harness, _ = await gateway(make_harness)
    async with client(harness, "198.51.100.7") as guesser:
        statuses: Counter[int] = Counter()
        for n in range(200):
            guess = {"x-admin-key": f"guess-{n:04d}"}
            statuses[(await guesser.get("/admin/teams", headers=guess)).status_code] += 1
        assert statuses == {401: FAILED_KEYS_PER_MINUTE, 429: 200 - FAILED_KEYS_PER_MINUTE}
        refused = await guesser.get("/admin/teams", headers={"x-admin-key": ADMIN_KEY})
        assert refused.status_code == 429, refused.text
        assert "too many wrong admin keys" in refused.json()["error"]
        assert 1 <= int(refused.headers["retry-after"]) <= 60


async def test_one_clients_wrong_keys_never_refuse_anothers_right_key(
    make_harness: MakeHarness,
) -> None:
    harness, _ = await gateway(make_harness)
    async with client(harness, "198.51.100.7") as guesser, client(harness, "203.0.113.9") as ops:
        for n in range(FAILED_KEYS_PER_MINUTE + 5):
            await guesser.get("/metrics", headers={"authorization": f"Bearer guess-{n:04d}"})
        # Every way of presenting the key shares the guesser's count...
        assert (
            await guesser.get("/admin/teams", headers={"x-admin-key": ADMIN_KEY})
        ).status_code == 429
        login = await guesser.post(
            "/admin/ui/login", data={"admin_key": ADMIN_KEY}, headers=SAME_ORIGIN
        )
        assert login.status_code == 429
        assert "set-cookie" not in login.headers
        # ...and none of it touches another client's.
        assert (
            await ops.get("/admin/teams", headers={"x-admin-key": ADMIN_KEY})
        ).status_code == 200
        assert (
            await ops.get("/metrics", headers={"authorization": f"Bearer {METRICS_TOKEN}"})
        ).status_code == 200
        login = await ops.post(
            "/admin/ui/login", data={"admin_key": ADMIN_KEY}, headers=SAME_ORIGIN
        )
        assert login.status_code == 303, login.text


async def test_only_failures_count_and_a_minute_later_the_client_may_try_again(
    make_harness: MakeHarness,
) -> None:
    harness, wall = await gateway(make_harness)
    async with client(harness, "198.51.100.7") as operator:
        for _ in range(50):  # no key at all guesses nothing, and is not counted
            assert (await operator.get("/admin/teams")).status_code == 401
        for _ in range(50):  # right keys, as often as the operator likes
            assert (
                await operator.get("/admin/teams", headers={"x-admin-key": ADMIN_KEY})
            ).status_code == 200
        for n in range(FAILED_KEYS_PER_MINUTE):
            wrong = await operator.get("/admin/teams", headers={"x-admin-key": f"typo-{n:04d}"})
            assert wrong.status_code == 401
        assert (
            await operator.get("/admin/teams", headers={"x-admin-key": ADMIN_KEY})
        ).status_code == 429
        wall.advance(60)
        assert (
            await operator.get("/admin/teams", headers={"x-admin-key": ADMIN_KEY})
        ).status_code == 200
