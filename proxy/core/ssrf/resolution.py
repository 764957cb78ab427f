"""Submit-time resolution: `resolve_and_check` checks a URL's syntax, then resolves its
host and refuses it unless every A and AAAA record passes the address policy (one
public and one private record is refused: a client may pick either).

It answers at submit time only: it must never connect to anything, and what it vetted
is not trusted later (a name can answer differently when the webhook is delivered;
`GuardedTransport` resolves and checks again at connect time).
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable, Iterable
from ipaddress import ip_address
from typing import Final, TypeAlias

import anyio

from proxy.core.ssrf.policy import AddressPolicy, IPAddress, _only_public, _strip_scope
from proxy.core.ssrf.refusal import WebhookUrlError
from proxy.core.ssrf.syntax import check_url_syntax

__all__ = ["RESOLVE_TIMEOUT", "Resolver", "resolve_and_check", "system_resolver"]

Resolver: TypeAlias = Callable[[str], Awaitable[Iterable[str]]]
"""An async callable from a host name to the IP address strings it resolves to."""

RESOLVE_TIMEOUT: Final = 10.0
"""Seconds `resolve_and_check` waits for DNS before refusing the URL."""


async def system_resolver(host: str) -> list[str]:
    """Every A and AAAA address of `host`, through the system resolver."""
    infos = await anyio.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos if info[0] in (socket.AF_INET, socket.AF_INET6)]


def _unique_addresses(answers: Iterable[str]) -> list[IPAddress]:
    """Resolver answers parsed and de-duplicated in order; ValueError on a non-address."""
    seen: dict[IPAddress, None] = {}
    for answer in answers:
        seen.setdefault(_strip_scope(ip_address(answer)), None)
    return list(seen)


async def resolve_and_check(
    url: str,
    policy: AddressPolicy,
    resolver: Resolver | None = None,
    *,
    what: str = "webhook URL",
) -> list[IPAddress]:
    """Submit-time check: the URL's syntax, then every address its host resolves to.

    Raises `WebhookUrlError` if any address is refused (one public and one private record
    is refused: a client may pick either) or if nothing resolves within
    `RESOLVE_TIMEOUT` seconds. IP-literal hosts skip DNS.
    """
    checked = check_url_syntax(url, policy=policy, what=what)
    if checked.address is not None:
        return [checked.address]
    resolve = resolver or system_resolver
    try:
        with anyio.fail_after(RESOLVE_TIMEOUT):
            answers = await resolve(checked.hostname)
    except TimeoutError:
        raise WebhookUrlError(
            f"{what} {checked.display} did not resolve within {RESOLVE_TIMEOUT:g} s; "
            "check that its host name has A or AAAA records and try again"
        ) from None
    except OSError as exc:
        raise WebhookUrlError(
            f"{what} {checked.display} does not resolve ({exc.strerror or exc}); "
            "check the host name"
        ) from None
    try:
        addresses = _unique_addresses(answers)
    except ValueError as exc:
        raise WebhookUrlError(
            f"{what} {checked.display}: the resolver answered something that is not "
            f"an IP address ({exc})"
        ) from None
    if not addresses:
        raise WebhookUrlError(
            f"{what} {checked.display} does not resolve: {checked.hostname} has no A "
            "or AAAA records; check the host name"
        )
    for address in addresses:
        reason = policy.refusal_reason(address)
        if reason is not None:
            among = f" (one of its {len(addresses)} addresses)" if len(addresses) > 1 else ""
            raise WebhookUrlError(
                f"{what} {checked.display} resolves to {address}{among}, {reason}; "
                f"every address a {what.removesuffix(' URL')} host resolves to must be "
                f"allowed: {_only_public(policy)}",
                address=address,
            )
    return addresses
