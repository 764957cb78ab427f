"""Everything one fake server holds: accounts, jobs, journal, faults, on one clock."""

from __future__ import annotations

import random
import threading
import uuid
from urllib.parse import urlsplit

from .accounts import Accounts
from .catalog import CHARACTER_VIDEO, Workflow, default_catalog
from .clock import Clock, SystemClock, VirtualClock
from .faults import ChaosSettings, FaultPlan
from .jobs import (
    DEAD_IMAGE_SHARE,
    FAILURE_REASONS,
    IMAGE_UNREACHABLE,
    DurationModel,
    Job,
    JobPlan,
    Outcome,
    state_of,
)
from .journal import Journal
from .notify import Notifier, NotifySettings
from .outputs import OutputFiles
from .persist import StateFile, job_from_json
from .prefer import Preferences
from .settings import DEMO_KEY, FakeSettings

__all__ = ["FakeState"]

SWEEP_EVERY = 1000  # submits between sweeps of expired jobs


def in_proportion(base: float, own: float, reference: float) -> float:
    """A figure set for the character video (`base`: the price, a duration), for another
    workflow: scaled by its registry figure (`own`) over the character video's
    (`reference`). Exactly `base` for the character video itself."""
    return base if own == reference or reference <= 0 else base * own / reference


class FakeState:
    def __init__(self, settings: FakeSettings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock: Clock = clock or (
            VirtualClock() if settings.clock == "virtual" else SystemClock()
        )
        self.catalog: dict[str, Workflow] = default_catalog(
            tuple(settings.output_keys) if settings.output_keys else None
        )
        self.accounts = Accounts(
            (settings.credits, settings.rate_limit) if settings.any_key else None
        )
        no_demo_key = settings.restricted_keys or settings.any_key
        keys = settings.api_keys or ([] if no_demo_key else [DEMO_KEY])
        for key in keys:
            self.accounts.add(key, credits=settings.credits, rate_limit=settings.rate_limit)
        for key in settings.restricted_keys:
            self.accounts.add(
                key, credits=settings.credits, rate_limit=settings.rate_limit, workflows=()
            )
        self.durations = DurationModel(
            median=settings.duration_median,
            sigma=settings.duration_sigma,
            minimum=settings.duration_min,
            maximum=settings.duration_max,
            time_scale=settings.time_scale,
        )
        self.journal = Journal(self.clock, settings.journal_size)
        self.faults = FaultPlan(
            ChaosSettings(
                error_rate=settings.chaos_error_rate,
                fault_rate=settings.chaos_fault_rate,
                delay_rate=settings.chaos_delay_rate,
                delay_ms=settings.chaos_delay_ms,
                delay_kind=settings.chaos_delay_kind,
                seed=settings.seed,
            )
        )
        self.notifier = Notifier(
            NotifySettings(settings.notify_url, settings.notify_delay, settings.notify_drop_rate),
            self.clock,
            settings.base_url,
            settings.seed,
        )
        self.jobs: dict[str, Job] = {}
        self.outputs = OutputFiles(settings.output_ttl, settings.asset_bytes)
        self._rng = random.Random(settings.seed)
        self._lock = threading.Lock()
        self._submits = 0
        self.state_file = StateFile(settings.state_file) if settings.state_file else None
        if self.state_file is not None:
            self._restore(self.state_file)

    def _restore(self, state_file: StateFile) -> None:
        """Take up what the previous run of the fake saved: its jobs at the stage they had
        reached, the credits left, and a virtual clock's time."""
        saved = state_file.load()
        if saved is None:
            return
        if isinstance(self.clock, VirtualClock) and saved["now"] > self.clock.now():
            self.clock.advance(saved["now"] - self.clock.now())
        for document in saved["jobs"]:
            job = job_from_json(document)
            self.jobs[job.id] = job
        for label, credits in saved["credits"].items():
            account = self.accounts.by_label(label)
            if account is not None:
                account.credits = credits

    def persist(self) -> None:
        """Save jobs, credits and the clock, if the fake keeps them (`--state-file`)."""
        if self.state_file is None:
            return
        with self._lock:
            jobs = list(self.jobs.values())
        credits = {account.label: account.credits for account in self.accounts.all()}
        self.state_file.save(self.clock.now(), jobs, credits)

    def new_job(
        self, workflow: Workflow, account: str, inputs: dict[str, str], prefs: Preferences
    ) -> Job:
        with self._lock:
            rng = self._rng
            request_id = (
                f"{rng.getrandbits(128):032x}"
                if self.settings.seed is not None
                else uuid.uuid4().hex
            )
            duration = in_proportion(
                self.durations.sample(rng), workflow.run_seconds, CHARACTER_VIDEO.run_seconds
            )
            failed = rng.random() < self.settings.failure_rate
            reason = rng.choice(FAILURE_REASONS)
            self._submits += 1
            if self._submits % SWEEP_EVERY == 0:
                self._sweep()
        dead_host = self._dead_image_host(inputs)
        if dead_host is not None:
            # Accepted (and charged) like any run: Segmind learns only when it loads the
            # image, early in the run, that it cannot.
            duration *= DEAD_IMAGE_SHARE
            failed, reason = True, IMAGE_UNREACHABLE.format(host=dead_host)
        if prefs.duration is not None:
            duration = prefs.duration
        outcome = prefs.outcome or (Outcome.FAILED if failed else Outcome.COMPLETED)
        plan = JobPlan(
            outcome=outcome,
            duration=duration,
            queued_for=duration * self.settings.queued_fraction,
            polls_per_state=prefs.polls,
            processing_status=prefs.status or "PROCESSING",
            failure_reason=reason,
        )
        digest = workflow.digest(inputs)
        job = Job(
            id=request_id,
            workflow_id=workflow.id,
            account=account,
            inputs=inputs,
            digest=digest,
            created_at=self.clock.now(),
            plan=plan,
            outputs=[
                {
                    "keyname": key,
                    "value": {
                        "data": f"{self.settings.base_url}/assets/{digest}/scene_{n}.mp4",
                        "type": workflow.output_type_of(n - 1),
                    },
                }
                for n, key in enumerate(workflow.output_keys, start=1)
            ],
        )
        self.jobs[request_id] = job
        if outcome is Outcome.COMPLETED:
            self.outputs.made(digest, job.created_at + duration)
        self.notifier.schedule(job)
        self.persist()
        return job

    def price_of(self, workflow: Workflow) -> float:
        """What a run of `workflow` costs: the price setting, which is the character
        video's, in proportion to the registry's prices."""
        return in_proportion(self.settings.price, workflow.price, CHARACTER_VIDEO.price)

    def _dead_image_host(self, inputs: dict[str, str]) -> str | None:
        """The host of the run's character image if it is one the fake cannot load."""
        dead = self.settings.dead_image_hosts
        if not dead:
            return None
        # Inputs are canonical here: a body that omitted the image has the default.
        host = (urlsplit(inputs.get("Character_Image", "")).hostname or "").lower()
        return host if host in {name.lower() for name in dead} else None

    def _sweep(self) -> None:
        now, ttl = self.clock.now(), self.settings.result_ttl
        for request_id in [j.id for j in self.jobs.values() if state_of(j, now, ttl) is None]:
            self.jobs.pop(request_id, None)
        self.outputs.sweep(now)

    def reset(self) -> None:
        """Forget jobs, journal and scripts; credits and rate windows back to the start."""
        with self._lock:
            self.jobs.clear()
        self.outputs.reset()
        self.journal.reset()
        self.notifier.reset()
        self.faults.reset()
        self.accounts.reset()
