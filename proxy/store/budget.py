"""The company-wide budget of upstream calls, kept in the store so that every gateway
process sharing it draws on one budget: Segmind's rate limit is per account.

A true sliding window, not a token bucket: the times of the calls granted in the last
window are rows of `upstream_calls`, read and written in one `BEGIN IMMEDIATE`
transaction, so no span of `WINDOW` seconds ever holds more than `per_minute` calls from
all the processes on the store together. (A GCRA with a burst of N lets a sliding minute
hold 2N-1 calls, and Segmind does not document its window, so only this is safe.) Each
call is counted `MARGIN` seconds longer than the window: the upstream counts a call when
it arrives, a little after it was granted here, so a call granted exactly one window after
another could still land inside the upstream's window.

Beside the window, one row holds a pause every process honours after an upstream 429
(`paused_until`) and `submits_until`: while a paid submit waits for its turn, polls step
aside, so paid work goes first across processes too. Each is a time on the gateway's clock;
a process that dies leaves nothing that outlasts its own waits.

A paid submit takes its slot with `claim_send`, which in the same transaction moves its
generation from WAITING (never sent: safe to send later, by any process) to SUBMITTING
(going out now), and only in admission order: a run admitted later never overtakes one
still waiting.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager

__all__ = ["BUDGET_SCHEMA", "MARGIN", "WINDOW", "BudgetMixin"]

BUDGET_SCHEMA = """
CREATE TABLE IF NOT EXISTS upstream_budget (
    name TEXT PRIMARY KEY,
    tat REAL,
    paused_until REAL NOT NULL DEFAULT 0,
    submits_until REAL NOT NULL DEFAULT 0
);
INSERT OR IGNORE INTO upstream_budget (name) VALUES ('company');
CREATE TABLE IF NOT EXISTS upstream_calls (
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS upstream_calls_at ON upstream_calls(at);
CREATE INDEX IF NOT EXISTS generations_waiting ON generations(created_at)
    WHERE status = 'WAITING';
"""

ROW = "company"  # the one row, made with the schema
WINDOW = 60.0  # seconds: "requests per minute"
MARGIN = 1.0  # seconds a call is counted beyond the window (see the module's doc)


class BudgetMixin:
    """The budget half of `SQLiteStore`: its methods run on the store's connections."""

    _connection: Callable[[], sqlite3.Connection]
    _transaction: Callable[[], AbstractContextManager[sqlite3.Connection]]

    def take_upstream(self, kind: str, now: float, per_minute: int) -> float:
        """Spend one upstream call of `kind` ("submit" or "poll") now, or say how many
        seconds to wait before asking again (0.0: go)."""
        with self._transaction() as db:
            return _take(db, kind, now, per_minute)

    def claim_send(self, generation_id: str, now: float, per_minute: int) -> float:
        """Take the budget slot for sending the WAITING generation `generation_id` and mark
        it SUBMITTING, in one transaction; or say how many seconds to wait (it stays
        WAITING). Refused while an earlier-admitted run still waits, whoever holds it."""
        with self._transaction() as db:
            row = db.execute(
                "SELECT status, created_at, rowid FROM generations WHERE id = ?",
                (generation_id,),
            ).fetchone()
            if row is None or row[0] != "WAITING":
                return -1.0  # gone, finished or already sent: nothing to claim
            _, created_at, rowid = row
            ahead = db.execute(
                "SELECT 1 FROM generations WHERE status = 'WAITING' "
                "AND (created_at < ? OR (created_at = ? AND rowid < ?)) LIMIT 1",
                (created_at, created_at, rowid),
            ).fetchone()
            if ahead is not None:
                # Its turn comes after the one ahead's: at the earliest one slot later.
                return max(_wait(db, now, per_minute), WINDOW / per_minute)
            wait = _take(db, "submit", now, per_minute)
            if wait <= 0:
                db.execute(
                    "UPDATE generations SET status = 'SUBMITTING', updated_at = ? WHERE id = ?",
                    (now, generation_id),
                )
            return wait

    def waiting_runs(self) -> int:
        """How many admitted runs wait for a budget slot (never sent), in every process."""
        row = self._connection().execute(
            "SELECT COUNT(*) FROM generations WHERE status = 'WAITING'"
        )
        return int(row.fetchone()[0])

    def upstream_calls_between(self, start: float, end: float) -> list[float]:
        """The times of the calls granted in [start, end]: for tests and operators."""
        rows = self._connection().execute(
            "SELECT at FROM upstream_calls WHERE at >= ? AND at <= ? ORDER BY at", (start, end)
        )
        return [float(at) for (at,) in rows]

    def unclaim_send(self, generation_id: str, now: float) -> None:
        """A send that never reached the upstream's queue (it answered 429): the run is
        WAITING again, in its admission place, safe to send later."""
        with self._transaction() as db:
            db.execute(
                "UPDATE generations SET status = 'WAITING', updated_at = ? "
                "WHERE id = ? AND status = 'SUBMITTING' AND upstream_id IS NULL",
                (now, generation_id),
            )

    def pause_upstream(self, until: float) -> None:
        """After an upstream 429: no process calls upstream before `until`."""
        with self._transaction() as db:
            db.execute(
                "UPDATE upstream_budget SET paused_until = MAX(paused_until, ?) WHERE name = ?",
                (until, ROW),
            )


def _wait(db: sqlite3.Connection, now: float, per_minute: int) -> float:
    """Seconds until the window has room for one more call (0.0: room now)."""
    span = WINDOW + MARGIN
    # Forget calls that can never count again; the table stays at most `per_minute` rows.
    db.execute("DELETE FROM upstream_calls WHERE at <= ?", (now - span,))
    (count,) = db.execute("SELECT COUNT(*) FROM upstream_calls").fetchone()
    if count < per_minute:
        return 0.0
    # Room comes when the call that would be the (per_minute+1)-th back leaves the span.
    (oldest,) = db.execute(
        "SELECT at FROM upstream_calls ORDER BY at DESC LIMIT 1 OFFSET ?", (per_minute - 1,)
    ).fetchone()
    return max(float(oldest) + span - now, 1e-3)


def _take(db: sqlite3.Connection, kind: str, now: float, per_minute: int) -> float:
    paused_until, submits_until = db.execute(
        "SELECT paused_until, submits_until FROM upstream_budget WHERE name = ?", (ROW,)
    ).fetchone()
    if now < paused_until:
        return float(paused_until - now)
    interval = WINDOW / per_minute
    if kind != "submit":
        # Submits before polls: a poll steps aside while a submit waits for its slot, and
        # while any admitted run waits to be sent (its sender may not have asked yet).
        if now < submits_until:
            return max(float(submits_until - now), 1e-3)
        if db.execute("SELECT 1 FROM generations WHERE status = 'WAITING' LIMIT 1").fetchone():
            return max(_wait(db, now, per_minute), interval)
    wait = _wait(db, now, per_minute)
    if wait <= 0:
        db.execute("INSERT INTO upstream_calls (at) VALUES (?)", (now,))
        return 0.0
    if kind == "submit":
        # Hold polls off until this submit is back for the slot it waits for.
        db.execute(
            "UPDATE upstream_budget SET submits_until = MAX(submits_until, ?) WHERE name = ?",
            (now + wait + interval, ROW),
        )
    return wait
