"""The webhook outbox: one message per request and event, written in the same transaction
as the state it reports (a terminal generation, or a cache hit at admission), so a crash
can never lose one; and every delivery attempt, kept for the admin API.

A message is `pending` until delivered; `delivered`, `failed` (the schedule ran out, or
the receiver refused it with a 4xx) and `disabled` (the endpoint answered 410) are final
until an operator resends or recovers it, which keeps its `webhook-id`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Collection
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from ..webhooks import build_body, host_of, message_id
from .records import CacheStatus, Generation, RequestRecord

__all__ = ["OUTBOX_SCHEMA", "Attempt", "OutboxMessage", "OutboxMixin", "enqueue"]

OUTBOX_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id TEXT PRIMARY KEY,
    request_id TEXT NOT NULL,
    team_id TEXT NOT NULL,
    url TEXT NOT NULL,
    event TEXT NOT NULL,
    body BLOB NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox(next_attempt_at) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS outbox_request ON outbox(request_id);
CREATE TABLE IF NOT EXISTS webhook_attempts (
    message_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    at REAL NOT NULL,
    status_code INTEGER,
    latency_ms REAL,
    response TEXT,
    error TEXT,
    PRIMARY KEY (message_id, attempt)
);
CREATE TABLE IF NOT EXISTS disabled_endpoints (
    team_id TEXT NOT NULL,
    url TEXT NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (team_id, url)
);
CREATE TABLE IF NOT EXISTS kv (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

MESSAGE_COLUMNS = (
    "id, request_id, team_id, url, event, body, state, attempts, next_attempt_at, created_at, "
    "last_error"
)
RESPONSE_EXCERPT = 512  # characters of a receiver's answer kept per attempt


@dataclass(frozen=True)
class OutboxMessage:
    id: str  # the webhook-id: stable across attempts and resends
    request_id: str
    team_id: str
    url: str
    event: str
    body: bytes
    state: str
    attempts: int
    next_attempt_at: float | None
    created_at: float
    last_error: str | None

    def public(self) -> dict[str, Any]:
        return {
            "webhook_id": self.id,
            "request_id": self.request_id,
            "url": self.url,
            "event": self.event,
            "state": self.state,
            "attempts": self.attempts,
            "next_attempt_at": self.next_attempt_at,
            "created_at": self.created_at,
            "last_error": self.last_error,
        }


@dataclass(frozen=True)
class Attempt:
    attempt: int
    at: float
    status_code: int | None
    latency_ms: float | None
    response: str | None
    error: str | None


def _message(row: tuple[Any, ...]) -> OutboxMessage:
    mid, request_id, team_id, url, event, body, state, attempts, due, created, error = row
    return OutboxMessage(
        mid, request_id, team_id, url, event, bytes(body), state, attempts, due, created, error
    )


def enqueue(
    db: sqlite3.Connection, request: RequestRecord, generation: Generation, now: float
) -> None:
    """Queue the terminal event of one request, if it asked for a webhook."""
    if not request.webhook_url or not generation.terminal:
        return
    event = "job.completed" if generation.status == "COMPLETED" else "job.failed"
    refunded = db.execute(
        "SELECT refunded FROM generations WHERE id = ?", (generation.id,)
    ).fetchone()[0]
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
    disabled = db.execute(
        "SELECT 1 FROM disabled_endpoints WHERE team_id = ? AND url = ?",
        (request.team_id, request.webhook_url),
    ).fetchone()
    db.execute(
        f"INSERT OR IGNORE INTO outbox ({MESSAGE_COLUMNS}, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?)",
        (
            message_id(request.id, event),
            request.id,
            request.team_id,
            request.webhook_url,
            event,
            body,
            "disabled" if disabled else "pending",
            None if disabled else now,
            now,
            "the endpoint answered 410 Gone earlier" if disabled else None,
            now,
        ),
    )


def _skipping(
    db: sqlite3.Connection,
    skip_ids: Collection[str],
    skip_endpoints: Collection[tuple[str, str]],
    skip_teams: Collection[str] = (),
    skip_hosts: Collection[str] = (),
) -> tuple[str, list[str]]:
    """A WHERE fragment (and its arguments) leaving out messages, endpoints, teams and
    receiving hosts (as `host_of` names them)."""
    where, args = "", list[str]()
    if skip_ids:
        where += f" AND id NOT IN ({', '.join('?' * len(skip_ids))})"
        args.extend(skip_ids)
    if skip_teams:
        where += f" AND team_id NOT IN ({', '.join('?' * len(skip_teams))})"
        args.extend(skip_teams)
    if skip_hosts:
        db.create_function("webhook_host", 1, host_of, deterministic=True)
        where += f" AND webhook_host(url) NOT IN ({', '.join('?' * len(skip_hosts))})"
        args.extend(skip_hosts)
    if skip_endpoints:
        pairs = ", ".join("(?, ?)" for _ in skip_endpoints)
        where += f" AND (team_id, url) NOT IN (VALUES {pairs})"
        for team_id, url in skip_endpoints:
            args.extend((team_id, url))
    return where, args


class OutboxMixin:
    """The outbox half of `SQLiteStore`: its methods run on the store's connections."""

    _connection: Callable[[], sqlite3.Connection]
    _transaction: Callable[[], AbstractContextManager[sqlite3.Connection]]

    def next_due_at(
        self,
        skip_ids: Collection[str] = (),
        skip_endpoints: Collection[tuple[str, str]] = (),
        skip_teams: Collection[str] = (),
        skip_hosts: Collection[str] = (),
    ) -> float | None:
        """When the next pending message is due, leaving out the skipped ones."""
        db = self._connection()
        where, args = _skipping(db, skip_ids, skip_endpoints, skip_teams, skip_hosts)
        row = db.execute(
            f"SELECT MIN(next_attempt_at) FROM outbox WHERE state = 'pending'{where}", args
        ).fetchone()
        return None if row[0] is None else float(row[0])

    def due_messages(
        self,
        now: float,
        limit: int,
        skip_ids: Collection[str] = (),
        skip_endpoints: Collection[tuple[str, str]] = (),
        skip_teams: Collection[str] = (),
        skip_hosts: Collection[str] = (),
    ) -> list[OutboxMessage]:
        """Pending messages whose next attempt is due, oldest due first (read only),
        leaving out the given ids, (team_id, url) endpoints, teams and hosts: the ones the
        deliverer cannot send now must not fill the batch in front of those it can (one
        team's thousands of due messages would hide every other team's)."""
        db = self._connection()
        where, args = _skipping(db, skip_ids, skip_endpoints, skip_teams, skip_hosts)
        rows = db.execute(
            f"SELECT {MESSAGE_COLUMNS} FROM outbox WHERE state = 'pending' "
            f"AND next_attempt_at <= ?{where} ORDER BY next_attempt_at LIMIT ?",
            (now, *args, limit),
        ).fetchall()
        return [_message(row) for row in rows]

    def claim(self, message_id: str, now: float, lease_until: float) -> bool:
        """Take one due message (its next attempt moves to `lease_until`, so a crash mid-
        delivery makes it due again then); False if it is no longer due."""
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE outbox SET next_attempt_at = ? WHERE id = ? AND state = 'pending' "
                "AND next_attempt_at <= ?",
                (lease_until, message_id, now),
            )
            return cursor.rowcount == 1

    def record_attempt(
        self,
        message_id: str,
        at: float,
        *,
        status_code: int | None,
        latency_ms: float,
        response: str | None,
        error: str | None,
        state: str,
        next_attempt_at: float | None,
    ) -> None:
        with self._transaction() as db:
            row = db.execute(
                "SELECT attempts, team_id, url FROM outbox WHERE id = ?", (message_id,)
            ).fetchone()
            attempts, team_id, url = row
            db.execute(
                "INSERT OR REPLACE INTO webhook_attempts VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    message_id,
                    attempts + 1,
                    at,
                    status_code,
                    round(latency_ms, 2),
                    (response or "")[:RESPONSE_EXCERPT] or None,
                    error,
                ),
            )
            db.execute(
                "UPDATE outbox SET attempts = attempts + 1, state = ?, next_attempt_at = ?, "
                "updated_at = ?, last_error = ? WHERE id = ?",
                (state, next_attempt_at, at, error, message_id),
            )
            if state == "disabled":
                # 410: switch the endpoint off, and hold its other pending messages too.
                db.execute(
                    "INSERT OR REPLACE INTO disabled_endpoints VALUES (?, ?, ?)", (team_id, url, at)
                )
                db.execute(
                    "UPDATE outbox SET state = 'disabled', next_attempt_at = NULL, "
                    "last_error = 'the endpoint answered 410 Gone' "
                    "WHERE team_id = ? AND url = ? AND state = 'pending'",
                    (team_id, url),
                )

    def messages_for_request(
        self, team_id: str | None, request_id: str
    ) -> list[tuple[OutboxMessage, list[Attempt]]]:
        db = self._connection()
        query = f"SELECT {MESSAGE_COLUMNS} FROM outbox WHERE request_id = ?"
        args: tuple[str, ...] = (request_id,)
        if team_id is not None:
            query += " AND team_id = ?"
            args = (request_id, team_id)
        found = []
        for row in db.execute(query + " ORDER BY created_at", args).fetchall():
            message = _message(row)
            attempts = [
                Attempt(*a)
                for a in db.execute(
                    "SELECT attempt, at, status_code, latency_ms, response, error "
                    "FROM webhook_attempts WHERE message_id = ? ORDER BY attempt",
                    (message.id,),
                )
            ]
            found.append((message, attempts))
        return found

    def resend(self, message_id: str, now: float) -> OutboxMessage | None:
        """Queue a message again, now, with its webhook-id; re-enables its endpoint."""
        with self._transaction() as db:
            row = db.execute(
                f"SELECT {MESSAGE_COLUMNS} FROM outbox WHERE id = ?", (message_id,)
            ).fetchone()
            if row is None:
                return None
            message = _message(row)
            db.execute(
                "DELETE FROM disabled_endpoints WHERE team_id = ? AND url = ?",
                (message.team_id, message.url),
            )
            db.execute(
                "UPDATE outbox SET state = 'pending', next_attempt_at = ?, updated_at = ? "
                "WHERE id = ?",
                (now, now, message_id),
            )
            return _message(
                db.execute(
                    f"SELECT {MESSAGE_COLUMNS} FROM outbox WHERE id = ?", (message_id,)
                ).fetchone()
            )

    def recover(self, since: float, now: float, team_id: str | None = None) -> int:
        """Queue again every failed or disabled message created since `since`."""
        with self._transaction() as db:
            clause = ""
            args: list[float | str] = [now, now, since]
            if team_id is not None:
                clause = " AND team_id = ?"
                args.append(team_id)
            cursor = db.execute(
                "UPDATE outbox SET state = 'pending', next_attempt_at = ?, updated_at = ? "
                "WHERE state IN ('failed', 'disabled') AND created_at >= ?" + clause,
                args,
            )
            db.execute(
                "DELETE FROM disabled_endpoints WHERE (team_id, url) IN (SELECT team_id, url "
                "FROM outbox WHERE state = 'pending')"
            )
            return cursor.rowcount

    def kv_get(self, name: str) -> str | None:
        row = self._connection().execute("SELECT value FROM kv WHERE name = ?", (name,)).fetchone()
        return None if row is None else str(row[0])

    def kv_set(self, name: str, value: str) -> None:
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO kv (name, value) VALUES (?, ?)", (name, value))
