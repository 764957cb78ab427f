"""Team keys and operator secrets, as values: making a key, what is stored of it (SHA-256),
what is shown of it (a prefix), and comparing a presented secret with the configured ones.

A key is 256 random bits, so a plain SHA-256 is enough to store it (no salt or slow hash
needed, unlike a password), and looking it up by its hash compares nothing byte by byte
against the presented value. Where a request presents a key is the edge's business
(`proxy/edge/auth.py`); nothing here reads a request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from pydantic import SecretStr

from proxy.core.config import TEAM_KEY_PREFIX

__all__ = ["KEY_PREFIX", "hash_key", "key_prefix", "matches_a_secret", "new_team_key"]

KEY_PREFIX = TEAM_KEY_PREFIX  # recognisable in a leak scan; never confused with a Segmind key


def new_team_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_prefix(key: str) -> str:
    """What lists and logs show of a key: its first 12 characters."""
    return key[:12]


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
