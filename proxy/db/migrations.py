"""The store's schema, as numbered migrations applied in order, once each.

`schema_migrations` records what a store has. `migrate` (run at every start, and by
`python -m proxy migrate --db URL`) applies the missing steps in one transaction, under
a lock, so replicas starting together upgrade a shared store once and never half-way.
A store made before migrations existed (no `schema_migrations`, tables present) is taken
as it is: step 1 only creates what is missing, and adds the columns older stores lack.
A store newer than this code is refused rather than misread.

Types are written as {double}, {bytes}, {bigint}: each dialect names them its own way.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from urllib.parse import urlsplit

import idna

from proxy.db.dialect import Dialect
from proxy.db.errors import StoreTooNew
from proxy.db.tx import Connection

__all__ = ["MIGRATIONS", "Migration", "latest_version", "migrate"]

BASE = """
CREATE TABLE IF NOT EXISTS teams (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at {double} NOT NULL,
    limits TEXT NOT NULL,
    webhook_secret TEXT,
    webhook_secret_previous TEXT,
    webhook_previous_until {double}
);
CREATE TABLE IF NOT EXISTS api_keys (
    hash TEXT PRIMARY KEY,
    team_id TEXT NOT NULL REFERENCES teams(id),
    prefix TEXT NOT NULL,
    created_at {double} NOT NULL,
    revoked_at {double}
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
    created_at {double} NOT NULL,
    updated_at {double} NOT NULL,
    finished_at {double},
    next_poll_at {double},
    failing_since {double},
    cost {double} NOT NULL,
    charge_day TEXT,
    charge_month TEXT,
    refunded INTEGER NOT NULL DEFAULT 0{serial}
);
CREATE INDEX IF NOT EXISTS generations_running ON generations(scope_key) WHERE terminal = 0;
CREATE INDEX IF NOT EXISTS generations_owner ON generations(owner_team_id) WHERE terminal = 0;
CREATE TABLE IF NOT EXISTS requests (
    id TEXT PRIMARY KEY,
    team_id TEXT NOT NULL,
    generation_id TEXT NOT NULL REFERENCES generations(id),
    created_at {double} NOT NULL,
    cache_status TEXT NOT NULL,
    webhook_url TEXT,
    idempotency_key TEXT
);
CREATE INDEX IF NOT EXISTS requests_generation ON requests(generation_id);
CREATE TABLE IF NOT EXISTS cache (
    scope_key TEXT PRIMARY KEY,
    generation_id TEXT NOT NULL,
    expires_at {double} NOT NULL
);
CREATE TABLE IF NOT EXISTS idempotency (
    team_id TEXT NOT NULL,
    key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    request_id TEXT NOT NULL,
    expires_at {double} NOT NULL,
    PRIMARY KEY (team_id, key)
);
CREATE TABLE IF NOT EXISTS rate_state (
    team_id TEXT NOT NULL,
    name TEXT NOT NULL,
    tat {double} NOT NULL,
    PRIMARY KEY (team_id, name)
);
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value {bigint} NOT NULL
);
INSERT INTO meta (name, value) VALUES ('auth_version', 0) ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS spend (
    team_id TEXT NOT NULL,
    period TEXT NOT NULL,
    amount {double} NOT NULL,
    PRIMARY KEY (team_id, period)
);
CREATE TABLE IF NOT EXISTS outbox (
    id TEXT PRIMARY KEY,
    request_id TEXT NOT NULL,
    team_id TEXT NOT NULL,
    url TEXT NOT NULL,
    event TEXT NOT NULL,
    body {bytes} NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at {double},
    created_at {double} NOT NULL,
    updated_at {double} NOT NULL,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox(next_attempt_at) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS outbox_request ON outbox(request_id);
CREATE TABLE IF NOT EXISTS webhook_attempts (
    message_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    at {double} NOT NULL,
    status_code INTEGER,
    latency_ms {double},
    response TEXT,
    error TEXT,
    PRIMARY KEY (message_id, attempt)
);
CREATE TABLE IF NOT EXISTS disabled_endpoints (
    team_id TEXT NOT NULL,
    url TEXT NOT NULL,
    at {double} NOT NULL,
    PRIMARY KEY (team_id, url)
);
CREATE TABLE IF NOT EXISTS kv (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS instances (
    id TEXT PRIMARY KEY,
    alive_until {double} NOT NULL
);
CREATE TABLE IF NOT EXISTS poll_leases (
    generation_id TEXT PRIMARY KEY,
    instance TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS upstream_budget (
    name TEXT PRIMARY KEY,
    tat {double},
    paused_until {double} NOT NULL DEFAULT 0,
    submits_until {double} NOT NULL DEFAULT 0
);
INSERT INTO upstream_budget (name) VALUES ('company') ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS upstream_calls (
    at {double} NOT NULL
);
CREATE INDEX IF NOT EXISTS upstream_calls_at ON upstream_calls(at);
CREATE INDEX IF NOT EXISTS generations_waiting ON generations(created_at)
    WHERE status = 'WAITING'
"""

# Columns stores made before webhook secret rotation lack (they were added ad hoc then).
ROTATION_COLUMNS = {
    "webhook_secret_previous": "TEXT",
    "webhook_previous_until": "{double}",
}


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    apply: Callable[[Connection, Dialect], None]


def _statements(db: Connection, dialect: Dialect, script: str) -> None:
    for statement in dialect.ddl(script).split(";"):
        if statement.strip():
            db.execute(statement)


def _base(db: Connection, dialect: Dialect) -> None:
    _statements(db, dialect, BASE)
    if dialect.name == "sqlite":
        columns = {row[1] for row in db.execute("PRAGMA table_info(teams)").fetchall()}
        for column, kind in ROTATION_COLUMNS.items():
            if column not in columns:
                db.execute(f"ALTER TABLE teams ADD COLUMN {column} {dialect.ddl(kind)}")


def _fencing_and_hosts(db: Connection, dialect: Dialect) -> None:
    """Lease fencing tokens; the receiving host of each webhook message as a column, so
    the deliverer's fair shares are one indexed comparison in either dialect; the number
    of calls in the upstream window kept with the budget, so a large budget is not a
    count over thousands of rows at every call."""
    db.execute("ALTER TABLE upstream_budget ADD COLUMN calls INTEGER NOT NULL DEFAULT 0")
    db.execute(
        dialect.ddl(
            "ALTER TABLE upstream_budget ADD COLUMN forgotten_at {double} NOT NULL DEFAULT 0"
        )
    )
    db.execute("UPDATE upstream_budget SET calls = (SELECT COUNT(*) FROM upstream_calls)")
    db.execute("ALTER TABLE poll_leases ADD COLUMN token INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE outbox ADD COLUMN host TEXT")
    rows = db.execute("SELECT id, url FROM outbox").fetchall()
    for message_id, url in rows:
        db.execute(
            dialect.sql("UPDATE outbox SET host = ? WHERE id = ?"), (_host_of(url), message_id)
        )
    db.execute("CREATE INDEX IF NOT EXISTS outbox_team ON outbox(team_id) WHERE state = 'pending'")


# Step 2's own copy of `proxy.core.webhooks.host_of` as it stood when the step was written,
# not a call of the live one: a data migration must fill the same hosts on every store it
# has yet to run on, whatever the live function becomes later. The URLs in the outbox were
# checked at submit (`proxy.core.ssrf.check_url_syntax`), so only what normalises a valid
# URL's host is kept: case, IDNA (UTS #46), and an IP literal in its canonical spelling
# (IPv4 in any WHATWG form: 0x7f.1 is 127.0.0.1). A URL it cannot read is its own key.
_IPV4_PART = re.compile(r"0x([0-9a-f]*)|0([0-7]+)|(0|[1-9][0-9]*)")  # hex, octal, decimal


def _host_of(url: str) -> str:
    try:
        netloc = urlsplit(url).netloc
        if netloc.startswith("["):
            return str(IPv6Address(netloc[1:].partition("]")[0]))
        host = netloc.partition(":")[0]
        if not host.isascii():
            host = idna.encode(host, uts46=True).decode("ascii")
    except ValueError:  # idna's errors are UnicodeErrors, so ValueErrors too
        return url
    host = host.lower()
    return _ipv4(host) or host


def _ipv4(host: str) -> str | None:
    """The canonical spelling of an IPv4 literal in any WHATWG form; None if not one."""
    parts = host.split(".")
    if len(parts) > 1 and parts[-1] == "":
        parts.pop()
    numbers = []
    for part in parts:
        match = _IPV4_PART.fullmatch(part)
        if match is None:
            return None
        hexadecimal, octal, decimal = match.groups()
        numbers.append(
            int(decimal) if decimal else int(octal, 8) if octal else int(hexadecimal or "0", 16)
        )
    if len(numbers) > 4 or any(n > 255 for n in numbers[:-1]):
        return None
    if numbers[-1] >= 256 ** (5 - len(numbers)):
        return None
    value = numbers[-1] + sum(n << 8 * (3 - i) for i, n in enumerate(numbers[:-1]))
    return str(IPv4Address(value))


# A request's UTC day from its admission time, for the rows recorded before step 3.
REQUEST_DAY = {
    "sqlite": "date(created_at, 'unixepoch')",
    "postgresql": "to_char(to_timestamp(created_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
}


def _usage_days(db: Connection, dialect: Dialect) -> None:
    """Each request's UTC day, written at admission beside its HIT/JOIN/MISS, so a usage
    report is one indexed range per table in either dialect (a run's day is already its
    `charge_day`)."""
    db.execute("ALTER TABLE requests ADD COLUMN day TEXT")
    db.execute(f"UPDATE requests SET day = {REQUEST_DAY[dialect.name]}")
    db.execute("CREATE INDEX IF NOT EXISTS requests_day ON requests(day, team_id)")
    db.execute(
        "CREATE INDEX IF NOT EXISTS generations_charge_day "
        "ON generations(charge_day, owner_team_id)"
    )


def _team_webhooks(db: Connection, dialect: Dialect) -> None:
    """A team's own webhook URL, for the events that belong to no request of its (budget
    thresholds crossed). Each is sent once per threshold and period by its message id,
    which the outbox keeps unique: no table of alerts sent is needed."""
    db.execute("ALTER TABLE teams ADD COLUMN webhook_url TEXT")


def _upstream_hints(db: Connection, dialect: Dialect) -> None:
    """When a notification from Segmind last brought a run's poll forward (one early poll
    per run, however many notifications name it), and an index to find a running run by
    its upstream id, so a hint naming no run costs one index probe."""
    db.execute(dialect.ddl("ALTER TABLE generations ADD COLUMN hinted_at {double}"))
    db.execute(
        "CREATE INDEX IF NOT EXISTS generations_upstream ON generations(upstream_id) "
        "WHERE terminal = 0"
    )


def _poll_counts(db: Connection, dialect: Dialect) -> None:
    """How many times each run was polled upstream, counted in the write every poll makes
    anyway (its status, or its failure): the console's polls per run are counted, not
    worked out from the schedule. Runs from before this step count from here."""
    db.execute("ALTER TABLE generations ADD COLUMN polls INTEGER NOT NULL DEFAULT 0")


KEPT_OUTPUTS = """
CREATE TABLE IF NOT EXISTS run_outputs (
    generation_id TEXT PRIMARY KEY,
    kept TEXT,
    note TEXT,
    retry_at {double},
    updated_at {double} NOT NULL
);
CREATE INDEX IF NOT EXISTS run_outputs_retry ON run_outputs(retry_at) WHERE retry_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS output_objects (
    sha256 TEXT PRIMARY KEY,
    size {bigint} NOT NULL,
    content_type TEXT NOT NULL,
    created_at {double} NOT NULL,
    used_at {double} NOT NULL
);
CREATE INDEX IF NOT EXISTS output_objects_used ON output_objects(used_at);
CREATE TABLE IF NOT EXISTS run_objects (
    generation_id TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    PRIMARY KEY (generation_id, sha256)
);
CREATE INDEX IF NOT EXISTS run_objects_sha ON run_objects(sha256)
"""


def _kept_outputs(db: Connection, dialect: Dialect) -> None:
    """Outputs the gateway keeps: per run, its copies (a JSON list) or why there are none
    and when to try again (`run_outputs`); per stored object, its size, type and last use
    (`output_objects`, for retention and the size cap); and which runs use which object
    (`run_objects`), so deleting an object ends the cache entries that hand it out."""
    _statements(db, dialect, KEPT_OUTPUTS)


def _fair_queue(db: Connection, dialect: Dialect) -> None:
    """The fair queue of paid submits across teams (`proxy/core/fairqueue.py`): each
    team's virtual finish tag, the queue's virtual time on the budget row, and each run's
    urgency (RFC 9218, 0 most urgent, 3 by default), which orders its own team's runs."""
    db.execute("ALTER TABLE generations ADD COLUMN priority INTEGER NOT NULL DEFAULT 3")
    db.execute(
        dialect.ddl(
            "ALTER TABLE upstream_budget ADD COLUMN virtual_time {double} NOT NULL DEFAULT 0"
        )
    )
    db.execute(
        dialect.ddl(
            "CREATE TABLE IF NOT EXISTS fair_shares "
            "(team_id TEXT PRIMARY KEY, finish {double} NOT NULL)"
        )
    )
    db.execute(
        "CREATE INDEX IF NOT EXISTS generations_waiting_team "
        "ON generations(owner_team_id, priority, created_at) WHERE status = 'WAITING'"
    )
    # The balance watch's spend since a reading, and in the last hour (rules/balance.py).
    db.execute(
        "CREATE INDEX IF NOT EXISTS generations_sent ON generations(created_at) "
        "WHERE upstream_id IS NOT NULL"
    )


MIGRATIONS = (
    Migration(1, "teams, keys, generations, requests, cache, budgets, outbox, leases", _base),
    Migration(2, "lease fencing tokens; webhook hosts; upstream window count", _fencing_and_hosts),
    Migration(3, "each request's UTC day, and indexes for usage reports", _usage_days),
    Migration(4, "a team's webhook URL, for budget alerts", _team_webhooks),
    Migration(5, "upstream notifications: early polls; runs by upstream id", _upstream_hints),
    Migration(6, "each run's count of upstream polls", _poll_counts),
    Migration(7, "kept outputs: runs' copies, stored objects, which runs use them", _kept_outputs),
    Migration(
        8, "the fair queue: finish tags, virtual time, urgency; runs by send time", _fair_queue
    ),
)


def latest_version() -> int:
    return MIGRATIONS[-1].version


def migrate(db: Connection, dialect: Dialect, now: float) -> list[int]:
    """Apply the missing migrations inside the caller's transaction (which holds the
    store's write lock); returns the versions applied."""
    db.execute(
        dialect.ddl(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at {double} NOT NULL)"
        )
    )
    have = {int(v) for (v,) in db.execute("SELECT version FROM schema_migrations").fetchall()}
    if have and max(have) > latest_version():
        raise StoreTooNew(
            f"the store is at schema version {max(have)}, newer than this gateway knows "
            f"({latest_version()}); run the newer gateway, or a store of this version"
        )
    applied = []
    for step in MIGRATIONS:
        if step.version in have:
            continue
        step.apply(db, dialect)
        db.execute(
            dialect.sql(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)"
            ),
            (step.version, step.name, now),
        )
        applied.append(step.version)
    return applied
