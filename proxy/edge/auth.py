"""Who a request is: the team key it presents (x-api-key or Authorization: Bearer), looked
up by its hash on every request, and the operator credential of admin requests, with the
limit on wrong admin keys per client (`KeyAttempts`).

What a key is and how it is stored are in `proxy/core/keys.py`. Nothing is cached here: a
revoked key fails on the next request.
"""

from __future__ import annotations

from collections import deque

from starlette.datastructures import Headers
from starlette.requests import HTTPConnection

from proxy.core.errors import LimitExceeded, Unauthenticated
from proxy.core.keys import KEY_PREFIX, hash_key, key_prefix
from proxy.db import Team
from proxy.store import Store

__all__ = [
    "FAILED_KEYS_PER_MINUTE",
    "KeyAttempts",
    "authenticate",
    "key_attempts",
    "operator_credential",
    "presented_key",
]

FAILED_KEYS_PER_MINUTE = 10  # wrong admin keys one client may present a minute
MAX_CLIENTS = 10_000  # clients remembered; past it the count starts afresh


def presented_key(headers: Headers) -> tuple[str | None, str]:
    """The key a request carries and the header it came in (x-api-key or Bearer)."""
    key = headers.get("x-api-key", "").strip()
    if key:
        return key, "x-api-key"
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip(), "Authorization: Bearer"
    return None, ""


async def authenticate(store: Store, headers: Headers) -> Team:
    key, header = presented_key(headers)
    if key is None:
        raise Unauthenticated(
            "no team key: send your team's gateway key as x-api-key: <key> or "
            "Authorization: Bearer <key> (ask the gateway operators for one)"
        )
    team = await store.team_for_key(hash_key(key))
    if team is None:
        # Show a prefix only of what is shaped like a gateway key: of anything short (or
        # of a Segmind key pasted by mistake) the "prefix" would be most or all of it.
        shaped = key.startswith(KEY_PREFIX) and len(key) >= 3 * len(key_prefix(key))
        which = f" (starting {key_prefix(key)!r})" if shaped else ""
        raise Unauthenticated(
            f"the key sent in {header}{which} is unknown or revoked; use your team's current "
            f"gateway key (gateway keys start with {KEY_PREFIX!r})"
        )
    return team


def operator_credential(headers: Headers) -> str:
    """What an operator's request presents: X-Admin-Key, else an Authorization bearer."""
    given = headers.get("x-admin-key", "").strip()
    if not given:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        given = token.strip() if scheme.lower() == "bearer" else ""
    return given


class KeyAttempts:
    """Wrong admin keys per client, however presented (X-Admin-Key or a bearer on /admin/*
    and /metrics, the console's login form): at most FAILED_KEYS_PER_MINUTE a minute, then
    that client is refused (429) before its key is even compared, the right one too.

    Only wrong keys count (a request with no key guesses nothing), and only against the
    client that made them: the right key from
    another client always opens. The client is the connection's peer, or the address a
    proxy named in X-Forwarded-For if, and only if, that peer is one of the
    `forwarded_allow_ips` (uvicorn resolves it before the app runs); a client of the
    proxy cannot pick its own bucket by sending the header itself."""

    def __init__(self, per_minute: int = FAILED_KEYS_PER_MINUTE, window: float = 60.0) -> None:
        self.per_minute = per_minute
        self.window = window
        self._failures: dict[str, deque[float]] = {}  # client -> its failures in the window

    def _recent(self, client: str, now: float) -> deque[float]:
        times = self._failures.get(client)
        if times is None:
            return deque()
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[client]
        return times

    def check(self, client: str, now: float) -> None:
        """Raise `LimitExceeded` (429) while `client` has used up its wrong attempts."""
        times = self._recent(client, now)
        if len(times) >= self.per_minute:
            wait = max(times[0] + self.window - now, 1.0)
            raise LimitExceeded(
                f"too many wrong admin keys from this client ({self.per_minute} a minute); "
                f"try again in {wait:.0f} s",
                limit="failed_admin_keys_per_minute",
                retry_after=wait,
            )

    def failed(self, client: str, now: float) -> None:
        if client not in self._failures and len(self._failures) >= MAX_CLIENTS:
            self._failures.clear()  # a flood of addresses: start afresh rather than grow
        times = self._failures.setdefault(client, self._recent(client, now))
        times.append(now)
        while len(times) > self.per_minute:
            times.popleft()


def key_attempts(connection: HTTPConnection) -> tuple[KeyAttempts, str]:
    """The app's count of wrong admin keys, and the client this request counts against."""
    state = connection.app.state
    attempts: KeyAttempts | None = getattr(state, "key_attempts", None)
    if attempts is None:
        attempts = state.key_attempts = KeyAttempts()
    return attempts, connection.client.host if connection.client else "-"
