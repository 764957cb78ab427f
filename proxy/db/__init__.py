"""Storage: what must survive a restart (teams, keys, requests, runs, cache, idempotency
keys, quota counters, spend, the webhook outbox, leases), behind one interface with two
backends: SQLite (one file, the embedded default) and PostgreSQL (several machines).

This package reads and writes; it decides nothing. The rules are in `proxy/rules/`, the
choice of a backend from a URL in `proxy/store/`. May import `proxy.core` only.
"""

from proxy.db.backend import Backend, describe
from proxy.db.errors import StorageUnavailable, StoreError, StoreTooNew
from proxy.db.records import (
    Admission,
    Attempt,
    CacheStatus,
    Endpoint,
    Generation,
    Instance,
    OutboxMessage,
    RequestRecord,
    RequestView,
    RunView,
    Team,
    TeamKey,
)
from proxy.db.tx import Tx

__all__ = [
    "Admission",
    "Attempt",
    "Backend",
    "CacheStatus",
    "Endpoint",
    "Generation",
    "Instance",
    "OutboxMessage",
    "RequestRecord",
    "RequestView",
    "RunView",
    "StorageUnavailable",
    "StoreError",
    "StoreTooNew",
    "Team",
    "TeamKey",
    "Tx",
    "describe",
]
