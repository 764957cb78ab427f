"""The gateway's rules, written once above the store: admission (HIT, JOIN or MISS,
idempotency, submit rate, concurrency, budgets), a run's states, refunds, the webhook
outbox, leases with fencing, the company's upstream budget, teams and keys. Each rule is
a function of one unit of work (`proxy.store.Tx`); `Store` runs them on a backend."""

from .admission import AdmissionRequest
from .errors import (
    BUDGET_LIMITS,
    IdempotencyMismatch,
    LeaseLost,
    LimitReached,
    RuleError,
    TeamExists,
    UnknownTeam,
)
from .runs import Fence
from .store import Store, open_store

__all__ = [
    "BUDGET_LIMITS",
    "AdmissionRequest",
    "Fence",
    "IdempotencyMismatch",
    "LeaseLost",
    "LimitReached",
    "RuleError",
    "Store",
    "TeamExists",
    "UnknownTeam",
    "open_store",
]
