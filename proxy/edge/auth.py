"""Team keys: made once, shown once, stored only as SHA-256, looked up on every request.

A key is 256 random bits, so a plain SHA-256 is enough to store it (no salt or slow hash
needed, unlike a password), and looking it up by its hash compares nothing byte by byte
against the presented value. Nothing is cached: a revoked key fails on the next request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from pydantic import SecretStr
from starlette.datastructures import Headers

from proxy.core.config import TEAM_KEY_PREFIX
from proxy.core.errors import Unauthenticated
from proxy.db import Team
from proxy.store import Store

__all__ = [
    "KEY_PREFIX",
    "authenticate",
    "hash_key",
    "key_prefix",
    "matches_a_secret",
    "new_team_key",
    "operator_credential",
    "presented_key",
]

KEY_PREFIX = TEAM_KEY_PREFIX  # recognisable in a leak scan; never confused with a Segmind key


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


def matches_a_secret(given: str, *configured: SecretStr | None) -> bool:
    """Whether `given` is one of the configured operator secrets (the admin key, the
    metrics token). An unset secret matches nothing, and neither does an empty `given`:
    settings refuse empty and short secrets, this keeps the rule where it is used too."""
    if not given:
        return False
    found = False
    for secret in configured:
        if secret is not None and secret.get_secret_value():
            # Every configured secret is compared, so timing tells nothing about which.
            found |= hmac.compare_digest(given.encode(), secret.get_secret_value().encode())
    return found
