"""Who a request is: the team key it presents (x-api-key or Authorization: Bearer), looked
up by its hash on every request, and the operator credential of admin requests.

What a key is and how it is stored are in `proxy/core/keys.py`. Nothing is cached here: a
revoked key fails on the next request.
"""

from __future__ import annotations

from starlette.datastructures import Headers

from proxy.core.errors import Unauthenticated
from proxy.core.keys import KEY_PREFIX, hash_key, key_prefix
from proxy.db import Team
from proxy.store import Store

__all__ = ["authenticate", "operator_credential", "presented_key"]


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
