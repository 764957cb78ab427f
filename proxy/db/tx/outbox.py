"""The webhook outbox: messages queued, claimed, attempted, disabled per endpoint,
and queued again.
"""

from __future__ import annotations

from collections.abc import Collection

from proxy.db.records import Attempt, OutboxMessage
from proxy.db.tx.base import MESSAGE_COLUMNS, _Base, _message

__all__ = ["RESPONSE_EXCERPT", "OutboxTx"]

RESPONSE_EXCERPT = 512  # characters of a receiver's answer kept per attempt


class OutboxTx(_Base):
    """Rows of `outbox`, `webhook_attempts` and `disabled_endpoints`."""

    def endpoint_disabled(self, team_id: str, url: str) -> bool:
        row = self._one(
            "SELECT 1 FROM disabled_endpoints WHERE team_id = ? AND url = ?", (team_id, url)
        )
        return row is not None

    def insert_message(self, message: OutboxMessage, host: str) -> None:
        """Queue a message; one that exists (same id) is left as it is."""
        self._run(
            f"INSERT INTO outbox ({MESSAGE_COLUMNS}, updated_at, host) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
            (
                message.id,
                message.request_id,
                message.team_id,
                message.url,
                message.event,
                message.body,
                message.state,
                message.attempts,
                message.next_attempt_at,
                message.created_at,
                message.last_error,
                message.created_at,
                host,
            ),
        )
        if message.state == "pending":
            self.notify("outbox")

    def _skipping(
        self,
        skip_ids: Collection[str],
        skip_endpoints: Collection[tuple[str, str]],
        skip_teams: Collection[str],
        skip_hosts: Collection[str],
    ) -> tuple[str, list[str]]:
        where, args = "", list[str]()
        for column, values in (("id", skip_ids), ("team_id", skip_teams), ("host", skip_hosts)):
            if values:
                where += f" AND {column} NOT IN ({', '.join('?' * len(values))})"
                args.extend(values)
        if skip_endpoints:
            pairs = ", ".join("(?, ?)" for _ in skip_endpoints)
            where += f" AND (team_id, url) NOT IN (VALUES {pairs})"
            for team_id, url in skip_endpoints:
                args.extend((team_id, url))
        return where, args

    def next_due_at(
        self,
        skip_ids: Collection[str] = (),
        skip_endpoints: Collection[tuple[str, str]] = (),
        skip_teams: Collection[str] = (),
        skip_hosts: Collection[str] = (),
    ) -> float | None:
        where, args = self._skipping(skip_ids, skip_endpoints, skip_teams, skip_hosts)
        row = self._one(
            f"SELECT MIN(next_attempt_at) FROM outbox WHERE state = 'pending'{where}", args
        )
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
        where, args = self._skipping(skip_ids, skip_endpoints, skip_teams, skip_hosts)
        rows = self._all(
            f"SELECT {MESSAGE_COLUMNS} FROM outbox WHERE state = 'pending' "
            f"AND next_attempt_at <= ?{where} ORDER BY next_attempt_at LIMIT ?",
            (now, *args, limit),
        )
        return [_message(row) for row in rows]

    def claim_message(self, message_id: str, now: float, lease_until: float) -> bool:
        """Take one due message, skipping it if another process holds it right now."""
        row = self._one(
            "SELECT id FROM outbox WHERE id = ? AND state = 'pending' AND next_attempt_at <= ?"
            f"{self.dialect.skip_locked}",
            (message_id, now),
        )
        if row is None:
            return False
        self._run("UPDATE outbox SET next_attempt_at = ? WHERE id = ?", (lease_until, message_id))
        return True

    def message(self, message_id: str) -> OutboxMessage | None:
        row = self._one(f"SELECT {MESSAGE_COLUMNS} FROM outbox WHERE id = ?", (message_id,))
        return None if row is None else _message(row)

    def add_attempt(self, message_id: str, attempt: Attempt) -> None:
        self._run(
            "INSERT INTO webhook_attempts "
            "(message_id, attempt, at, status_code, latency_ms, response, error) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (message_id, attempt) DO UPDATE SET "
            "at = excluded.at, status_code = excluded.status_code, "
            "latency_ms = excluded.latency_ms, response = excluded.response, "
            "error = excluded.error",
            (
                message_id,
                attempt.attempt,
                attempt.at,
                attempt.status_code,
                attempt.latency_ms,
                (attempt.response or "")[:RESPONSE_EXCERPT] or None,
                attempt.error,
            ),
        )

    def set_message_state(
        self,
        message_id: str,
        state: str,
        next_attempt_at: float | None,
        now: float,
        error: str | None,
        *,
        attempted: bool,
    ) -> None:
        self._run(
            f"UPDATE outbox SET attempts = attempts + {int(attempted)}, state = ?, "
            "next_attempt_at = ?, updated_at = ?, last_error = ? WHERE id = ?",
            (state, next_attempt_at, now, error, message_id),
        )
        if state == "pending":
            self.notify("outbox")

    def set_endpoint_disabled(self, team_id: str, url: str, at: float | None) -> None:
        """Switch an endpoint off (it answered 410) with its pending messages; or on."""
        if at is None:
            self._run(
                "DELETE FROM disabled_endpoints WHERE team_id = ? AND url = ?", (team_id, url)
            )
            return
        self._run(
            "INSERT INTO disabled_endpoints (team_id, url, at) VALUES (?, ?, ?) "
            "ON CONFLICT (team_id, url) DO UPDATE SET at = excluded.at",
            (team_id, url, at),
        )
        self._run(
            "UPDATE outbox SET state = 'disabled', next_attempt_at = NULL, "
            "last_error = 'the endpoint answered 410 Gone' "
            "WHERE team_id = ? AND url = ? AND state = 'pending'",
            (team_id, url),
        )

    def messages_for_request(self, team_id: str | None, request_id: str) -> list[OutboxMessage]:
        query = f"SELECT {MESSAGE_COLUMNS} FROM outbox WHERE request_id = ?"
        args: tuple[str, ...] = (request_id,)
        if team_id is not None:
            query += " AND team_id = ?"
            args = (request_id, team_id)
        return [_message(row) for row in self._all(query + " ORDER BY created_at", args)]

    def attempts(self, message_id: str) -> list[Attempt]:
        rows = self._all(
            "SELECT attempt, at, status_code, latency_ms, response, error "
            "FROM webhook_attempts WHERE message_id = ? ORDER BY attempt",
            (message_id,),
        )
        return [Attempt(*row) for row in rows]

    def requeue_failed(self, since: float, now: float, team_id: str | None = None) -> int:
        clause, args = "", list[object]([now, now, since])
        if team_id is not None:
            clause = " AND team_id = ?"
            args.append(team_id)
        cursor = self._run(
            "UPDATE outbox SET state = 'pending', next_attempt_at = ?, updated_at = ? "
            "WHERE state IN ('failed', 'disabled') AND created_at >= ?" + clause,
            args,
        )
        self._run(
            "DELETE FROM disabled_endpoints WHERE (team_id, url) IN (SELECT team_id, url "
            "FROM outbox WHERE state = 'pending')"
        )
        if cursor.rowcount:
            self.notify("outbox")
        return cursor.rowcount
