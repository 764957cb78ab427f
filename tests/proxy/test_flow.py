"""A whole run through the gateway: submit, poll from the store, finish, on virtual time."""

from __future__ import annotations

import json

import pytest

from tests.proxy.harness import GATEWAY_URL, Harness

pytestmark = pytest.mark.anyio


async def test_a_run_completes_through_the_gateway(harness: Harness) -> None:
    key = harness.team("alpha")
    answer = await harness.submit(key, {"Scene_1": "A knight"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "QUEUED"
    assert body["poll_url"] == f"{GATEWAY_URL}/workflows/request/{body['request_id']}"
    assert answer.headers["x-cache-status"] == "MISS"
    assert (await harness.poll(key, body["request_id"])).json() == {"status": "QUEUED"}
    await harness.advance(100)
    assert (await harness.poll(key, body["request_id"])).json()["status"] == "PROCESSING"
    await harness.advance(2000)
    done = (await harness.poll(key, body["request_id"])).json()
    assert done["status"] == "COMPLETED"
    assert len(json.loads(done["output"])) == 4
    assert len(harness.upstream_calls("submit")) == 1


async def test_a_result_expires_an_hour_after_its_run_was_submitted_as_on_segmind(
    harness: Harness,
) -> None:
    key = harness.team("alpha")
    request_id = (await harness.submit(key, {"Scene_1": "A knight"})).json()["request_id"]
    await harness.advance(2000)
    assert (await harness.poll(key, request_id)).json()["status"] == "COMPLETED"  # now cached
    await harness.advance(1599)  # 3599 s after the submit
    assert (await harness.poll(key, request_id)).json()["status"] == "COMPLETED"
    await harness.advance(1)
    expired = await harness.poll(key, request_id)
    assert expired.status_code == 404
    assert "expired" in expired.json()["error"]
    assert "submit again" in expired.json()["error"]


def test_results_must_outlive_the_cache() -> None:
    from proxy.core.config import ProxySettings

    with pytest.raises(ValueError, match=r"cache_ttl .* must be below result_ttl"):
        ProxySettings(cache_ttl=3600, result_ttl=3600)
