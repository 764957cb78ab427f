"""Kept outputs' rows: each run's copies or why it has none (`run_outputs`), the stored
objects (`output_objects`) and which runs use them (`run_objects`)."""

from __future__ import annotations

from proxy.db.tx.base import _Base

__all__ = ["OutputsTx"]


class OutputsTx(_Base):
    def set_run_outputs(
        self, generation_id: str, kept: str | None, note: str | None,
        retry_at: float | None, now: float,
    ) -> None:  # fmt: skip
        self._run(
            "INSERT INTO run_outputs (generation_id, kept, note, retry_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (generation_id) DO UPDATE SET "
            "kept = excluded.kept, note = excluded.note, retry_at = excluded.retry_at, "
            "updated_at = excluded.updated_at",
            (generation_id, kept, note, retry_at, now),
        )

    def run_outputs(self, generation_id: str) -> tuple[str | None, str | None] | None:
        """(kept, note) of a run, or None if mirroring never looked at it."""
        row = self._one(
            "SELECT kept, note FROM run_outputs WHERE generation_id = ?", (generation_id,)
        )
        return None if row is None else (row[0], row[1])

    def copies_due(self, now: float, limit: int) -> list[str]:
        """Runs whose copy is to be tried again by now, oldest due first."""
        rows = self._all(
            "SELECT generation_id FROM run_outputs WHERE retry_at IS NOT NULL AND retry_at <= ? "
            "ORDER BY retry_at LIMIT ?",
            (now, limit),
        )
        return [str(r[0]) for r in rows]

    def put_object(self, sha256: str, size: int, content_type: str, now: float) -> None:
        self._run(
            "INSERT INTO output_objects (sha256, size, content_type, created_at, used_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (sha256) DO UPDATE SET used_at = ?",
            (sha256, size, content_type, now, now, now),
        )

    def link_object(self, generation_id: str, sha256: str) -> None:
        self._run(
            "INSERT INTO run_objects (generation_id, sha256) VALUES (?, ?) ON CONFLICT DO NOTHING",
            (generation_id, sha256),
        )

    def touch_objects(self, generation_id: str, now: float) -> None:
        """The run's objects were handed out now (a poll, a HIT)."""
        self._run(
            "UPDATE output_objects SET used_at = ? WHERE used_at < ? AND sha256 IN "
            "(SELECT sha256 FROM run_objects WHERE generation_id = ?)",
            (now, now, generation_id),
        )

    def object_known(self, sha256: str) -> tuple[int, str] | None:
        """(size, content type) of a stored object, or None."""
        row = self._one("SELECT size, content_type FROM output_objects WHERE sha256 = ?", (sha256,))
        return None if row is None else (int(row[0]), str(row[1]))

    def objects_by_use(self, limit: int) -> list[tuple[str, int, float]]:
        """(sha256, size, used_at) of the least recently used objects first."""
        rows = self._all(
            "SELECT sha256, size, used_at FROM output_objects ORDER BY used_at, sha256 LIMIT ?",
            (limit,),
        )
        return [(str(s), int(n), float(u)) for s, n, u in rows]

    def objects_total(self) -> tuple[int, int, float | None]:
        """(objects, bytes, oldest last use) of every stored object."""
        count, total, oldest = self._one(
            "SELECT COUNT(*), COALESCE(SUM(size), 0), MIN(used_at) FROM output_objects"
        )
        return int(count), int(total), None if oldest is None else float(oldest)

    def mirror_failures(self) -> int:
        row = self._one("SELECT COUNT(*) FROM run_outputs WHERE kept IS NULL")
        return int(row[0])

    def drop_object(self, sha256: str, note: str, now: float) -> list[str]:
        """Forget an object: the runs using it lose their copies (`note` says why) and
        their cache entries. Returns those runs."""
        runs = [
            str(r[0])
            for r in self._all("SELECT generation_id FROM run_objects WHERE sha256 = ?", (sha256,))
        ]
        for generation_id in runs:
            self._run("DELETE FROM cache WHERE generation_id = ?", (generation_id,))
            self._run(
                "UPDATE run_outputs SET kept = NULL, note = ?, retry_at = NULL, updated_at = ? "
                "WHERE generation_id = ?",
                (note, now, generation_id),
            )
            self._run("DELETE FROM run_objects WHERE generation_id = ?", (generation_id,))
        self._run("DELETE FROM output_objects WHERE sha256 = ?", (sha256,))
        return runs
