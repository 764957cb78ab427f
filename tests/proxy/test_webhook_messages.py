"""Webhook messages without I/O: bodies, signatures (checked by our receiver helper and
by the `standardwebhooks` package itself), ids, the retry schedule and verdicts."""

from __future__ import annotations

import datetime as dt
import json
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks import Webhook

from client import InvalidWebhook, verify_webhook
from proxy.core.webhooks import (
    MAX_BODY_BYTES,
    RETRY_SCHEDULE,
    Verdict,
    build_body,
    classify,
    message_id,
    new_secret,
    next_delay,
    sign,
)

NOW = 1_767_225_600.0
OUTPUT = json.dumps(
    [
        {
            "keyname": f"Scene_{n}_Video",
            "value": {"data": f"https://v.test/{n}.mp4", "type": "video"},
        }
        for n in (1, 2, 3, 4)
    ]
)


def body(**changes: object) -> bytes:
    fields: dict[str, object] = {
        "event": "job.completed",
        "request_id": "r1",
        "workflow_id": "wf",
        "status": "COMPLETED",
        "output": OUTPUT,
        "error": None,
        "cache_status": "MISS",
        "cost": 3.9674,
        "now": NOW,
    }
    fields.update(changes)
    return build_body(**fields)  # type: ignore[arg-type]


def test_body_shape_and_decoded_videos() -> None:
    document = json.loads(body())
    assert document["type"] == "job.completed"
    assert document["timestamp"] == "2026-01-01T00:00:00.000Z"
    data = document["data"]
    assert data["videos"] == {str(n): f"https://v.test/{n}.mp4" for n in (1, 2, 3, 4)}
    assert data["output"][0]["keyname"] == "Scene_1_Video"
    assert data["cache_status"] == "MISS"
    assert data["cost"] == 3.9674


def test_a_signed_message_verifies_with_our_receiver_and_the_package() -> None:
    secret = new_secret()
    payload = body()
    headers = sign([secret], message_id("r1", "job.completed"), NOW, payload)
    event = verify_webhook(payload, headers, secret, now=dt.datetime.fromtimestamp(NOW, dt.UTC))
    assert event.result.request_id == "r1"
    assert event.result.videos[4] == "https://v.test/4.mp4"
    assert event.webhook_id == headers["webhook-id"]
    # The package's own verifier checks against real time: sign at real time for it.
    now = dt.datetime.now(dt.UTC).timestamp()
    fresh = sign([secret], "msg_x", now, payload)
    assert Webhook(secret).verify(payload, fresh)["data"]["request_id"] == "r1"


def test_during_rotation_either_secret_verifies() -> None:
    old, new = new_secret(), new_secret()
    payload = body()
    headers = sign([new, old], "msg_1", NOW, payload)
    assert headers["webhook-signature"].count("v1,") == 2
    at = dt.datetime.fromtimestamp(NOW, dt.UTC)
    for secret in (old, new):
        assert verify_webhook(payload, headers, secret, now=at).result.request_id == "r1"
    with pytest.raises(InvalidWebhook):
        verify_webhook(payload, headers, new_secret(), now=at)


def test_a_tampered_body_or_stale_timestamp_is_rejected() -> None:
    secret = new_secret()
    payload = body()
    headers = sign([secret], "msg_1", NOW, payload)
    at = dt.datetime.fromtimestamp(NOW, dt.UTC)
    with pytest.raises(InvalidWebhook):
        verify_webhook(payload.replace(b"r1", b"r2"), headers, secret, now=at)
    with pytest.raises(InvalidWebhook, match="too old"):
        verify_webhook(payload, headers, secret, now=at + dt.timedelta(minutes=6))


def test_message_ids_are_stable_per_request_and_event() -> None:
    assert message_id("r1", "job.completed") == message_id("r1", "job.completed")
    assert message_id("r1", "job.completed") != message_id("r1", "job.failed")
    assert message_id("r1", "job.completed") != message_id("r2", "job.completed")


def test_bodies_stay_under_20kb_whatever_the_output() -> None:
    huge = json.dumps([{"keyname": "x", "value": {"data": "y" * 50_000, "type": "text"}}])
    document = body(output=huge, error="e" * 30_000)
    assert len(document) <= MAX_BODY_BYTES
    assert json.loads(document)["data"]["output_truncated"] is True


def test_a_failed_event_carries_the_reason() -> None:
    data = json.loads(body(event="job.failed", status="FAILED", output=None, error="boom"))
    assert data["type"] == "job.failed"
    assert data["data"]["error"] == "boom"
    assert data["data"]["videos"] == {}


@pytest.mark.parametrize(
    ("code", "verdict"),
    [
        (200, Verdict.DELIVERED),
        (204, Verdict.DELIVERED),
        (301, Verdict.RETRY),
        (400, Verdict.STOP),
        (401, Verdict.STOP),
        (404, Verdict.STOP),
        (408, Verdict.RETRY),
        (410, Verdict.DISABLE),
        (429, Verdict.RETRY),
        (500, Verdict.RETRY),
        (503, Verdict.RETRY),
        (None, Verdict.RETRY),
    ],
)
def test_verdicts(code: int | None, verdict: Verdict) -> None:
    assert classify(code) is verdict


@given(attempts=st.integers(0, len(RETRY_SCHEDULE) - 1), seed=st.integers())
def test_delays_follow_the_schedule_within_twenty_percent(attempts: int, seed: int) -> None:
    delay = next_delay(attempts, random.Random(seed))
    assert delay is not None
    base = RETRY_SCHEDULE[attempts]
    assert base * 0.8 <= delay <= base * 1.2


def test_the_schedule_ends_and_retry_after_is_honoured_but_clamped() -> None:
    rng = random.Random(1)
    assert next_delay(len(RETRY_SCHEDULE), rng) is None
    assert next_delay(1, rng, retry_after=120) == 120
    assert next_delay(1, rng, retry_after=10**9) == 3600
