"""Team keys: made once, shown once, stored only as SHA-256, looked up on every request.

A key is 256 random bits, so a plain SHA-256 is enough to store it (no salt or slow hash
needed, unlike a password), and looking it up by its hash compares nothing byte by byte
against the presented value. Nothing is cached: a revoked key fails on the next request.
"""

from __future__ import annotations

import hashlib
import secrets

from starlette.datastructures import Headers

from .errors import Unauthenticated
from .store import AsyncStore, Team

__all__ = ["KEY_PREFIX", "authenticate", "hash_key", "key_prefix", "new_team_key", "presented_key"]

KEY_PREFIX = "sgw_"  # recognisable in a leak scan; never confused with a Segmind key


def new_team_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_prefix(key: str) -> str:
    """What lists and logs show of a key: its first 12 characters."""
    return key[:12]


def presented_key(headers: Headers) -> tuple[str | None, str]:
    """The key a request carries and the header it came in (x-api-key or Bearer)."""
    key = headers.get("x-api-key", "").strip()
    if key:
        return key, "x-api-key"
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip(), "Authorization: Bearer"
    return None, ""


def authenticate(store: AsyncStore, headers: Headers) -> Team:
    key, header = presented_key(headers)
    if key is None:
        raise Unauthenticated(
            "no team key: send your team's gateway key as x-api-key: <key> or "
            "Authorization: Bearer <key> (ask the gateway operators for one)"
        )
    team = store.read(store.sync.team_for_key, hash_key(key))
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
