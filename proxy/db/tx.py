"""One unit of work's plain reads and writes, in SQL both dialects run.

`Tx` is what the rules (`proxy/rules/`) see of the store while one transaction is open:
named reads and writes of rows, and locks. It decides nothing: which limit applies, what
a terminal state implies, who may write a run, all that is the rules'. Each backend opens
the transaction, hands the rules a `Tx` over its connection, and commits or rolls back.

Locks: `lock_team`, `lock_name` and `run_and_lease` take row or advisory locks on
PostgreSQL, held to the end of the transaction; on SQLite the transaction already holds
the whole file (`BEGIN IMMEDIATE`), so they cost nothing there.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from typing import Any, Protocol

from proxy.core.config import TeamLimits
from proxy.db.dialect import Dialect, lock_key
from proxy.db.records import (
    Attempt,
    CacheStatus,
    Endpoint,
    Generation,
    Instance,
    OutboxMessage,
    RequestRecord,
    RequestView,
    RunView,
    Team,
    TeamKey,
)

__all__ = ["Connection", "Cursor", "Tx"]

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
TEAM_COLUMNS = "t.id, t.name, t.created_at, t.limits, t.webhook_secret, t.webhook_url"
RESPONSE_EXCERPT = 512  # characters of a receiver's answer kept per attempt
BUDGET_ROW = "company"


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Connection(Protocol):
    """The part of a DB-API connection the store uses (sqlite3 and psycopg both fit)."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Cursor: ...


def _qualified(alias: str, columns: str) -> str:
    return ", ".join(f"{alias}.{c.strip()}" for c in columns.split(","))


def _generation(row: Sequence[Any]) -> Generation:
    values = list(row)  # in GENERATION_COLUMNS order; `terminal` is stored as 0/1
    values[6] = bool(values[6])
    return Generation(*values)


def _request(row: Sequence[Any]) -> RequestRecord:
    rid, team, gid, created, cache_status, webhook, idem = tuple(row)
    return RequestRecord(rid, team, gid, created, CacheStatus(cache_status), webhook, idem)


def _team(row: Sequence[Any]) -> Team:
    team_id, name, created_at, limits, secret, url = row
    return Team(team_id, name, created_at, TeamLimits.model_validate_json(limits), secret, url)


def _message(row: Sequence[Any]) -> OutboxMessage:
    mid, request_id, team_id, url, event, body, state, attempts, due, created, error = row
    return OutboxMessage(
        mid, request_id, team_id, url, event, bytes(body), state, attempts, due, created, error
    )


class Tx:
    """Reads and writes inside one open transaction of `db`, in `dialect`."""

    def __init__(self, db: Connection, dialect: Dialect) -> None:
        self.db = db
        self.dialect = dialect
        self.notices: set[str] = set()  # what other processes should learn on commit

    def _run(self, sql: str, args: Sequence[Any] = ()) -> Cursor:
        return self.db.execute(self.dialect.sql(sql), tuple(args))

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

    # -- locks ----------------------------------------------------------------------------

    def lock_name(self, name: str) -> None:
        """Hold `name` until the transaction ends: one holder at a time, in every process."""
        if self.dialect.name_lock is not None:
            self.db.execute(self.dialect.name_lock, (lock_key(name),))

    def lock_team(self, team_id: str) -> None:
        """Serialise this team's admissions (its rate, slots and budgets) across processes."""
        if self.dialect.for_update:
            self._one(f"SELECT 1 FROM teams WHERE id = ?{self.dialect.for_update}", (team_id,))

    # -- meta -----------------------------------------------------------------------------

    def meta(self, name: str) -> int | None:
        row = self._one("SELECT value FROM meta WHERE name = ?", (name,))
        return None if row is None else int(row[0])

    def set_meta(self, name: str, value: int) -> None:
        self._run(
            "INSERT INTO meta (name, value) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (name, value),
        )

    def bump_auth_version(self) -> None:
        self._run("UPDATE meta SET value = value + 1 WHERE name = 'auth_version'")
        self.notify("auth")

    def kv(self, name: str) -> str | None:
        row = self._one("SELECT value FROM kv WHERE name = ?", (name,))
        return None if row is None else str(row[0])

    def set_kv(self, name: str, value: str) -> None:
        self._run(
            "INSERT INTO kv (name, value) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (name, value),
        )

    def delete_kv(self, name: str) -> None:
        self._run("DELETE FROM kv WHERE name = ?", (name,))

    def kv_named(self, prefix: str) -> list[tuple[str, str]]:
        """Every (name, value) whose name starts with `prefix` (no LIKE wildcards in it)."""
        if "%" in prefix or "_" in prefix:
            raise ValueError(f"a kv prefix takes no LIKE wildcards; got {prefix!r}")
        rows = self._all("SELECT name, value FROM kv WHERE name LIKE ?", (prefix + "%",))
        # SQLite's LIKE ignores ASCII case: keep the exact prefix only.
        return [(str(n), str(v)) for n, v in rows if str(n).startswith(prefix)]

    # -- teams and keys -------------------------------------------------------------------

    def insert_team(self, team: Team) -> bool:
        """False if the name is taken (by this or a concurrent transaction)."""
        cursor = self._run(
            "INSERT INTO teams (id, name, created_at, limits, webhook_secret) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING",
            (
                team.id,
                team.name,
                team.created_at,
                team.limits.model_dump_json(),
                team.webhook_secret,
            ),
        )
        return cursor.rowcount == 1

    def team_by_name(self, name: str) -> Team | None:
        row = self._one(f"SELECT {TEAM_COLUMNS} FROM teams t WHERE t.name = ?", (name,))
        return None if row is None else _team(row)

    def teams(self) -> list[Team]:
        return [_team(r) for r in self._all(f"SELECT {TEAM_COLUMNS} FROM teams t ORDER BY t.name")]

    def team_for_key(self, key_hash: str) -> Team | None:
        row = self._one(
            f"SELECT {TEAM_COLUMNS} FROM api_keys k JOIN teams t ON t.id = k.team_id "
            "WHERE k.hash = ? AND k.revoked_at IS NULL",
            (key_hash,),
        )
        return None if row is None else _team(row)

    def set_limits(self, team_id: str, limits: TeamLimits) -> None:
        self._run("UPDATE teams SET limits = ? WHERE id = ?", (limits.model_dump_json(), team_id))

    def set_team_webhook(self, team_id: str, url: str | None) -> None:
        self._run("UPDATE teams SET webhook_url = ? WHERE id = ?", (url, team_id))

    def secrets(self, team_id: str) -> tuple[str | None, str | None, float | None] | None:
        row = self._one(
            "SELECT webhook_secret, webhook_secret_previous, webhook_previous_until "
            "FROM teams WHERE id = ?",
            (team_id,),
        )
        return None if row is None else (row[0], row[1], row[2])

    def rotate_secret(self, team_id: str, secret: str, previous_until: float) -> None:
        self._run(
            "UPDATE teams SET webhook_secret_previous = webhook_secret, "
            "webhook_previous_until = ?, webhook_secret = ? WHERE id = ?",
            (previous_until, secret, team_id),
        )

    def insert_key(self, team_id: str, key_hash: str, prefix: str, now: float) -> None:
        self._run(
            "INSERT INTO api_keys (hash, team_id, prefix, created_at) VALUES (?, ?, ?, ?)",
            (key_hash, team_id, prefix, now),
        )

    def revoke_keys(self, now: float, *, team_id: str | None, prefix: str | None) -> int:
        column, value = ("prefix", prefix) if prefix is not None else ("team_id", team_id)
        cursor = self._run(
            f"UPDATE api_keys SET revoked_at = ? WHERE {column} = ? AND revoked_at IS NULL",
            (now, value),
        )
        return cursor.rowcount

    def keys(self, team_name: str | None) -> list[TeamKey]:
        query = (
            "SELECT k.prefix, t.name, k.created_at, k.revoked_at FROM api_keys k "
            "JOIN teams t ON t.id = k.team_id"
        )
        args: tuple[str, ...] = ()
        if team_name is not None:
            query += " WHERE t.name = ?"
            args = (team_name,)
        return [TeamKey(*row) for row in self._all(query + " ORDER BY k.created_at", args)]

    # -- admission's reads and writes -----------------------------------------------------

    def idempotency(self, team_id: str, key: str, now: float) -> tuple[str, str] | None:
        """(fingerprint, request id) of a live Idempotency-Key."""
        row = self._one(
            "SELECT fingerprint, request_id FROM idempotency "
            "WHERE team_id = ? AND key = ? AND expires_at > ?",
            (team_id, key, now),
        )
        return None if row is None else (str(row[0]), str(row[1]))

    def put_idempotency(
        self, team_id: str, key: str, fingerprint: str, request_id: str, expires_at: float
    ) -> None:
        self._run(
            "INSERT INTO idempotency (team_id, key, fingerprint, request_id, expires_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (team_id, key) DO UPDATE SET "
            "fingerprint = excluded.fingerprint, request_id = excluded.request_id, "
            "expires_at = excluded.expires_at",
            (team_id, key, fingerprint, request_id, expires_at),
        )

    def rate_tat(self, team_id: str, name: str) -> float | None:
        row = self._one(
            "SELECT tat FROM rate_state WHERE team_id = ? AND name = ?", (team_id, name)
        )
        return None if row is None else float(row[0])

    def set_rate_tat(self, team_id: str, name: str, tat: float) -> None:
        self._run(
            "INSERT INTO rate_state (team_id, name, tat) VALUES (?, ?, ?) "
            "ON CONFLICT (team_id, name) DO UPDATE SET tat = excluded.tat",
            (team_id, name, tat),
        )

    def put_cache(self, scope_key: str, generation_id: str, expires_at: float) -> None:
        self._run(
            "INSERT INTO cache (scope_key, generation_id, expires_at) VALUES (?, ?, ?) "
            "ON CONFLICT (scope_key) DO UPDATE SET generation_id = excluded.generation_id, "
            "expires_at = excluded.expires_at",
            (scope_key, generation_id, expires_at),
        )

    def shared(self, scope_key: str, now: float) -> tuple[Generation, str] | None:
        """What a request for `scope_key` can share, in one read: a finished result still
        cached ("HIT"), else the oldest run in flight ("JOIN")."""
        row = self._one(
            f"SELECT * FROM (SELECT {_qualified('g', GENERATION_COLUMNS)}, 'HIT' AS kind, "
            "0 AS rank FROM cache c JOIN generations g ON g.id = c.generation_id "
            "WHERE c.scope_key = ? AND c.expires_at > ? AND g.status = 'COMPLETED' "
            f"UNION ALL SELECT {GENERATION_COLUMNS}, 'JOIN', 1 FROM generations "
            "WHERE scope_key = ? AND terminal = 0) AS shared ORDER BY rank, created_at LIMIT 1",
            (scope_key, now, scope_key),
        )
        return None if row is None else (_generation(row[:-2]), str(row[-2]))

    def running_count(self, team_id: str) -> tuple[int, float | None]:
        """How many unfinished runs the team owns, and when the oldest was admitted."""
        count, oldest = self._one(
            "SELECT COUNT(*), MIN(created_at) FROM generations "
            "WHERE owner_team_id = ? AND terminal = 0",
            (team_id,),
        )
        return int(count), None if oldest is None else float(oldest)

    def spent(self, team_id: str, *periods: str) -> dict[str, float]:
        """What the team spent in each period (0.0 where nothing was)."""
        rows = self._all(
            f"SELECT period, amount FROM spend WHERE team_id = ? "
            f"AND period IN ({', '.join('?' * len(periods))})",
            (team_id, *periods),
        )
        found = {str(period): float(amount) for period, amount in rows}
        return {period: found.get(period, 0.0) for period in periods}

    def spend_in(self, *periods: str) -> list[tuple[str, str, float]]:
        """(team id, period, dollars) of every team's spend in these periods."""
        rows = self._all(
            f"SELECT team_id, period, amount FROM spend WHERE period IN "
            f"({', '.join('?' * len(periods))})",
            periods,
        )
        return [(str(team), str(period), float(amount)) for team, period, amount in rows]

    def add_spend(self, team_id: str, periods: Sequence[str], amount: float) -> None:
        """Add `amount` to the spend of each period, in one statement."""
        self._run(
            "INSERT INTO spend (team_id, period, amount) VALUES "
            + ", ".join("(?, ?, ?)" for _ in periods)
            + " ON CONFLICT (team_id, period) DO UPDATE SET "
            "amount = spend.amount + excluded.amount",
            [value for period in periods for value in (team_id, period, amount)],
        )

    def refund_spend(self, team_id: str, period: str, amount: float) -> None:
        self._run(
            "UPDATE spend SET amount = {greatest}(amount - ?, 0) WHERE team_id = ? AND period = ?",
            (amount, team_id, period),
        )

    def insert_generation(
        self,
        generation_id: str,
        scope_key: str,
        workflow_id: str,
        inputs: dict[str, Any],
        team_id: str,
        now: float,
        cost: float,
        charged: tuple[str, str],
    ) -> Generation:
        row = self._one(
            "INSERT INTO generations (id, scope_key, workflow_id, inputs, owner_team_id, "
            "status, terminal, created_at, updated_at, cost, charge_day, charge_month) "
            f"VALUES (?, ?, ?, ?, ?, 'WAITING', 0, ?, ?, ?, ?, ?) RETURNING {GENERATION_COLUMNS}",
            (
                generation_id,
                scope_key,
                workflow_id,
                json.dumps(inputs, sort_keys=True),
                team_id,
                now,
                now,
                cost,
                *charged,
            ),
        )
        return _generation(row)

    def insert_request(self, request: RequestRecord, day: str) -> None:
        """`day`: the UTC day the request counts in, in usage reports."""
        self._run(
            f"INSERT INTO requests ({REQUEST_COLUMNS}, day) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                request.id,
                request.team_id,
                request.generation_id,
                request.created_at,
                request.cache_status.value,
                request.webhook_url,
                request.idempotency_key,
                day,
            ),
        )

    # -- usage ----------------------------------------------------------------------------

    def requests_by_day(
        self, first: str, last: str, team_id: str | None
    ) -> list[tuple[str, str, str, int, float]]:
        """(team id, day, cache status, requests, the cost of the runs they used) for the
        days `first` to `last` (YYYY-MM-DD, both included)."""
        clause, args = ("", [first, last]) if team_id is None else (
            " AND r.team_id = ?", [first, last, team_id])  # fmt: skip
        rows = self._all(
            "SELECT r.team_id, r.day, r.cache_status, COUNT(*), SUM(g.cost) FROM requests r "
            "JOIN generations g ON g.id = r.generation_id "
            f"WHERE r.day >= ? AND r.day <= ?{clause} "
            "GROUP BY r.team_id, r.day, r.cache_status",
            args,
        )
        return [(str(t), str(d), str(s), int(n), float(c or 0)) for t, d, s, n, c in rows]

    def runs_by_day(
        self, first: str, last: str, team_id: str | None
    ) -> list[tuple[str, str, int, int, int, float]]:
        """(owner team id, day charged, runs charged, failed, refunded, dollars charged
        and not refunded) for the days `first` to `last` (both included)."""
        clause, args = ("", [first, last]) if team_id is None else (
            " AND owner_team_id = ?", [first, last, team_id])  # fmt: skip
        rows = self._all(
            "SELECT owner_team_id, charge_day, COUNT(*), "
            "SUM(CASE WHEN terminal = 1 AND status <> 'COMPLETED' THEN 1 ELSE 0 END), "
            "SUM(refunded), SUM(CASE WHEN refunded = 0 THEN cost ELSE 0 END) FROM generations "
            f"WHERE charge_day >= ? AND charge_day <= ?{clause} "
            "GROUP BY owner_team_id, charge_day",
            args,
        )
        return [
            (str(t), str(d), int(n), int(f or 0), int(r or 0), float(c or 0))
            for t, d, n, f, r, c in rows
        ]

    # -- generations and requests ---------------------------------------------------------

    def generation(self, generation_id: str) -> Generation:
        row = self._one(
            f"SELECT {GENERATION_COLUMNS} FROM generations WHERE id = ?", (generation_id,)
        )
        if row is None:
            raise KeyError(generation_id)
        return _generation(row)

    def run_and_lease(self, generation_id: str) -> tuple[Generation, tuple[str, int] | None]:
        """A run, locked to the end of the transaction, and its lease (instance, fencing
        token). The run's lock keeps its lease still too: a sweep skips locked runs."""
        lock = " FOR UPDATE OF g" if self.dialect.for_update else ""
        row = self._one(
            f"SELECT {_qualified('g', GENERATION_COLUMNS)}, l.instance, l.token "
            "FROM generations g LEFT JOIN poll_leases l ON l.generation_id = g.id "
            f"WHERE g.id = ?{lock}",
            (generation_id,),
        )
        if row is None:
            raise KeyError(generation_id)
        instance, token = row[-2], row[-1]
        lease = None if instance is None else (str(instance), int(token))
        return _generation(row[:-2]), lease

    def generation_inputs(self, generation_id: str) -> dict[str, Any]:
        row = self._one("SELECT inputs FROM generations WHERE id = ?", (generation_id,))
        if row is None:
            raise KeyError(generation_id)
        inputs: dict[str, Any] = json.loads(row[0])
        return inputs

    def charge_of(self, generation_id: str) -> tuple[str, float, str | None, str | None, bool]:
        """(owner, cost, day charged, month charged, refunded) of a run."""
        team_id, cost, day, month, refunded = self._one(
            "SELECT owner_team_id, cost, charge_day, charge_month, refunded FROM generations "
            "WHERE id = ?",
            (generation_id,),
        )
        return str(team_id), float(cost), day, month, bool(refunded)

    def set_refunded(self, generation_id: str) -> None:
        self._run("UPDATE generations SET refunded = 1 WHERE id = ?", (generation_id,))

    def set_submitted(
        self, generation_id: str, upstream_id: str, now: float, next_poll_at: float
    ) -> Generation | None:
        """The run, sent; None if it had ended meanwhile (then it is left as it is)."""
        # created_at becomes the send time: a run held before it was sent is polled, given
        # up and expired from when the upstream started it, as Segmind does.
        row = self._one(
            "UPDATE generations SET upstream_id = ?, status = 'QUEUED', updated_at = ?, "
            "created_at = ?, next_poll_at = ? WHERE id = ? AND terminal = 0 "
            f"RETURNING {GENERATION_COLUMNS}",
            (upstream_id, now, now, next_poll_at, generation_id),
        )
        return None if row is None else _generation(row)

    def set_status(
        self,
        generation_id: str,
        status: str,
        now: float,
        *,
        output: str | None,
        error: str | None,
        terminal: bool,
        next_poll_at: float | None,
        polled: bool = False,
    ) -> None:
        self._run(
            "UPDATE generations SET status = ?, output = ?, error = ?, terminal = ?, "
            "updated_at = ?, finished_at = ?, next_poll_at = ?, failing_since = NULL, "
            "polls = polls + ? WHERE id = ?",
            (
                status,
                output,
                error,
                int(terminal),
                now,
                now if terminal else None,
                None if terminal else next_poll_at,
                int(polled),
                generation_id,
            ),
        )

    def set_poll_failure(self, generation_id: str, now: float, next_poll_at: float) -> None:
        self._run(
            "UPDATE generations SET failing_since = COALESCE(failing_since, ?), "
            "next_poll_at = ?, updated_at = ?, polls = polls + 1 WHERE id = ? AND terminal = 0",
            (now, next_poll_at, now, generation_id),
        )

    def hintable(self, upstream_ids: Collection[str]) -> list[str]:
        """The running runs with these upstream ids whose early poll is still unspent."""
        if not upstream_ids:
            return []
        marks = ", ".join("?" * len(upstream_ids))
        rows = self._all(
            f"SELECT id FROM generations WHERE upstream_id IN ({marks}) AND terminal = 0 "
            "AND hinted_at IS NULL",
            tuple(upstream_ids),
        )
        return [str(gid) for (gid,) in rows]

    def set_hinted(self, generation_id: str, now: float) -> bool:
        """Bring the run's next poll forward to `now`, once; False if it was spent already,
        or the run ended, meanwhile."""
        cursor = self._run(
            "UPDATE generations SET hinted_at = ?, next_poll_at = "
            "CASE WHEN next_poll_at IS NULL OR next_poll_at > ? THEN ? ELSE next_poll_at END "
            "WHERE id = ? AND terminal = 0 AND hinted_at IS NULL",
            (now, now, now, generation_id),
        )
        return cursor.rowcount > 0

    def set_waiting(self, generation_id: str, now: float, *, sending: bool) -> None:
        """WAITING to SUBMITTING (`sending`), or back (the upstream refused it with 429)."""
        if sending:
            self._run(
                "UPDATE generations SET status = 'SUBMITTING', updated_at = ? WHERE id = ?",
                (now, generation_id),
            )
        else:
            self._run(
                "UPDATE generations SET status = 'WAITING', updated_at = ? "
                "WHERE id = ? AND status = 'SUBMITTING' AND upstream_id IS NULL",
                (now, generation_id),
            )

    def request_with_generation(
        self, team_id: str, request_id: str
    ) -> tuple[RequestRecord, Generation] | None:
        # One statement for both rows: this is every client poll's only query.
        row = self._one(
            f"SELECT {_qualified('r', REQUEST_COLUMNS)}, {_qualified('g', GENERATION_COLUMNS)} "
            "FROM requests r JOIN generations g ON g.id = r.generation_id "
            "WHERE r.id = ? AND r.team_id = ?",
            (request_id, team_id),
        )
        if row is None:
            return None
        width = len(REQUEST_COLUMNS.split(","))
        return _request(row[:width]), _generation(row[width:])

    def requests_of(self, generation_id: str) -> list[RequestRecord]:
        rows = self._all(
            f"SELECT {REQUEST_COLUMNS} FROM requests WHERE generation_id = ? ORDER BY created_at",
            (generation_id,),
        )
        return [_request(row) for row in rows]

    # -- instances and leases -------------------------------------------------------------

    def heartbeat(self, instance: str, alive_until: float, forget_before: float) -> None:
        self._run(
            "INSERT INTO instances (id, alive_until) VALUES (?, ?) "
            "ON CONFLICT (id) DO UPDATE SET alive_until = excluded.alive_until",
            (instance, alive_until),
        )
        self._run("DELETE FROM instances WHERE alive_until < ?", (forget_before,))

    def release(self, instance: str) -> None:
        self._run("UPDATE instances SET alive_until = 0 WHERE id = ?", (instance,))

    def claimable(self, instance: str, now: float, *, own: bool) -> list[Generation]:
        """Unfinished runs no live instance polls (with `own`, this instance's too)."""
        mine = " OR l.instance = ?" if own else ""
        # Locked as taken, skipping a run whose writer holds it now (about to end it).
        lock = " FOR UPDATE OF g SKIP LOCKED" if self.dialect.for_update else ""
        rows = self._all(
            f"SELECT {_qualified('g', GENERATION_COLUMNS)} FROM generations g "
            "LEFT JOIN poll_leases l ON l.generation_id = g.id "
            "LEFT JOIN instances i ON i.id = l.instance "
            "WHERE g.terminal = 0 AND (l.instance IS NULL"
            f"{mine} OR (l.instance <> ? AND (i.alive_until IS NULL OR i.alive_until < ?))) "
            f"ORDER BY g.created_at{lock}",
            (*([instance] if own else []), instance, now),
        )
        return [_generation(row) for row in rows]

    def lease(self, generation_id: str) -> tuple[str, int] | None:
        """(instance, fencing token) of the run's lease."""
        row = self._one(
            "SELECT instance, token FROM poll_leases WHERE generation_id = ?", (generation_id,)
        )
        return None if row is None else (str(row[0]), int(row[1]))

    def set_lease(self, generation_id: str, instance: str) -> int:
        """Give the run to `instance` with a new fencing token (one above the last)."""
        row = self._one(
            "INSERT INTO poll_leases (generation_id, instance, token) VALUES (?, ?, 1) "
            "ON CONFLICT (generation_id) DO UPDATE SET instance = excluded.instance, "
            "token = poll_leases.token + 1 RETURNING token",
            (generation_id, instance),
        )
        return int(row[0])

    def drop_lease(self, generation_id: str) -> None:
        self._run("DELETE FROM poll_leases WHERE generation_id = ?", (generation_id,))

    def instances(self) -> list[Instance]:
        rows = self._all(
            "SELECT i.id, i.alive_until, COUNT(l.generation_id) FROM instances i "
            "LEFT JOIN poll_leases l ON l.instance = i.id GROUP BY i.id, i.alive_until "
            "ORDER BY i.id"
        )
        return [Instance(str(i), float(until), int(runs)) for i, until, runs in rows]

    # -- what operators look at (the console): reads only -----------------------------------
    # No index serves these orderings: an operator's page load scans, a team's request never.

    def runs_in_flight(self, limit: int) -> list[RunView]:
        """Unfinished runs, oldest first, with their owner and how many requests share each."""
        rows = self._all(
            f"SELECT {_qualified('g', GENERATION_COLUMNS)}, COALESCE(t.name, '-'), "
            "(SELECT COUNT(*) FROM requests r WHERE r.generation_id = g.id) "
            "FROM generations g LEFT JOIN teams t ON t.id = g.owner_team_id "
            "WHERE g.terminal = 0 ORDER BY g.created_at LIMIT ?",
            (limit,),
        )
        width = len(GENERATION_COLUMNS.split(","))
        return [RunView(_generation(r[:width]), str(r[width]), int(r[width + 1])) for r in rows]

    def recent_requests(self, limit: int, team_id: str | None) -> list[RequestView]:
        """The latest requests (of one team, or all), newest first, with their runs."""
        where, args = ("WHERE r.team_id = ? ", [team_id]) if team_id is not None else ("", [])
        rows = self._all(
            f"SELECT {_qualified('r', REQUEST_COLUMNS)}, COALESCE(t.name, '-'), "
            f"{_qualified('g', GENERATION_COLUMNS)} FROM requests r "
            "JOIN generations g ON g.id = r.generation_id LEFT JOIN teams t ON t.id = r.team_id "
            f"{where}ORDER BY r.created_at DESC LIMIT ?",
            (*args, limit),
        )
        width = len(REQUEST_COLUMNS.split(","))
        return [
            RequestView(_request(r[:width]), str(r[width]), _generation(r[width + 1 :]))
            for r in rows
        ]

    def finished_polls(self, limit: int) -> list[tuple[float, int]]:
        """(send-to-finish seconds, upstream polls) of the latest completed runs."""
        rows = self._all(
            "SELECT finished_at - created_at, polls FROM generations "
            "WHERE status = 'COMPLETED' AND upstream_id IS NOT NULL AND finished_at IS NOT NULL "
            "ORDER BY finished_at DESC LIMIT ?",
            (limit,),
        )
        return [(float(seconds), int(polls)) for seconds, polls in rows]

    def endpoints(self, limit: int) -> list[Endpoint]:
        """Each (team, webhook URL) with its messages summed, latest used first."""
        latest = "SELECT {} FROM outbox x WHERE x.team_id = o.team_id AND x.url = o.url{} " \
                 "ORDER BY x.{} DESC LIMIT 1"  # fmt: skip
        rows = self._all(
            "SELECT COALESCE(t.name, '-'), o.url, COUNT(*), SUM(o.attempts), "
            "SUM(CASE WHEN o.state = 'pending' THEN 1 ELSE 0 END), "
            "SUM(CASE WHEN o.state IN ('failed', 'disabled') THEN 1 ELSE 0 END), "
            "MIN(CASE WHEN o.state = 'pending' THEN o.next_attempt_at END), "
            f"({latest.format('x.last_error', ' AND x.last_error IS NOT NULL', 'updated_at')}), "
            f"({latest.format('x.id', '', 'created_at')}) "
            "FROM outbox o LEFT JOIN teams t ON t.id = o.team_id "
            "GROUP BY o.team_id, t.name, o.url ORDER BY MAX(o.created_at) DESC LIMIT ?",
            (limit,),
        )
        return [
            Endpoint(
                str(team),
                str(url),
                int(n),
                int(tries or 0),
                int(pending or 0),
                int(failed or 0),
                due,
                error,
                str(last),
            )
            for team, url, n, tries, pending, failed, due, error, last in rows
        ]

    def recent_messages(self, limit: int) -> list[tuple[OutboxMessage, str]]:
        """The latest webhook messages, newest first, with their team's name."""
        rows = self._all(
            f"SELECT {_qualified('o', MESSAGE_COLUMNS)}, COALESCE(t.name, '-') FROM outbox o "
            "LEFT JOIN teams t ON t.id = o.team_id ORDER BY o.created_at DESC LIMIT ?",
            (limit,),
        )
        return [(_message(row[:-1]), str(row[-1])) for row in rows]

    def budget_times(self) -> tuple[float, float]:
        """(paused_until, submits_until) of the company's budget, read without its lock."""
        row = self._one(
            "SELECT paused_until, submits_until FROM upstream_budget WHERE name = ?", (BUDGET_ROW,)
        )
        return float(row[0]), float(row[1])

    # -- the company's upstream budget ----------------------------------------------------

    def budget_state(self) -> tuple[float, float, int, float]:
        """(paused_until, submits_until, calls counted in the window, when old calls were
        last forgotten), locked to the end of the transaction."""
        paused_until, submits_until, calls, forgotten_at = self._one(
            "SELECT paused_until, submits_until, calls, forgotten_at FROM upstream_budget "
            f"WHERE name = ?{self.dialect.for_update}",
            (BUDGET_ROW,),
        )
        return float(paused_until), float(submits_until), int(calls), float(forgotten_at)

    def set_call_count(self, calls: int, forgotten_at: float) -> None:
        self._run(
            "UPDATE upstream_budget SET calls = ?, forgotten_at = ? WHERE name = ?",
            (calls, forgotten_at, BUDGET_ROW),
        )

    def raise_budget_times(self, *, paused_until: float = 0.0, submits_until: float = 0.0) -> None:
        self._run(
            "UPDATE upstream_budget SET paused_until = {greatest}(paused_until, ?), "
            "submits_until = {greatest}(submits_until, ?) WHERE name = ?",
            (paused_until, submits_until, BUDGET_ROW),
        )

    def forget_calls(self, before: float) -> int:
        """Delete the calls at or before `before`; returns how many."""
        return self._run("DELETE FROM upstream_calls WHERE at <= ?", (before,)).rowcount

    def nth_latest_call(self, n: int) -> float:
        """The time of the n-th latest call (n = 1: the latest)."""
        row = self._one("SELECT at FROM upstream_calls ORDER BY at DESC LIMIT 1 OFFSET ?", (n - 1,))
        return float(row[0])

    def add_call(self, at: float) -> None:
        self._run("INSERT INTO upstream_calls (at) VALUES (?)", (at,))

    def calls_between(self, start: float, end: float) -> list[float]:
        rows = self._all(
            "SELECT at FROM upstream_calls WHERE at >= ? AND at <= ? ORDER BY at", (start, end)
        )
        return [float(at) for (at,) in rows]

    def waiting_count(self) -> int:
        return int(self._one("SELECT COUNT(*) FROM generations WHERE status = 'WAITING'")[0])

    def any_waiting(self) -> bool:
        return self._one("SELECT 1 FROM generations WHERE status = 'WAITING' LIMIT 1") is not None

    def waiting_ahead(self, generation_id: str, up_to: int) -> int:
        """How many runs admitted before this one still wait to be sent (at most `up_to`)."""
        row = self._one(
            "SELECT COUNT(*) FROM (SELECT 1 FROM generations w, generations g "
            "WHERE g.id = ? AND w.status = 'WAITING' "
            "AND (w.created_at < g.created_at OR (w.created_at = g.created_at "
            "AND w.{order} < g.{order})) LIMIT ?) ahead",
            (generation_id, up_to),
        )
        return int(row[0])

    # -- the webhook outbox ---------------------------------------------------------------

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
        skip_ids: Collection[str],
        skip_endpoints: Collection[tuple[str, str]],
        skip_teams: Collection[str],
        skip_hosts: Collection[str],
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
        skip_ids: Collection[str],
        skip_endpoints: Collection[tuple[str, str]],
        skip_teams: Collection[str],
        skip_hosts: Collection[str],
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

    def requeue_failed(self, since: float, now: float, team_id: str | None) -> int:
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
