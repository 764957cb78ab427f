"""The balance watch: the company's Segmind credits, read through the company budget at
most every `credits_check_interval` seconds (any process's reading counts for all; the
first one interval after the start), and at once after an upstream 406; the last reading
kept in the store (`proxy/rules/balance.py`), exported as metrics, shown on the console,
and told to the company's webhook when low.

A submit that would start a paid run is refused with 406, before admission charges the
team and before any upstream call, while the balance (the last reading less the runs sent
since) cannot pay for one run; a new reading (a top-up) lifts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import client
from proxy.core.clock import Clock
from proxy.core.config import ProxySettings
from proxy.core.errors import GatewayError
from proxy.db import StoreError
from proxy.rules.balance import Alerting, Balance
from proxy.services.metrics import Metrics
from proxy.services.upstream import Upstream
from proxy.store import Store

__all__ = ["BalanceWatch", "OutOfCredits"]

log = logging.getLogger("proxy.balance")

RETRY = 60.0  # seconds before a failed reading is tried again
# Real seconds between looks at the gateway's clock. The watch never sleeps on that clock:
# a virtual clock's tests count (and advance to) its sleepers, and this one never ends.
TICK = 1.0
# A balance this many runs above the price is not read from the store at each submit: it
# cannot run out before the next reading at the fastest the budget spends.
EXACT_WITHIN_WINDOWS = 2


class OutOfCredits(GatewayError):
    """The company's Segmind account cannot pay for one more run."""

    status_code = 406


class BalanceWatch:
    def __init__(
        self,
        store: Store,
        upstream: Upstream,
        clock: Clock,
        settings: ProxySettings,
        metrics: Metrics,
    ) -> None:
        self.store = store
        self.upstream = upstream
        self.clock = clock
        self.settings = settings
        self.metrics = metrics
        self.alerting = Alerting(
            settings.company_webhook_url, settings.credits_alert_runs, settings.price
        )
        self._task: asyncio.Task[None] | None = None
        self._last: Balance | None = None  # this process's latest view, for submits
        self._started = self._due_at = 0.0
        self._read_now = False  # after a 406
        self._bell = asyncio.Event()  # wakes the loop before its tick
        self._passes = 0  # looks at the clock so far (tests settle on them)
        self._passed = asyncio.Event()
        upstream.on_no_credits = self._read_at_once

    def start(self) -> None:
        # The first reading comes one interval after the start (or at the first 406), not
        # at once: a process starting takes no slot from the runs it resumes.
        self._started = self.clock.now()
        self._due_at = self._started + self.settings.credits_check_interval
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="balance watch")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def current(self) -> Balance | None:
        """The last reading and the spend since (None: never read, or the store is down)."""
        try:
            found = await self.store.upstream_balance(self.clock.now())
        except StoreError:
            return self._last
        if found is not None:
            self._last = found
            self.metrics.set_balance(found.estimate, found.hours_left)
        return found

    async def check(self) -> None:
        """Refuse a paid run the balance cannot cover, before anything is charged or sent."""
        price = self.settings.price
        last = self._last
        fastest = self.settings.upstream_requests_per_minute * price
        plenty = fastest * EXACT_WITHIN_WINDOWS * self.settings.credits_check_interval / 60
        if last is not None and last.estimate - price > plenty:
            return  # cannot run out before the next reading: no store read per submit
        found = await self.current()
        if found is None or found.estimate + 1e-9 >= price:
            return
        raise OutOfCredits(
            f"the company's Segmind account cannot pay for another run (balance "
            f"{found.estimate:.2f} credits by the reading at {found.read_at:.0f} less the runs "
            f"sent since; a run costs {price:.4f}); nothing was charged to your team and "
            "nothing was sent; tell the gateway operators to top it up, then retry",
            headers={"Retry-After": str(int(self.settings.credits_check_interval))},
        )

    async def read(self) -> Balance | None:
        """Read the balance from Segmind now (one slot of the budget) and keep it."""
        try:
            credits = await self.upstream.credits()
        except client.SegmindError as exc:
            log.warning("could not read the Segmind balance (%s)", type(exc).__name__)
            return None
        found = await self.store.record_balance(credits.total, self.clock.now(), self.alerting)
        self._last = found
        self.metrics.set_balance(found.estimate, found.hours_left)
        if found.estimate < self.alerting.alert_runs * self.alerting.price:
            log.warning("the Segmind balance is low: %.2f credits", found.estimate)
        return found

    async def _loop(self) -> None:
        while True:
            try:
                if self._read_now or self.clock.now() >= self._due_at:
                    forced, self._read_now = self._read_now, False
                    await self._maybe_read(forced)
            except StoreError:
                log.warning("store unavailable for the balance watch; retrying")
                self._due_at = self.clock.now() + RETRY
            except Exception:
                log.exception("balance watch failed; retrying")
                self._due_at = self.clock.now() + RETRY
            self._passes += 1
            self._passed.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._bell.wait(), TICK)
            self._bell.clear()

    async def _maybe_read(self, forced: bool) -> None:
        """Read unless another process read within the interval (unless `forced`)."""
        interval = self.settings.credits_check_interval
        if not forced:
            found = await self.current()
            due = (self._started if found is None else found.read_at) + interval
            if self.clock.now() < due:
                self._due_at = due
                return
        found = await self.read()
        self._due_at = self.clock.now() + (interval if found is not None else RETRY)

    def _read_at_once(self) -> None:
        """After an upstream 406: read the balance now."""
        self._read_now = True
        self._bell.set()

    async def settle(self) -> None:
        """Look at the clock now and return once that look (and any reading) is done:
        tests move the virtual clock, then settle."""
        if self._task is None or self._task.done():
            return
        seen = self._passes
        while self._passes <= seen + 1:  # the pass under way may have begun before the move
            self._passed.clear()
            self._bell.set()
            await self._passed.wait()
