"""Writes of what Segmind answered that the store must take, even when it fails then.

Segmind's answer to a paid submit (its run's id, or its refusal) is known only to the
process that sent it. If the store fails at that moment the answer is kept here, in
memory, and written as soon as the store takes it again: retried on the wall clock (an
outage is real time, whatever clock runs are on), soon after the store is back, for at
most `RECORD_WINDOW`, since Segmind forgets a run within the hour anyway. The run's poll
loop waits for its write (`pending`) before it reads the run again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from proxy.core.clock import Clock
from proxy.db import Generation, StorageUnavailable
from proxy.rules import LeaseLost

__all__ = ["RECORD_WINDOW", "Recorder", "Write"]

log = logging.getLogger("proxy.poller")

RECORD_WINDOW = 3600.0  # wall seconds a write of Segmind's answer is retried for
RECORD_RETRY_MAX = 1.0  # wall seconds between its attempts at most (the store is back: go)

Write = Callable[[], Awaitable[Generation | None]]


class Recorder:
    def __init__(self, wall: Clock, on_terminal: Callable[[Generation], None]) -> None:
        self.wall = wall
        self.on_terminal = on_terminal
        self._pending: dict[str, asyncio.Task[None]] = {}

    def pending(self, generation_id: str) -> asyncio.Task[None] | None:
        """The write the run waits for, if the store has yet to take one."""
        return self._pending.get(generation_id)

    async def record(self, generation_id: str, write: Write) -> None:
        """Write what Segmind answered now, or, if the store fails, as soon as it takes it."""
        try:
            written = await write()
        except StorageUnavailable:
            self.record_later(generation_id, write)
            return
        if written is not None and written.terminal:
            self.on_terminal(written)

    def record_later(self, generation_id: str, write: Write) -> None:
        task = asyncio.get_running_loop().create_task(
            self._until_taken(generation_id, write), name=f"record {generation_id}"
        )
        self._pending[generation_id] = task
        task.add_done_callback(lambda _: self._pending.pop(generation_id, None))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    def close(self) -> None:
        for generation_id, task in list(self._pending.items()):
            # The store never came back while this process ran: say what is lost, once.
            log.error(
                "stopped before the store could record Segmind's answer for run %s",
                generation_id,
                extra={"generation_id": generation_id},
            )
            task.cancel()

    async def _until_taken(self, generation_id: str, write: Write) -> None:
        give_up_at = self.wall.now() + RECORD_WINDOW
        delay = 0.05
        while True:
            await self.wall.sleep(delay)
            try:
                written = await write()
            except StorageUnavailable:
                if self.wall.now() >= give_up_at:
                    log.error(
                        "the store did not take Segmind's answer for run %s within %.0f s; "
                        "the run cannot be followed", generation_id, RECORD_WINDOW,
                        extra={"generation_id": generation_id},
                    )  # fmt: skip
                    return
                delay = min(delay * 2, RECORD_RETRY_MAX)
                continue
            except LeaseLost as exc:
                log.warning("%s", exc.message)
                return
            if written is None:
                log.error(
                    "run %s was given up before Segmind's answer for it could be recorded",
                    generation_id,
                    extra={"generation_id": generation_id},
                )
            else:
                log.info("recorded run %s once the store was back", generation_id,
                         extra={"generation_id": generation_id})  # fmt: skip
                if written.terminal:
                    self.on_terminal(written)
            return
