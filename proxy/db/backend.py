"""What a storage backend does, and how the `db` setting picks one.

A backend runs units of work: a function of one `Tx`, inside one transaction, committed
when it returns and rolled back when it raises. It maps every error of its database to
`StorageUnavailable`, and tells subscribers what other processes changed (a webhook
queued, a run finished, a key revoked), as soon as it can learn it. Nothing else: every
rule is above it (`proxy/rules/`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, TypeVar

from proxy.db.tx import Tx

__all__ = ["Backend", "Listener", "describe", "is_new", "location", "open_backend"]

T = TypeVar("T")
Listener = Callable[[str], None]  # called on the event loop with a channel name


class Backend(Protocol):
    name: str  # "sqlite" or "postgresql"

    async def write(self, unit: Callable[[Tx], T]) -> T:
        """Run `unit` in a write transaction, exact against every other process."""
        ...

    async def read(self, unit: Callable[[Tx], T]) -> T:
        """Run `unit` for reading only (it may see each statement's latest commit)."""
        ...

    def call(self, unit: Callable[[Tx], T]) -> T:
        """`write`, blocking: for the command line, where no event loop runs."""
        ...

    def subscribe(self, listener: Listener) -> None:
        """Call `listener(channel)` on the running loop when a unit of work, in this or
        another process, commits news on `channel` ("outbox", "finished", "auth"); "*"
        means news may have been missed: look again at everything."""
        ...

    @property
    def hears_everyone(self) -> bool:
        """Whether every other process's news reaches the subscribers now (then what was
        read can be trusted until news says otherwise); False: read again each time."""
        ...

    def close(self) -> None: ...


SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")


def describe(url: str) -> str:
    """The store's URL as logs and errors may show it: no password."""
    return re.sub(r"://([^:/@]*):[^@/]*@", r"://\1:***@", url)


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


def open_backend(url: str, *, create: bool = True, pool_size: int = 8) -> Backend:
    """The backend the `db` setting names: a path or `sqlite:///path` (SQLite), or
    `postgresql://user@host:port/dbname`. `create=False` opens only a store that exists:
    admin commands never make a new empty one."""
    match = SCHEME.match(url)
    scheme = match.group(1).lower() if match else "file"
    if scheme in ("postgresql", "postgres"):
        from proxy.db.postgres import PostgresBackend

        return PostgresBackend(url, pool_size=pool_size)
    path = _sqlite_path(url)
    if path is None:
        raise ValueError(
            f"db {describe(url)!r}: not a store this gateway knows; use a file path, "
            "sqlite:///relative/path, sqlite:////absolute/path or "
            "postgresql://user@host:port/dbname"
        )
    from proxy.db.sqlite import SQLiteBackend

    if not create and not Path(path).is_file():
        raise FileNotFoundError(f"no store at {path}")
    return SQLiteBackend(path)
