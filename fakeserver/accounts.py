"""Accounts: API keys, their credits, their workflow access and their rate limits.

Keys are held only as SHA-256 digests; everything else (journal, errors, admin answers)
names an account by its label (`key-1`, `key-2`, ...), never by its key.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from .errors import ApiError

__all__ = ["PLANS", "Account", "Accounts", "parse_plan"]

# Requests per minute by Segmind plan; 0 means no limit (Enterprise is "custom").
PLANS: dict[str, int] = {"free": 5, "pro": 50, "unlimited": 0}
WINDOW_SECONDS = 60.0


def parse_plan(value: str | int) -> int:
    """A plan name or a number of requests a minute."""
    if isinstance(value, int):
        return value
    if value.isdigit():
        return int(value)
    try:
        return PLANS[value.lower()]
    except KeyError:
        valid = ", ".join(PLANS)
        raise ValueError(f"plan must be one of {valid} or a number; got {value!r}") from None


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass
class Account:
    label: str
    credits: float
    rate_limit: int  # requests per minute, 0 = unlimited
    workflows: frozenset[str] | None = None  # None: every workflow; empty: none (403)
    initial_credits: float = 0.0
    free_credits: float = 0.0
    _window: deque[float] = field(default_factory=deque, repr=False)

    def may_run(self, workflow_id: str) -> bool:
        return self.workflows is None or workflow_id in self.workflows

    def take_request(self, now: float) -> None:
        """Count one request in the sliding minute; raise 429 with the real wait if full."""
        if self.rate_limit <= 0:
            return
        window = self._window
        while window and window[0] <= now - WINDOW_SECONDS:
            window.popleft()
        if len(window) >= self.rate_limit:
            wait = max(1, math.ceil(window[0] + WINDOW_SECONDS - now))
            raise ApiError(
                429,
                f"Rate limit exceeded: {self.rate_limit} requests per minute for this key; "
                f"retry in {wait} s",
                headers={"Retry-After": str(wait)},
            )
        window.append(now)


class Accounts:
    def __init__(self, open_to_any_key: tuple[float, int] | None = None) -> None:
        """`open_to_any_key=(credits, rate_limit)`: every unknown key gets an account of its
        own on first use, as moto takes any credentials (so code under test runs with
        whatever key it carries); None: unknown keys are refused (401)."""
        self._by_digest: dict[str, Account] = {}
        self._lock = threading.RLock()
        self._open_to_any_key = open_to_any_key

    def add(
        self,
        key: str,
        *,
        credits: float,
        rate_limit: int,
        workflows: Iterable[str] | None = None,
        label: str | None = None,
    ) -> Account:
        if not key:
            raise ValueError("an API key must not be empty")
        with self._lock:
            account = Account(
                label=label or f"key-{len(self._by_digest) + 1}",
                credits=credits,
                rate_limit=rate_limit,
                workflows=None if workflows is None else frozenset(workflows),
                initial_credits=credits,
            )
            self._by_digest[_digest(key)] = account
            return account

    def find(self, key: str) -> Account | None:
        found = self._by_digest.get(_digest(key))
        if found is None and self._open_to_any_key is not None and key:
            credits, rate_limit = self._open_to_any_key
            with self._lock:  # two first requests with one key make one account (re-entrant)
                found = self._by_digest.get(_digest(key)) or self.add(
                    key, credits=credits, rate_limit=rate_limit
                )
        return found

    def by_label(self, label: str) -> Account | None:
        return next((a for a in self._by_digest.values() if a.label == label), None)

    def all(self) -> list[Account]:
        return list(self._by_digest.values())

    def reset(self) -> None:
        """Back to the configured credits, empty rate windows."""
        for account in self._by_digest.values():
            account.credits = account.initial_credits
            account._window.clear()

    def charge(self, account: Account, price: float) -> None:
        with self._lock:
            if account.credits + 1e-9 < price:
                raise ApiError(
                    406,
                    f"Insufficient credits: balance {account.credits:.2f}, "
                    f"a run costs {price:.4f}; add credits to this account",
                    extra={"credits": round(account.credits, 4), "price": price},
                )
            account.credits = round(account.credits - price, 6)
