"""Which gateway process polls which run, so that several processes on one store poll
each run once, and a run whose process died is taken over by another.

Every process is an *instance* with an id and a heartbeat (`alive_until`, wall-clock
seconds). A run's lease names the instance that polls it: taken with the admission that
created the run (same transaction, so a run is never without a poller), dropped when the
run ends. An instance whose heartbeat lapsed has lost its leases: the next live instance
to sweep claims them, in one transaction, so two sweepers never both take one run.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from .records import Generation

__all__ = ["LEASE_SCHEMA", "Instance", "LeaseMixin"]

LEASE_SCHEMA = """
CREATE TABLE IF NOT EXISTS instances (
    id TEXT PRIMARY KEY,
    alive_until REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS poll_leases (
    generation_id TEXT PRIMARY KEY,
    instance TEXT NOT NULL
);
"""

FORGET_INSTANCES_AFTER = 7 * 86400.0  # seconds a dead instance's row is kept, for operators


@dataclass(frozen=True)
class Instance:
    """A gateway process as the store knows it: for operators (`/admin/instances`)."""

    id: str
    alive_until: float
    runs: int  # unfinished runs leased to it

    def public(self, now: float) -> dict[str, Any]:
        return {
            "id": self.id,
            "alive": self.alive_until >= now,
            "alive_until": self.alive_until,
            "runs": self.runs,
        }


class LeaseMixin:
    """The lease half of `SQLiteStore`: its methods run on the store's connections."""

    _connection: Callable[[], sqlite3.Connection]
    _transaction: Callable[[], AbstractContextManager[sqlite3.Connection]]
    _generation_rows: Callable[[sqlite3.Connection, str, tuple[object, ...]], list[Generation]]

    def heartbeat(self, instance: str, alive_until: float) -> None:
        """Say this instance is alive, and so holds its leases, until `alive_until`."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO instances (id, alive_until) VALUES (?, ?) "
                "ON CONFLICT(id) DO UPDATE SET alive_until = excluded.alive_until",
                (instance, alive_until),
            )
            db.execute(
                "DELETE FROM instances WHERE alive_until < ?",
                (alive_until - FORGET_INSTANCES_AFTER,),
            )

    def release(self, instance: str) -> None:
        """A clean stop: the instance's runs are free for another to take at once."""
        with self._transaction() as db:
            db.execute("UPDATE instances SET alive_until = 0 WHERE id = ?", (instance,))

    def claim_runs(self, instance: str, now: float, *, own: bool = False) -> list[Generation]:
        """Take the unfinished runs no live instance polls; returns them, oldest first.

        `own=True` (at start) also takes back the runs leased to `instance` itself: a
        process restarted under the same id is the one that held them. Otherwise an
        instance never claims its own runs, which it is already polling or submitting.
        """
        with self._transaction() as db:
            runs = self._generation_rows(
                db,
                "LEFT JOIN poll_leases l ON l.generation_id = g.id "
                "LEFT JOIN instances i ON i.id = l.instance "
                "WHERE g.terminal = 0 AND (l.instance IS NULL "
                "OR (l.instance = ? AND ?) "
                "OR (l.instance != ? AND (i.alive_until IS NULL OR i.alive_until < ?))) "
                "ORDER BY g.created_at",
                (instance, int(own), instance, now),
            )
            db.executemany(
                "INSERT INTO poll_leases (generation_id, instance) VALUES (?, ?) "
                "ON CONFLICT(generation_id) DO UPDATE SET instance = excluded.instance",
                [(run.id, instance) for run in runs],
            )
            return runs

    def instances(self) -> list[Instance]:
        """Every instance with a heartbeat on record, and how many runs it polls."""
        rows = self._connection().execute(
            "SELECT i.id, i.alive_until, COUNT(l.generation_id) FROM instances i "
            "LEFT JOIN poll_leases l ON l.instance = i.id GROUP BY i.id ORDER BY i.id"
        )
        return [Instance(str(i), float(until), int(runs)) for i, until, runs in rows]

    def lease_holder(self, generation_id: str) -> str | None:
        """The instance that polls this run (None once it has ended)."""
        row = (
            self._connection()
            .execute("SELECT instance FROM poll_leases WHERE generation_id = ?", (generation_id,))
            .fetchone()
        )
        return None if row is None else str(row[0])
