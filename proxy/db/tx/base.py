"""What every part of `Tx` stands on: the DB-API protocols, `_Base` (the connection, the
dialect, the statement helpers and the notices), the shared column lists and the row
converters.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from proxy.db.dialect import Dialect
from proxy.db.records import CacheStatus, Generation, OutboxMessage, RequestRecord

__all__ = [
    "GENERATION_COLUMNS",
    "MESSAGE_COLUMNS",
    "REQUEST_COLUMNS",
    "Connection",
    "Cursor",
    "storable",
]

# PostgreSQL's text cannot hold NUL ("text fields cannot contain NUL"); SQLite's can. Text
# from outside (a receiver's answer, an upstream error, a request id) may carry one, so
# both backends store it as U+FFFD, the character that stands for one that could not be
# kept: a write never fails on it, and both backends read back the same text.
NUL, STANDS_FOR_NUL = "\x00", "\ufffd"

GENERATION_COLUMNS = (
    "id, scope_key, workflow_id, owner_team_id, upstream_id, status, terminal, output, error, "
    "created_at, updated_at, finished_at, next_poll_at, failing_since, cost"
)
REQUEST_COLUMNS = (
    "id, team_id, generation_id, created_at, cache_status, webhook_url, idempotency_key"
)
MESSAGE_COLUMNS = (
    "id, request_id, team_id, url, event, body, state, attempts, next_attempt_at, created_at, "
    "last_error"
)


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Connection(Protocol):
    """The part of a DB-API connection the store uses (sqlite3 and psycopg both fit)."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Cursor: ...


def storable(value: Any) -> Any:
    """`value` as both backends can store it: NUL in text becomes U+FFFD."""
    if isinstance(value, str) and NUL in value:
        return value.replace(NUL, STANDS_FOR_NUL)
    return value


def _qualified(alias: str, columns: str) -> str:
    return ", ".join(f"{alias}.{c.strip()}" for c in columns.split(","))


def _generation(row: Sequence[Any]) -> Generation:
    values = list(row)  # in GENERATION_COLUMNS order; `terminal` is stored as 0/1
    values[6] = bool(values[6])
    return Generation(*values)


def _request(row: Sequence[Any]) -> RequestRecord:
    rid, team, gid, created, cache_status, webhook, idem = tuple(row)
    return RequestRecord(rid, team, gid, created, CacheStatus(cache_status), webhook, idem)


def _message(row: Sequence[Any]) -> OutboxMessage:
    mid, request_id, team_id, url, event, body, state, attempts, due, created, error = row
    return OutboxMessage(
        mid, request_id, team_id, url, event, bytes(body), state, attempts, due, created, error
    )


class _Base:
    """The open transaction every mixin of `Tx` reads and writes through."""

    def __init__(self, db: Connection, dialect: Dialect) -> None:
        self.db = db
        self.dialect = dialect
        self.notices: set[str] = set()  # what other processes should learn on commit

    def _run(self, sql: str, args: Sequence[Any] = ()) -> Cursor:
        return self.db.execute(self.dialect.sql(sql), tuple(map(storable, args)))

    def _one(self, sql: str, args: Sequence[Any] = ()) -> Any:
        return self._run(sql, args).fetchone()

    def _all(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        return self._run(sql, args).fetchall()

    def notify(self, channel: str) -> None:
        """Tell the other processes on this store, once this transaction commits."""
        self.notices.add(channel)

    def relax_durability(self) -> None:
        """This unit's commit need not wait for the disk: a database crash may forget it
        (never half of it). Only for writes whose loss costs nothing but a little accuracy
        (an upstream poll's place in the budget window), so that a lock everyone shares
        is not held through a disk flush."""
        if self.dialect.relaxed_commit is not None:
            self.db.execute(self.dialect.relaxed_commit)
