"""Address policy: which IP addresses the gateway may call, and, for one it may not, what
kind of address it is (the words every refusal names).

An address is callable iff it is in an operator's allowlisted network or is globally
routable. Loopback, private, link-local (and the cloud metadata address), CGNAT,
multicast, reserved, documentation and benchmarking ranges, unique-local IPv6, Teredo,
and IPv6 forms that embed a non-global IPv4 address (mapped, compatible, NAT64, 6to4) are
refused.

It judges addresses only: it must never parse a URL or a host name, resolve a name, or
touch the network (the other modules of `proxy.core.ssrf` do, and call it); it imports
nothing else of the package.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import suppress
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network
from typing import Final, TypeAlias

__all__ = ["ALLOW_SETTING", "AddressPolicy", "IPAddress", "IPNetwork"]

IPAddress: TypeAlias = IPv4Address | IPv6Address
IPNetwork: TypeAlias = IPv4Network | IPv6Network

ALLOW_SETTING: Final = "webhook_allow_networks"
"""The setting an operator uses to admit networks; named in every refusal."""


def _only_public(policy: AddressPolicy | None) -> str:
    setting = policy.setting if policy is not None else ALLOW_SETTING
    return (
        "the gateway only calls publicly routable addresses "
        f"(an operator can allow networks with {setting})"
    )


_V4_REFUSED: Final[tuple[tuple[IPv4Network, str], ...]] = tuple(
    (IPv4Network(net), reason)
    for net, reason in (
        ("0.0.0.0/8", "an unspecified ('this network', 0.0.0.0/8) address"),
        ("10.0.0.0/8", "a private address"),
        ("100.64.0.0/10", "a carrier-grade NAT (100.64.0.0/10) address"),
        ("127.0.0.0/8", "a loopback address"),
        ("169.254.169.254/32", "the cloud metadata address (link-local)"),
        ("169.254.0.0/16", "a link-local address"),
        ("172.16.0.0/12", "a private address"),
        ("192.0.0.0/24", "an IETF protocol assignment (192.0.0.0/24) address"),
        ("192.0.2.0/24", "a documentation (TEST-NET-1) address"),
        ("192.88.99.0/24", "a deprecated 6to4 relay anycast address"),
        ("192.168.0.0/16", "a private address"),
        ("198.18.0.0/15", "a benchmarking (198.18.0.0/15) address"),
        ("198.51.100.0/24", "a documentation (TEST-NET-2) address"),
        ("203.0.113.0/24", "a documentation (TEST-NET-3) address"),
        ("224.0.0.0/4", "a multicast address"),
        ("255.255.255.255/32", "the broadcast address"),
        ("240.0.0.0/4", "a reserved (240.0.0.0/4) address"),
    )
)

_V6_REFUSED: Final[tuple[tuple[IPv6Network, str], ...]] = tuple(
    (IPv6Network(net), reason)
    for net, reason in (
        ("::/128", "the unspecified address"),
        ("::1/128", "a loopback address"),
        ("64:ff9b:1::/48", "a local-use NAT64 address"),
        ("100::/64", "a discard-only address"),
        ("2001::/32", "a Teredo tunnel address"),
        ("2001:db8::/32", "a documentation address"),
        ("2001::/23", "an IETF protocol assignment (2001::/23) address"),
        ("3fff::/20", "a documentation address"),
        ("5f00::/16", "an SRv6 segment identifier address"),
        ("fc00::/7", "a unique-local (private) address"),
        ("fe80::/10", "a link-local address"),
        ("fec0::/10", "a deprecated site-local address"),
        ("ff00::/8", "a multicast address"),
    )
)

_V4_COMPATIBLE: Final = IPv6Network("::/96")
_NAT64: Final = IPv6Network("64:ff9b::/96")


def _embedded_ipv4(ip: IPv6Address) -> tuple[IPv4Address, str] | None:
    """The IPv4 address an IPv6 address stands for, and how it embeds it."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped, "an IPv4-mapped IPv6 address"
    if ip in _V4_COMPATIBLE and int(ip) > 1:
        return IPv4Address(int(ip) & 0xFFFFFFFF), "an IPv4-compatible IPv6 address"
    if ip in _NAT64:
        return IPv4Address(int(ip) & 0xFFFFFFFF), "a NAT64 address"
    if ip.sixtofour is not None:
        return ip.sixtofour, "a 6to4 address"
    return None


def _not_global_reason(ip: IPAddress) -> str | None:
    """Why `ip` is not a publicly routable address, or None if it is."""
    if isinstance(ip, IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            v4, form = embedded
            inner = _not_global_reason(v4)
            return None if inner is None else f"{form} for {v4}, {inner}"
        for net6, reason in _V6_REFUSED:
            if ip in net6:
                return reason
    else:
        for net4, reason in _V4_REFUSED:
            if ip in net4:
                return reason
    # What the tables leave out, the stdlib's registry catches: IPv6 outside 2000::/3 is
    # reserved (IANA), and a newer Python may know ranges registered since. (Its loopback,
    # link-local, multicast, private and unspecified ranges are all in the tables above.)
    if ip.is_reserved or not ip.is_global:
        return "a reserved address that is not globally routable"
    return None


def _parse_network(entry: object) -> IPNetwork:
    if not isinstance(entry, str):
        raise ValueError(f"{ALLOW_SETTING}: entries must be CIDR strings, got {entry!r}")
    text = entry.strip()
    try:
        return ip_network(text, strict=True)
    except ValueError as exc:
        hint = ""
        with suppress(ValueError):
            hint = f"; did you mean {ip_network(text, strict=False)}?"
        raise ValueError(
            f"{ALLOW_SETTING}: {entry!r} is not a network in CIDR form such as "
            f"'127.0.0.0/8' or '::1/128' ({exc}){hint}"
        ) from None


def _strip_scope(ip: IPAddress) -> IPAddress:
    if isinstance(ip, IPv6Address) and ip.scope_id is not None:
        return IPv6Address(int(ip))
    return ip


class AddressPolicy:
    """Which addresses the gateway may call: an allowlisted network, or a globally
    routable address (see the module docstring for what is refused)."""

    def __init__(self, allow: Iterable[str] = (), *, setting: str = ALLOW_SETTING) -> None:
        # `setting`: where `allow` came from, named in refusals so an operator knows
        # which list to extend (webhooks and character images each have their own).
        self.setting = setting
        if isinstance(allow, str):
            raise ValueError(
                f"{setting} must be a list of CIDR strings, not the single string "
                f"{allow!r}; write [{allow!r}]"
            )
        self.allow: tuple[IPNetwork, ...] = tuple(_parse_network(entry) for entry in allow)

    def __repr__(self) -> str:
        return f"AddressPolicy(allow={[str(net) for net in self.allow]!r})"

    def _allowlisted(self, ip: IPAddress) -> bool:
        candidates: list[IPAddress] = [ip]
        if isinstance(ip, IPv6Address) and ip.ipv4_mapped is not None:
            # A mapped address is the IPv4 address itself on a dual-stack socket.
            candidates.append(ip.ipv4_mapped)
        return any(
            candidate in net
            for candidate in candidates
            for net in self.allow
            if net.version == candidate.version
        )

    def refusal_reason(self, ip: IPAddress) -> str | None:
        """None if the gateway may call `ip`, else what kind of address it is
        (e.g. "a private address")."""
        ip = _strip_scope(ip)
        if self._allowlisted(ip):
            return None
        return _not_global_reason(ip)

    def is_allowed(self, ip: IPAddress) -> bool:
        return self.refusal_reason(ip) is None
