"""How the `db` setting picks a backend: the URL read, and the implementation opened.

It sits above both implementations (`proxy/db/sqlite.py`, `proxy/db/postgres.py`); they
know only the `Backend` protocol, so no import goes back up to the factory that chooses
between them. PostgreSQL's is imported when a `postgresql://` URL is opened, not before:
psycopg and its pool cost every gateway process and admin command ~80 ms to import, and
most run on SQLite.
"""

from __future__ import annotations

import re
from pathlib import Path

from proxy.db.backend import Backend, describe
from proxy.db.sqlite import SQLiteBackend

__all__ = ["is_new", "location", "open_backend"]

SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")


def _sqlite_path(url: str) -> str | None:
    """The file a SQLite `db` setting names; None for another kind of store."""
    match = SCHEME.match(url)
    if match is None:
        return url
    if match.group(1).lower() == "sqlite" and url.lower().startswith("sqlite:///"):
        return url[len("sqlite:///") :] or None
    return None


def location(url: str) -> str:
    """Where the store is, as messages name it: a file's absolute path, or the URL
    without its password."""
    path = _sqlite_path(url)
    return str(Path(path).resolve()) if path else describe(url)


def is_new(url: str) -> bool:
    """Whether opening the store would make it (only a file can be made by opening)."""
    path = _sqlite_path(url)
    return path is not None and not Path(path).exists()


def open_backend(
    url: str, *, create: bool = True, pool_size: int = 8, wait: bool = False
) -> Backend:
    """The backend the `db` setting names: a path or `sqlite:///path` (SQLite), or
    `postgresql://user@host:port/dbname`. `create=False` opens only a store that exists:
    admin commands never make a new empty one. `wait`: a database server that is down is
    waited for (the gateway process), not an error (a command)."""
    match = SCHEME.match(url)
    scheme = match.group(1).lower() if match else "file"
    if scheme in ("postgresql", "postgres"):
        from proxy.db.postgres import PostgresBackend  # only when asked for: see above

        return PostgresBackend(url, pool_size=pool_size, wait=wait)
    path = _sqlite_path(url)
    if path is None:
        raise ValueError(
            f"db {describe(url)!r}: not a store this gateway knows; use a file path, "
            "sqlite:///relative/path, sqlite:////absolute/path or "
            "postgresql://user@host:port/dbname"
        )
    if not create and not Path(path).is_file():
        raise FileNotFoundError(f"no store at {path}")
    return SQLiteBackend(path)
