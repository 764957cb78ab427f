"""The PostgreSQL backend: one store for gateway replicas on several machines.

Driver: psycopg 3 with its connection pool. The rules run as plain synchronous functions
of a `Tx` on both backends (SQLite's driver is synchronous), so a unit of work runs on a
worker thread holding one pooled connection for the whole transaction; the threads wait
on the network, not the interpreter.

Exactness comes from row locks at READ COMMITTED, taken by the rules in a fixed order
(see `proxy/rules/admission.py`): an advisory lock per scope key, the team's row, the
budget row, a run's row. A unit of work that still meets a deadlock or a serialization
failure is rolled back and run again from the start (it has written nothing).

Other processes learn of news at once: a unit of work's notices are sent with
`pg_notify` inside its transaction (so only on commit), and a listener thread per process
turns them into calls of the subscribers; the periodic reads stay as the fallback, for a
notice lost while the listener reconnects.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg_pool import ConnectionPool, PoolTimeout

from proxy.db.backend import Listener, describe
from proxy.db.dialect import POSTGRES
from proxy.db.errors import StorageUnavailable
from proxy.db.migrations import migrate
from proxy.db.tx import Tx

__all__ = ["PostgresBackend"]

log = logging.getLogger("proxy.store")

T = TypeVar("T")
CHANNEL = "segmind_gateway"
RETRIES = 8  # runs of one unit of work that met a deadlock or serialization failure
CONNECT_TIMEOUT = 5  # seconds to reach the server
# Seconds a unit of work waits for a connection. Each worker thread holds at most one, so
# the wait is never for another unit's connection: only for a new one to be made, which a
# reachable server gives in milliseconds. A server that is down is a 503 this soon (the
# breaker then refuses at once).
POOL_TIMEOUT = 0.5
PROBE_TIMEOUT = 2  # seconds a probe of a store that failed has to connect
LISTEN_RETRY = 1.0  # seconds between reconnections of the listener
STATEMENT_TIMEOUT = 10.0  # seconds any one statement may take, waiting for locks included
SWITCH_INTERVAL = 0.0005  # seconds a thread may hold the interpreter while others wait


class PostgresBackend:
    name = "postgresql"

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 8,
        statement_timeout: float = STATEMENT_TIMEOUT,
        wait: bool = False,
    ) -> None:
        """Open the store, migrated to this code's schema. A server that cannot be reached
        raises `StorageUnavailable`; with `wait`, the backend opens anyway, down (see
        `down_at_start`), and the first `probe` that reaches the server migrates it: a
        gateway process starts in any order with its database, as replicas do."""
        self.url = url
        self.down_at_start: str | None = None
        self._migrated = False
        self._listeners: list[tuple[asyncio.AbstractEventLoop, Listener]] = []
        self._closed = threading.Event()
        self._listener: threading.Thread | None = None
        self._listening = threading.Event()  # set while LISTEN holds on a live connection
        kwargs: dict[str, Any] = {
            "autocommit": True,
            "connect_timeout": CONNECT_TIMEOUT,
            # No statement (lock waits included) holds a worker and its connection for
            # longer: a stuck server or a long lock queue ends in a 503, not a hung request.
            "options": f"-c statement_timeout={round(statement_timeout * 1000)}",
        }
        self._kwargs = kwargs
        self._pool_size = pool_size
        self._pool = self._new_pool()
        self._workers = ThreadPoolExecutor(max_workers=pool_size, thread_name_prefix="store-pg")
        # A worker holding a row lock waits for the interpreter after each round trip; at
        # the default 5 ms switch interval a busy event loop would stretch every locked
        # transaction (and everyone queued on its lock) by up to that much per statement.
        sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL))
        try:
            if wait:
                self.probe()  # one quick attempt: a server that is down refuses at once
            self._pool.open(wait=True, timeout=CONNECT_TIMEOUT * 2)
            self._transaction(lambda tx: _migrate(tx))
            self._migrated = True
        except (psycopg.Error, PoolTimeout, StorageUnavailable) as exc:
            self._pool.close()
            self._pool = self._new_pool()
            reason = exc.message if isinstance(exc, StorageUnavailable) else _reason(exc)
            if wait:
                self.down_at_start = reason
                return
            self._workers.shutdown()
            raise StorageUnavailable(
                f"the PostgreSQL store {describe(url)} cannot be reached: {reason}"
            ) from exc

    def _new_pool(self) -> ConnectionPool:
        return ConnectionPool(
            self.url,
            min_size=1,
            max_size=self._pool_size,
            kwargs=self._kwargs,
            open=False,
            timeout=POOL_TIMEOUT,
        )

    # -- units of work --------------------------------------------------------------------

    def _transaction(self, unit: Callable[[Tx], T]) -> T:
        stale = 0
        for attempt in range(RETRIES + self._pool_size):
            with self._pool.connection() as db:
                tx = Tx(db, POSTGRES)
                committing = False
                try:
                    with db.transaction():
                        result = unit(tx)
                        for channel in sorted(tx.notices):
                            db.execute("SELECT pg_notify(%s, %s)", (CHANNEL, channel))
                        committing = True
                    return result
                except (pg_errors.DeadlockDetected, pg_errors.SerializationFailure):
                    if attempt - stale >= RETRIES - 1:
                        raise
                    time.sleep(0.001 * 2**attempt)  # let the other transaction finish
                except psycopg.OperationalError:
                    # A connection a server restart left dead fails before its commit: the
                    # server rolled the unit back, so another connection may run it (the
                    # pool drops this one). One lost during its commit may have committed:
                    # never run that again.
                    if committing or not db.broken or stale >= self._pool_size:
                        raise
                    stale += 1
        raise AssertionError("unreachable: the last attempt returns or raises")

    def probe(self) -> None:
        """Whether the server takes a write now, on a connection of its own (the pool may
        be waiting out its reconnection back-off). Raises `StorageUnavailable` if not."""
        try:
            with psycopg.connect(
                self.url, autocommit=True, connect_timeout=PROBE_TIMEOUT, **self._options()
            ) as db:
                if not self._migrated:  # opened while the server was down: now it is up
                    with db.transaction():
                        _migrate(Tx(db, POSTGRES))
                    self._migrated = True
                with db.transaction():
                    Tx(db, POSTGRES).set_kv("store.probe", repr(time.time()))
        except psycopg.Error as exc:
            raise StorageUnavailable(_reason(exc), outage=True) from exc

    def reconnect(self) -> None:
        """A fresh pool, once the server is back: none of the connections an outage left
        dead, and none of the old pool's reconnection back-off (seconds, doubling)."""
        old, self._pool = self._pool, self._new_pool()
        self._pool.open(wait=False)
        old.close(timeout=0)

    def _options(self) -> dict[str, Any]:
        return {"options": self._kwargs["options"]}

    def _read(self, unit: Callable[[Tx], T]) -> T:
        for stale in range(self._pool_size + 1):
            with self._pool.connection() as db:
                try:
                    return unit(Tx(db, POSTGRES))
                except psycopg.OperationalError:
                    # A connection a server restart left dead: another may read (see
                    # `_transaction`); the pool drops this one.
                    if not db.broken or stale == self._pool_size:
                        raise
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def write(self, unit: Callable[[Tx], T]) -> T:
        return await self._on_worker(self._transaction, unit)

    async def read(self, unit: Callable[[Tx], T]) -> T:
        return await self._on_worker(self._read, unit)

    async def _on_worker(self, run: Callable[[Callable[[Tx], T]], T], unit: Callable[[Tx], T]) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._workers, run, unit)
        except (psycopg.Error, PoolTimeout) as exc:
            log.warning("store error: %s", _reason(exc))
            raise StorageUnavailable(outage=_is_outage(exc)) from exc

    def call(self, unit: Callable[[Tx], T]) -> T:
        try:
            return self._transaction(unit)
        except (psycopg.Error, PoolTimeout) as exc:
            raise StorageUnavailable(f"the store failed: {_reason(exc)}") from exc

    # -- news from other processes --------------------------------------------------------

    @property
    def hears_everyone(self) -> bool:
        return self._listening.is_set()

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append((asyncio.get_running_loop(), listener))
        if self._listener is None:
            self._listener = threading.Thread(target=self._listen, name="store-listen", daemon=True)
            self._listener.start()

    def _listen(self) -> None:
        while not self._closed.is_set():
            try:
                with psycopg.connect(
                    self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT
                ) as db:
                    db.execute(f"LISTEN {CHANNEL}")
                    self._listening.set()
                    self._deliver("*")  # what was said before this point was not heard
                    while not self._closed.is_set():
                        for notice in db.notifies(timeout=0.5):
                            self._deliver(notice.payload)
            except psycopg.Error as exc:
                self._listening.clear()
                if not self._closed.is_set():
                    log.warning("store listener reconnecting: %s", _reason(exc))
                    # Whatever was said meanwhile is lost: tell everyone to look again.
                    self._deliver("*")
                    self._closed.wait(LISTEN_RETRY)

    def _deliver(self, channel: str) -> None:
        for loop, listener in list(self._listeners):
            if not loop.is_closed():
                loop.call_soon_threadsafe(listener, channel)

    def close(self) -> None:
        self._closed.set()
        self._listeners.clear()
        self._workers.shutdown(wait=True)
        self._pool.close()
        if self._listener is not None:
            self._listener.join(timeout=2)


def _migrate(tx: Tx) -> None:
    tx.lock_name("migrate")  # replicas starting together: one migrates, the others wait
    migrate(tx.db, POSTGRES, time.time())


def _is_outage(exc: BaseException) -> bool:
    """The server unreachable (refused, reset, no connection to be had), not a statement
    past its time or a lock conflict: every caller would fail the same way now."""
    if isinstance(exc, PoolTimeout):
        return True
    return isinstance(exc, psycopg.OperationalError) and not isinstance(
        exc, pg_errors.QueryCanceled | pg_errors.LockNotAvailable | pg_errors.DeadlockDetected
    )


def _reason(exc: BaseException) -> str:
    """The database's own words, on one line (psycopg errors carry no credentials)."""
    return " ".join(str(exc).split()) or type(exc).__name__
