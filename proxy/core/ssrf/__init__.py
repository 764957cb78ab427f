"""Webhook URLs are attacker-controlled input: this module decides which ones the gateway
may call, and makes sure the address it actually connects to is one it vetted.

It owns three checks, applied in order:

* `check_url_syntax`: http(s) only, a host, no credentials, a valid port, no whitespace or
  control characters, at most 2048 characters. A host written as an IP literal in any form
  that browsers or `inet_aton` accept (``2130706433``, ``0x7f.1``, ``0177.0.0.1``,
  ``127.1``, ``[::ffff:7f00:1]``, full-width digits...) is normalised to the address it
  really names, so that it can be judged like any other.
* `AddressPolicy`: an address is callable iff it is in an operator's allowlisted network or
  is globally routable. Loopback, private, link-local (and the cloud metadata address),
  CGNAT, multicast, reserved, documentation and benchmarking ranges, unique-local IPv6,
  Teredo, and IPv6 forms that embed a non-global IPv4 address (mapped, compatible, NAT64,
  6to4) are refused.
* `resolve_and_check` at submit time (every A and AAAA record must pass), and
  `GuardedTransport` at connect time: it resolves the host itself, checks every address,
  and connects to a vetted IP while TLS still verifies the certificate for the host name.
  That second check is what defeats DNS rebinding (a name that answers a public address
  when the URL is submitted and 127.0.0.1 when the webhook is delivered).

It must never: connect to an address it has not checked in the same call; let the
system resolver or the HTTP client resolve a webhook host behind its back; follow a
redirect; go through a proxy; or echo credentials, paths or query strings (where
webhook secrets live) into an error message.
"""

from __future__ import annotations

import re
import socket
import ssl
import unicodedata
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from typing import Final, TypeAlias
from urllib.parse import urlsplit

import anyio
import httpcore
import httpx
import idna

__all__ = [
    "ALLOW_SETTING",
    "MAX_URL_LENGTH",
    "RESOLVE_TIMEOUT",
    "AddressPolicy",
    "GuardedNetworkBackend",
    "GuardedTransport",
    "IPAddress",
    "Resolver",
    "WebhookConnectRefused",
    "WebhookUrl",
    "WebhookUrlError",
    "check_url_syntax",
    "resolve_and_check",
    "system_resolver",
]

IPAddress: TypeAlias = IPv4Address | IPv6Address
IPNetwork: TypeAlias = IPv4Network | IPv6Network
Resolver: TypeAlias = Callable[[str], Awaitable[Iterable[str]]]
"""An async callable from a host name to the IP address strings it resolves to."""

MAX_URL_LENGTH: Final = 2048
RESOLVE_TIMEOUT: Final = 10.0
"""Seconds `resolve_and_check` waits for DNS before refusing the URL."""
ALLOW_SETTING: Final = "webhook_allow_networks"
"""The setting an operator uses to admit networks; named in every refusal."""

_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


def _only_public(policy: AddressPolicy | None) -> str:
    setting = policy.setting if policy is not None else ALLOW_SETTING
    return (
        "the gateway only calls publicly routable addresses "
        f"(an operator can allow networks with {setting})"
    )


class WebhookUrlError(ValueError):
    """A webhook URL the gateway will not call; the message says what is wrong and what
    to do, and never repeats credentials, the path or the query."""

    def __init__(self, message: str, *, address: IPAddress | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.address = address

    def __str__(self) -> str:
        return self.message


class WebhookConnectRefused(WebhookUrlError, httpx.ConnectError):
    """Raised at connect time when the host now resolves to a refused address (DNS
    rebinding, or a redirect hop): both a `WebhookUrlError` and an `httpx.ConnectError`,
    so a deliverer can catch it either way."""

    def __init__(self, message: str, *, address: IPAddress | None = None) -> None:
        httpx.ConnectError.__init__(self, message)
        self.message = message
        self.address = address


# --------------------------------------------------------------------------- addresses

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


# --------------------------------------------------------------------------- hosts

_ASCII_DIGITS: Final = frozenset("0123456789")
_RADIX_DIGITS: Final = {
    8: frozenset("01234567"),
    10: _ASCII_DIGITS,
    16: frozenset("0123456789abcdef"),
}
_HOST_NAME_CHARS: Final = re.compile(r"[a-z0-9._-]+\Z")
_PORT: Final = re.compile(r"[0-9]{1,5}\Z")


def _ipv4_number(part: str) -> int | None:
    """WHATWG "IPv4 number parser": decimal, 0x-hex or 0-octal; None on failure."""
    if not part:
        return None
    radix = 10
    if part.startswith("0x"):
        part, radix = part[2:], 16
    elif len(part) > 1 and part.startswith("0"):
        part, radix = part[1:], 8
    if not part:
        return 0
    if not set(part) <= _RADIX_DIGITS[radix]:
        return None
    return int(part, radix)


def _ends_in_number(host: str) -> bool:
    parts = host.split(".")
    if parts[-1] == "" and len(parts) > 1:
        parts.pop()
    last = parts[-1]
    if last and set(last) <= _ASCII_DIGITS:
        return True
    return _ipv4_number(last) is not None


def _parse_ipv4(host: str) -> IPv4Address | None:
    """WHATWG "IPv4 parser" (what browsers and inet_aton accept); None on failure."""
    parts = host.split(".")
    if parts[-1] == "" and len(parts) > 1:
        parts.pop()
    if len(parts) > 4:
        return None
    numbers: list[int] = []
    for part in parts:
        number = _ipv4_number(part)
        if number is None:
            return None
        numbers.append(number)
    if any(n > 255 for n in numbers[:-1]) or numbers[-1] >= 256 ** (5 - len(numbers)):
        return None
    value = numbers[-1]
    for index, number in enumerate(numbers[:-1]):
        value += number * 256 ** (3 - index)
    return IPv4Address(value)


def _parse_ipv6(text: str) -> IPv6Address:
    if "%" in text:
        raise ValueError(
            "has an IPv6 zone id (the %... part); zone ids name an interface of the "
            "gateway's own machine and are not allowed"
        )
    try:
        return IPv6Address(text)
    except ValueError:
        raise ValueError(f"[{text}] is not a valid IPv6 address") from None


def _normalise_host(host: str, *, bracketed: bool) -> tuple[str, IPAddress | None]:
    """(ASCII host to resolve, or the canonical IP; the IP if the host is a literal).

    Raises ValueError with the tail of a sentence ("has ...", "is ...")."""
    if bracketed:
        ip6 = _parse_ipv6(host)
        return str(ip6), ip6
    if not host:
        raise ValueError("has no host")
    if "%" in host:
        raise ValueError("has a percent-encoded host; write the host name plainly")
    if not host.isascii():
        try:
            # UTS #46 mapping, as browsers do: full-width digits and dots become ASCII.
            host = idna.encode(host, uts46=True).decode("ascii")
        except (UnicodeError, ValueError) as exc:
            raise ValueError(f"has a host that is not a valid domain name ({exc})") from None
    host = host.lower()
    if not _HOST_NAME_CHARS.match(host):
        raise ValueError(
            "has a host with characters not allowed in a host name "
            "(letters, digits, '-', '_' and '.' only)"
        )
    if _ends_in_number(host):
        ip4 = _parse_ipv4(host)
        if ip4 is None:
            raise ValueError("has a host that looks like an IPv4 address but is not a valid one")
        return str(ip4), ip4
    labels = host.removesuffix(".").split(".")
    if len(host) > 254 or any(not label or len(label) > 63 for label in labels):
        raise ValueError("has a host that is not a valid domain name (empty or overlong label)")
    return host, None


def _host_of_connection(host: str) -> tuple[str, IPAddress | None]:
    """The same normalisation for the host httpcore hands to `connect_tcp` (IPv6 without
    brackets, non-ASCII names already IDNA-encoded by httpx)."""
    if ":" in host:
        return _normalise_host(host.removeprefix("[").removesuffix("]"), bracketed=True)
    return _normalise_host(host, bracketed=False)


# --------------------------------------------------------------------------- URLs


@dataclass(frozen=True, slots=True)
class WebhookUrl:
    """A syntactically acceptable webhook URL, split like `urllib.parse.SplitResult`
    but with a normalised `hostname` (IDNA-encoded name, or the canonical IP of a literal
    in any form), the literal's `address`, and the effective `port`."""

    url: str
    scheme: str
    netloc: str
    path: str
    query: str
    fragment: str
    hostname: str
    port: int
    address: IPAddress | None

    @property
    def display(self) -> str:
        """Scheme, host and port, with the path and query elided (they hold secrets)."""
        tail = "/" if self.path in ("", "/") and not self.query else "/…"
        return f"{self.scheme}://{self.netloc}{tail}"


def _bad_char(url: str) -> tuple[int, str] | None:
    for index, char in enumerate(url):
        if char.isspace() or unicodedata.category(char) in {"Cc", "Cf", "Cs", "Zs", "Zl", "Zp"}:
            return index, char
    return None


def check_url_syntax(
    url: str, *, policy: AddressPolicy | None = None, what: str = "webhook URL"
) -> WebhookUrl:
    """Check a webhook URL's form, without DNS; raise `WebhookUrlError` saying what to fix.

    With a `policy`, an IP-literal host (in any spelling) is also judged by it. `what`
    names the URL in errors (the same guard vets character images)."""
    _check_text(url, what)
    try:
        split = urlsplit(url)
    except ValueError as exc:
        raise WebhookUrlError(f"{what} is not a valid URL ({exc})") from None
    _check_scheme(url, split.scheme, what)
    origin = f"{split.scheme}://{split.netloc}"
    host, port, bracketed = _host_and_port(split.scheme, split.netloc, origin, what)
    try:
        hostname, address = _normalise_host(host, bracketed=bracketed)
    except ValueError as exc:
        raise WebhookUrlError(f"{what} {origin} {exc}") from None
    checked = WebhookUrl(
        url=url,
        scheme=split.scheme,
        netloc=split.netloc,
        path=split.path,
        query=split.query,
        fragment=split.fragment,
        hostname=hostname,
        port=port,
        address=address,
    )
    if policy is not None and address is not None:
        reason = policy.refusal_reason(address)
        if reason is not None:
            verb = "resolves to" if host.lower() == hostname else "names the address"
            raise WebhookUrlError(
                f"{what} {checked.display} {verb} {address}, {reason}; {_only_public(policy)}",
                address=address,
            )
    try:
        httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise WebhookUrlError(
            f"{what} {checked.display} cannot be used by the gateway's HTTP client ({exc})"
        ) from None
    return checked


def _check_text(url: object, what: str) -> None:
    """The URL as text: a string, not empty, not too long, no character clients disagree on."""
    if not isinstance(url, str):
        raise WebhookUrlError(f"{what} must be a string")
    if not url:
        raise WebhookUrlError(f"{what} is empty; give an absolute http:// or https:// URL")
    if len(url) > MAX_URL_LENGTH:
        raise WebhookUrlError(
            f"{what} is {len(url)} characters long; the limit is {MAX_URL_LENGTH}"
        )
    bad = _bad_char(url)
    if bad is not None:
        index, char = bad
        raise WebhookUrlError(
            f"{what} contains whitespace or a control character (U+{ord(char):04X} at "
            f"position {index}); remove it, or percent-encode it in the path or query"
        )
    if "\\" in url:
        raise WebhookUrlError(
            f"{what} contains a backslash; use '/' (clients disagree about what a "
            "backslash means in a URL), or percent-encode it as %5C in the path or query"
        )


def _check_scheme(url: str, scheme: str, what: str) -> None:
    """http:// or https://, absolute."""
    if scheme in _DEFAULT_PORTS and url[len(scheme) + 1 :].startswith("//"):
        return
    got = (
        f" (it starts with {scheme[:16] + ':'!r})"
        if scheme and scheme not in _DEFAULT_PORTS
        else ""
    )
    raise WebhookUrlError(
        f"{what} must be absolute and start with http:// or https://"
        f"{got}; the gateway delivers webhooks over HTTP only"
    )


def _host_and_port(scheme: str, netloc: str, origin: str, what: str) -> tuple[str, int, bool]:
    """The host as written, the port (the scheme's default if none), and whether the host
    was bracketed (an IPv6 literal); no credentials, a well-formed port."""
    if "@" in netloc:
        raise WebhookUrlError(
            f"{what} must not contain credentials (a user:password@ part); remove "
            "them: every delivery is signed, so the receiver can verify it without them"
        )
    if netloc.startswith("["):
        host, bracket, rest = netloc[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise WebhookUrlError(
                f"{what} {origin} has a malformed IPv6 host; write it "
                "as http://[2001:db8::1]:8080/path"
            )
        port_text, bracketed = rest[1:], True
    else:
        host, _, port_text = netloc.partition(":")
        bracketed = False
    if not port_text:
        return host, _DEFAULT_PORTS[scheme], bracketed
    port = int(port_text) if _PORT.match(port_text) else 0
    if not 1 <= port <= 65535:
        raise WebhookUrlError(
            f"{what} {origin} has an invalid port {port_text[:12]!r}; "
            "use a number from 1 to 65535, or none for the scheme's default"
        )
    return host, port, bracketed


# --------------------------------------------------------------------------- resolution


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


# --------------------------------------------------------------------------- connect time


class GuardedNetworkBackend(httpcore.AsyncNetworkBackend):
    """An httpcore network backend that resolves hosts itself, refuses the connection if
    any address is refused by the policy, and connects to a vetted IP. TLS (done by
    httpcore on the returned stream) still uses the original host name for SNI and
    certificate verification."""

    def __init__(
        self,
        policy: AddressPolicy,
        resolver: Resolver | None = None,
        backend: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self.policy = policy
        self._resolve = resolver or system_resolver
        self._backend = backend or httpcore.AnyIOBackend()

    async def vetted_addresses(self, host: str, port: int) -> list[IPAddress]:
        """Every address `host` resolves to now, all allowed; else raise
        `WebhookConnectRefused` (refused) or `httpcore.ConnectError` (unresolvable)."""
        try:
            name, literal = _host_of_connection(host)
        except ValueError as exc:
            raise WebhookConnectRefused(f"webhook host {host!r} {exc}") from None
        if literal is not None:
            addresses = [literal]
        else:
            try:
                addresses = _unique_addresses(await self._resolve(name))
            except (OSError, ValueError) as exc:
                raise httpcore.ConnectError(
                    f"could not resolve webhook host {name}: {exc}"
                ) from None
            if not addresses:
                raise httpcore.ConnectError(f"webhook host {name} has no A or AAAA records")
        for address in addresses:
            reason = self.policy.refusal_reason(address)
            if reason is not None:
                verb = "is" if literal is not None else "now resolves to"
                raise WebhookConnectRefused(
                    f"webhook host {name}:{port} {verb} {address}, {reason}; the gateway "
                    f"refused to connect: {_only_public(self.policy)}",
                    address=address,
                )
        return addresses

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        deadline = None if timeout is None else anyio.current_time() + timeout
        try:
            with anyio.fail_after(timeout):
                addresses = await self.vetted_addresses(host, port)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving webhook host {host} timed out") from None
        failure: httpcore.ConnectError | httpcore.ConnectTimeout | None = None
        for address in addresses:
            remaining = None if deadline is None else deadline - anyio.current_time()
            if remaining is not None and remaining <= 0:
                break
            target = (
                address.ipv4_mapped
                if isinstance(address, IPv6Address) and address.ipv4_mapped
                else address
            )
            try:
                return await self._backend.connect_tcp(
                    str(target),
                    port,
                    timeout=remaining,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        raise failure or httpcore.ConnectTimeout(f"connecting to webhook host {host} timed out")

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise WebhookConnectRefused("webhooks are never delivered over a Unix socket")

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


_HTTPCORE_ERRORS: Final[tuple[tuple[type[Exception], type[httpx.TransportError]], ...]] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.ProxyError, httpx.ProxyError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)


@contextmanager
def _httpx_errors() -> Iterator[None]:
    """httpcore's exceptions as httpx's, as `httpx.AsyncHTTPTransport` does."""
    try:
        yield
    except Exception as exc:
        for core_error, httpx_error in _HTTPCORE_ERRORS:
            if isinstance(exc, core_error):
                raise httpx_error(str(exc)) from exc
        raise


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, stream: AsyncIterable[bytes]) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_errors():
            async for part in self._stream:
                yield part

    async def aclose(self) -> None:
        aclose = getattr(self._stream, "aclose", None)
        if aclose is not None:
            await aclose()


_DEFAULT_LIMITS: Final = httpx.Limits(max_connections=100, max_keepalive_connections=20)


class GuardedTransport(httpx.AsyncBaseTransport):
    """An httpx transport for webhook delivery: every new connection goes through
    `GuardedNetworkBackend`, so the address connected to is checked on every connect.

    Use it as ``httpx.AsyncClient(transport=GuardedTransport(policy),
    follow_redirects=False)``. A transport never follows redirects; if a client does,
    every hop is checked again here. Environment proxies are never used (a client given a
    transport does not mount them, and this transport has no proxy)."""

    def __init__(
        self,
        policy: AddressPolicy,
        *,
        resolver: Resolver | None = None,
        verify: ssl.SSLContext | bool = True,
        limits: httpx.Limits = _DEFAULT_LIMITS,
    ) -> None:
        self.policy = policy
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=True,
            http2=False,
            network_backend=GuardedNetworkBackend(policy, resolver),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme not in _DEFAULT_PORTS:
            raise WebhookConnectRefused(
                f"webhook URL scheme {url.scheme!r} refused; only http and https are called"
            )
        if url.userinfo:
            raise WebhookConnectRefused("webhook URL must not contain credentials")
        if not isinstance(request.stream, httpx.AsyncByteStream):
            raise TypeError("GuardedTransport needs an async request body")
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=url.raw_scheme,
                host=url.raw_host,
                port=url.port,
                target=url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _httpx_errors():
            response = await self._pool.handle_async_request(core_request)
        if not isinstance(response.stream, AsyncIterable):  # pragma: no cover
            raise TypeError("httpcore returned a synchronous response stream")
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(response.stream),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()
