"""URL syntax: `check_url_syntax` checks a webhook URL's form without DNS, and normalises
its host so that it can be judged like any other.

http(s) only, a host, no credentials, a valid port, no whitespace or control characters,
at most 2048 characters. A host written as an IP literal in any form that browsers or
`inet_aton` accept (``2130706433``, ``0x7f.1``, ``0177.0.0.1``, ``127.1``,
``[::ffff:7f00:1]``, full-width digits...) is normalised to the address it really names;
given an `AddressPolicy`, such a literal is judged by it at once.

It reads text only: it must never resolve a name or touch the network, and never echo
credentials, paths or query strings into an error message.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import Final
from urllib.parse import urlsplit

import httpx
import idna

from proxy.core.ssrf.policy import AddressPolicy, IPAddress, _only_public
from proxy.core.ssrf.refusal import WebhookUrlError

__all__ = ["MAX_URL_LENGTH", "WebhookUrl", "check_url_syntax"]

MAX_URL_LENGTH: Final = 2048

_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


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
