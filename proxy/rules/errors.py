"""The rules' exception tree: what a rule refuses, in words, never in HTTP. The edge
(`proxy/edge/responses.py`: the API, the admin API, the console) and the command line map
each to their answer.

    RuleError
    ├── LimitReached          a team's limit refuses this now (`limit`, `retry_after`)
    ├── IdempotencyMismatch   an Idempotency-Key reused with a different body
    ├── TeamExists            a team name already taken
    ├── UnknownTeam           no team of that name
    ├── BadPeriod             a report's days out of order, or too many of them
    └── LeaseLost             this process no longer holds the run it tried to write
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BUDGET_LIMITS",
    "BadPeriod",
    "IdempotencyMismatch",
    "LeaseLost",
    "LimitReached",
    "RuleError",
    "TeamExists",
    "UnknownTeam",
]

BUDGET_LIMITS = ("daily_budget", "monthly_budget")  # money, not rate: they reset by the day


class RuleError(Exception):
    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra


class LimitReached(RuleError):
    def __init__(self, message: str, *, limit: str, retry_after: float) -> None:
        super().__init__(message)
        self.limit = limit
        self.retry_after = retry_after


class IdempotencyMismatch(RuleError):
    pass


class TeamExists(RuleError):
    pass


class UnknownTeam(RuleError):
    pass


class LeaseLost(RuleError):
    pass


class BadPeriod(RuleError):
    pass
