"""Numbers and strings a restarted process needs again: `meta` (counters such as
the auth version) and `kv` (named strings).
"""

from __future__ import annotations

from proxy.db.tx.base import _Base

__all__ = ["MetaTx"]


class MetaTx(_Base):
    """The `meta` counters and the `kv` strings."""

    def meta(self, name: str) -> int | None:
        row = self._one("SELECT value FROM meta WHERE name = ?", (name,))
        return None if row is None else int(row[0])

    def set_meta(self, name: str, value: int) -> None:
        self._put("meta", name, value)

    def bump_auth_version(self) -> None:
        self._run("UPDATE meta SET value = value + 1 WHERE name = 'auth_version'")
        self.notify("auth")

    def migrations_applied(self) -> list[tuple[int, float]]:
        """(version, applied_at) of every schema migration the store has, oldest first."""
        rows = self._all("SELECT version, applied_at FROM schema_migrations ORDER BY version")
        return [(int(v), float(at)) for v, at in rows]

    def kv(self, name: str) -> str | None:
        row = self._one("SELECT value FROM kv WHERE name = ?", (name,))
        return None if row is None else str(row[0])

    def set_kv(self, name: str, value: str) -> None:
        self._put("kv", name, value)

    def delete_kv(self, name: str) -> None:
        self._run("DELETE FROM kv WHERE name = ?", (name,))

    def kv_named(self, prefix: str) -> list[tuple[str, str]]:
        """Every (name, value) whose name starts with `prefix` (no LIKE wildcards in it)."""
        if "%" in prefix or "_" in prefix:
            raise ValueError(f"a kv prefix takes no LIKE wildcards; got {prefix!r}")
        rows = self._all("SELECT name, value FROM kv WHERE name LIKE ?", (prefix + "%",))
        # SQLite's LIKE ignores ASCII case: keep the exact prefix only.
        return [(str(n), str(v)) for n, v in rows if str(n).startswith(prefix)]

    def _put(self, table: str, name: str, value: object) -> None:
        """Set `name` in `table` (meta or kv: the same two columns), made if missing."""
        self._run(
            f"INSERT INTO {table} (name, value) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (name, value),
        )
