"""Locks a unit of work holds to its end: a name (advisory), a team's row.

On PostgreSQL these are real locks; on SQLite the transaction already holds the
whole file (`BEGIN IMMEDIATE`), so they cost nothing there.
"""

from __future__ import annotations

from proxy.db.dialect import lock_key
from proxy.db.tx.base import _Base

__all__ = ["LocksTx"]


class LocksTx(_Base):
    """Row and advisory locks, held to the end of the transaction."""

    def lock_name(self, name: str) -> None:
        """Hold `name` until the transaction ends: one holder at a time, in every process."""
        if self.dialect.name_lock is not None:
            self.db.execute(self.dialect.name_lock, (lock_key(name),))

    def lock_team(self, team_id: str) -> None:
        """Serialise this team's admissions (its rate, slots and budgets) across processes."""
        if self.dialect.for_update:
            self._one(f"SELECT 1 FROM teams WHERE id = ?{self.dialect.for_update}", (team_id,))
