"""This process's heartbeat, and the sweep that adopts runs whose poller died.

Several gateway processes may share one store; each run is polled by the one process
that holds its lease (`rules/leases.py`). Every `lease_seconds / 3` this loop renews the
process's heartbeat for `lease_seconds` and claims the unfinished runs whose holder's
heartbeat lapsed (a process killed, or stopped cleanly, which lapses it at once), handing
them to the poller. Liveness is a matter of real time, so the loop runs on the wall clock,
never the gateway's (possibly virtual) job clock.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from proxy.core.clock import Clock
from proxy.db import Generation
from proxy.store import Store

__all__ = ["Heartbeat"]

log = logging.getLogger("proxy.leases")

Adopt = Callable[[list[tuple[Generation, int]]], Awaitable[None]]


class Heartbeat:
    def __init__(self, store: Store, wall: Clock, instance: str, lease_seconds: float) -> None:
        self.store = store
        self.wall = wall
        self.instance = instance
        self.lease_seconds = lease_seconds
        self.sweeps = 0  # completed rounds, for tests that drive `wall`
        self._swept = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def beat(self) -> None:
        await self.store.heartbeat(self.instance, self.wall.now() + self.lease_seconds)

    async def claim(self, *, own: bool = False) -> list[tuple[Generation, int]]:
        """Take the runs no live process polls (with `own`, this instance's old ones too),
        each with its new fencing token."""
        return await self.store.claim_runs(self.instance, self.wall.now(), own=own)

    def start(self, adopt: Adopt) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._run(adopt), name=f"heartbeat {self.instance}"
        )

    async def wait_for_sweeps(self, count: int) -> None:
        """Return once `count` rounds have completed in all."""
        while self.sweeps < count:
            self._swept.clear()
            await self._swept.wait()

    async def _run(self, adopt: Adopt) -> None:
        while True:
            await self.wall.sleep(self.lease_seconds / 3)
            try:
                await self.beat()
                orphans = await self.claim()
                if orphans:
                    log.warning(
                        "took over %d runs whose gateway process stopped polling them",
                        len(orphans),
                        extra={"instance": self.instance},
                    )
                    await adopt(orphans)
            except Exception:
                # A store outage: keep beating; the leases hold until `lease_seconds` pass.
                log.exception("heartbeat of instance %s failed", self.instance)
            self.sweeps += 1
            self._swept.set()

    async def close(self) -> None:
        """Stop beating and free this instance's runs for the other processes at once."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        try:
            await self.store.release(self.instance)
        except Exception:
            log.exception("could not release the leases of instance %s", self.instance)
