"""Every call to Segmind goes through here: the company key injected, the global request
budget respected, and upstream errors turned into answers a team can act on.

The gateway talks to Segmind through the project's own client (`client.AsyncClient`).
The upstream key lives only inside that client; errors from it are already scrubbed of
the key, and nothing here ever formats the key into a message.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

import client
from proxy.core.clock import Clock
from proxy.core.config import ProxySettings
from proxy.core.errors import BadInput, GatewayError, UnconfirmedSubmit, UpstreamFailure
from proxy.core.logs import Redactor
from proxy.core.tracing import Tracing
from proxy.rules import Fence
from proxy.rules.budget import QueuePlace
from proxy.store import Store

__all__ = ["Upstream", "UpstreamBudget", "UpstreamGone"]

log = logging.getLogger("proxy.upstream")

Sleep = Callable[[float], Awaitable[None]]

SUBMIT_CONNECT_TRIES = 3  # tries of a submit whose connection never opened
SUBMIT_CONNECT_PAUSE = 0.5  # seconds before the second try, doubling
# A refused connection is a blip worth trying again; one refused within this many seconds
# of another call's is an outage: the submit then answers at once (nothing was sent) rather
# than hold its caller through the pauses (1.5 s) for an upstream that is down.
REFUSED_WINDOW = 10.0


class UpstreamGone(GatewayError):
    """The upstream no longer knows a job (404): it expired or never existed."""

    status_code = 502


class UpstreamBudget:
    """The company-wide cap on upstream calls (Segmind's limit is per account, shared by
    every team and every gateway process on the store): a sliding window over the
    gateway's clock, submits served before polls, and a pause for everyone after an
    upstream 429. The state is in the store (`rules/budget.py`), so processes sharing it
    share the budget."""

    def __init__(self, clock: Clock, per_minute: int, store: Store) -> None:
        self.clock = clock
        self.per_minute = per_minute
        self.store = store

    async def pause(self, seconds: float) -> None:
        await self.store.pause_upstream(self.clock.now() + seconds)

    async def claim_send(self, generation_id: str, fence: Fence | None = None) -> float:
        """The slot to send a WAITING run now (0.0, and it is SUBMITTING), or seconds to
        wait (it stays WAITING); negative: it is not WAITING any more."""
        return await self.store.claim_send(generation_id, self.clock.now(), self.per_minute, fence)

    async def place(self, generation_id: str) -> QueuePlace | None:
        """Where a held run stands in the fair queue; None once it is not WAITING."""
        return await self.store.queue_place(generation_id, self.clock.now(), self.per_minute)

    async def unclaim_send(self, generation_id: str) -> None:
        await self.store.unclaim_send(generation_id, self.clock.now())

    async def acquire(
        self, kind: str, sleep: Sleep | None = None, generation_id: str | None = None
    ) -> None:
        """Wait for a slot for one call of `kind`; a poll naming its run goes by need."""
        sleep = sleep or self.clock.sleep
        while True:
            wait = await self.store.take_upstream(
                kind, self.clock.now(), self.per_minute, generation_id
            )
            if wait <= 0:
                return
            await sleep(wait)


class Upstream:
    def __init__(
        self,
        settings: ProxySettings,
        clock: Clock,
        budget: UpstreamBudget,
        transport: httpx.AsyncBaseTransport | None = None,
        on_call: Callable[[str, str], None] | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self._tracing = tracing or Tracing()
        key = settings.upstream_key.get_secret_value() if settings.upstream_key else ""
        common: dict[str, Any] = {
            "base_url": settings.upstream_base_url,
            "auth": settings.upstream_auth,
            "timeout": settings.upstream_timeout,
            "transport": transport,
            "clock": clock,
        }
        # Each client tries once: every call that may reach Segmind must take a slot of the
        # budget first, and the client's own retries (a submit's on 429) would not. A submit
        # whose connection never opened is tried again here (`submit`); polls are retried by
        # the poller's schedule.
        once = client.RetryPolicy(max_attempts=1)
        self._submitter = client.AsyncClient(key, retry=once, **common)
        self._poller = client.AsyncClient(key, retry=once, **common)
        self._clock = clock
        self._redactor = Redactor([key] if key else [])
        self.budget = budget
        self._on_call = on_call or (lambda kind, status: None)
        # Told when Segmind answers 406 (the account is out of credits): the balance
        # watch reads the balance again at once.
        self.on_no_credits: Callable[[], None] = lambda: None
        # The last submit (a token per call) whose connection never opened, and when.
        self._refused: tuple[object, float] | None = None

    async def aclose(self) -> None:
        await self._submitter.aclose()
        await self._poller.aclose()

    async def submit(
        self, workflow_id: str, inputs: dict[str, Any], generation_id: str
    ) -> str | None:
        """Start one paid run whose budget slot was taken (`UpstreamBudget.claim_send`);
        returns the upstream request id, or None when Segmind's rate limiter refused it
        (no run started; the budget is paused for its Retry-After, and the run can wait).
        Raises a GatewayError for any other failure."""
        attributes = {"gateway.generation_id": generation_id}
        with self._tracing.span("upstream.submit", attributes=attributes) as span:
            upstream_id = await self._submit(workflow_id, inputs, generation_id)
            span.set_attribute("upstream.request_id", upstream_id or "")
        if upstream_id is not None:
            # Its polls, later and in the background, join the trace it was sent in.
            self._tracing.remember(f"upstream:{upstream_id}")
        return upstream_id

    async def _submit(
        self, workflow_id: str, inputs: dict[str, Any], generation_id: str
    ) -> str | None:
        call = object()
        for attempt in range(SUBMIT_CONNECT_TRIES):
            try:
                handle = await self._submitter.submit(
                    inputs, workflow_id=workflow_id, idempotency_key=generation_id
                )
            except client.RateLimited as exc:
                await self._failed("submit", exc)
                return None
            except client.TransportError as exc:
                if exc.nothing_sent and self._blip(call) and attempt + 1 < SUBMIT_CONNECT_TRIES:
                    # The connection never opened, so no run can have started: try again.
                    await self._clock.sleep(SUBMIT_CONNECT_PAUSE * 2.0**attempt)
                    continue
                await self._failed("submit", exc)
                raise self._translate(exc, "submit") from exc
            except client.SegmindError as exc:
                await self._failed("submit", exc)
                raise self._translate(exc, "submit") from exc
            self._on_call("submit", "200")
            self._refused = None
            return handle.request_id
        raise AssertionError("unreachable: the last try returns or raises")

    def _blip(self, call: object) -> bool:
        """Note that `call` (one submit, across its tries) was refused a connection; whether
        that may be a blip: no other call was refused within REFUSED_WINDOW. If one was,
        the upstream is down, and waiting to try again only holds the caller."""
        now = self._clock.now()
        last, self._refused = self._refused, (call, now)
        return last is None or last[0] is call or now - last[1] > REFUSED_WINDOW

    async def status(
        self, upstream_id: str, sleep: Sleep | None = None, generation_id: str | None = None
    ) -> client.JobStatus:
        await self.budget.acquire("poll", sleep, generation_id)
        with self._tracing.span(
            "upstream.poll",
            attributes={"upstream.request_id": upstream_id},
            follow=f"upstream:{upstream_id}",
        ) as span:
            try:
                status = await self._poller.status(upstream_id)
            except client.SegmindError as exc:
                await self._failed("poll", exc)
                raise
            span.set_attribute("upstream.status", status.state.value)
        self._on_call("poll", "200")
        return self._scrubbed(status)

    async def credits(self) -> client.Credits:
        """The company account's balance, read through the budget like a poll."""
        await self.budget.acquire("poll")
        with self._tracing.span("upstream.credits"):
            try:
                found = await self._poller.credits()
            except client.SegmindError as exc:
                await self._failed("credits", exc)
                raise
        self._on_call("credits", "200")
        return found

    async def _failed(self, action: str, exc: client.SegmindError) -> None:
        """Count a failed call; after a 429, pause every caller of the upstream for as long."""
        self._on_call(action, _status_label(exc))
        if isinstance(exc, client.InsufficientCredits):
            self.on_no_credits()
        if isinstance(exc, client.RateLimited):
            await self.budget.pause(exc.retry_after or 60.0)

    def _scrubbed(self, status: client.JobStatus) -> client.JobStatus:
        """A poll answer is stored and served to teams: an upstream that echoes the key
        in a FAILED reason or an output must not hand it on (errors the client scrubs)."""
        redactor = self._redactor
        text = json.dumps([status.error, status.output, status.body], default=str)
        if not redactor.contains_secret(text):
            return status
        return dataclasses.replace(
            status,
            error=None if status.error is None else redactor.scrub(status.error),
            output=redactor.scrub_value(status.output),
            body=redactor.scrub_value(status.body),
        )

    def _translate(self, exc: client.SegmindError, action: str) -> GatewayError:
        if isinstance(exc, client.Unauthorized | client.Forbidden):
            log.error(
                "upstream rejected the gateway's own key (HTTP %s): check SEGMIND_API_KEY",
                exc.status_code,
            )
            return UpstreamFailure(
                "gateway misconfigured: Segmind rejected the gateway's own key; nothing was "
                "charged to your team; the gateway operators must fix the upstream key",
                status_code=502,
            )
        if isinstance(exc, client.InsufficientCredits):
            log.error("upstream account is out of credits: %s", exc.message)
            return UpstreamFailure(
                "the company's Segmind account is out of credits; nothing was charged to your "
                "team; tell the gateway operators to top it up, then retry",
                status_code=503,
                headers={"Retry-After": "300"},
            )
        if isinstance(exc, client.BadRequest):
            return BadInput(f"Segmind refused the inputs: {exc.message}")
        if isinstance(exc, client.RateLimited):
            wait = exc.retry_after or 60.0  # the budget was paused for as long
            return UpstreamFailure(
                f"Segmind's rate limit is reached for the whole company; nothing was charged "
                f"to your team; retry in {int(wait)} s",
                status_code=503,
                headers={"Retry-After": str(max(1, int(wait)))},
            )
        if isinstance(exc, client.NotFound):
            return UpstreamFailure(
                f"Segmind does not know this workflow ({exc.message}); the gateway's workflow "
                "list may be out of date",
                status_code=502,
            )
        timeout = isinstance(exc, client.TransportTimeout | client.GatewayTimeout)
        code = 504 if timeout else 502
        if action == "submit" and not isinstance(exc, client.ConnectError | client.APIError):
            # The request went out and no answer came back (a timeout, a broken connection,
            # an unreadable 200): Segmind may be running, and billing, a job that nothing
            # here can see. Say so; never pretend it is free. (A 5xx is an answer: Segmind
            # said the submit failed, and is not taken to bill for it.)
            return UnconfirmedSubmit(
                f"Segmind did not confirm the submit ({type(exc).__name__}: {exc.message}); "
                "a paid run may have started there that the gateway cannot follow, and a "
                "retry starts (and pays for) a new one",
                status_code=code,
                headers={"Retry-After": "60"},
            )
        return UpstreamFailure(
            f"Segmind failed to {action} ({type(exc).__name__}: {exc.message}); nothing was "
            "charged to your team; retry in a minute",
            status_code=code,
            headers={"Retry-After": "60"},
        )


def _status_label(exc: client.SegmindError) -> str:
    code = getattr(exc, "status_code", None)
    return str(code) if code else type(exc).__name__
