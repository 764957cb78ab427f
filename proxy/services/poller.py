"""One poll loop per running generation, never one per request, and with several gateway
processes on one store, in only the process that holds the run's lease (`heartbeat.py`,
`proxy/rules/leases.py`).

Each loop sleeps on the gateway's clock until the generation's `next_poll_at` (kept in the
store, so a restart resumes the schedule), asks the upstream once through the global
budget, and writes what it heard. Upstream 5xx, 429 and network errors are retried with
backoff; a run is failed only after `give_up_after` seconds of failures in a row, or once
it passes `generation_deadline`. A terminal state is written with its cache entry (or
refund) in one transaction.

With upstream events on (`upstream_events_secret`, see `proxy/edge/events.py`), a notification
brings a run's `next_poll_at` forward in the store and every process hears of it
(`hint:<run>` news): the loop following that run wakes, reads it again and polls. The schedule then
only has to catch the runs whose notification is lost, so it aims at the longer
`upstream_events_poll_delay`. Where news from other processes may not arrive (SQLite
shared by several processes), a sleeping loop reads its run again every `HINT_RECHECK`
seconds.

`settle()` waits until every loop is asleep again: tests advance the virtual clock, then
settle, and so never sleep for real.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from collections.abc import Callable
from typing import Any

import client
from proxy.core.clock import Clock
from proxy.core.config import ProxySettings
from proxy.core.errors import GatewayError, UnconfirmedSubmit
from proxy.core.schedule import PRIOR_MEDIAN, DurationModel, PollSchedule
from proxy.db import Generation, StorageUnavailable
from proxy.rules import Fence, LeaseLost
from proxy.services.outputs import OutputService
from proxy.services.recorder import Recorder
from proxy.services.upstream import Upstream
from proxy.store import Store

__all__ = ["Poller"]

log = logging.getLogger("proxy.poller")

MAX_BACKOFF = 120.0
STORE_RETRY = 5.0  # seconds before a poll loop tries a store it could not reach again
MODEL_KEY = "poller.duration_model"
MAX_INTERVAL = 600.0  # seconds between polls at most, at the real durations' scale
HINTED_MAX_INTERVAL = 1800.0  # the same with upstream events on
HINT_RECHECK = 5.0  # seconds a loop sleeps at most when hints may come unheard
# A run sent but not yet recorded as sent (SUBMITTING, no upstream id) is left alone this
# long (run-clock seconds since it was sent) by a process that took it over: its sender may
# still be recording the id it got, its store having failed at that moment.
SUBMIT_GRACE = 120.0


class Poller:
    def __init__(
        self,
        store: Store,
        upstream: Upstream,
        clock: Clock,
        settings: ProxySettings,
        instance: str,
        on_terminal: Callable[[Generation], None] | None = None,
        wall: Clock | None = None,
        outputs: OutputService | None = None,
    ) -> None:
        self.store = store
        # Store outages are real time whatever clock runs are on: a write that must land
        # is retried on this one.
        self.wall = wall or clock
        # Kept outputs: a COMPLETED run's files are copied before it is recorded so.
        self.outputs = outputs
        # The gateway process this poller runs in: it polls only the runs leased to it.
        self.instance = instance
        self.upstream = upstream
        self.clock = clock
        self.settings = settings
        self.on_terminal = on_terminal or (lambda generation: None)
        # The schedule's inner intervals scale with the expected run, so a time-scaled
        # fake (runs of seconds) is polled as densely, relatively, as the real one.
        scale = settings.expected_run_seconds / PRIOR_MEDIAN
        self.model = DurationModel(prior_median=settings.expected_run_seconds)
        self.hints = settings.upstream_events_secret is not None
        # With hints, the schedule only catches runs whose notification was lost: its
        # first poll may come later than 10 minutes in (after most runs have ended).
        longest = (HINTED_MAX_INTERVAL if self.hints else MAX_INTERVAL) * scale
        self.schedule = PollSchedule(
            min_interval=settings.poll_min_interval,
            max_interval=max(longest, settings.poll_min_interval),
            target_delay=(
                settings.upstream_events_poll_delay if self.hints else settings.poll_target_delay
            ),
            tail_interval=max(30.0 * scale, settings.poll_min_interval),
            queued_interval=max(60.0 * scale, settings.poll_min_interval),
            probe=not self.hints,  # notifications say when runs end: no need to probe
        )
        self._tasks: dict[str, asyncio.Task[None]] = {}
        # The lease each run is polled under: every write of its state names it, and a
        # write under a lease another process has since taken over is refused.
        self._fences: dict[str, Fence] = {}
        # Sends of held runs under way: a stop lets them finish (bounded by the upstream
        # timeout) rather than leave a run that went out as "cannot be known".
        self._sending: set[asyncio.Task[Generation]] = set()
        # What Segmind answered that the store refused at that moment: written as soon as
        # it takes it (`recorder.py`). What only this process knows is never dropped.
        self.recorder = Recorder(self.wall, lambda run: self.on_terminal(run))
        self._busy = 0
        self._idle = asyncio.Event()
        self._idle.set()
        # Set when a notification may have brought a run's next poll forward.
        self._woken: dict[str, asyncio.Event] = {}
        self._listening = False

    @property
    def tracked(self) -> int:
        return len(self._tasks)

    def fence(self, generation_id: str) -> Fence | None:
        return self._fences.get(generation_id)

    def hold(self, generation_id: str, token: int | None) -> None:
        """Remember the lease (fencing token) this process holds a run under."""
        if token is not None:
            self._fences[generation_id] = Fence(self.instance, token)

    def track(self, generation_id: str) -> None:
        if generation_id in self._tasks:
            return
        self._enter()
        task = asyncio.get_running_loop().create_task(
            self._run(generation_id), name=f"poll {generation_id}"
        )
        self._tasks[generation_id] = task
        task.add_done_callback(lambda _: self._forget(generation_id))

    def _forget(self, generation_id: str) -> None:
        self._tasks.pop(generation_id, None)
        self._fences.pop(generation_id, None)
        self._woken.pop(generation_id, None)

    def _news(self, channel: str) -> None:
        # A hint names its run: only that run's loop reads it again. "*" (news may have
        # been missed while the listener reconnected): every loop reads its own again.
        if channel == "*":
            for woken in self._woken.values():
                woken.set()
            return
        kind, _, generation_id = channel.partition(":")
        bell = self._woken.get(generation_id) if kind == "hint" else None
        if bell is not None:
            bell.set()

    def first_delay(self) -> float:
        """Seconds from a submit to the first poll of its run."""
        if self.settings.poll_schedule == "fixed":
            return self.settings.poll_interval
        return self.schedule.delay(0.0, self.model)

    def next_poll_after(self, elapsed: float) -> float:
        """When the schedule polls a run next (seconds since its start) after a poll at
        `elapsed` that saw it still going."""
        if self.settings.poll_schedule == "fixed":
            return elapsed + self.settings.poll_interval
        return elapsed + self.schedule.delay(elapsed, self.model)

    def _next_delay(self, generation: Generation, now: float, status: str) -> float:
        if self.settings.poll_schedule == "fixed":
            return self.settings.poll_interval
        return self.schedule.delay(now - generation.created_at, self.model, status)

    async def _learn(self, generation: Generation, now: float) -> None:
        """Feed a finished run's duration to the model, and keep the model in the store."""
        # The last poll (QUEUED or running) saw it unfinished; never polled: about 0.
        running_at = max(generation.updated_at - generation.created_at, 0.0)
        try:
            self.model.observe(max(now - generation.created_at, 1e-3), running_at)
        except ValueError:
            return  # a duration the model cannot take (e.g. beyond its bounds): skip it
        await self.store.kv_set(MODEL_KEY, json.dumps(self.model.to_json()))

    async def resume(self, claimed: list[tuple[Generation, int]]) -> int:
        """At start: load what was learnt, then adopt the runs this process claimed (its
        own from before a restart, and any whose process died); returns how many it polls."""
        if self.hints and not self._listening:
            self.store.subscribe(self._news)
            self._listening = True  # once, though a store down at start makes this run again
        saved = await self.store.kv_get(MODEL_KEY)
        if saved:
            try:
                self.model = DurationModel.from_json(json.loads(saved))
            except (ValueError, KeyError, TypeError):
                log.warning("the stored duration model is unreadable; starting from the prior")
        return await self.adopt(claimed, restarted=True)

    async def adopt(
        self, generations: list[tuple[Generation, int]], *, restarted: bool = False
    ) -> int:
        """Poll these runs from now on, and send the held ones (WAITING: never sent). A run
        cut off mid-submit (SUBMITTING, no upstream id) is failed, since whether the
        upstream started it cannot be known: at once after a restart (what this process
        heard died with it), after `SUBMIT_GRACE` when another process may still record
        it. Returns how many it follows."""
        polled = 0
        for generation, token in generations:
            self.hold(generation.id, token)
            if (
                generation.upstream_id is None
                and generation.status != "WAITING"
                and (restarted or self._past_grace(generation))
            ):
                await self._give_up_unsent(generation)
                continue
            self.track(generation.id)
            polled += 1
        return polled

    def _past_grace(self, generation: Generation) -> bool:
        return self.clock.now() - generation.updated_at >= SUBMIT_GRACE

    async def _give_up_unsent(self, generation: Generation) -> None:
        await self._finish(
            generation,
            "FAILED",
            error="the gateway stopped while submitting this run, so whether Segmind "
            "started it cannot be known; submit it again",
        )

    async def settle(self) -> None:
        """Return once every loop is asleep or finished.

        Loops woken by a clock advance count as busy only once they run, so yield first.
        """
        await asyncio.sleep(0)
        while self._busy:
            await self._idle.wait()
            await asyncio.sleep(0)

    async def close(self) -> None:
        """Stop every loop at once: runs waiting for the budget stay WAITING in the store,
        for a restart or another process. Only sends already under way are finished."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)
        self.recorder.close()

    # -- sending a paid run -------------------------------------------------------------

    async def send(
        self,
        generation: Generation,
        answered: str | None = None,
        inputs: dict[str, Any] | None = None,
    ) -> Generation:
        """Submit a run whose budget slot was claimed (it is SUBMITTING); returns it QUEUED,
        or WAITING again if Segmind's rate limiter refused it (nothing started). Any other
        upstream error fails the run (refunded unless it may have started) and is raised;
        the request `answered` gets it in its answer, the others by webhook."""
        if inputs is None:  # a held run: sent from what the store kept
            inputs = await self.store.generation_inputs(generation.id)
        try:
            upstream_id = await self.upstream.submit(generation.workflow_id, inputs, generation.id)
        except GatewayError as exc:
            # Joined requests see the failure; the concurrency slot comes back. The money
            # comes back only if no run can have started, or the operators said so.
            unconfirmed = isinstance(exc, UnconfirmedSubmit)
            refund = not unconfirmed or self.settings.failed_runs == "refund"
            fence, now, error = self.fence(generation.id), self.clock.now(), exc.message
            await self.recorder.record(
                generation.id,
                lambda: self.store.record_status(
                    generation.id, "FAILED", now, fence=fence, error=error,
                    terminal=True, refund=refund, answered=answered,
                ),
            )  # fmt: skip
            if unconfirmed:
                log.warning(
                    "unconfirmed submit: a paid run may exist upstream with no id here",
                    extra={"generation_id": generation.id, "team_id": generation.owner_team_id},
                )
                # Only the paying request's answer speaks of its team's money.
                exc.message += (
                    "; nothing was charged to your team (failed runs are refunded here)"
                    if refund
                    else f"; your team was charged ${generation.cost:.2f} for it, as the "
                    "company may have been"
                )
            raise
        if upstream_id is None:
            log.info(
                "upstream rate limit: run %s waits for the budget again", generation.id,
                extra={"generation_id": generation.id, "team_id": generation.owner_team_id},
            )  # fmt: skip
            await self.recorder.record(generation.id, lambda: self._unclaim(generation.id))
            return dataclasses.replace(generation, status="WAITING")
        now = self.clock.now()
        first_poll = now + self.first_delay()
        log.info(
            "generation started",
            extra={"generation_id": generation.id, "team_id": generation.owner_team_id},
        )
        try:
            return await self.store.mark_submitted(
                generation.id, upstream_id, now, first_poll, self.fence(generation.id)
            )
        except StorageUnavailable:
            pass
        # Segmind accepted (and charged) the run; its id is known only here. It is kept
        # until the store takes it, and the run is followed from then on: the caller is
        # answered with its request, which the store already holds.
        log.warning(
            "store unavailable as Segmind accepted run %s: its id is kept until the store "
            "takes it", generation.id,
            extra={"generation_id": generation.id, "team_id": generation.owner_team_id},
        )  # fmt: skip
        self.recorder.record_later(
            generation.id,
            lambda: self.store.record_late_upstream_id(generation.id, upstream_id, now, first_poll),
        )
        return dataclasses.replace(
            generation, upstream_id=upstream_id, status="QUEUED", created_at=now,
            updated_at=now, next_poll_at=first_poll,
        )  # fmt: skip

    async def _unclaim(self, generation_id: str) -> Generation:
        await self.upstream.budget.unclaim_send(generation_id)
        return await self.store.generation(generation_id)

    async def _send_held(self, generation: Generation) -> None:
        """One turn for a held run: send it if its turn and the budget allow, else sleep
        until they might."""
        wait = await self.upstream.budget.claim_send(generation.id, self.fence(generation.id))
        if wait < 0:
            return  # no longer WAITING (another process sent it): read it again
        if wait > 0:
            await self._sleep(wait)
            return
        task = asyncio.get_running_loop().create_task(self.send(generation))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        with contextlib.suppress(GatewayError):  # recorded FAILED, told by webhook
            await asyncio.shield(task)

    # -- the loop -----------------------------------------------------------------------

    def _enter(self) -> None:
        self._busy += 1
        self._idle.clear()

    def _leave(self) -> None:
        self._busy -= 1
        if not self._busy:
            self._idle.set()

    async def _sleep(self, seconds: float, generation_id: str | None = None) -> None:
        self._leave()
        try:
            if self.hints and generation_id is not None:
                await self._sleep_unless_woken(seconds, generation_id)
            else:
                await self.clock.sleep(seconds)
        finally:
            self._enter()

    async def _wait_for(self, recording: asyncio.Task[None]) -> None:
        """Wait, not busy (a test's settle goes on), for a write the store must take."""
        self._leave()
        try:
            await asyncio.wait({recording})
        finally:
            self._enter()

    async def _sleep_unless_woken(self, seconds: float, generation_id: str) -> None:
        """Sleep until the run's next poll, or until a hint may have moved it. A wake that
        came while the loop was reading the store ends the sleep at once: it reads again."""
        if not self.store.backend.hears_everyone:
            seconds = min(seconds, HINT_RECHECK)
        woken = self._woken.setdefault(generation_id, asyncio.Event())
        nap = asyncio.ensure_future(self.clock.sleep(seconds))
        bell = asyncio.ensure_future(woken.wait())
        try:
            await asyncio.wait({nap, bell}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            nap.cancel()
            bell.cancel()
        woken.clear()

    async def _run(self, generation_id: str) -> None:
        try:
            while True:
                try:
                    recording = self.recorder.pending(generation_id)
                    if recording is not None:
                        await self._wait_for(recording)
                        continue
                    generation = await self.store.generation(generation_id)
                    if generation.terminal:
                        return
                    if generation.upstream_id is None:
                        if not await self._holds(generation_id):
                            return
                        if generation.status == "WAITING":
                            await self._send_held(generation)
                        elif self._past_grace(generation):
                            await self._give_up_unsent(generation)
                        else:  # its sender may still record its id: look again soon
                            await self._sleep(STORE_RETRY)
                        continue
                    wait = (generation.next_poll_at or self.clock.now()) - self.clock.now()
                    if wait > 0:
                        await self._sleep(wait, generation_id)
                        continue  # read it again: the state may have moved meanwhile
                    if not await self._holds(generation_id):
                        return
                    await self._poll_once(generation)
                except LeaseLost as exc:
                    log.warning("%s", exc.message)
                    return
                except StorageUnavailable:
                    # Locked or unreachable for a moment (every poll writes the store, for
                    # the shared upstream budget too): the run is not lost, so try again.
                    log.warning(
                        "store unavailable while polling generation %s; retrying in %.0f s",
                        generation_id,
                        STORE_RETRY,
                    )
                    await self._sleep(STORE_RETRY)
        except asyncio.CancelledError:
            raise
        except Exception:
            # A bug: log it; a restart (resume) picks the run up again.
            log.exception("poll loop for generation %s stopped", generation_id)
        finally:
            self._leave()

    async def _holds(self, generation_id: str) -> bool:
        """Whether this process still polls the run: another takes it over if this one's
        heartbeat lapsed (a process paused for longer than its lease). Only a cheap early
        look: the fencing token on every write is what keeps a late writer out."""
        held = await self.store.lease(generation_id)
        holder = None if held is None else held[0]
        fence = self.fence(generation_id)
        if (
            held is not None
            and holder == self.instance
            and (fence is None or fence.token == held[1])
        ):
            return True
        if holder is not None:
            log.warning(
                "generation %s is polled by instance %s now; this one stops", generation_id, holder
            )
        return False

    async def _poll_once(self, generation: Generation) -> None:
        settings, now = self.settings, self.clock.now()
        assert generation.upstream_id is not None
        if now - generation.created_at > settings.generation_deadline:
            await self._finish(
                generation,
                "FAILED",
                error=f"gave up: Segmind did not finish this run within "
                f"{settings.generation_deadline:.0f} s of submission",
            )
            return
        try:
            status = await self.upstream.status(generation.upstream_id, self._sleep, generation.id)
        except client.NotFound as exc:
            age = self.clock.now() - generation.created_at
            if age < settings.result_ttl:
                # Too young to have expired: an upstream restart or a proxy's hiccup, more
                # likely than a run Segmind lost. Retried like any failed poll, within the
                # run's deadline.
                await self._failed_poll(
                    generation, exc, why=f"Segmind answered 404 (no such run) for a run sent "
                    f"{age:.0f} s before, well within the hour it keeps results",
                )  # fmt: skip
                return
            await self._finish(
                generation,
                "FAILED",
                error="Segmind no longer knows this run (its results expire an hour after "
                "submission); submit it again",
                polled=True,
            )
            return
        except client.SegmindError as exc:
            await self._failed_poll(generation, exc)
            return
        now = self.clock.now()
        if status.state.terminal:
            output = status.output
            if output is not None and not isinstance(output, str):
                output = json.dumps(output)
            await self._finish(
                generation,
                status.state.value,
                output=output,
                error=status.error or ("Segmind reported the run FAILED" if status.state
                                       is client.JobState.FAILED else None),
                polled=True,
            )  # fmt: skip
            return
        await self.store.record_status(
            generation.id,
            status.status,
            now,
            fence=self.fence(generation.id),
            next_poll_at=now + self._next_delay(generation, now, status.status),
            polled=True,
        )

    async def _failed_poll(
        self, generation: Generation, exc: client.SegmindError, why: str | None = None
    ) -> None:
        now = self.clock.now()
        failing_since = generation.failing_since or now
        if now - failing_since >= self.settings.give_up_after:
            what = why or f"{type(exc).__name__}: {exc.message}"
            await self._finish(
                generation,
                "FAILED",
                error=f"gave up: Segmind could not be polled for "
                f"{self.settings.give_up_after:.0f} s ({what}); submit it again",
                polled=True,
            )
            return
        streak = max(now - failing_since, 0.0)
        backoff = min(max(self.settings.poll_interval, streak / 2), MAX_BACKOFF)
        retry_after = getattr(exc, "retry_after", None)
        if retry_after:
            backoff = max(backoff, float(retry_after))
        log.warning(
            "poll of generation %s failed (%s); retrying in %.0f s",
            generation.id,
            type(exc).__name__,
            backoff,
        )
        await self.store.record_poll_failure(
            generation.id, now, now + backoff, self.fence(generation.id)
        )

    async def _finish(
        self, generation: Generation, status: str, *, output: str | None = None,
        error: str | None = None, polled: bool = False,
    ) -> None:  # fmt: skip
        ran = generation.upstream_id is not None and status in ("COMPLETED", "FAILED")
        if ran and not (error or "").startswith("gave up"):
            await self._learn(generation, self.clock.now())
        refund = status != "COMPLETED" and self.settings.failed_runs == "refund"
        kept, note, retry_at, cache_ttl = None, None, None, self.settings.cache_ttl
        if status == "COMPLETED" and self.outputs is not None:
            # Before the run is recorded COMPLETED: no answer or webhook names a copy that
            # is not there. A process killed meanwhile leaves the run running; the next
            # holder of its lease polls it again and copies it (content addressed: once).
            kept, note = await self.outputs.copy(output)
            retry_at = self.outputs.retry_at(self.clock.now(), note)
            cache_ttl = self.outputs.cache_ttl(kept)
        finished = await self.store.record_status(
            generation.id,
            status,
            self.clock.now(),
            fence=self.fence(generation.id),
            output=output,
            error=error,
            terminal=True,
            cache_ttl=cache_ttl,
            refund=refund,
            polled=polled,
            kept=kept,
            mirror_note=note,
            mirror_retry_at=retry_at,
        )
        self.on_terminal(finished)
