from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from standardwebhooks import Webhook

from client import ConfigError, InvalidWebhook, JobState, verify_webhook
from tests.client.doubles import completed_output

SECRET = "whsec_" + base64.b64encode(b"a-very-secret-32-bytes-of-secret").decode()
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def signed(
    body: dict[str, Any], at: datetime, secret: str = SECRET
) -> tuple[bytes, dict[str, str]]:
    payload = json.dumps(body).encode()
    signature = Webhook(secret).sign("msg_1", at, payload.decode())
    headers = {
        "Webhook-Id": "msg_1",
        "Webhook-Timestamp": str(int(at.timestamp())),
        "Webhook-Signature": signature,
    }
    return payload, headers


def event(kind: str = "job.completed", **data: Any) -> dict[str, Any]:
    return {
        "type": kind,
        "timestamp": "2026-01-01T12:00:00Z",
        "data": {
            "request_id": "r" * 32,
            "workflow_id": "68628fe34727e611dfa219b4-v4",
            "status": "COMPLETED",
            "output": completed_output(),
            "error": None,
            "cache_status": "MISS",
            "cost": 3.9674,
            **data,
        },
    }


def test_a_completed_event_parses_into_the_wait_result_type() -> None:
    payload, headers = signed(event(), NOW)
    received = verify_webhook(payload, headers, SECRET, now=NOW + timedelta(seconds=30))
    assert received.type == "job.completed"
    assert received.webhook_id == "msg_1"
    assert not received.failed
    assert received.result.video(4) == "https://cdn.test/out/4.mp4"
    assert received.result.cost == 3.9674
    assert received.result.cache_status == "MISS"


def test_a_failed_event() -> None:
    body = event("job.failed", status="FAILED", output=None, error="no face detected")
    payload, headers = signed(body, NOW)
    received = verify_webhook(payload, headers, SECRET, now=NOW)
    assert received.failed
    assert received.result.state is JobState.FAILED
    assert received.result.error == "no face detected"
    assert received.result.videos == {}


def test_the_real_clock_path_uses_the_package_directly() -> None:
    payload, headers = signed(event(), datetime.now(tz=UTC))
    assert verify_webhook(payload, headers, SECRET).result.request_id == "r" * 32


@pytest.mark.parametrize("skew", [timedelta(minutes=-6), timedelta(minutes=6)])
def test_timestamps_outside_five_minutes_are_rejected(skew: timedelta) -> None:
    payload, headers = signed(event(), NOW + skew)
    with pytest.raises(InvalidWebhook, match="timestamp"):
        verify_webhook(payload, headers, SECRET, now=NOW)


@pytest.mark.parametrize(
    "skew", [timedelta(minutes=-4, seconds=-59), timedelta(minutes=4, seconds=59)]
)
def test_timestamps_inside_the_window_pass(skew: timedelta) -> None:
    payload, headers = signed(event(), NOW + skew)
    assert verify_webhook(payload, headers, SECRET, now=NOW).type == "job.completed"


def test_a_tampered_body_or_wrong_secret_is_rejected() -> None:
    payload, headers = signed(event(), NOW)
    with pytest.raises(InvalidWebhook, match="signature"):
        verify_webhook(payload.replace(b"MISS", b"HIT!"), headers, SECRET, now=NOW)
    other = "whsec_" + base64.b64encode(b"another-secret-of-32-bytes-long!").decode()
    with pytest.raises(InvalidWebhook):
        verify_webhook(payload, headers, other, now=NOW)


@pytest.mark.parametrize("drop", ["Webhook-Id", "Webhook-Timestamp", "Webhook-Signature"])
def test_missing_headers_are_rejected(drop: str) -> None:
    payload, headers = signed(event(), NOW)
    del headers[drop]
    with pytest.raises(InvalidWebhook, match="Missing"):
        verify_webhook(payload, headers, SECRET, now=NOW)


@pytest.mark.parametrize("signature", ["garbage", "v1,!!!not-base64", "v2,abc"])
def test_malformed_signatures_are_rejected_not_crashes(signature: str) -> None:
    payload, headers = signed(event(), NOW)
    headers["Webhook-Signature"] = signature
    with pytest.raises(InvalidWebhook):
        verify_webhook(payload, headers, SECRET, now=NOW)
    with pytest.raises(InvalidWebhook):
        verify_webhook(payload, headers, SECRET)


def test_a_signed_body_without_data_is_rejected() -> None:
    payload, headers = signed({"type": "job.completed"}, NOW)
    with pytest.raises(InvalidWebhook, match="request_id"):
        verify_webhook(payload, headers, SECRET, now=NOW)


def test_an_unusable_secret_is_a_configuration_error() -> None:
    payload, headers = signed(event(), NOW)
    with pytest.raises(ConfigError):
        verify_webhook(payload, headers, "whsec_", now=NOW)
