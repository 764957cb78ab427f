"""The webhook deliverer: takes due messages from the outbox, signs and sends them.

Each message is claimed with a lease (its next attempt moved past the send timeout)
before it is sent, so a crash at any moment leaves it due again: delivery is at least
once, and receivers de-duplicate on `webhook-id`. Every attempt runs as its own task
(up to `webhook_concurrency` at once), so a slow or dead receiver never holds up anyone
else's deliveries. Redirects are never followed; the connection goes only to addresses
`ssrf.py` vetted at connect time.

Never logs a webhook secret, a body, or a URL's path or query (they often carry tokens).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import functools
import logging
import random
import time
from collections import Counter
from contextlib import suppress

import anyio
import httpx

from .clock import Clock
from .config import ProxySettings
from .ssrf import AddressPolicy, GuardedTransport, WebhookUrlError
from .store import AsyncStore, OutboxMessage
from .webhooks import Verdict, classify, next_delay, sign

__all__ = ["Deliverer"]

log = logging.getLogger("proxy.webhooks")

BATCH = 100
PER_ENDPOINT = 8  # deliveries in flight to one receiver at once (at most half the slots)
LEASE_MARGIN = 30.0  # seconds past the send timeout before a claimed message is due again
IDLE_CHECK = 60.0  # real seconds between looks when nothing is due (another process may queue)


class Deliverer:
    def __init__(
        self,
        store: AsyncStore,
        clock: Clock,
        settings: ProxySettings,
        transport: httpx.AsyncBaseTransport | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.settings = settings
        self.rng = rng or random.Random()
        self.http = httpx.AsyncClient(
            transport=transport or GuardedTransport(AddressPolicy(settings.webhook_allow_networks)),
            follow_redirects=False,
            timeout=settings.webhook_timeout,
            headers={"user-agent": "segmind-gateway-webhooks/1"},
        )
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(settings.webhook_concurrency)
        self._sending: set[asyncio.Task[None]] = set()
        self._in_flight: set[str] = set()
        self._endpoints: Counter[tuple[str, str]] = Counter()
        self._loop: asyncio.Task[None] | None = None
        self._busy = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def start(self) -> None:
        self._loop = asyncio.get_running_loop().create_task(self._run(), name="webhooks")

    def notify(self) -> None:
        """A message may be due now (called after an outbox write)."""
        self._wake.set()

    async def settle(self) -> None:
        """Return once nothing is being sent and the loop is waiting (for tests)."""
        await asyncio.sleep(0)
        while self._busy or self._sending or self._wake.is_set():
            await self._idle.wait()
            await asyncio.sleep(0)

    async def close(self) -> None:
        if self._loop is not None:
            self._loop.cancel()
            with suppress(asyncio.CancelledError):
                await self._loop
        for task in list(self._sending):
            task.cancel()
        await asyncio.gather(*self._sending, return_exceptions=True)
        await self.http.aclose()

    # -- the loop -----------------------------------------------------------------------

    def _enter(self) -> None:
        self._busy += 1
        self._idle.clear()

    def _leave(self) -> None:
        self._busy -= 1
        if not self._busy and not self._sending:
            self._idle.set()

    async def _run(self) -> None:
        self._enter()
        try:
            while True:
                try:
                    await self._dispatch_due()
                    # Only what could be sent: a message in flight, or to an endpoint at its
                    # share, waits for a delivery to finish, which wakes the loop.
                    due = self.store.read(self.store.sync.next_due_at, *self._skipped())
                except Exception:
                    log.exception("webhook loop: store read failed; retrying in 5 s")
                    due = self.clock.now() + 5
                wait = None if due is None else max(due - self.clock.now(), 0.0)
                if len(self._sending) >= self.settings.webhook_concurrency:
                    await self._wait(None)  # every slot is taken: never spin on due messages
                elif wait is None or wait > 0 or self._wake.is_set():
                    await self._wait(wait)
        finally:
            self._leave()

    async def _wait(self, seconds: float | None) -> None:
        """Until the next attempt is due on the clock, or a notify; and, whatever is due
        later, look again after IDLE_CHECK seconds of real time, for messages another
        process queued (the admin CLI's resend and recover write the store directly)."""
        self._leave()
        try:
            if self._wake.is_set():
                self._wake.clear()
                return
            waiters = [
                asyncio.ensure_future(anyio.sleep(IDLE_CHECK)),
                asyncio.ensure_future(self._wake.wait()),
            ]
            if seconds is not None:
                waiters.append(asyncio.ensure_future(self.clock.sleep(seconds)))
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in waiters:
                    task.cancel()
                self._wake.clear()
        finally:
            self._enter()

    def _per_endpoint(self) -> int:
        return max(1, min(PER_ENDPOINT, self.settings.webhook_concurrency // 2))

    def _skipped(self) -> tuple[list[str], list[tuple[str, str]]]:
        """Messages in flight, and endpoints holding their share of the slots."""
        limit = self._per_endpoint()
        return list(self._in_flight), [e for e, n in self._endpoints.items() if n >= limit]

    async def _dispatch_due(self) -> None:
        """Start every due message that has a free slot. Each endpoint gets at most
        `PER_ENDPOINT` of the slots, so one slow or dead receiver with many messages can
        never take the slots of everyone else; and its waiting messages are left out of
        the batches read, so however many there are, they never hide anyone else's."""
        per_endpoint = self._per_endpoint()
        while True:
            batch = self.store.read(
                self.store.sync.due_messages, self.clock.now(), BATCH, *self._skipped()
            )
            started = False
            for message in batch:
                endpoint = (message.team_id, message.url)
                if len(self._sending) >= self.settings.webhook_concurrency:
                    return
                if message.id in self._in_flight or self._endpoints[endpoint] >= per_endpoint:
                    continue  # its endpoint filled up in this batch: left out of the next
                now = self.clock.now()
                lease = now + self.settings.webhook_timeout + LEASE_MARGIN
                if not await self.store.write(self.store.sync.claim, message.id, now, lease):
                    continue  # another process took it
                self._in_flight.add(message.id)
                self._endpoints[endpoint] += 1
                task = asyncio.get_running_loop().create_task(self._deliver(message))
                self._sending.add(task)
                task.add_done_callback(functools.partial(self._sent, message=message))
                started = True
            if len(batch) < BATCH or not started:
                return

    def _sent(self, task: asyncio.Task[None], message: OutboxMessage) -> None:
        self._sending.discard(task)
        self._in_flight.discard(message.id)
        endpoint = (message.team_id, message.url)
        self._endpoints[endpoint] -= 1
        if not self._endpoints[endpoint]:
            del self._endpoints[endpoint]
        if not task.cancelled() and task.exception() is not None:
            log.error("webhook delivery task failed", exc_info=task.exception())
        self._wake.set()  # a slot is free, and the next attempt may already be due
        if not self._busy and not self._sending:
            self._idle.set()

    # -- one attempt --------------------------------------------------------------------

    async def _deliver(self, message: OutboxMessage) -> None:
        async with self._slots:
            now = self.clock.now()
            secrets = self.store.read(self.store.sync.team_secrets, message.team_id, now)
            headers = sign(secrets, message.id, now, message.body)
            status: int | None = None
            answer: str | None = None
            error: str | None = None
            retry_after: float | None = None
            refused = False
            started = time.perf_counter()
            try:
                response = await self.http.post(message.url, content=message.body, headers=headers)
                status, answer = response.status_code, response.text
                retry_after = _seconds(response.headers.get("retry-after"), now)
            except WebhookUrlError as exc:
                error, refused = exc.message, True  # a refused address: retrying cannot help
            except httpx.TimeoutException:
                error = f"no answer within {self.settings.webhook_timeout:g} s"
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
            latency = (time.perf_counter() - started) * 1000
            verdict = Verdict.STOP if refused else classify(status)
            await self._record(message, status, answer, error, retry_after, latency, verdict)

    async def _record(
        self, message: OutboxMessage, status: int | None, answer: str | None,
        error: str | None, retry_after: float | None, latency: float, verdict: Verdict,
    ) -> None:  # fmt: skip
        now = self.clock.now()
        next_at: float | None = None
        if verdict is Verdict.DELIVERED:
            state = "delivered"
        elif verdict is Verdict.DISABLE:
            state, error = "disabled", error or "the endpoint answered 410 Gone: disabled"
        elif verdict is Verdict.STOP:
            state, error = "failed", error or f"the receiver refused the message ({status})"
        else:
            delay = next_delay(
                message.attempts + 1, self.rng, self.settings.webhook_schedule, retry_after
            )
            error = error or f"the receiver answered {status}"
            if delay is None:
                state = "failed"
            else:
                state, next_at = "pending", now + delay
        await self.store.write(
            self.store.sync.record_attempt,
            message.id,
            now,
            status_code=status,
            latency_ms=latency,
            response=answer,
            error=error,
            state=state,
            next_attempt_at=next_at,
        )
        log.info(
            "webhook attempt",
            extra={"webhook_id": message.id, "request_id": message.request_id,
                   "attempt": message.attempts + 1, "status": status, "state": state,
                   "ms": round(latency, 1)},
        )  # fmt: skip


def _seconds(value: str | None, now: float) -> float | None:
    """A Retry-After as seconds from `now`: delay-seconds or an HTTP-date (RFC 9110)."""
    if value is None:
        return None
    try:
        return max(float(value.strip()), 0.0)
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:  # an HTTP-date is always GMT
        moment = moment.replace(tzinfo=dt.UTC)
    return max(moment.timestamp() - now, 0.0)
