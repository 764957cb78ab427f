"""Webhook messages, free of I/O: what is sent, how it is signed, when it is retried.

Standard Webhooks (https://www.standardwebhooks.com), signed with the `standardwebhooks`
package: `webhook-id` (stable per request and event, so receivers de-duplicate on it
across retries and redeliveries), `webhook-timestamp` (fresh on every attempt, Unix
seconds, UTC) and `webhook-signature` (`v1,<base64 HMAC-SHA256 of "id.timestamp.body">`,
one per live secret, space-separated, so a receiver holding either secret of a rotation
verifies). Bodies stay under 20 KB and never carry a key.

The retry schedule follows Svix and the spec: immediately, 5 s, 5 min, 30 min, 2 h, 5 h,
10 h, 10 h, each with +-20% jitter. A 2xx is success; 410 disables the endpoint; other
4xx stop (the receiver refused the message); 408, 429, 5xx, 3xx (redirects are never
followed), timeouts and network errors are retried.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
import json
import random
import secrets
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

from standardwebhooks import Webhook

from client import decode_output
from proxy.core.ssrf import WebhookUrlError, check_url_syntax

__all__ = [
    "BUDGET_EVENT",
    "CREDITS_EVENT",
    "MAX_BODY_BYTES",
    "RETRY_SCHEDULE",
    "Verdict",
    "build_body",
    "build_budget_body",
    "build_credits_body",
    "classify",
    "host_of",
    "message_id",
    "new_secret",
    "next_delay",
    "sign",
]

RETRY_SCHEDULE: tuple[float, ...] = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
JITTER = 0.2
MAX_BODY_BYTES = 20_000
BUDGET_EVENT = "budget.threshold"
CREDITS_EVENT = "account.credits_low"
MAX_RETRY_AFTER = 3600.0  # a receiver's Retry-After is honoured up to an hour


class Verdict(StrEnum):
    DELIVERED = "delivered"  # 2xx
    RETRY = "retry"  # try again on the schedule
    STOP = "stop"  # a 4xx refusal: recorded, not retried (resend by hand)
    DISABLE = "disable"  # 410 Gone: the endpoint is switched off


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def message_id(request_id: str, event: str) -> str:
    """Stable for one request and event, whatever the attempt."""
    return "msg_" + hashlib.sha256(f"{request_id}|{event}".encode()).hexdigest()[:32]


def build_body(
    *,
    event: str,
    request_id: str,
    workflow_id: str,
    status: str,
    output: str | None,
    error: str | None,
    cache_status: str,
    cost: float,
    now: float,
) -> bytes:
    """The JSON body, compact, under `MAX_BODY_BYTES` (an oversized output is dropped,
    keeping the scene URLs; the full result stays available by polling)."""
    items, raw = decode_output(output) if output else ([], None)
    videos = {str(i.scene): i.url for i in items if i.scene is not None and i.url}
    data: dict[str, Any] = {
        "request_id": request_id,
        "workflow_id": workflow_id,
        "status": status,
        "output": raw,
        "videos": videos,
        "error": error,
        "cache_status": cache_status,
        "cost": round(cost, 4),
    }
    body = _encode(event, data, now)
    if len(body) > MAX_BODY_BYTES:
        data["output"] = None
        data["output_truncated"] = True
        if data["error"] and len(data["error"]) > 2000:
            data["error"] = data["error"][:2000] + "..."
        body = _encode(event, data, now)
    return body


def build_budget_body(
    *,
    team: str,
    request_id: str,
    period: str,
    period_start: float,
    threshold: float,
    spent: float,
    budget: float,
    now: float,
) -> bytes:
    """A `budget.threshold` event: the team's spend in its daily or monthly `period`
    (starting at `period_start`, UTC) reached `threshold` (0.5, 0.8, 1.0) of `budget`,
    charging request `request_id`."""
    data = {
        "team": team,
        "request_id": request_id,
        "period": period,
        "period_start": _iso(period_start),
        "threshold": threshold,
        "spent": round(spent, 4),
        "budget": budget,
    }
    return _encode(BUDGET_EVENT, data, now)


def build_credits_body(
    *, about: str, credits: float, read_at: float, price: float, alert_runs: int, now: float
) -> bytes:
    """An `account.credits_low` event: the company's Segmind balance (credits and free
    credits), read at `read_at`, is under `alert_runs` runs of `price`. `request_id` names
    the reading (`credits:<time>`): every event has one, and receivers key on it."""
    data = {
        "request_id": about,
        "credits": round(credits, 4),
        "read_at": _iso(read_at),
        "runs_left": int(credits // price) if price > 0 else None,
        "alert_runs": alert_runs,
        "price": price,
    }
    return _encode(CREDITS_EVENT, data, now)


def _encode(event: str, data: dict[str, Any], now: float) -> bytes:
    document = {"type": event, "timestamp": _iso(now), "data": data}
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def sign(secrets_: Sequence[str], msg_id: str, timestamp: float, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers; one signature per live secret."""
    moment = dt.datetime.fromtimestamp(int(timestamp), dt.UTC)
    text = body.decode()
    signatures = " ".join(Webhook(s).sign(msg_id, moment, text) for s in secrets_)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp)),
        "webhook-signature": signatures,
        "content-type": "application/json",
    }


def classify(status_code: int | None) -> Verdict:
    """What an attempt's answer means; None is a network error or timeout."""
    if status_code is None:
        return Verdict.RETRY
    if 200 <= status_code < 300:
        return Verdict.DELIVERED
    if status_code == 410:
        return Verdict.DISABLE
    if status_code in (408, 429) or status_code >= 500 or 300 <= status_code < 400:
        return Verdict.RETRY
    return Verdict.STOP


def next_delay(
    attempts_made: int,
    rng: random.Random,
    schedule: Sequence[float] = RETRY_SCHEDULE,
    retry_after: float | None = None,
) -> float | None:
    """Seconds until the next attempt after `attempts_made` attempts; None: give up."""
    if attempts_made >= len(schedule):
        return None
    base = schedule[attempts_made]
    delay = base * rng.uniform(1 - JITTER, 1 + JITTER)
    if retry_after is not None:
        delay = max(delay, min(max(retry_after, 0.0), MAX_RETRY_AFTER))
    return delay


@functools.lru_cache(maxsize=4096)
def host_of(url: str) -> str:
    """The receiving host a webhook URL names, normalised as `ssrf` does (case, IDNA, any
    spelling of an IP literal), so that two spellings of one host share one host's slots."""
    try:
        return check_url_syntax(url).hostname
    except WebhookUrlError:
        return url  # URLs are checked at submit, so unreachable; a key of its own all the same


def _iso(now: float) -> str:
    moment = dt.datetime.fromtimestamp(now, dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
