"""The webhook outbox's rules: one message per request and event, written in the unit of
work that writes the state it reports (a terminal run, or a cache hit at admission), so a
crash can never lose one; each delivery attempt; an operator's resend and recovery.

A message is `pending` until delivered; `delivered`, `failed` (the schedule ran out, or
the receiver refused it with a 4xx) and `disabled` (the endpoint answered 410) are final
until an operator resends or recovers it, which keeps its `webhook-id`.
"""

from __future__ import annotations

from proxy.core.webhooks import build_body, host_of, message_id
from proxy.db.records import Attempt, CacheStatus, Generation, OutboxMessage, RequestRecord
from proxy.db.tx import Tx

__all__ = ["enqueue", "queue", "record_attempt", "resend"]


def enqueue(tx: Tx, request: RequestRecord, generation: Generation, now: float) -> None:
    """Queue the terminal event of one request, if it asked for a webhook."""
    if not request.webhook_url or not generation.terminal:
        return
    event = "job.completed" if generation.status == "COMPLETED" else "job.failed"
    refunded = tx.charge_of(generation.id)[4]
    paid = request.cache_status is CacheStatus.MISS and not refunded
    body = build_body(
        event=event,
        request_id=request.id,
        workflow_id=generation.workflow_id,
        status=generation.status,
        output=generation.output,
        error=generation.error,
        cache_status=request.cache_status.value,
        cost=generation.cost if paid else 0.0,
        now=now,
    )
    queue(tx, request.team_id, request.webhook_url, request.id, event, body, now)


def queue(
    tx: Tx,
    team_id: str,
    url: str,
    about: str,
    event: str,
    body: bytes,
    now: float,
    *,
    once_for: str | None = None,
) -> None:
    """Queue `event` for the team's `url`, about request `about`, due now (held if the
    endpoint answered 410 before). Its id is stable for `once_for` (default: `about`) and
    the event: a second message of the same id is not queued."""
    disabled = tx.endpoint_disabled(team_id, url)
    message = OutboxMessage(
        id=message_id(once_for or about, event),
        request_id=about,
        team_id=team_id,
        url=url,
        event=event,
        body=body,
        state="disabled" if disabled else "pending",
        attempts=0,
        next_attempt_at=None if disabled else now,
        created_at=now,
        last_error="the endpoint answered 410 Gone earlier" if disabled else None,
    )
    tx.insert_message(message, host_of(url))


def record_attempt(
    tx: Tx,
    message_id: str,
    attempt: Attempt,
    *,
    state: str,
    next_attempt_at: float | None,
) -> None:
    message = tx.message(message_id)
    if message is None:
        return
    tx.add_attempt(message_id, Attempt(message.attempts + 1, *_fields(attempt)))
    tx.set_message_state(
        message_id, state, next_attempt_at, attempt.at, attempt.error, attempted=True
    )
    if state == "disabled":
        # 410: switch the endpoint off, and hold its other pending messages too.
        tx.set_endpoint_disabled(message.team_id, message.url, attempt.at)


def _fields(attempt: Attempt) -> tuple[float, int | None, float | None, str | None, str | None]:
    latency = None if attempt.latency_ms is None else round(attempt.latency_ms, 2)
    return attempt.at, attempt.status_code, latency, attempt.response, attempt.error


def resend(tx: Tx, message_id: str, now: float) -> OutboxMessage | None:
    """Queue a message again, now, with its webhook-id; re-enables its endpoint."""
    message = tx.message(message_id)
    if message is None:
        return None
    tx.set_endpoint_disabled(message.team_id, message.url, None)
    tx.set_message_state(message_id, "pending", now, now, message.last_error, attempted=False)
    return tx.message(message_id)
