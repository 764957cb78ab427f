"""The gateway's service object: admission (HIT, JOIN or MISS), the paid submit, and poll
answers from the store. The HTTP edge (`proxy/edge/routes.py`) only parses and formats around it.

A request is one team's call; a generation is one paid upstream run. Many requests can
share one generation, and only a MISS ever reaches the upstream.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import socket
import uuid
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import httpx

import workflows
from proxy.core.cache import canonical_inputs, generation_key, scoped_key
from proxy.core.clock import Clock, SystemClock
from proxy.core.config import ProxySettings
from proxy.core.errors import BadInput, LimitExceeded, NotFound
from proxy.core.fairqueue import DEFAULT_URGENCY
from proxy.core.quotas import MemoryRateLimiter, RateDecision
from proxy.core.schedule import DurationModel
from proxy.core.ssrf import AddressPolicy, WebhookUrlError, check_url_syntax, resolve_and_check
from proxy.core.tracing import Tracing
from proxy.db import (
    Admission,
    CacheStatus,
    Generation,
    RequestRecord,
    StorageUnavailable,
    StoreError,
    Team,
)
from proxy.objects import ObjectStore
from proxy.rules import AdmissionRequest
from proxy.rules.balance import Balance
from proxy.services.balance import BalanceWatch, OutOfCredits
from proxy.services.deliverer import Deliverer
from proxy.services.heartbeat import Heartbeat
from proxy.services.metrics import Metrics
from proxy.services.outputs import OutputService
from proxy.services.poller import Poller
from proxy.services.preflight import ImagePreflight
from proxy.services.upstream import Upstream, UpstreamBudget
from proxy.store import Store

__all__ = ["Gateway", "PollAnswer", "SubmitOptions"]

log = logging.getLogger("proxy.gateway")
hints_log = logging.getLogger("proxy.hints")  # as before the notices moved here

IN_FLIGHT_STATUSES = ("WAITING", "SUBMITTING", "QUEUED")
FINISHED_ANSWERS = 10_000  # terminal poll answers kept in memory
STORE_WAIT = 0.5  # real seconds between attempts to take runs back from a store not yet up


@dataclass(frozen=True)
class SubmitOptions:
    no_cache: bool = False
    webhook_url: str | None = None
    idempotency_key: str | None = None
    priority: int = DEFAULT_URGENCY  # RFC 9218 urgency: orders the team's own waiting runs


@dataclass(frozen=True)
class PollAnswer:
    body: bytes  # the JSON answer, encoded as Starlette's JSONResponse would
    request: RequestRecord
    rate: RateDecision | None


class Gateway:
    def __init__(
        self,
        settings: ProxySettings,
        store: Store,
        clock: Clock,
        *,
        upstream_transport: httpx.AsyncBaseTransport | None = None,
        webhook_transport: httpx.AsyncBaseTransport | None = None,
        metrics: Metrics | None = None,
        wall_clock: Clock | None = None,
        tracing: Tracing | None = None,
        objects: ObjectStore | None = None,
        asset_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """The services of one gateway process, on the store, clock and tracing its
        assembly chose (`proxy/app.py`); nothing here configures the process."""
        self.settings = settings
        self.store = store
        self.clock = clock
        # Heartbeats, leases and console sessions are wall time, whatever runs are on.
        self.wall_clock: Clock = wall_clock or SystemClock()
        # Stable across a restart on the same port, distinct between live processes.
        self.instance = settings.instance_id or f"{socket.gethostname()}:{settings.port}"
        self.metrics = metrics or Metrics()
        self.tracing = tracing or Tracing()
        self.budget = UpstreamBudget(self.clock, settings.upstream_requests_per_minute, self.store)
        self.upstream = Upstream(
            settings,
            self.clock,
            self.budget,
            upstream_transport,
            on_call=self.metrics.upstream,
            tracing=self.tracing,
        )
        # Kept outputs (`objects`: the output store the assembly opened; None: off).
        self.outputs = (
            None
            if objects is None
            else OutputService(settings, self.clock, store, objects, asset_transport, self.metrics)
        )
        self.poller = Poller(
            self.store,
            self.upstream,
            self.clock,
            settings,
            self.instance,
            on_terminal=self._finished,
            wall=self.wall_clock,
            outputs=self.outputs,
        )
        self.balance = BalanceWatch(self.store, self.upstream, self.clock, settings, self.metrics)
        self.heartbeat = Heartbeat(
            self.store, self.wall_clock, self.instance, settings.lease_seconds
        )
        self.deliverer = Deliverer(
            self.store, self.clock, settings, webhook_transport, tracing=self.tracing
        )
        if self.outputs is not None:
            self.deliverer.rewrite = self.outputs.rewrite_webhook
        self.webhook_policy = AddressPolicy(settings.webhook_allow_networks)
        self.preflight = ImagePreflight(settings, self.clock) if settings.image_preflight else None
        self.poll_limits = MemoryRateLimiter()
        # (team, request) -> (answer, request, when the result expires)
        self._finished_answers: dict[tuple[str, str], tuple[bytes, RequestRecord, float]] = {}
        self._submits: set[asyncio.Task[Generation]] = set()
        self._admitting: set[asyncio.Task[Admission]] = set()
        self._taking_back: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.store.watch()  # news from other replicas: auth changes, webhooks queued
        try:
            await self._take_back()
        except StorageUnavailable as exc:
            # Started before its database (replicas start in any order): readiness answers
            # 503 meanwhile, and this process takes its runs back once the store answers.
            log.warning("store unavailable at start: %s; waiting for it", exc.message)
            self._taking_back = asyncio.get_running_loop().create_task(self._take_back_later())
        self.heartbeat.start(self._adopt)
        self.deliverer.start()
        self.balance.start()

    async def _take_back(self) -> None:
        """Say this process is alive and take back the runs it held before a restart."""
        if self.outputs is not None:
            await self.outputs.start()  # its signing key is in the store
        await self.heartbeat.beat()
        resumed = await self.poller.resume(await self.heartbeat.claim(own=True))
        if resumed:
            log.info("resumed polling of %d unfinished generations", resumed)
        self._update_in_flight()

    async def _take_back_later(self) -> None:
        while True:
            await self.wall_clock.sleep(STORE_WAIT)
            try:
                await self._take_back()
            except StorageUnavailable:
                continue
            log.info("store available: runs taken back")
            return

    async def stop(self) -> None:
        if self._taking_back is not None:
            self._taking_back.cancel()
        if self._admitting:
            await asyncio.gather(*self._admitting, return_exceptions=True)
        if self._submits:
            await asyncio.gather(*self._submits, return_exceptions=True)
        await self.balance.close()
        await self.poller.close()
        await self.heartbeat.close()
        await self.deliverer.close()
        if self.preflight is not None:
            await self.preflight.aclose()
        await self.upstream.aclose()
        if self.outputs is not None:
            await self.outputs.aclose()
        self.store.close()
        self.tracing.shutdown()

    # -- submit -------------------------------------------------------------------------

    async def submit(
        self, team: Team, workflow_id: str, body: Any, options: SubmitOptions
    ) -> Admission:
        if workflow_id not in self.settings.workflows:
            served = ", ".join(self.settings.workflows)
            raise NotFound(
                f"workflow {workflow_id!r} is not served by this gateway; it serves {served}"
            )
        inputs = canonical_inputs(workflow_id, body)
        key = generation_key(workflow_id, inputs)
        ask = AdmissionRequest(
            team=team,
            request_id=uuid.uuid4().hex,
            generation_id=uuid.uuid4().hex,
            scope_key=scoped_key(key, team.id, self.settings.cache_scope == "shared"),
            workflow_id=workflow_id,
            inputs=inputs,
            price=self.settings.price,
            no_cache=options.no_cache,
            webhook_url=options.webhook_url,
            idempotency_key=options.idempotency_key,
            fingerprint=hashlib.sha256(f"{key}|{int(options.no_cache)}".encode()).hexdigest(),
            idempotency_ttl=self.settings.idempotency_ttl,
            expected_run_seconds=self.settings.expected_run_seconds,
            instance=self.instance,
            priority=options.priority,
        )
        await self._check_balance(ask)
        image = _image_of(workflow_id, inputs)
        preflight = self.preflight
        # Verdicts are scoped as results are: a team cannot time another's image checks.
        verdicts = "" if self.settings.cache_scope == "shared" else team.id
        if image is None:
            image, preflight = "", None  # a workflow with no image input
        elif preflight is not None and preflight.known_good(image, verdicts):
            preflight = None  # checked a moment ago: no need to ask whether it is paid
        if options.webhook_url is not None or preflight is not None:
            # Cheap refusals first: a team over its limits costs no DNS lookup and no image
            # fetch. The atomic admission below checks them again, and is the one that
            # counts (a peeked MISS that it turns into a JOIN only made the check unneeded).
            would_be = await self.store.peek_admission(ask, self.clock.now())
            if options.webhook_url is not None:
                await self._check_webhook(options.webhook_url)
            if preflight is not None and would_be is CacheStatus.MISS:
                # Only a paid run needs it: a HIT or a JOIN reuses a run already made. It
                # fetches an address the team chose, so it is a submit, counted before the
                # fetch whatever its verdict: the team's submit limit bounds its fetches.
                rate = await self.store.count_submit(team, self.clock.now())
                ask = dataclasses.replace(ask, submit_counted=True, counted_rate=rate)
                await preflight.check(image, verdicts)
        # Admission runs as its own task too: the store's writer thread commits it even if
        # the caller is cancelled while waiting, and a paid run that was admitted must then
        # still be started (and its slot released when it ends), never orphaned.
        task = asyncio.get_running_loop().create_task(self._admit(ask, inputs, team))
        self._admitting.add(task)
        task.add_done_callback(self._admitting.discard)
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        return await asyncio.shield(task)

    async def _check_balance(self, ask: AdmissionRequest) -> None:
        """Refuse (406) a paid run the company's Segmind balance cannot cover; a HIT, a
        JOIN or a replay costs nothing upstream and is still answered."""
        try:
            await self.balance.check()
        except OutOfCredits:
            if await self.store.peek_admission(ask, self.clock.now()) is CacheStatus.MISS:
                raise

    async def _check_webhook(self, url: str) -> None:
        """Refuse, before any cost, a webhook URL that is not public (SSRF); it is checked
        again at connect time, on the very address connected to."""
        try:
            check_url_syntax(url, policy=self.webhook_policy)
            await resolve_and_check(url, self.webhook_policy)
        except WebhookUrlError as exc:
            raise BadInput(f"X-Webhook-Url refused: {exc.message}") from None

    async def _admit(self, ask: AdmissionRequest, inputs: dict[str, Any], team: Team) -> Admission:
        with self.tracing.span("admission", attributes={"gateway.team": team.name}) as span:
            admission = await self.store.admit(ask, self.clock.now())
            span.set_attribute("gateway.cache_status", admission.request.cache_status.value)
        # Its webhook attempts, later and elsewhere, join this request's trace.
        self.tracing.remember(f"request:{admission.request.id}")
        status = admission.request.cache_status
        if admission.replayed:
            return admission
        self.metrics.cache(status.value, team.name)
        if status is CacheStatus.HIT and ask.webhook_url:
            self.deliverer.notify()  # its message was queued with the admission
        if status is not CacheStatus.MISS:
            self.metrics.saved(team.name, self.settings.price)
            if status is CacheStatus.HIT and self.outputs is not None:
                # A HIT uses the run's copies: retention counts from their last use.
                with suppress(StoreError):
                    await self.store.touch_outputs(admission.generation.id, self.clock.now())
            return admission
        self.metrics.spent(team.name, self.settings.price)
        # The paid submit runs as its own task: if the caller goes away mid-flight, the run
        # is still recorded (and its concurrency slot released) rather than orphaned.
        task = asyncio.get_running_loop().create_task(self._start(admission, inputs))
        self._submits.add(task)
        task.add_done_callback(self._submits.discard)
        # Retrieve the outcome even when the caller left, so no error goes unobserved.
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        generation = await asyncio.shield(task)
        return Admission(admission.request, generation, admission.replayed, admission.rate)

    async def _start(self, admission: Admission, inputs: dict[str, Any]) -> Generation:
        """Send a new run now if the company budget has a slot (its upstream errors then
        reach the caller in this answer); otherwise hold it: it is answered QUEUED at once
        and stays WAITING in the store, sent in admission order as the budget allows."""
        generation, request_id = admission.generation, admission.request.id
        self.poller.hold(generation.id, admission.token)
        try:
            if await self.budget.claim_send(generation.id, self.poller.fence(generation.id)) == 0:
                generation = await self.poller.send(generation, answered=request_id, inputs=inputs)
        except StorageUnavailable:
            # The request was admitted (and charged) before the store failed: it is answered
            # with its id, and its run is sent or followed once the store is back.
            log.warning(
                "store unavailable after admission; the run is followed when it is back",
                extra={"generation_id": generation.id, "team_id": generation.owner_team_id},
            )
        finally:
            # Follows it from here, whatever failed: polls a run that was sent, sends one
            # still WAITING, waits for a write the store has yet to take.
            self.poller.track(generation.id)
            self._update_in_flight()
        if generation.status == "WAITING":
            log.info(
                "generation held for the upstream budget",
                extra={"generation_id": generation.id, "team_id": generation.owner_team_id},
            )
        return generation

    # -- poll ---------------------------------------------------------------------------

    def take_read(self, team: Team) -> RateDecision | None:
        """One of the team's reads of the store (a poll, a usage report), counted against
        its `polls_per_minute`: a team reading in a loop cannot load the store for all."""
        limit = team.limits.polls_per_minute
        if limit is None:
            return None
        rate = self.poll_limits.take(team.id, limit, self.clock.now())
        if not rate.allowed:
            raise LimitExceeded(
                f"poll rate limit: team {team.name!r} may poll {limit} times a minute; "
                f"retry in {max(1, round(rate.retry_after))} s (one poll every 7 s is plenty)",
                limit="polls_per_minute",
                retry_after=rate.retry_after,
            )
        return rate

    async def queue_place(self, generation: Generation) -> dict[str, float] | None:
        """Where a run held for an upstream slot stands in the fair queue, as answers say
        it: its position (1: next) and when it should be sent (seconds from now, and the
        time on the gateway's clock); None if it is not held, or the store cannot say."""
        if generation.status != "WAITING":
            return None
        try:
            place = await self.budget.place(generation.id)
        except StoreError:
            return None  # a courtesy: the answer itself stands without it
        if place is None:
            return None
        now = self.clock.now()
        return {
            "position": place.position,
            "estimated_send_at": round(place.send_at, 3),
            "estimated_send_in": round(max(place.send_at - now, 0.0), 3),
        }

    async def poll(self, team: Team, request_id: str) -> PollAnswer:
        rate = self.take_read(team)
        now = self.clock.now()
        finished = self._finished_answers.get((team.id, request_id))
        if finished is not None:
            self._refuse_expired(request_id, finished[2], now)
            return PollAnswer(finished[0], finished[1], rate)
        found = await self.store.request(team.id, request_id)
        if found is None:
            raise NotFound(
                f"no request {request_id!r} for team {team.name!r}: check the id, and use the "
                "poll_url the submit answered"
            )
        request, generation = found
        extra: dict[str, Any] = {}
        if self.outputs is not None and generation.status == "COMPLETED":
            kept, extra = await self._kept_answer(team, generation)
            if kept is not None:
                return PollAnswer(kept, request, rate)
        # Segmind forgets a run (poll: 404) about an hour after it was submitted, and its
        # video URLs die with it; answering COMPLETED for longer would hand out dead links.
        expires = generation.created_at + self.settings.result_ttl
        if generation.terminal:
            self._refuse_expired(request_id, expires, now)
        document = {**poll_body(generation), **extra}
        queue = await self.queue_place(generation)
        if queue is not None:
            document["queue"] = queue  # an extra field: Segmind's shape is kept otherwise
        body = encode(document)
        if generation.terminal and not extra:
            # A terminal state never changes, so its answer can be kept and reused without
            # asking the store again; bounded, oldest first out.
            if len(self._finished_answers) >= FINISHED_ANSWERS:
                self._finished_answers.pop(next(iter(self._finished_answers)))
            self._finished_answers[(team.id, request_id)] = (body, request, expires)
        return PollAnswer(body, request, rate)

    async def _kept_answer(
        self, team: Team, generation: Generation
    ) -> tuple[bytes | None, dict[str, Any]]:
        """A COMPLETED answer naming the gateway's copies, signed now (so never kept for
        reuse), for as long as the copies are kept; else None, and the fields that say why
        the answer names Segmind's URLs (none if mirroring never looked at the run)."""
        assert self.outputs is not None
        state = await self.outputs.state_of(generation.id)
        output, extra = self.outputs.render(team.id, generation.output, state)
        if state is None or not state.kept:
            return None, extra
        return encode({"status": "COMPLETED", "output": output or "", **extra}), extra

    def _refuse_expired(self, request_id: str, expires: float, now: float) -> None:
        if now >= expires:
            raise NotFound(
                f"request {request_id!r} has expired: results are kept "
                f"{self.settings.result_ttl / 60:.0f} minutes after the run was submitted, as "
                "on Segmind, and its video URLs with them; submit again for a new run"
            )

    async def credits(self, team: Team) -> dict[str, float]:
        """What the team can still spend, as Segmind's credits answer: min(day, month) left."""
        day, month = await self.store.spent(team.id, self.clock.now())
        left = [
            budget - spent
            for budget, spent in (
                (team.limits.daily_budget, day),
                (team.limits.monthly_budget, month),
            )
            if budget is not None
        ]
        return {"credits": round(max(min(left), 0.0), 4) if left else 1e9, "free-credits": 0.0}

    # -- what the edge and the console ask ----------------------------------------------

    @property
    def runs_followed(self) -> int:
        """Runs this process is polling now."""
        return self.poller.tracked

    async def upstream_balance(self) -> Balance | None:
        """The company's Segmind balance as last read, with the spend since."""
        return await self.balance.current()

    async def refresh_budget_gauges(self) -> None:
        """Read the teams' budget use into the metrics (before a scrape); with the store
        down the gauges keep their last values, and the rest of the metrics still answer."""
        with suppress(StoreError):
            self.metrics.set_budgets(await self.store.budget_use(self.clock.now()))

    def upstream_calls_by_answer(self) -> list[tuple[str, str, float]]:
        """(kind, status, count) of this process's upstream calls, from its metrics."""
        return self.metrics.upstream_calls()

    def duration_model(self) -> DurationModel:
        """The run durations the poll schedule has learnt."""
        return self.poller.model

    def first_poll_delay(self) -> float:
        """Seconds from a submit to the first poll of its run."""
        return self.poller.first_delay()

    def next_poll_after(self, elapsed: float) -> float:
        """When the schedule polls next (seconds since the run's start) after a poll made
        at `elapsed`."""
        return self.poller.next_poll_after(elapsed)

    async def settle(self) -> None:
        """Return once every poll loop is asleep or finished (after a virtual clock's
        advance, so the answer to it sees what the polls it made due wrote)."""
        await self.poller.settle()

    def notice_received(self) -> None:
        """Count one notification from the upstream (`POST /upstream/events/...`)."""
        self.metrics.hint("received")

    async def follow_notice(self, upstream_ids: list[str]) -> None:
        """Bring the polls of the runs a notification names forward; their pollers hear
        of it. Run after the notification is answered."""
        try:
            hinted = await self.store.hint(upstream_ids, self.clock.now())
        except StoreError as exc:
            # A lost hint costs nothing but time: the schedule polls the run anyway.
            hints_log.warning("upstream notification not applied (store unavailable): %s", exc)
            return
        self.metrics.hint("matched" if hinted else "ignored")

    def wake_deliverer(self) -> None:
        """Look at the outbox now: messages were queued or made due again."""
        self.deliverer.notify()

    # -- bookkeeping --------------------------------------------------------------------

    async def _adopt(self, generations: list[tuple[Generation, int]]) -> None:
        """Runs another gateway process stopped polling: this one polls them now."""
        await self.poller.adopt(generations)
        self._update_in_flight()

    def _finished(self, generation: Generation) -> None:
        self._update_in_flight()
        self.deliverer.notify()  # the terminal state queued its webhook messages
        log.info(
            "generation finished",
            extra={"generation_id": generation.id, "status": generation.status},
        )

    def _update_in_flight(self) -> None:
        self.metrics.set_in_flight(self.poller.tracked + len(self._submits))


def _image_of(workflow_id: str, inputs: dict[str, Any]) -> str | None:
    """The URL of the run's image input, the one the preflight checks: the first `IMAGE`
    input of its registered workflow (None: unregistered, no image input, or the workflow's
    own default image, Segmind's sample on Segmind's storage, which the preflight has
    nothing to learn from and an offline gateway cannot reach)."""
    workflow = workflows.get(workflow_id)
    name = workflow.image_input if workflow is not None else None
    image = inputs.get(name) if name is not None else None
    if workflow is None or not isinstance(image, str) or image == workflow.defaults[name or ""]:
        return None
    return image


def poll_body(generation: Generation) -> dict[str, Any]:
    """The exact shape Segmind answers a poll with, for a generation's current state."""
    status = generation.status
    if status in IN_FLIGHT_STATUSES:
        return {"status": "QUEUED"}
    if status == "COMPLETED":
        return {"status": "COMPLETED", "output": generation.output or ""}
    if status == "FAILED":
        reason = generation.error or "the run failed"
        # Both keys: the API docs read `error_message`, the product page's sample `error`.
        return {"status": "FAILED", "error_message": reason, "error": reason}
    return {"status": status, "output": ""}


def encode(document: dict[str, Any]) -> bytes:
    return json.dumps(document, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
