"""The retry policy: which failures are retried, and how long to wait before the next try.

Pure functions only. Backoff is exponential with full jitter (AWS architecture blog,
"Exponential Backoff And Jitter"): attempt n waits a uniform random time in
[0, min(cap, base * 2**n)], so clients that failed together do not retry together.
A server's Retry-After is a floor: the client never comes back sooner than asked.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Protocol

__all__ = ["RNG", "RetryPolicy", "backoff_delay", "parse_retry_after"]

#: Status codes after which a *poll* is retried. A submit is never retried on 5xx: the job
#: may have started, and a second submit would be paid twice.
POLL_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
#: Status codes after which a *submit* is retried: the rate limiter refused it, no job started.
SUBMIT_RETRY_STATUSES = frozenset({429})
#: Longest Retry-After the client will honour by sleeping; longer ones are raised instead.
MAX_RETRY_AFTER = 300.0


class RNG(Protocol):
    """The part of `random.Random` the backoff uses; tests inject a seeded or fixed one."""

    def uniform(self, a: float, b: float) -> float: ...


@dataclass(frozen=True)
class RetryPolicy:
    """How many tries an operation gets and the backoff between them.

    `max_attempts` counts the first try: 5 means one try and up to four retries. While
    waiting for a job, the count restarts after every successful poll.
    """

    max_attempts: int = 5
    base_delay: float = 1.0
    max_delay: float = 30.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("delays must not be negative")


def backoff_delay(
    policy: RetryPolicy,
    retry_number: int,
    rng: RNG,
    retry_after: float | None = None,
) -> float:
    """Seconds to wait before retry number `retry_number` (0 for the first retry).

    >>> class Top:
    ...     def uniform(self, a: float, b: float) -> float:
    ...         return b
    >>> [backoff_delay(RetryPolicy(base_delay=1, max_delay=5), n, Top()) for n in range(4)]
    [1.0, 2.0, 4.0, 5.0]
    >>> backoff_delay(RetryPolicy(), 0, Top(), retry_after=12)
    12.0
    """
    ceiling = min(policy.max_delay, policy.base_delay * 2.0 ** min(retry_number, 62))
    delay = min(max(rng.uniform(0.0, ceiling), 0.0), ceiling)
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
    return float(delay)


def parse_retry_after(value: str | None, date_header: str | None = None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds, or an HTTP date.

    An HTTP date is measured against the answer's own `Date` header, so this stays pure;
    without one, a date cannot be interpreted and is ignored.

    >>> parse_retry_after("7")
    7.0
    >>> parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", "Wed, 21 Oct 2015 07:28:00 GMT")
    30.0
    >>> parse_retry_after("soon") is None
    True
    """
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        if seconds != seconds or seconds in (float("inf"), float("-inf")):
            return None
        return max(seconds, 0.0)
    if not date_header:
        return None
    try:
        then = parsedate_to_datetime(value)
        now = parsedate_to_datetime(date_header)
    except (TypeError, ValueError, IndexError):
        return None
    if then.tzinfo is None or now.tzinfo is None:
        return None
    return max((then - now).total_seconds(), 0.0)


def default_rng() -> RNG:
    return random.Random()
