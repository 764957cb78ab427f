"""Console sessions: who is logged in to /admin/ui, and each session's CSRF token.

A session is 256 random bits in an HttpOnly cookie. The store keeps only their SHA-256 (a
kv row `console.session.<hash>`), with the session's end and a fingerprint of the admin
key it was opened with: so every replica on the store knows it, it ends at logout, after
`SESSION_SECONDS`, and the moment the gateway runs with another admin key. The CSRF token
is an HMAC of the session id under the admin key: nothing more to keep.

Never stores or shows the admin key or a usable session id.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets

from pydantic import SecretStr

from proxy.core.clock import Clock
from proxy.store import Store

__all__ = ["COOKIE", "SESSION_SECONDS", "Sessions"]

COOKIE = "gateway_console"
SESSION_SECONDS = 8 * 3600.0
KV_PREFIX = "console.session."
MAX_SESSIONS = 1000  # live sessions kept; past it the oldest end first


def _row(session_id: str) -> str:
    return KV_PREFIX + hashlib.sha256(session_id.encode()).hexdigest()


class Sessions:
    """Sessions of the console under `admin_key`, timed by `clock` (wall time)."""

    def __init__(self, store: Store, admin_key: SecretStr, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self._key = admin_key.get_secret_value().encode()

    def _mac(self, purpose: str, session_id: str) -> str:
        return hmac.new(self._key, f"{purpose}:{session_id}".encode(), hashlib.sha256).hexdigest()

    async def open(self) -> str:
        """A new session's id, for the cookie only."""
        now = self.clock.now()
        await self._forget_old(now)
        session_id = secrets.token_urlsafe(32)
        record = {"until": now + SESSION_SECONDS, "key": self._mac("session", session_id)}
        await self.store.kv_set(_row(session_id), json.dumps(record))
        return session_id

    async def _forget_old(self, now: float) -> None:
        rows = []
        for name, value in await self.store.kv_named(KV_PREFIX):
            try:
                rows.append((float(json.loads(value)["until"]), name))
            except (ValueError, KeyError, TypeError):
                rows.append((0.0, name))
        rows.sort()
        ended = [name for until, name in rows if until <= now]
        live = len(rows) - len(ended)
        if live >= MAX_SESSIONS:
            ended += [name for _, name in rows[len(ended) : len(ended) + live - MAX_SESSIONS + 1]]
        if ended:
            await self.store.kv_delete(*ended)

    async def valid(self, session_id: str | None) -> bool:
        """Whether `session_id` is a live session opened under this admin key."""
        if not session_id or len(session_id) > 100:
            return False
        value = await self.store.kv_get(_row(session_id))
        if value is None:
            return False
        try:
            record = json.loads(value)
            until, fingerprint = float(record["until"]), str(record["key"])
        except (ValueError, KeyError, TypeError):
            return False
        # Both checks always run: how long the answer takes says nothing about which failed.
        current = hmac.compare_digest(fingerprint, self._mac("session", session_id))
        return current and until > self.clock.now()

    async def close(self, session_id: str) -> None:
        await self.store.kv_delete(_row(session_id))

    def csrf_token(self, session_id: str) -> str:
        return self._mac("csrf", session_id)

    def csrf_ok(self, session_id: str, given: str) -> bool:
        return bool(given) and hmac.compare_digest(given, self.csrf_token(session_id))
