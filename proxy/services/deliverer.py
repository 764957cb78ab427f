"""The webhook deliverer: takes due messages from the outbox, signs and sends them.

Each message is claimed with a lease (its next attempt moved past the send timeout)
before it is sent, so a crash at any moment leaves it due again: delivery is at least
once, and receivers de-duplicate on `webhook-id`. Every attempt runs as its own task
(up to `webhook_concurrency` at once), so a slow or dead receiver never holds up anyone
else's deliveries. Redirects are never followed; the connection goes only to addresses
`proxy/core/ssrf/` vetted at connect time.

Receivers are untrusted, so an attempt is bounded whatever they do: one deadline,
`webhook_timeout`, covers all of it (resolve, connect, send, status, answer), so trickling
a byte at a time cannot hold a slot longer; and at most `ANSWER_BYTES` of the answer are
read, undecoded, before the connection is closed, so a huge (or compressed) answer costs
no memory. The slots are shared: a team holds at most its fair share of them (see
`team_share`), a receiving host at most `host_share`, and one endpoint at most
`PER_ENDPOINT`; so whatever URLs or hosts one team's receivers use, another team's
message finds a free slot.

Never logs a webhook secret, a body, or a URL's path or query (they often carry tokens).
"""

from __future__ import annotations

import asyncio
import codecs
import dataclasses
import datetime as dt
import email.utils
import functools
import logging
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import TypeVar

import anyio
import httpx

from proxy.core.clock import Clock, fail_after
from proxy.core.config import ProxySettings
from proxy.core.ssrf import AddressPolicy, GuardedTransport, WebhookUrlError
from proxy.core.tracing import Tracing
from proxy.core.webhooks import Verdict, classify, host_of, next_delay, sign
from proxy.db import OutboxMessage, StoreError
from proxy.rules.balance import COMPANY
from proxy.store import Store

__all__ = ["ANSWER_BYTES", "Deliverer", "host_share", "team_share"]

log = logging.getLogger("proxy.webhooks")

K = TypeVar("K", str, tuple[str, str])

BATCH = 100
PER_ENDPOINT = 8  # deliveries in flight to one receiver at once (at most half the slots)
ANSWER_BYTES = 4096  # bytes of a receiver's answer read (the store keeps 512 characters)
LEASE_MARGIN = 30.0  # seconds past the send timeout before a claimed message is due again
IDLE_CHECK = 60.0  # real seconds between looks when nothing is due (another process may queue)


def team_share(concurrency: int, teams_sending: int) -> int:
    """The slots one team may hold while `teams_sending` teams (itself included) have
    deliveries in flight: an equal share, with one more share always kept back for a team
    that has none yet. Alone, a team holds half the slots; beside one other, a third each.
    A team above its share (others started sending since) starts nothing new until its
    attempts, each bounded by the deadline, bring it under."""
    return max(1, concurrency // (teams_sending + 1))


def host_share(concurrency: int) -> int:
    """The slots one receiving host may hold, whatever teams send to it: three quarters,
    so a slow host many teams use (a shared SaaS receiver, say) leaves a quarter for every
    other host; and not less, so one internal host receiving every team's webhooks still
    gets most of them."""
    return max(1, concurrency - concurrency // 4)


@dataclass(frozen=True)
class _Outcome:
    """What one attempt came to: the receiver's status and answer, or why there is none."""

    status: int | None = None
    answer: str | None = None
    retry_after: float | None = None
    error: str | None = None
    refused: bool = False  # a refused address: retrying cannot help


class Deliverer:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        settings: ProxySettings,
        transport: httpx.AsyncBaseTransport | None = None,
        rng: random.Random | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self.store = store
        self.tracing = tracing or Tracing()
        self.clock = clock
        self.settings = settings
        self.rng = rng or random.Random()
        self.http = httpx.AsyncClient(
            transport=transport or GuardedTransport(AddressPolicy(settings.webhook_allow_networks)),
            follow_redirects=False,
            timeout=settings.webhook_timeout,
            # Only the answer's first bytes are read, raw: asking for it uncompressed keeps
            # that excerpt readable, and a compressed answer is never inflated.
            headers={"user-agent": "segmind-gateway-webhooks/1", "accept-encoding": "identity"},
        )
        # What a message's body becomes just before each attempt (kept outputs' URLs).
        self.rewrite: Callable[[OutboxMessage], Awaitable[bytes]] | None = None
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(settings.webhook_concurrency)
        self._sending: set[asyncio.Task[None]] = set()
        self._in_flight: set[str] = set()
        self._endpoints: Counter[tuple[str, str]] = Counter()
        self._teams: Counter[str] = Counter()
        self._hosts: Counter[str] = Counter()
        self._loop: asyncio.Task[None] | None = None
        self._busy = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def start(self) -> None:
        self._loop = asyncio.get_running_loop().create_task(self._run(), name="webhooks")
        # A message another process queued (a run it finished, an operator's resend) is
        # news from the store: look at once rather than at the next periodic read.
        self.store.subscribe(self._news)

    def _news(self, channel: str) -> None:
        if channel in ("outbox", "*"):
            self._wake.set()

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
                    # Only what could be sent: a message in flight, or of an endpoint, team
                    # or host at its share, waits for a delivery to finish, which wakes the
                    # loop.
                    due = await self.store.next_due_at(*self._skipped())
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

    # -- shares of the slots ------------------------------------------------------------

    def _per_endpoint(self) -> int:
        return max(1, min(PER_ENDPOINT, self.settings.webhook_concurrency // 2))

    def _team_limit(self, team_id: str) -> int:
        sending = len(self._teams) + (team_id not in self._teams)
        return team_share(self.settings.webhook_concurrency, sending)

    def _skipped(self) -> tuple[list[str], list[tuple[str, str]], list[str], list[str]]:
        """Messages in flight, and the endpoints, teams and hosts holding their share of
        the slots: left out of the store's reads, so that every message a batch holds can
        be started (the same rules as `_may_start`: nothing due is left to spin on)."""
        per_endpoint = self._per_endpoint()
        per_host = host_share(self.settings.webhook_concurrency)
        endpoints = [e for e, n in self._endpoints.items() if n >= per_endpoint]
        teams = [t for t, n in self._teams.items() if n >= self._team_limit(t)]
        hosts = [h for h, n in self._hosts.items() if n >= per_host]
        return list(self._in_flight), endpoints, teams, hosts

    def _may_start(self, message: OutboxMessage) -> bool:
        """Whether `message` fits in its endpoint's, its team's and its host's share."""
        return (
            message.id not in self._in_flight
            and self._endpoints[(message.team_id, message.url)] < self._per_endpoint()
            and self._teams[message.team_id] < self._team_limit(message.team_id)
            and self._hosts[host_of(message.url)] < host_share(self.settings.webhook_concurrency)
        )

    def _count(self, message: OutboxMessage, change: int) -> None:
        """Count a delivery into (+1) or out of (-1) its endpoint's, team's and host's share."""
        if change > 0:
            self._in_flight.add(message.id)
        else:
            self._in_flight.discard(message.id)
        _bump(self._endpoints, (message.team_id, message.url), change)
        _bump(self._teams, message.team_id, change)
        _bump(self._hosts, host_of(message.url), change)

    async def _dispatch_due(self) -> None:
        """Start every due message that has a free slot and fits in its shares. Endpoints,
        teams and hosts at their share are left out of the batches read, so however many
        messages one team has waiting, they never hide anyone else's."""
        while True:
            batch = await self.store.due_messages(self.clock.now(), BATCH, *self._skipped())
            started = False
            for message in batch:
                if len(self._sending) >= self.settings.webhook_concurrency:
                    return
                if not self._may_start(message):
                    continue  # a share filled up in this batch: left out of the next
                now = self.clock.now()
                lease = now + self.settings.webhook_timeout + LEASE_MARGIN
                if not await self.store.claim(message.id, now, lease):
                    continue  # another process took it
                self._count(message, +1)
                task = asyncio.get_running_loop().create_task(self._deliver(message))
                self._sending.add(task)
                task.add_done_callback(functools.partial(self._sent, message=message))
                started = True
            if len(batch) < BATCH or not started:
                return

    def _sent(self, task: asyncio.Task[None], message: OutboxMessage) -> None:
        self._sending.discard(task)
        self._count(message, -1)
        if not task.cancelled() and task.exception() is not None:
            log.error("webhook delivery task failed", exc_info=task.exception())
        self._wake.set()  # a slot is free, and the next attempt may already be due
        if not self._busy and not self._sending:
            self._idle.set()

    # -- one attempt --------------------------------------------------------------------

    async def _secrets(self, team_id: str, now: float) -> list[str]:
        """A team's secrets; the company's for the company's own events (its balance)."""
        if team_id == COMPANY:
            secret = self.settings.company_webhook_secret
            return [] if secret is None else [secret.get_secret_value()]
        return await self.store.team_secrets(team_id, now)

    async def _deliver(self, message: OutboxMessage) -> None:
        async with self._slots:
            if self.rewrite is not None:
                # Kept outputs: the body names the gateway's URLs, signed afresh per attempt.
                message = dataclasses.replace(message, body=await self.rewrite(message))
            now = self.clock.now()
            secrets = await self._secrets(message.team_id, now)
            headers = sign(secrets, message.id, now, message.body)
            started = time.perf_counter()
            with self.tracing.span(
                "webhook.attempt",
                # The host only: a webhook URL's path and query often carry tokens.
                attributes={"webhook.id": message.id, "webhook.event": message.event,
                            "server.address": host_of(message.url)},
                follow=f"request:{message.request_id}",
            ) as span:  # fmt: skip
                outcome = await self._attempt(message, headers, now)
                if outcome.status is not None:
                    span.set_attribute("http.response.status_code", outcome.status)
            latency = (time.perf_counter() - started) * 1000
            verdict = Verdict.STOP if outcome.refused else classify(outcome.status)
            await self._record(message, outcome, latency, verdict)

    async def _attempt(
        self, message: OutboxMessage, headers: dict[str, str], now: float
    ) -> _Outcome:
        """POST the message under one deadline for the whole exchange; read the status and
        at most `ANSWER_BYTES` of the answer, then close the connection.

        A status that arrived in time decides the verdict even if the rest of the answer
        does not (trickled, cut off): the receiver has answered, and what was read of the
        answer is kept."""
        deadline = self.settings.webhook_timeout
        status: int | None = None
        retry_after: float | None = None
        charset: str | None = None
        excerpt = bytearray()
        error: str | None = None
        try:
            # On the gateway's clock, which tests drive: no test waits through a deadline.
            with fail_after(self.clock, deadline):
                async with self.http.stream(
                    "POST", message.url, content=message.body, headers=headers
                ) as response:
                    status = response.status_code
                    retry_after = _seconds(response.headers.get("retry-after"), now)
                    charset = response.charset_encoding
                    # Raw: never inflated, whatever content-encoding the receiver claims.
                    async for chunk in response.aiter_raw():
                        excerpt += chunk[: ANSWER_BYTES - len(excerpt)]
                        if len(excerpt) >= ANSWER_BYTES:
                            break  # leaving the block closes the connection, unread
        except WebhookUrlError as exc:
            return _Outcome(error=exc.message, refused=True)
        except (TimeoutError, httpx.TimeoutException):
            if status is None:
                error = f"no answer within {deadline:g} s"
        except httpx.HTTPError as exc:
            if status is None:
                error = f"{type(exc).__name__}: {exc}"
        if status is None:
            return _Outcome(error=error)
        return _Outcome(status, _text(bytes(excerpt), charset), retry_after)

    async def _record(
        self, message: OutboxMessage, outcome: _Outcome, latency: float, verdict: Verdict
    ) -> None:
        now = self.clock.now()
        status, error = outcome.status, outcome.error
        next_at: float | None = None
        if verdict is Verdict.DELIVERED:
            state = "delivered"
        elif verdict is Verdict.DISABLE:
            state, error = "disabled", error or "the endpoint answered 410 Gone: disabled"
        elif verdict is Verdict.STOP:
            state, error = "failed", error or f"the receiver refused the message ({status})"
        else:
            delay = next_delay(
                message.attempts + 1, self.rng, self.settings.webhook_schedule, outcome.retry_after
            )
            error = error or f"the receiver answered {status}"
            if delay is None:
                state = "failed"
            else:
                state, next_at = "pending", now + delay
        record = functools.partial(
            self.store.record_attempt, message.id, now, status_code=status,
            latency_ms=latency, state=state, next_attempt_at=next_at,
        )  # fmt: skip
        try:
            await record(response=outcome.answer, error=error)
        except StoreError as exc:
            # A row the store refuses for what it holds (text from outside) would leave
            # the message claimed, unrecorded, and sent again at every lease's end: the
            # attempt is recorded once more without the receiver's words. If the store is
            # down, that fails too, and the message is due again when it is back.
            log.error(
                "webhook attempt could not be recorded; recording it without its answer",
                extra={"webhook_id": message.id, "request_id": message.request_id,
                       "reason": type(exc).__name__},
            )  # fmt: skip
            unstored = "the attempt's answer and error could not be stored"
            await record(response=None, error=None if error is None else unstored)
        log.info(
            "webhook attempt",
            extra={"webhook_id": message.id, "request_id": message.request_id,
                   "attempt": message.attempts + 1, "status": status, "state": state,
                   "ms": round(latency, 1)},
        )  # fmt: skip


def _bump(counter: Counter[K], key: K, change: int) -> None:
    """Add `change` to a count, dropping it at zero: the keys are what has deliveries in
    flight (the number of teams sending is how many keys `_teams` has)."""
    counter[key] += change
    if counter[key] <= 0:
        del counter[key]


def _text(raw: bytes, charset: str | None) -> str:
    """The excerpt as text in the answer's charset (UTF-8 if none, or an unknown one);
    a character cut at the end, or bytes that are not text, become U+FFFD."""
    encoding = "utf-8"
    if charset:
        with suppress(LookupError):
            encoding = codecs.lookup(charset).name
    return raw.decode(encoding, errors="replace")


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
