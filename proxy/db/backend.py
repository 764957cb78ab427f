"""What a storage backend does (the `Backend` protocol); which one the `db` setting picks
is decided above both implementations, in `proxy/store/backends.py`.

A backend runs units of work: a function of one `Tx`, inside one transaction, committed
when it returns and rolled back when it raises. It maps every error of its database to
`StorageUnavailable`, and tells subscribers what other processes changed (a webhook
queued, a run finished, a key revoked), as soon as it can learn it. Nothing else: every
rule is above it (`proxy/rules/`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Protocol, TypeVar

from proxy.db.tx import Tx

__all__ = ["Backend", "Listener", "describe"]

T = TypeVar("T")
Listener = Callable[[str], None]  # called on the event loop with a channel name


class Backend(Protocol):
    name: str  # "sqlite" or "postgresql"
    # Why the database could not be reached when the backend was opened to wait for it
    # (a gateway started before its database); None once it was.
    down_at_start: str | None

    async def write(self, unit: Callable[[Tx], T]) -> T:
        """Run `unit` in a write transaction, exact against every other process."""
        ...

    async def read(self, unit: Callable[[Tx], T]) -> T:
        """Run `unit` for reading only (it may see each statement's latest commit)."""
        ...

    def call(self, unit: Callable[[Tx], T]) -> T:
        """`write`, blocking: for the command line, where no event loop runs."""
        ...

    def subscribe(self, listener: Listener) -> None:
        """Call `listener(channel)` on the running loop when a unit of work, in this or
        another process, commits news on `channel` ("outbox", "finished", "auth"); "*"
        means news may have been missed: look again at everything."""
        ...

    @property
    def hears_everyone(self) -> bool:
        """Whether every other process's news reaches the subscribers now (then what was
        read can be trusted until news says otherwise); False: read again each time."""
        ...

    def probe(self) -> None:
        """Raise `StorageUnavailable` unless the database takes a small write now (blocking,
        bounded): what readiness and the store's breaker ask."""
        ...

    def reconnect(self) -> None:
        """Start afresh once the database is back after an outage (blocking)."""
        ...

    def close(self) -> None: ...


def describe(url: str) -> str:
    """The store's URL as logs and errors may show it: no password, whether in the
    authority (up to its last `@`: a password may hold `/` or `@` unencoded) or in the
    query (`?password=...`)."""
    url = re.sub(r"://([^:/@]*):.*@", r"://\1:***@", url, flags=re.DOTALL)
    return re.sub(r"(?i)([?&]password=)[^&#]*", r"\1***", url)
