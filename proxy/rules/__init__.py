"""The gateway's rules, written once above the store: admission (HIT, JOIN or MISS,
idempotency, submit rate, concurrency, budgets), a run's states, refunds, the webhook
outbox, leases with fencing, the company's upstream budget, teams and keys. Each rule is
a function of one unit of work (`proxy.db.tx.Tx`); `Store` (`proxy/store/`) runs them on a
backend.

May import `proxy.db` and `proxy.core` only: no I/O of its own, no HTTP, no clock but the
`now` it is given. A refusal is a `RuleError` (`errors.py`), in words, with no status code.
"""

from proxy.rules.admission import AdmissionRequest
from proxy.rules.errors import (
    BUDGET_LIMITS,
    BadPeriod,
    IdempotencyMismatch,
    LeaseLost,
    LimitReached,
    RuleError,
    TeamExists,
    UnknownTeam,
)
from proxy.rules.runs import Fence
from proxy.rules.usage import MAX_DAYS, USAGE_FIELDS, UsageRow

__all__ = [
    "BUDGET_LIMITS",
    "MAX_DAYS",
    "USAGE_FIELDS",
    "AdmissionRequest",
    "BadPeriod",
    "Fence",
    "IdempotencyMismatch",
    "LeaseLost",
    "LimitReached",
    "RuleError",
    "TeamExists",
    "UnknownTeam",
    "UsageRow",
]
