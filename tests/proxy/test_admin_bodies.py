"""Admin bodies: never read before the admin key is checked, and bounded once it is.

A body is streamed in 1 MB chunks and the test counts how many the gateway pulled: an
unauthenticated request must be refused having pulled none of them (a gateway that reads
first grew by the whole body, 200 MB for one POST), an authenticated one must stop at the
limit, not at the end of the body."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from proxy.edge.admin_api import MAX_ADMIN_BODY_BYTES
from tests.proxy.harness import Harness

pytestmark = pytest.mark.anyio

MakeHarness = Callable[..., Awaitable[Harness]]
ADMIN_KEY = "test-admin-key-0123"
CHUNK = b"{" + b" " * (1 << 20)
CHUNKS = 64  # 64 MB if read to the end

BODIED = [
    ("POST", "/admin/teams"),
    ("PATCH", "/admin/teams/x/limits"),
    ("POST", "/admin/teams/x/limits"),
    ("PATCH", "/admin/teams/x"),
    ("POST", "/admin/webhooks/recover"),
    ("POST", "/admin/clock/advance"),
]


class Counted:
    """A request body of CHUNKS chunks that counts how many were pulled."""

    def __init__(self) -> None:
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(CHUNKS):
            self.pulled += 1
            yield CHUNK


@pytest.mark.parametrize(("method", "path"), BODIED)
@pytest.mark.parametrize("key", [None, "wrong-admin-key-0000"])
async def test_an_unauthenticated_admin_body_is_never_read(
    make_harness: MakeHarness, method: str, path: str, key: str | None
) -> None:
    harness = await make_harness(admin_key=ADMIN_KEY)
    body = Counted()
    headers = {"content-type": "application/json"}
    if key:
        headers["X-Admin-Key"] = key
    answer = await harness.http.request(method, path, content=body, headers=headers)
    assert answer.status_code == 401, answer.text
    assert "X-Admin-Key" in answer.json()["error"]
    assert body.pulled <= 1, f"{body.pulled} MB read before the key was checked"


@pytest.mark.parametrize(("method", "path"), BODIED)
async def test_an_admin_body_over_the_limit_is_refused_unread(
    make_harness: MakeHarness, method: str, path: str
) -> None:
    harness = await make_harness(admin_key=ADMIN_KEY)
    harness.team("x")
    body = Counted()
    answer = await harness.http.request(
        method, path, content=body, headers={"X-Admin-Key": ADMIN_KEY}
    )
    assert answer.status_code == 413, answer.text
    assert str(MAX_ADMIN_BODY_BYTES) in answer.json()["error"]
    assert body.pulled <= 2, f"{body.pulled} MB read past a limit of {MAX_ADMIN_BODY_BYTES} bytes"
    declared = await harness.http.request(
        method,
        path,
        content=b"{}",
        headers={"X-Admin-Key": ADMIN_KEY, "content-length": str(150 << 20)},
    )
    assert declared.status_code == 413, declared.text
