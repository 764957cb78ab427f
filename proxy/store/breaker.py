"""A circuit breaker on the store: an outage is detected once, answered at once while it
lasts, and its end is noticed within a fraction of a second.

Without it every unit of work meets the outage on its own: each waits for a connection the
pool cannot make, and queues behind the worker threads that wait too, so callers wait for
as long as the outage lasts. With it, the first failure that is an outage (the database
unreachable or unwritable, `StorageUnavailable.outage`; not a lock wait) opens the breaker:
from then on the failed direction (writes, or reads and writes) is refused at once, and
one probe every `PROBE_INTERVAL` asks the backend whether the database takes a write
again (PostgreSQL then starts a fresh pool: no dead connection, no reconnection back-off).
The first probe that succeeds closes the breaker.

Readiness asks the same question (`ready()`): a replica whose store cannot admit a submit
is taken out of the load balancer, whether the database is down or its disk is full.
Outages are real time whatever clock runs are on, so the breaker runs on the event loop's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TypeVar

from proxy.db.backend import Backend, Listener
from proxy.db.errors import StorageUnavailable
from proxy.db.tx import Tx

__all__ = ["Breaker"]

log = logging.getLogger("proxy.store")

T = TypeVar("T")
PROBE_INTERVAL = 0.2  # seconds between probes of a store that is down
READY_FOR = 1.0  # seconds a successful readiness probe is trusted


class Breaker:
    """A `Backend` in front of another, failing fast while its database is out."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.name = backend.name
        # "write" when writes fail (a full disk), "read" too when nothing answers.
        self._down: dict[str, float] = {}
        self._reason = ""
        self._probing: asyncio.Task[None] | None = None
        self._ready_until = 0.0
        if backend.down_at_start is not None:
            self._down = {"write": time.monotonic(), "read": time.monotonic()}
            self._reason = backend.down_at_start
            log.warning("store unavailable at start (%s): waiting for it", self._reason)

    # -- what the store asks ------------------------------------------------------------

    async def write(self, unit: Callable[[Tx], T]) -> T:
        self._refuse_if_down("write")
        try:
            return await self.backend.write(unit)
        except StorageUnavailable as exc:
            self._failed(exc, "write")
            raise

    async def read(self, unit: Callable[[Tx], T]) -> T:
        self._refuse_if_down("read")
        try:
            return await self.backend.read(unit)
        except StorageUnavailable as exc:
            self._failed(exc, "read")
            raise

    def call(self, unit: Callable[[Tx], T]) -> T:
        return self.backend.call(unit)  # the command line: one call, its own answer

    def subscribe(self, listener: Listener) -> None:
        self.backend.subscribe(listener)

    @property
    def hears_everyone(self) -> bool:
        return self.backend.hears_everyone

    def probe(self) -> None:
        self.backend.probe()

    def reconnect(self) -> None:
        self.backend.reconnect()

    def close(self) -> None:
        if self._probing is not None:
            self._probing.cancel()
        self.backend.close()

    @property
    def down(self) -> bool:
        return bool(self._down)

    async def ready(self) -> str | None:
        """None if a submit can be admitted now, else why not. A probe (one small write) at
        most once a second while the store is up; none at all while it is known down."""
        if self._down:
            self._probe_soon()
            return self._reason
        if time.monotonic() < self._ready_until:
            return None
        try:
            await asyncio.get_running_loop().run_in_executor(None, self.backend.probe)
        except StorageUnavailable as exc:
            self._failed(exc, "write")
            return self._reason
        self._ready_until = time.monotonic() + READY_FOR
        return None

    # -- the outage ---------------------------------------------------------------------

    def _refuse_if_down(self, direction: str) -> None:
        since = self._down.get(direction)
        if since is not None:
            self._probe_soon()
            raise StorageUnavailable(
                f"the gateway's store has been unavailable for {time.monotonic() - since:.0f} s "
                f"({self._reason}), so nothing was admitted or charged; retry in a few seconds",
                outage=True,
            )

    def _failed(self, exc: StorageUnavailable, direction: str) -> None:
        if not exc.outage:
            return  # contention, not an outage: the next unit of work may well succeed
        now = time.monotonic()
        first = not self._down
        self._down.setdefault("write", now)
        if direction == "read":
            self._down.setdefault("read", now)
        self._ready_until = 0.0
        if not first:
            return
        self._reason = _reason_of(exc)
        log.warning("store unavailable (%s): answering 503 at once until it is back", self._reason)
        self._probe_soon()

    def _probe_soon(self) -> None:
        """Start probing, unless a probe loop runs (it is started from the event loop: a
        store opened down, before any loop ran, starts it with its first caller)."""
        if self._probing is None:
            self._probing = asyncio.get_running_loop().create_task(self._probe_until_back())

    async def _probe_until_back(self) -> None:
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        while True:
            await asyncio.sleep(PROBE_INTERVAL)
            try:
                await loop.run_in_executor(None, self.backend.probe)
            except StorageUnavailable:
                continue
            await loop.run_in_executor(None, self.backend.reconnect)
            self._down.clear()
            self._probing = None
            log.warning("store available again after %.1f s", time.monotonic() - started)
            return


def _reason_of(exc: StorageUnavailable) -> str:
    """The database's own words, if the backend kept them (never a credential)."""
    cause = exc.__cause__
    words = " ".join(str(cause).split()) if cause is not None else ""
    return words[:200] or "unreachable"
