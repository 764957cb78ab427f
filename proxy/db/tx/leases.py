"""Gateway instances (their heartbeats) and the poll leases they hold on runs."""

from __future__ import annotations

from proxy.db.records import Generation, Instance
from proxy.db.tx.base import GENERATION_COLUMNS, _Base, _generation, _qualified

__all__ = ["LeasesTx"]


class LeasesTx(_Base):
    """Rows of `instances` and `poll_leases`."""

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
