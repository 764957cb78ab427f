"""Receiving the gateway's job webhooks: verify the Standard Webhooks signature, then parse.

Verification uses the `standardwebhooks` package (HMAC-SHA256 over "id.timestamp.body",
timestamps accepted within 5 minutes either side of now, in UTC). Pass `now` to verify
against another clock, for instance in tests or when replaying a recorded delivery.
The body is parsed into the same `JobResult` that `Client.wait` returns.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from ._errors import ConfigError, InvalidWebhook
from ._models import JobResult, JobState, failure_reason
from ._types import HeaderMapping

__all__ = ["WEBHOOK_TOLERANCE", "WebhookEvent", "verify_webhook"]

WEBHOOK_TOLERANCE = timedelta(minutes=5)
EVENT_TYPES = ("job.completed", "job.failed")


@dataclass(frozen=True)
class WebhookEvent:
    """A verified webhook: the event and the job's result (COMPLETED or FAILED)."""

    type: str
    webhook_id: str
    timestamp: str | None
    workflow_id: str | None
    result: JobResult

    @property
    def failed(self) -> bool:
        return self.result.state is JobState.FAILED


def verify_webhook(
    payload: bytes,
    headers: HeaderMapping,
    secret: str,
    *,
    now: datetime | None = None,
) -> WebhookEvent:
    """Verify and parse one delivery; raises `InvalidWebhook` (answer it with 400)."""
    try:
        webhook = Webhook(secret)
    except Exception as exc:  # the package raises bare errors for unusable secrets
        raise ConfigError("the webhook secret is empty or not a whsec_ base64 secret") from exc
    lowered = {str(k).lower(): str(v) for k, v in headers.items()}
    try:
        if now is None:
            webhook.verify(payload, lowered, json_parse=False)
        else:
            _verify_at(webhook, payload, lowered, now)
    except WebhookVerificationError as exc:
        raise InvalidWebhook(f"webhook rejected: {exc}") from exc
    except (ValueError, binascii.Error) as exc:
        raise InvalidWebhook("webhook rejected: malformed signature headers or body") from exc
    return parse_event(payload, lowered.get("webhook-id", ""))


def _verify_at(webhook: Webhook, payload: bytes, headers: dict[str, str], now: datetime) -> None:
    """`Webhook.verify`, with the timestamp window measured against `now`."""
    msg_id = headers.get("webhook-id")
    stamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature")
    if not (msg_id and stamp and signatures):
        raise WebhookVerificationError("Missing required headers")
    try:
        sent = datetime.fromtimestamp(float(stamp), tz=UTC)
    except (ValueError, OverflowError, OSError):
        raise WebhookVerificationError("Invalid Signature Headers") from None
    now = now if now.tzinfo else now.replace(tzinfo=UTC)
    if sent < now - WEBHOOK_TOLERANCE:
        raise WebhookVerificationError("Message timestamp too old")
    if sent > now + WEBHOOK_TOLERANCE:
        raise WebhookVerificationError("Message timestamp too new")
    expected = base64.b64decode(webhook.sign(msg_id, sent, payload.decode()).split(",")[1])
    for versioned in signatures.split(" "):
        version, _, signature = versioned.partition(",")
        if version == "v1" and hmac.compare_digest(expected, base64.b64decode(signature)):
            return
    raise WebhookVerificationError("No matching signature found")


def parse_event(payload: bytes, webhook_id: str = "") -> WebhookEvent:
    """The event in a (verified) body `{type, timestamp, data: {request_id, status, ...}}`."""
    try:
        document: Any = json.loads(payload)
    except ValueError as exc:
        raise InvalidWebhook("webhook body is not JSON") from exc
    data = document.get("data") if isinstance(document, dict) else None
    if not isinstance(data, dict) or not isinstance(data.get("request_id"), str):
        raise InvalidWebhook("webhook body has no data.request_id")
    event_type = str(document.get("type") or "")
    status = data.get("status")
    if not isinstance(status, str):
        status = "FAILED" if event_type == "job.failed" else "COMPLETED"
    cost = data.get("cost")
    result = JobResult.from_output(
        data["request_id"],
        data.get("output"),
        status=status,
        cost=float(cost) if isinstance(cost, int | float) and not isinstance(cost, bool) else None,
        cache_status=data["cache_status"] if isinstance(data.get("cache_status"), str) else None,
        error=failure_reason(data),
    )
    timestamp = document.get("timestamp")
    workflow_id = data.get("workflow_id")
    return WebhookEvent(
        type=event_type,
        webhook_id=webhook_id,
        timestamp=str(timestamp) if timestamp is not None else None,
        workflow_id=workflow_id if isinstance(workflow_id, str) else None,
        result=result,
    )
