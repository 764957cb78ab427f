"""The SQLite backend: one file in WAL mode, the embedded default (`make run`).

Writes run on one dedicated thread, each unit of work inside `BEGIN IMMEDIATE`, which
takes SQLite's write lock before the first read: two admissions, in this process or in
another process on the same file, can never both read "9 of 10 used". Reads (auth and
poll answers) run where they are called, on their own connection: WAL lets them proceed
while a write is in progress, and a local read costs less than a trip to a thread.

Processes on one file learn of each other's changes only by reading again: the webhook
deliverer and the lease sweep look periodically; in this process, subscribers hear at
once.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from proxy.db.backend import Listener
from proxy.db.dialect import SQLITE
from proxy.db.errors import StorageUnavailable
from proxy.db.migrations import migrate
from proxy.db.tx import Tx

__all__ = ["SQLiteBackend"]

T = TypeVar("T")


class SQLiteBackend:
    name = "sqlite"

    def __init__(self, path: str, busy_timeout: float = 5.0) -> None:
        self.path = path
        # A file that cannot be opened is a setting to fix, never waited for.
        self.down_at_start: str | None = None
        self.busy_timeout = busy_timeout
        self._local = threading.local()
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-writer")
        self._listeners: list[tuple[asyncio.AbstractEventLoop, Listener]] = []
        try:
            self._transaction(lambda tx: migrate(tx.db, SQLITE, time.time()))
        except sqlite3.Error as exc:
            raise StorageUnavailable(f"the SQLite store {path} cannot be opened: {exc}") from exc

    def _connection(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(
                self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=True
            )
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
            self._local.db = db
        return db

    def _transaction(self, unit: Callable[[Tx], T]) -> T:
        db = self._connection()
        db.execute("BEGIN IMMEDIATE")
        tx = Tx(db, SQLITE)
        try:
            result = unit(tx)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        if tx.notices:
            self._publish(tx.notices)
        return result

    def _publish(self, channels: set[str]) -> None:
        for loop, listener in list(self._listeners):
            for channel in channels:
                loop.call_soon_threadsafe(listener, channel)

    async def write(self, unit: Callable[[Tx], T]) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._writer, self._transaction, unit)
        except sqlite3.Error as exc:
            raise StorageUnavailable(outage=_is_outage(exc)) from exc

    async def read(self, unit: Callable[[Tx], T]) -> T:
        try:
            return unit(Tx(self._connection(), SQLITE))
        except sqlite3.Error as exc:
            raise StorageUnavailable(outage=_is_outage(exc)) from exc

    def probe(self) -> None:
        """Whether the file takes a write now (a full disk, a read-only or failed file
        system refuse it). Raises `StorageUnavailable` if it does not."""
        try:
            self._writer.submit(
                self._transaction, lambda tx: tx.set_kv("store.probe", repr(time.time()))
            ).result()
        except sqlite3.Error as exc:
            raise StorageUnavailable(str(exc), outage=True) from exc

    def reconnect(self) -> None:
        """Nothing to do: the file's connections outlive its failures."""

    def call(self, unit: Callable[[Tx], T]) -> T:
        try:
            return self._writer.submit(self._transaction, unit).result()
        except sqlite3.Error as exc:
            raise StorageUnavailable() from exc

    @property
    def hears_everyone(self) -> bool:
        return False  # other processes on the file say nothing: read again each time

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append((asyncio.get_running_loop(), listener))

    def close(self) -> None:
        self._listeners.clear()
        self._writer.submit(self._close_local).result()
        self._writer.shutdown(wait=True)
        self._close_local()

    def _close_local(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None


def _is_outage(exc: sqlite3.Error) -> bool:
    """The file unwritable or unreadable (I/O error, full, read-only, gone), not merely
    locked for a moment by another writer."""
    words = str(exc).lower()
    return not ("locked" in words or "busy" in words)
