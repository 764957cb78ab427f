"""The SQLite store: one file in WAL mode; every check and its spend in one transaction.

Writes run on one dedicated thread (`AsyncStore`), each inside `BEGIN IMMEDIATE`, which
takes SQLite's write lock before the first read: two admissions, in this process or in
another process on the same file, can never both read "9 of 10 used". Reads (auth and
poll answers) run where they are called, on their own connection; WAL lets them proceed
while a write is in progress. Any SQLite error becomes `StoreUnavailable` (503): the
gateway never admits what it could not check.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from ..config import TeamLimits
from ..errors import GatewayError, LimitExceeded, StoreUnavailable
from ..quotas import (
    RateDecision,
    budget_periods,
    gcra,
    seconds_to_next_day,
    seconds_to_next_month,
)
from .budget import BUDGET_SCHEMA, BudgetMixin
from .leases import LEASE_SCHEMA, LeaseMixin
from .outbox import OUTBOX_SCHEMA, OutboxMixin, enqueue
from .records import Admission, CacheStatus, Generation, RequestRecord, Team, TeamKey

__all__ = ["AdmissionRequest", "AsyncStore", "SQLiteStore", "TeamExists"]

AUTH_CACHE_SIZE = 10_000  # key hashes remembered between auth changes

P = ParamSpec("P")
T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS teams (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL,
    limits TEXT NOT NULL,
    webhook_secret TEXT
);
CREATE TABLE IF NOT EXISTS api_keys (
    hash TEXT PRIMARY KEY,
    team_id TEXT NOT NULL REFERENCES teams(id),
    prefix TEXT NOT NULL,
    created_at REAL NOT NULL,
    revoked_at REAL
);
CREATE INDEX IF NOT EXISTS api_keys_team ON api_keys(team_id);
CREATE TABLE IF NOT EXISTS generations (
    id TEXT PRIMARY KEY,
    scope_key TEXT NOT NULL,
    workflow_id TEXT NOT NULL,
    inputs TEXT NOT NULL,
    owner_team_id TEXT NOT NULL,
    upstream_id TEXT,
    status TEXT NOT NULL,
    terminal INTEGER NOT NULL DEFAULT 0,
    output TEXT,
    error TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    finished_at REAL,
    next_poll_at REAL,
    failing_since REAL,
    cost REAL NOT NULL,
    charge_day TEXT,
    charge_month TEXT,
    refunded INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS generations_running ON generations(scope_key) WHERE terminal = 0;
CREATE INDEX IF NOT EXISTS generations_owner ON generations(owner_team_id) WHERE terminal = 0;
CREATE TABLE IF NOT EXISTS requests (
    id TEXT PRIMARY KEY,
    team_id TEXT NOT NULL,
    generation_id TEXT NOT NULL REFERENCES generations(id),
    created_at REAL NOT NULL,
    cache_status TEXT NOT NULL,
    webhook_url TEXT,
    idempotency_key TEXT
);
CREATE INDEX IF NOT EXISTS requests_generation ON requests(generation_id);
CREATE TABLE IF NOT EXISTS cache (
    scope_key TEXT PRIMARY KEY,
    generation_id TEXT NOT NULL,
    expires_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS idempotency (
    team_id TEXT NOT NULL,
    key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    request_id TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (team_id, key)
);
CREATE TABLE IF NOT EXISTS rate_state (
    team_id TEXT NOT NULL,
    name TEXT NOT NULL,
    tat REAL NOT NULL,
    PRIMARY KEY (team_id, name)
);
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT OR IGNORE INTO meta (name, value) VALUES ('auth_version', 0);
CREATE TABLE IF NOT EXISTS spend (
    team_id TEXT NOT NULL,
    period TEXT NOT NULL,
    amount REAL NOT NULL,
    PRIMARY KEY (team_id, period)
);
"""

GENERATION_COLUMNS = (
    "id, scope_key, workflow_id, owner_team_id, upstream_id, status, terminal, output, error, "
    "created_at, updated_at, finished_at, next_poll_at, failing_since, cost"
)
REQUEST_COLUMNS = (
    "id, team_id, generation_id, created_at, cache_status, webhook_url, idempotency_key"
)


class TeamExists(GatewayError):
    status_code = 409


@dataclass(frozen=True)
class AdmissionRequest:
    """Everything admission needs to decide HIT, JOIN or MISS, and the limits on a MISS."""

    team: Team
    request_id: str
    generation_id: str
    scope_key: str
    workflow_id: str
    inputs: dict[str, Any]
    price: float
    no_cache: bool = False
    webhook_url: str | None = None
    idempotency_key: str | None = None
    fingerprint: str = ""  # what an Idempotency-Key replay must match
    idempotency_ttl: float = 86400.0
    expected_run_seconds: float = 673.9
    instance: str | None = None  # the gateway process that will poll a new run (its lease)


def _generation(row: sqlite3.Row | tuple[Any, ...]) -> Generation:
    values = list(row)  # in GENERATION_COLUMNS order; `terminal` is stored as 0/1
    values[6] = bool(values[6])
    return Generation(*values)


def _request(row: sqlite3.Row | tuple[Any, ...]) -> RequestRecord:
    rid, team, gid, created, cache_status, webhook, idem = tuple(row)
    return RequestRecord(rid, team, gid, created, CacheStatus(cache_status), webhook, idem)


class SQLiteStore(OutboxMixin, LeaseMixin, BudgetMixin):
    """Synchronous; every method is one transaction. `AsyncStore` runs the writes."""

    def __init__(self, path: str, busy_timeout: float = 5.0, *, create: bool = True) -> None:
        """`create=False` opens only a file that exists (admin commands): a missing store
        is an error (sqlite3.OperationalError), never a new empty one."""
        self.path = path
        self.busy_timeout = busy_timeout
        self.create = create
        self._local = threading.local()
        self._auth_version = -1
        self._auth_cache: dict[str, Team | None] = {}
        # executescript manages its own transaction; CREATE ... IF NOT EXISTS is idempotent.
        db = self._connection()
        db.executescript(SCHEMA + OUTBOX_SCHEMA + LEASE_SCHEMA + BUDGET_SCHEMA)
        columns = {row[1] for row in db.execute("PRAGMA table_info(teams)")}
        for column in ("webhook_secret_previous TEXT", "webhook_previous_until REAL"):
            if column.split()[0] not in columns:  # stores made before secret rotation
                db.execute(f"ALTER TABLE teams ADD COLUMN {column}")

    # -- connections and transactions ------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(
                self.path if self.create else f"{Path(self.path).resolve().as_uri()}?mode=rw",
                uri=not self.create,
                timeout=self.busy_timeout,
                isolation_level=None,
                check_same_thread=True,
            )
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
            self._local.db = db
        return db

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        db = self._connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    # -- numbers a restarted process needs again (e.g. the embedded fake's port) -------

    def remembered(self, name: str) -> int | None:
        row = self._connection().execute("SELECT value FROM meta WHERE name = ?", (name,))
        found = row.fetchone()
        return None if found is None else int(found[0])

    def remember(self, name: str, value: int) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO meta (name, value) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                (name, value),
            )

    # -- teams and keys ---------------------------------------------------------------

    def create_team(
        self,
        team_id: str,
        name: str,
        limits: TeamLimits,
        now: float,
        webhook_secret: str | None = None,
    ) -> Team:
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM teams WHERE name = ?", (name,)).fetchone():
                raise TeamExists(f"a team named {name!r} already exists; pick another name")
            db.execute(
                "INSERT INTO teams (id, name, created_at, limits, webhook_secret) "
                "VALUES (?, ?, ?, ?, ?)",
                (team_id, name, now, limits.model_dump_json(), webhook_secret),
            )
            _bump_auth_version(db)
        return Team(team_id, name, now, limits, webhook_secret)

    def add_key(self, team_name: str, key_hash: str, prefix: str, now: float) -> TeamKey:
        with self._transaction() as db:
            team = self._team_by_name(db, team_name)
            db.execute(
                "INSERT INTO api_keys (hash, team_id, prefix, created_at) VALUES (?, ?, ?, ?)",
                (key_hash, team.id, prefix, now),
            )
            _bump_auth_version(db)
        return TeamKey(prefix, team_name, now, None)

    def revoke_keys(
        self, now: float, *, team_name: str | None = None, prefix: str | None = None
    ) -> int:
        """Revoke one key (by prefix) or all of a team's keys; returns how many."""
        with self._transaction() as db:
            if prefix is not None:
                cursor = db.execute(
                    "UPDATE api_keys SET revoked_at = ? WHERE prefix = ? AND revoked_at IS NULL",
                    (now, prefix),
                )
            else:
                team = self._team_by_name(db, team_name or "")
                cursor = db.execute(
                    "UPDATE api_keys SET revoked_at = ? WHERE team_id = ? AND revoked_at IS NULL",
                    (now, team.id),
                )
            _bump_auth_version(db)
            return cursor.rowcount

    def team_secrets(self, team_id: str, now: float) -> list[str]:
        """The webhook secrets that sign now: the current one, and the previous one while
        its overlap lasts, so receivers can switch without losing a delivery."""
        row = (
            self._connection()
            .execute(
                "SELECT webhook_secret, webhook_secret_previous, webhook_previous_until "
                "FROM teams WHERE id = ?",
                (team_id,),
            )
            .fetchone()
        )
        if row is None or row[0] is None:
            return []
        current, previous, until = row
        return [current, previous] if previous and until and now < until else [current]

    def rotate_secret(self, team_name: str, secret: str, now: float, overlap: float) -> None:
        with self._transaction() as db:
            team = self._team_by_name(db, team_name)
            db.execute(
                "UPDATE teams SET webhook_secret_previous = webhook_secret, "
                "webhook_previous_until = ?, webhook_secret = ? WHERE id = ?",
                (now + overlap, secret, team.id),
            )
            _bump_auth_version(db)

    def set_limits(self, team_name: str, limits: TeamLimits) -> Team:
        with self._transaction() as db:
            team = self._team_by_name(db, team_name)
            db.execute(
                "UPDATE teams SET limits = ? WHERE id = ?", (limits.model_dump_json(), team.id)
            )
            _bump_auth_version(db)
        return Team(team.id, team.name, team.created_at, limits, team.webhook_secret)

    def _team_by_name(self, db: sqlite3.Connection, name: str) -> Team:
        row = db.execute(
            "SELECT id, name, created_at, limits, webhook_secret FROM teams WHERE name = ?",
            (name,),
        ).fetchone()
        if row is None:
            from ..errors import NotFound

            raise NotFound(
                f"no team named {name!r}; list teams with `python -m proxy admin list-teams`"
            )
        return _team(row)

    def team(self, name: str) -> Team:
        return self._team_by_name(self._connection(), name)

    def teams(self) -> list[Team]:
        rows = self._connection().execute(
            "SELECT id, name, created_at, limits, webhook_secret FROM teams ORDER BY name"
        )
        return [_team(row) for row in rows]

    def keys(self, team_name: str | None = None) -> list[TeamKey]:
        query = (
            "SELECT k.prefix, t.name, k.created_at, k.revoked_at FROM api_keys k "
            "JOIN teams t ON t.id = k.team_id"
        )
        args: tuple[str, ...] = ()
        if team_name is not None:
            query += " WHERE t.name = ?"
            args = (team_name,)
        rows = self._connection().execute(query + " ORDER BY k.created_at", args)
        return [TeamKey(*row) for row in rows]

    def team_for_key(self, key_hash: str) -> Team | None:
        """The team a live key belongs to; a revoked key finds nothing.

        Answers are remembered only while the store's auth version stands still; every
        change to keys or teams bumps it in the same transaction, so a revocation (from
        this process or another) takes effect on the very next request.
        """
        db = self._connection()
        version = db.execute("SELECT value FROM meta WHERE name = 'auth_version'").fetchone()[0]
        if version != self._auth_version:
            self._auth_cache.clear()
            self._auth_version = version
        if key_hash in self._auth_cache:
            return self._auth_cache[key_hash]
        team = self._lookup_key(db, key_hash)
        if len(self._auth_cache) >= AUTH_CACHE_SIZE:
            self._auth_cache.clear()
        self._auth_cache[key_hash] = team
        return team

    def _lookup_key(self, db: sqlite3.Connection, key_hash: str) -> Team | None:
        row = db.execute(
            "SELECT t.id, t.name, t.created_at, t.limits, t.webhook_secret FROM api_keys k "
            "JOIN teams t ON t.id = k.team_id WHERE k.hash = ? AND k.revoked_at IS NULL",
            (key_hash,),
        ).fetchone()
        return None if row is None else _team(row)

    # -- admission ----------------------------------------------------------------------

    def admit(self, ask: AdmissionRequest, now: float) -> Admission:
        """HIT, JOIN or MISS, with every limit checked and spent in this one transaction."""
        with self._transaction() as db:
            team = ask.team
            if ask.idempotency_key:
                replay = self._replay(db, ask, now)
                if replay is not None:
                    return replay
            rate = self._take_rate(db, team, "submits", team.limits.submits_per_minute, now)
            generation, status = None, CacheStatus.MISS
            if not ask.no_cache:
                generation = self._cached(db, ask.scope_key, now)
                status = CacheStatus.HIT
                if generation is None:
                    generation = self._running(db, ask.scope_key)
                    status = CacheStatus.JOIN
            if generation is None:
                status = CacheStatus.MISS
                self._check_concurrency(db, ask, now)
                day, month = self._charge(db, ask, now)
                db.execute(
                    "INSERT INTO generations (id, scope_key, workflow_id, inputs, owner_team_id, "
                    "status, terminal, created_at, updated_at, cost, charge_day, charge_month) "
                    "VALUES (?, ?, ?, ?, ?, 'WAITING', 0, ?, ?, ?, ?, ?)",
                    (
                        ask.generation_id,
                        ask.scope_key,
                        ask.workflow_id,
                        json.dumps(ask.inputs, sort_keys=True),
                        team.id,
                        now,
                        now,
                        ask.price,
                        day,
                        month,
                    ),
                )
                if ask.instance is not None:
                    # Leased in the transaction that creates it: no other process can take
                    # (and fail) a run this one is still submitting.
                    db.execute(
                        "INSERT INTO poll_leases (generation_id, instance) VALUES (?, ?)",
                        (ask.generation_id, ask.instance),
                    )
                generation = self._generation_by_id(db, ask.generation_id)
            request = RequestRecord(
                ask.request_id,
                team.id,
                generation.id,
                now,
                status,
                ask.webhook_url,
                ask.idempotency_key,
            )
            db.execute(
                f"INSERT INTO requests ({REQUEST_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    request.id,
                    request.team_id,
                    request.generation_id,
                    request.created_at,
                    request.cache_status.value,
                    request.webhook_url,
                    request.idempotency_key,
                ),
            )
            if status is CacheStatus.HIT:
                enqueue(db, request, generation, now)
            if ask.idempotency_key:
                db.execute(
                    "INSERT OR REPLACE INTO idempotency VALUES (?, ?, ?, ?, ?)",
                    (
                        team.id,
                        ask.idempotency_key,
                        ask.fingerprint,
                        request.id,
                        now + ask.idempotency_ttl,
                    ),
                )
            return Admission(request, generation, replayed=False, rate=rate)

    def _replay(
        self, db: sqlite3.Connection, ask: AdmissionRequest, now: float
    ) -> Admission | None:
        row = db.execute(
            "SELECT fingerprint, request_id FROM idempotency "
            "WHERE team_id = ? AND key = ? AND expires_at > ?",
            (ask.team.id, ask.idempotency_key, now),
        ).fetchone()
        if row is None:
            return None
        fingerprint, request_id = row
        if fingerprint != ask.fingerprint:
            from ..errors import BadInput

            raise BadInput(
                "this Idempotency-Key was already used with a different body; "
                "use a new key for a different request",
                status_code=422,
            )
        found = self._request_with_generation(db, ask.team.id, request_id)
        assert found is not None, "an idempotency row always names a stored request"
        request, generation = found
        return Admission(request, generation, replayed=True, rate=None)

    def peek_admission(self, ask: AdmissionRequest, now: float) -> None:
        """Raise the `LimitExceeded` that `admit` would raise now for the team's cheap
        limits (submit rate; on a run that would be paid: concurrency and budgets), reading
        only: a refusal before any costly work (a webhook URL's DNS lookup). `admit`, in one
        transaction, stays the authority; this may let through what it then refuses."""
        db = self._connection()
        if ask.idempotency_key and self._replay(db, ask, now) is not None:
            return  # a replay is answered as before, whatever the limits say now
        self._rate_decision(db, ask.team, "submits", ask.team.limits.submits_per_minute, now)
        if not ask.no_cache and (
            self._cached(db, ask.scope_key, now) or self._running(db, ask.scope_key)
        ):
            return  # a HIT or a JOIN costs nothing and takes no slot
        self._check_concurrency(db, ask, now)
        self._check_budgets(db, ask, now)

    def _take_rate(
        self, db: sqlite3.Connection, team: Team, name: str, limit: int | None, now: float
    ) -> RateDecision | None:
        decision = self._rate_decision(db, team, name, limit, now)
        if decision is None:
            return None
        db.execute(
            "INSERT INTO rate_state (team_id, name, tat) VALUES (?, ?, ?) "
            "ON CONFLICT (team_id, name) DO UPDATE SET tat = excluded.tat",
            (team.id, name, decision.tat),
        )
        return decision

    def _rate_decision(
        self, db: sqlite3.Connection, team: Team, name: str, limit: int | None, now: float
    ) -> RateDecision | None:
        """The team's rate decision now, or its refusal raised; writes nothing."""
        if limit is None:
            return None
        row = db.execute(
            "SELECT tat FROM rate_state WHERE team_id = ? AND name = ?", (team.id, name)
        ).fetchone()
        decision = gcra(row[0] if row else None, now, limit)
        if not decision.allowed:
            wait = decision.retry_after
            raise LimitExceeded(
                f"submit rate limit: team {team.name!r} may submit {limit} requests a minute; "
                f"retry in {max(1, int(-(-wait // 1)))} s",
                limit="submits_per_minute",
                retry_after=wait,
            )
        return decision

    def rate_tat(self, team_id: str, name: str) -> float | None:
        """A rate limit's stored state (its theoretical arrival time), read only."""
        row = (
            self._connection()
            .execute("SELECT tat FROM rate_state WHERE team_id = ? AND name = ?", (team_id, name))
            .fetchone()
        )
        return None if row is None else float(row[0])

    def _cached(self, db: sqlite3.Connection, scope_key: str, now: float) -> Generation | None:
        row = db.execute(
            f"SELECT {_qualified('g', GENERATION_COLUMNS)} "
            "FROM cache c JOIN generations g ON g.id = c.generation_id "
            "WHERE c.scope_key = ? AND c.expires_at > ? AND g.status = 'COMPLETED'",
            (scope_key, now),
        ).fetchone()
        return None if row is None else _generation(row)

    def _running(self, db: sqlite3.Connection, scope_key: str) -> Generation | None:
        row = db.execute(
            f"SELECT {GENERATION_COLUMNS} FROM generations WHERE scope_key = ? AND terminal = 0 "
            "ORDER BY created_at LIMIT 1",
            (scope_key,),
        ).fetchone()
        return None if row is None else _generation(row)

    def _check_concurrency(self, db: sqlite3.Connection, ask: AdmissionRequest, now: float) -> None:
        limit = ask.team.limits.max_concurrent
        if limit is None:
            return
        running = db.execute(
            "SELECT COUNT(*), MIN(created_at) FROM generations "
            "WHERE owner_team_id = ? AND terminal = 0",
            (ask.team.id,),
        ).fetchone()
        count, oldest = running
        if count >= limit:
            # The real wait: until the oldest run is expected to finish.
            wait = (oldest or now) + ask.expected_run_seconds - now
            raise LimitExceeded(
                f"concurrency limit: team {ask.team.name!r} has {count} generations running "
                f"(limit {limit}); retry when one finishes, in about {max(1, int(wait))} s",
                limit="max_concurrent",
                retry_after=max(wait, 1.0),
            )

    def _charge(self, db: sqlite3.Connection, ask: AdmissionRequest, now: float) -> tuple[str, str]:
        self._check_budgets(db, ask, now)
        day, month = budget_periods(now)
        for period in (day, month):
            db.execute(
                "INSERT INTO spend (team_id, period, amount) VALUES (?, ?, ?) "
                "ON CONFLICT (team_id, period) DO UPDATE SET amount = amount + excluded.amount",
                (ask.team.id, period, ask.price),
            )
        return day, month

    def _check_budgets(self, db: sqlite3.Connection, ask: AdmissionRequest, now: float) -> None:
        team, price = ask.team, ask.price
        day, month = budget_periods(now)
        checks = (
            ("daily_budget", team.limits.daily_budget, day, "today (UTC)", seconds_to_next_day),
            (
                "monthly_budget",
                team.limits.monthly_budget,
                month,
                "this month (UTC)",
                seconds_to_next_month,
            ),
        )
        for limit_name, budget, period, when, reset in checks:
            if budget is None:
                continue
            spent = self._spent(db, team.id, period)
            if spent + price > budget + 1e-9:
                raise LimitExceeded(
                    f"{limit_name.replace('_', ' ')} exhausted: team {team.name!r} has spent "
                    f"${spent:.2f} of ${budget:.2f} {when} and a run costs ${price:.4f}; "
                    f"it resets in {reset(now) / 3600:.1f} h",
                    limit=limit_name,
                    retry_after=reset(now),
                    status_code=406,
                )

    @staticmethod
    def _spent(db: sqlite3.Connection, team_id: str, period: str) -> float:
        row = db.execute(
            "SELECT amount FROM spend WHERE team_id = ? AND period = ?", (team_id, period)
        ).fetchone()
        return float(row[0]) if row else 0.0

    def spent(self, team_id: str, now: float) -> tuple[float, float]:
        """Dollars a team has spent today and this month (UTC)."""
        db = self._connection()
        day, month = budget_periods(now)
        return self._spent(db, team_id, day), self._spent(db, team_id, month)

    # -- generations --------------------------------------------------------------------

    def _generation_by_id(self, db: sqlite3.Connection, generation_id: str) -> Generation:
        row = db.execute(
            f"SELECT {GENERATION_COLUMNS} FROM generations WHERE id = ?", (generation_id,)
        ).fetchone()
        if row is None:
            raise KeyError(generation_id)
        return _generation(row)

    def generation(self, generation_id: str) -> Generation:
        return self._generation_by_id(self._connection(), generation_id)

    def generation_inputs(self, generation_id: str) -> dict[str, Any]:
        """The inputs a run is submitted with (a held run is sent from the store)."""
        row = (
            self._connection()
            .execute("SELECT inputs FROM generations WHERE id = ?", (generation_id,))
            .fetchone()
        )
        if row is None:
            raise KeyError(generation_id)
        inputs: dict[str, Any] = json.loads(row[0])
        return inputs

    def _generation_rows(
        self, db: sqlite3.Connection, clause: str, args: tuple[object, ...]
    ) -> list[Generation]:
        """Generations (aliased `g`) selected by a JOIN/WHERE `clause` with bound `args`."""
        rows = db.execute(
            f"SELECT {_qualified('g', GENERATION_COLUMNS)} FROM generations g {clause}", args
        )
        return [_generation(row) for row in rows]

    def mark_submitted(
        self, generation_id: str, upstream_id: str, now: float, next_poll_at: float
    ) -> Generation:
        with self._transaction() as db:
            # created_at becomes the send time: a run held before it was sent is polled,
            # given up and expired from when the upstream started it, as Segmind does.
            db.execute(
                "UPDATE generations SET upstream_id = ?, status = 'QUEUED', updated_at = ?, "
                "created_at = ?, next_poll_at = ? WHERE id = ? AND terminal = 0",
                (upstream_id, now, now, next_poll_at, generation_id),
            )
            return self._generation_by_id(db, generation_id)

    def record_status(
        self,
        generation_id: str,
        status: str,
        now: float,
        *,
        output: str | None = None,
        error: str | None = None,
        terminal: bool = False,
        next_poll_at: float | None = None,
        cache_ttl: float = 0.0,
        refund: bool = False,
        answered: str | None = None,
    ) -> Generation:
        """Write what the upstream said; a terminal state also fills the cache or refunds,
        in the same transaction, so a crash never leaves one without the other. The
        request `answered` (already told the outcome in its answer) gets no webhook."""
        with self._transaction() as db:
            current = self._generation_by_id(db, generation_id)
            if current.terminal:
                return current  # terminal states never change
            db.execute(
                "UPDATE generations SET status = ?, output = ?, error = ?, terminal = ?, "
                "updated_at = ?, finished_at = ?, next_poll_at = ?, failing_since = NULL "
                "WHERE id = ?",
                (
                    status,
                    output,
                    error,
                    int(terminal),
                    now,
                    now if terminal else None,
                    None if terminal else next_poll_at,
                    generation_id,
                ),
            )
            if terminal and status == "COMPLETED" and cache_ttl > 0:
                db.execute(
                    "INSERT OR REPLACE INTO cache (scope_key, generation_id, expires_at) "
                    "VALUES (?, ?, ?)",
                    (current.scope_key, generation_id, now + cache_ttl),
                )
            if terminal and status != "COMPLETED" and refund:
                self._refund(db, generation_id)
            finished = self._generation_by_id(db, generation_id)
            if terminal:
                db.execute("DELETE FROM poll_leases WHERE generation_id = ?", (generation_id,))
                # The outbox is written with the state it reports: never one without the other.
                for request in self._requests_of(db, generation_id):
                    if request.id != answered:
                        enqueue(db, request, finished, now)
            return finished

    def record_poll_failure(
        self, generation_id: str, now: float, next_poll_at: float
    ) -> Generation:
        with self._transaction() as db:
            db.execute(
                "UPDATE generations SET failing_since = COALESCE(failing_since, ?), "
                "next_poll_at = ?, updated_at = ? WHERE id = ? AND terminal = 0",
                (now, next_poll_at, now, generation_id),
            )
            return self._generation_by_id(db, generation_id)

    def _refund(self, db: sqlite3.Connection, generation_id: str) -> None:
        row = db.execute(
            "SELECT owner_team_id, cost, charge_day, charge_month, refunded FROM generations "
            "WHERE id = ?",
            (generation_id,),
        ).fetchone()
        team_id, cost, day, month, refunded = row
        if refunded or day is None:
            return
        for period in (day, month):
            db.execute(
                "UPDATE spend SET amount = MAX(amount - ?, 0) WHERE team_id = ? AND period = ?",
                (cost, team_id, period),
            )
        db.execute("UPDATE generations SET refunded = 1 WHERE id = ?", (generation_id,))

    # -- requests -----------------------------------------------------------------------

    def _request_with_generation(
        self, db: sqlite3.Connection, team_id: str, request_id: str
    ) -> tuple[RequestRecord, Generation] | None:
        # One statement for both rows: this is every client poll's only query.
        row = db.execute(
            f"SELECT {_qualified('r', REQUEST_COLUMNS)}, {_qualified('g', GENERATION_COLUMNS)} "
            "FROM requests r JOIN generations g ON g.id = r.generation_id "
            "WHERE r.id = ? AND r.team_id = ?",
            (request_id, team_id),
        ).fetchone()
        if row is None:
            return None
        width = len(REQUEST_COLUMNS.split(","))
        return _request(row[:width]), _generation(row[width:])

    def request(self, team_id: str, request_id: str) -> tuple[RequestRecord, Generation] | None:
        """A team's request and its generation; another team's id finds nothing."""
        return self._request_with_generation(self._connection(), team_id, request_id)

    def requests_of(self, generation_id: str) -> list[RequestRecord]:
        return self._requests_of(self._connection(), generation_id)

    def _requests_of(self, db: sqlite3.Connection, generation_id: str) -> list[RequestRecord]:
        rows = db.execute(
            f"SELECT {REQUEST_COLUMNS} FROM requests WHERE generation_id = ? ORDER BY created_at",
            (generation_id,),
        )
        return [_request(row) for row in rows]


def _bump_auth_version(db: sqlite3.Connection) -> None:
    db.execute("UPDATE meta SET value = value + 1 WHERE name = 'auth_version'")


def _qualified(alias: str, columns: str) -> str:
    return ", ".join(f"{alias}.{c.strip()}" for c in columns.split(","))


def _team(row: tuple[Any, ...]) -> Team:
    team_id, name, created_at, limits, secret = row
    return Team(team_id, name, created_at, TeamLimits.model_validate_json(limits), secret)


class AsyncStore:
    """Runs the store's writes on one thread, its reads inline; maps SQLite errors to 503."""

    def __init__(self, store: SQLiteStore) -> None:
        self.sync = store
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-writer")

    async def write(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._writer, lambda: fn(*args, **kwargs))
        except sqlite3.Error as exc:
            raise StoreUnavailable() from exc

    def read(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return fn(*args, **kwargs)
        except sqlite3.Error as exc:
            raise StoreUnavailable() from exc

    def close(self) -> None:
        self._writer.submit(self.sync.close).result()
        self._writer.shutdown(wait=True)
        self.sync.close()
