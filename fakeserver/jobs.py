"""Jobs on a clock: the state of a job is a pure function of its plan, the time and its polls.

Because the state is computed, never stored, it cannot move backwards: time and the poll
count only grow, and each maps to a stage that only grows. A job is QUEUED, then
PROCESSING, then COMPLETED or FAILED (or PROCESSING for ever, for `outcome=never`), and
is gone (404) once its result lifetime has passed.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field
from enum import StrEnum

__all__ = [
    "DurationModel",
    "Job",
    "JobPlan",
    "JobState",
    "Outcome",
    "poll_body",
    "state_of",
]


class JobState(StrEnum):
    QUEUED = "QUEUED"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"

    @property
    def terminal(self) -> bool:
        return self in (JobState.COMPLETED, JobState.FAILED)


class Outcome(StrEnum):
    """How a job ends; chosen when it is submitted."""

    COMPLETED = "completed"
    FAILED = "failed"
    NEVER = "never"  # stays PROCESSING until it expires

    @classmethod
    def parse(cls, value: str) -> Outcome:
        try:
            return cls(value.lower())
        except ValueError:
            valid = ", ".join(o.value for o in cls)
            raise ValueError(f"outcome must be one of {valid}; got {value!r}") from None


IMAGE_UNREACHABLE = (
    "Workflow execution failed: could not load Character_Image from {host} "
    "(unreachable or not an image)"
)
DEAD_IMAGE_SHARE = 0.1  # the image is loaded first: such a run fails a tenth of the way in

FAILURE_REASONS = (
    "Workflow execution failed: the character image could not be processed",
    "Workflow execution failed: video node timed out",
    "Workflow execution failed: content policy violation in scene prompt",
)


@dataclass(frozen=True)
class DurationModel:
    """Lognormal run durations around the real median, clamped, then time-scaled."""

    median: float = 673.9
    sigma: float = 0.2
    minimum: float = 300.0
    maximum: float = 1800.0
    time_scale: float = 1.0

    def sample(self, rng: random.Random) -> float:
        raw = self.median * math.exp(self.sigma * rng.gauss(0.0, 1.0))
        return min(max(raw, self.minimum), self.maximum) * self.time_scale


@dataclass(frozen=True)
class JobPlan:
    """The fate of one job, fixed at submit time."""

    outcome: Outcome
    duration: float  # clock seconds from submit to the terminal state
    queued_for: float  # clock seconds spent QUEUED before PROCESSING
    polls_per_state: int | None = None  # moto-style: advance after N polls, not after time
    processing_status: str = JobState.PROCESSING.value
    failure_reason: str = FAILURE_REASONS[0]


@dataclass
class Job:
    id: str
    workflow_id: str
    account: str  # the key's label, never the key
    inputs: dict[str, str]
    digest: str
    created_at: float
    plan: JobPlan
    polls: int = 0
    outputs: list[dict[str, object]] = field(default_factory=list)


_STAGES = (JobState.QUEUED, JobState.PROCESSING)


def state_of(job: Job, now: float, ttl: float) -> JobState | None:
    """The job's state at `now` after `job.polls` polls; None once it has expired."""
    if now >= job.created_at + ttl:
        return None
    plan = job.plan
    if plan.polls_per_state is not None:
        stage = max(job.polls - 1, 0) // plan.polls_per_state
    else:
        elapsed = now - job.created_at
        stage = 0 if elapsed < plan.queued_for else 1 if elapsed < plan.duration else 2
    if stage < len(_STAGES):
        return _STAGES[stage]
    if plan.outcome is Outcome.NEVER:
        return JobState.PROCESSING
    return JobState.COMPLETED if plan.outcome is Outcome.COMPLETED else JobState.FAILED


def poll_body(job: Job, state: JobState, failure_key: str) -> dict[str, object]:
    """The exact poll answer Segmind gives for a state (SEGMIND_API.md, step 3)."""
    if state is JobState.QUEUED:
        return {"status": "QUEUED"}
    if state is JobState.PROCESSING:
        return {"status": job.plan.processing_status, "output": ""}
    if state is JobState.COMPLETED:
        return {"status": "COMPLETED", "output": json.dumps(job.outputs)}
    body: dict[str, object] = {"status": "FAILED"}
    for key in ("error_message", "error") if failure_key == "both" else (failure_key,):
        body[key] = job.plan.failure_reason
    return body
