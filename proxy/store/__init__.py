"""Everything that must survive a restart: teams, keys, requests, generations, cache,
idempotency keys, quota counters and spend. One SQLite file (WAL) by default."""

from .outbox import Attempt, OutboxMessage
from .records import Admission, CacheStatus, Generation, RequestRecord, Team, TeamKey
from .sqlite import AdmissionRequest, AsyncStore, SQLiteStore, TeamExists

__all__ = [
    "Admission",
    "AdmissionRequest",
    "AsyncStore",
    "Attempt",
    "CacheStatus",
    "Generation",
    "OutboxMessage",
    "RequestRecord",
    "SQLiteStore",
    "Team",
    "TeamExists",
    "TeamKey",
]
