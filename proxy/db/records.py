"""The rows the store hands out: teams, keys, generations, requests, admissions."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from proxy.core.config import TeamLimits
from proxy.core.quotas import RateDecision

__all__ = [
    "Admission",
    "Attempt",
    "CacheStatus",
    "Endpoint",
    "Generation",
    "Instance",
    "OutboxMessage",
    "RequestRecord",
    "RequestView",
    "RunView",
    "Team",
    "TeamKey",
]


class CacheStatus(StrEnum):
    HIT = "HIT"  # answered from a finished generation: no upstream call, no cost
    JOIN = "JOIN"  # joined a generation already running: no cost
    MISS = "MISS"  # started a new, paid generation


@dataclass(frozen=True)
class Team:
    id: str
    name: str
    created_at: float
    limits: TeamLimits
    webhook_secret: str | None = None
    webhook_url: str | None = None  # where the team's own events go (budget thresholds)


@dataclass(frozen=True)
class TeamKey:
    prefix: str  # enough to tell keys apart in lists and logs; never the whole key
    team_name: str
    created_at: float
    revoked_at: float | None


@dataclass(frozen=True)
class Generation:
    """One paid upstream job, possibly shared by many requests."""

    id: str
    scope_key: str
    workflow_id: str
    owner_team_id: str
    upstream_id: str | None
    # WAITING (admitted, never sent: safe to send later, by any process, or to refund),
    # SUBMITTING (sent: an unconfirmed answer may be charged), then the upstream's words.
    status: str
    terminal: bool
    output: str | None
    error: str | None
    # Admitted at while WAITING (its place in the queue); once sent, when it was sent: the
    # poll schedule, the deadline and the results' expiry count from the upstream's start.
    created_at: float
    updated_at: float
    finished_at: float | None
    next_poll_at: float | None
    failing_since: float | None
    cost: float


@dataclass(frozen=True)
class RequestRecord:
    """One team's call; its id is what the team polls."""

    id: str
    team_id: str
    generation_id: str
    created_at: float
    cache_status: CacheStatus
    webhook_url: str | None
    idempotency_key: str | None


@dataclass(frozen=True)
class Admission:
    request: RequestRecord
    generation: Generation
    replayed: bool  # an Idempotency-Key replay of an earlier request
    rate: RateDecision | None  # the submit-rate decision, for the RateLimit fields
    token: int | None = None  # a new run's lease fencing token, for the process polling it


@dataclass(frozen=True)
class OutboxMessage:
    id: str  # the webhook-id: stable across attempts and resends
    request_id: str
    team_id: str
    url: str
    event: str
    body: bytes
    state: str
    attempts: int
    next_attempt_at: float | None
    created_at: float
    last_error: str | None

    def public(self) -> dict[str, Any]:
        return {
            "webhook_id": self.id,
            "request_id": self.request_id,
            "url": self.url,
            "event": self.event,
            "state": self.state,
            "attempts": self.attempts,
            "next_attempt_at": self.next_attempt_at,
            "created_at": self.created_at,
            "last_error": self.last_error,
        }


@dataclass(frozen=True)
class Attempt:
    attempt: int
    at: float
    status_code: int | None
    latency_ms: float | None
    response: str | None
    error: str | None


@dataclass(frozen=True)
class Instance:
    """A gateway process as the store knows it: for operators (`/admin/instances`)."""

    id: str
    alive_until: float
    runs: int  # unfinished runs leased to it

    def public(self, now: float) -> dict[str, Any]:
        return {
            "id": self.id,
            "alive": self.alive_until >= now,
            "alive_until": self.alive_until,
            "runs": self.runs,
        }


# -- what operators look at (the console): rows joined for reading, never written back ---


@dataclass(frozen=True)
class RunView:
    """A run with its owner's name and how many requests share it."""

    generation: Generation
    team_name: str
    requests: int


@dataclass(frozen=True)
class RequestView:
    """A team's request with its team's name and the run it was answered from."""

    request: RequestRecord
    team_name: str
    generation: Generation


@dataclass(frozen=True)
class Endpoint:
    """One team's webhook URL, summed over its messages."""

    team_name: str
    url: str
    messages: int
    attempts: int
    pending: int
    failed: int  # failed or disabled: what `recover` would queue again
    next_attempt_at: float | None
    last_error: str | None
    last_message_id: str
