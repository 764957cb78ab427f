"""SSRF guard for webhook URLs: syntax, address policy, submit-time resolution, and the
connect-time guard that defeats DNS rebinding. No real DNS or external network: hosts
resolve through injected fake resolvers, and the only servers are on 127.0.0.1."""

from __future__ import annotations

import re
import shutil
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from pathlib import Path

import anyio
import httpx
import pytest
from anyio.abc import ByteStream, SocketAttribute
from anyio.streams.buffered import BufferedByteReceiveStream
from anyio.streams.tls import TLSListener
from hypothesis import assume, given
from hypothesis import strategies as st

from proxy.core import ssrf
from proxy.core.ssrf import (
    AddressPolicy,
    GuardedNetworkBackend,
    GuardedTransport,
    IPAddress,
    WebhookConnectRefused,
    WebhookUrlError,
    check_url_syntax,
    resolution,
    resolve_and_check,
    system_resolver,
)
from tests.raw_http import read_request

pytestmark = pytest.mark.anyio

STRICT = AddressPolicy()
LOOPBACK = AddressPolicy(["127.0.0.0/8", "::1/128"])
PUBLIC_V4 = "93.184.215.14"
PUBLIC_V6 = "2606:2800:21f:cb07:6820:80da:af6b:8b2c"

# The spec, written out independently of the module's own tables: every range, and a word
# its refusal must name.
REFUSED_V4: list[tuple[str, tuple[str, ...]]] = [
    ("0.0.0.0/8", ("unspecified",)),
    ("10.0.0.0/8", ("private",)),
    ("172.16.0.0/12", ("private",)),
    ("192.168.0.0/16", ("private",)),
    ("100.64.0.0/10", ("carrier-grade NAT",)),
    ("127.0.0.0/8", ("loopback",)),
    ("169.254.0.0/16", ("link-local",)),
    ("192.0.0.0/24", ("IETF protocol",)),
    ("192.0.2.0/24", ("documentation",)),
    ("198.51.100.0/24", ("documentation",)),
    ("203.0.113.0/24", ("documentation",)),
    ("198.18.0.0/15", ("benchmarking",)),
    ("192.88.99.0/24", ("6to4 relay",)),
    ("224.0.0.0/4", ("multicast",)),
    ("240.0.0.0/4", ("reserved", "broadcast")),
    ("255.255.255.255/32", ("broadcast",)),
]
REFUSED_V6: list[tuple[str, tuple[str, ...]]] = [
    ("::/128", ("unspecified",)),
    ("::1/128", ("loopback",)),
    ("fc00::/7", ("unique-local",)),
    ("fe80::/10", ("link-local",)),
    ("fec0::/10", ("site-local",)),
    ("ff00::/8", ("multicast",)),
    ("2001:db8::/32", ("documentation",)),
    ("3fff::/20", ("documentation",)),
    ("2001::/32", ("Teredo",)),
    ("2001::/23", ("IETF protocol", "Teredo")),
    ("100::/64", ("discard",)),
    ("64:ff9b:1::/48", ("NAT64",)),
    ("5f00::/16", ("SRv6",)),
]
V4_NETS = [IPv4Network(net) for net, _ in REFUSED_V4]
V6_NETS = [IPv6Network(net) for net, _ in REFUSED_V6]
EMBEDDING_V6 = [IPv6Network(net) for net in ("::/96", "::ffff:0:0/96", "64:ff9b::/96", "2002::/16")]

refused_v4 = st.sampled_from(V4_NETS).flatmap(lambda net: st.ip_addresses(network=net))
public_v4 = st.ip_addresses(v=4).filter(lambda ip: not any(ip in net for net in V4_NETS))
public_v6 = st.ip_addresses(network="2000::/3").filter(
    lambda ip: not any(ip in net for net in [*V6_NETS, *EMBEDDING_V6])
)


def embed(v4: IPv4Address, form: str) -> IPv6Address:
    """`v4` written as an IPv6 address in one of the forms that carry an IPv4 address."""
    value = int(v4)
    match form:
        case "mapped":
            return IPv6Address(0xFFFF_0000_0000 | value)
        case "compatible":
            return IPv6Address(value)
        case "nat64":
            return IPv6Address((0x64_FF9B << 96) | value)
        case _:  # 6to4
            return IPv6Address((0x2002 << 112) | (value << 80))


EMBED_FORMS = st.sampled_from(["mapped", "compatible", "nat64", "6to4"])


# --------------------------------------------------------------------------- policy


@pytest.mark.parametrize(("network", "words"), REFUSED_V4 + REFUSED_V6)
@given(data=st.data())
def test_every_address_in_a_refused_range_is_refused(
    network: str, words: tuple[str, ...], data: st.DataObject
) -> None:
    ip = data.draw(st.ip_addresses(network=network))
    reason = STRICT.refusal_reason(ip)
    assert reason is not None, ip
    assert any(word in reason for word in words), (ip, reason)
    assert not STRICT.is_allowed(ip)


# IANA's reserved IPv6 blocks that no table of the module names (outside 2000::/3).
RESERVED_V6 = ["200::/7", "400::/6", "800::/5", "1000::/4", "4000::/3", "6000::/3", "8000::/3",
               "a000::/3", "c000::/3", "e000::/4", "f000::/5", "f800::/6", "fe00::/9"]  # fmt: skip


@given(st.sampled_from(RESERVED_V6).flatmap(lambda net: st.ip_addresses(network=net)))
def test_ipv6_outside_the_global_unicast_block_is_refused_as_reserved(ip: IPv6Address) -> None:
    # The stdlib's registry is what refuses these: the check after the tables is reachable.
    reason = STRICT.refusal_reason(ip)
    assert reason is not None, ip
    assert "reserved" in reason, (ip, reason)


def test_the_metadata_address_is_named() -> None:
    reason = STRICT.refusal_reason(IPv4Address("169.254.169.254"))
    assert reason is not None
    assert "metadata" in reason


@given(ip=public_v4)
def test_public_ipv4_is_allowed(ip: IPv4Address) -> None:
    assert STRICT.is_allowed(ip), STRICT.refusal_reason(ip)


@given(ip=public_v6)
def test_public_ipv6_is_allowed(ip: IPv6Address) -> None:
    assert STRICT.is_allowed(ip), STRICT.refusal_reason(ip)


@given(v4=refused_v4, form=EMBED_FORMS)
def test_ipv6_forms_embedding_a_refused_ipv4_are_refused(v4: IPv4Address, form: str) -> None:
    assume(not (form == "compatible" and int(v4) <= 1))  # :: and ::1 are refused on their own
    reason = STRICT.refusal_reason(embed(v4, form))
    assert reason is not None
    assert str(v4) in reason


@given(v4=public_v4, form=EMBED_FORMS)
def test_ipv6_forms_embedding_a_public_ipv4_are_judged_by_it(v4: IPv4Address, form: str) -> None:
    assert STRICT.is_allowed(embed(v4, form))


@given(server=public_v4, client=public_v4)
def test_teredo_is_refused_whatever_it_embeds(server: IPv4Address, client: IPv4Address) -> None:
    teredo = IPv6Address((0x2001_0000 << 96) | (int(server) << 64) | (~int(client) & 0xFFFFFFFF))
    assert teredo.teredo is not None
    assert not STRICT.is_allowed(teredo)


@given(ip=st.ip_addresses(network="127.0.0.0/8"))
def test_an_allowlist_admits_its_networks(ip: IPv4Address) -> None:
    assert LOOPBACK.is_allowed(ip)
    assert LOOPBACK.is_allowed(embed(ip, "mapped"))  # the same address on a dual-stack socket
    assert not STRICT.is_allowed(ip)


@given(ip=st.sampled_from(V4_NETS[:5]).flatmap(lambda net: st.ip_addresses(network=net)))
def test_an_allowlist_admits_nothing_else(ip: IPv4Address) -> None:
    assert not LOOPBACK.is_allowed(ip)


def test_an_ipv6_allowlist_entry() -> None:
    assert LOOPBACK.is_allowed(IPv6Address("::1"))
    assert not LOOPBACK.is_allowed(IPv6Address("::2"))
    assert AddressPolicy(["fd00::/8"]).is_allowed(IPv6Address("fd12::1"))
    assert not AddressPolicy(["fd00::/8"]).is_allowed(IPv4Address("10.0.0.1"))


@pytest.mark.parametrize(
    ("entry", "hint"),
    [
        ("nonsense", "CIDR"),
        ("127.0.0.1/33", "CIDR"),
        ("10.1.2.3/8", "did you mean 10.0.0.0/8"),
        ("", "CIDR"),
        ("fe80::/10%eth0", "CIDR"),
    ],
)
def test_invalid_allowlist_entries_are_refused_clearly(entry: str, hint: str) -> None:
    with pytest.raises(ValueError, match="webhook_allow_networks") as caught:
        AddressPolicy([entry])
    assert repr(entry) in str(caught.value)
    assert hint in str(caught.value)


def test_an_allowlist_given_as_one_string_is_refused() -> None:
    with pytest.raises(ValueError, match="list of CIDR strings"):
        AddressPolicy("127.0.0.0/8")


def test_allowlist_entries_are_trimmed() -> None:
    assert AddressPolicy([" 127.0.0.0/8 "]).is_allowed(IPv4Address("127.0.0.1"))


# --------------------------------------------------------------------------- URL syntax

LITERALS: list[tuple[str, str]] = [
    ("http://127.0.0.1/", "127.0.0.1"),
    ("http://127.0.0.1./", "127.0.0.1"),
    ("http://2130706433/", "127.0.0.1"),
    ("http://0x7f000001/", "127.0.0.1"),
    ("http://0X7F000001/", "127.0.0.1"),
    ("http://0x7f.0.0.1/", "127.0.0.1"),
    ("http://0x7f.1/", "127.0.0.1"),
    ("http://0177.0.0.1/", "127.0.0.1"),
    ("http://0177.1/", "127.0.0.1"),
    ("http://017700000001/", "127.0.0.1"),
    ("http://127.1/", "127.0.0.1"),
    ("http://127.0.1/", "127.0.0.1"),
    ("http://127.0.0.1:8080/hook", "127.0.0.1"),
    ("http://\uff11\uff12\uff17.\uff10.\uff10.\uff11/", "127.0.0.1"),
    ("http://0/", "0.0.0.0"),
    ("http://0.0.0.0/", "0.0.0.0"),
    ("http://0x/", "0.0.0.0"),
    ("http://3232235521/", "192.168.0.1"),
    ("http://10.1/", "10.0.0.1"),
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254"),
    ("http://0xa9fea9fe/", "169.254.169.254"),
    ("http://0251.0376.0251.0376/", "169.254.169.254"),
    ("http://100.64.0.1/", "100.64.0.1"),
    ("http://[::1]/", "::1"),
    ("http://[::]/", "::"),
    ("http://[::ffff:127.0.0.1]/", "::ffff:127.0.0.1"),
    ("http://[::ffff:7f00:1]/", "::ffff:127.0.0.1"),
    ("http://[0:0:0:0:0:ffff:a9fe:a9fe]/", "::ffff:169.254.169.254"),
    ("http://[::127.0.0.1]/", "::127.0.0.1"),
    ("http://[64:ff9b::7f00:1]/", "64:ff9b::7f00:1"),
    ("http://[2002:7f00:1::]/", "2002:7f00:1::"),
    ("http://[fe80::1]/", "fe80::1"),
    ("http://[FD00::1]:8443/", "fd00::1"),
]


# Browsers read these as addresses, but httpx cannot use them: even when allowlisted they
# are refused at submit, since a delivery to them would fail.
HTTPX_REJECTS = {
    "http://0177.0.0.1/",
    "http://0251.0376.0251.0376/",
    "http://\uff11\uff12\uff17.\uff10.\uff10.\uff11/",
}


@pytest.mark.parametrize(("url", "expected"), LITERALS)
def test_ip_literals_in_any_form_are_normalised_and_refused(url: str, expected: str) -> None:
    address = ip_address(expected)
    if url not in HTTPX_REJECTS:
        checked = check_url_syntax(url)
        assert checked.address == address
        assert checked.hostname == str(address)
    with pytest.raises(WebhookUrlError) as caught:
        check_url_syntax(url, policy=STRICT)
    assert caught.value.address == address
    message = str(caught.value)
    assert str(address) in message
    assert "publicly routable" in message
    assert "webhook_allow_networks" in message


@pytest.mark.parametrize(
    "url",
    [
        url
        for url, expected in LITERALS
        if (expected == "::1" or expected.startswith(("127.", "::ffff:127.")))
        and url not in HTTPX_REJECTS
    ],
)
def test_an_allowlist_admits_loopback_literals(url: str) -> None:
    assert check_url_syntax(url, policy=LOOPBACK).address is not None


@pytest.mark.parametrize("url", sorted(HTTPX_REJECTS))
def test_allowlisted_literals_httpx_cannot_use_are_refused(url: str) -> None:
    everything = AddressPolicy(["0.0.0.0/0"])
    with pytest.raises(WebhookUrlError, match="HTTP client"):
        check_url_syntax(url, policy=everything)


@pytest.mark.parametrize(
    "url",
    [
        "http://256.0.0.1/",
        "http://1.2.3.4.5/",
        "http://08.0.0.1/",
        "http://0x7g.1/",
        "http://4294967296/",
        "http://1.2.3.0x100/",
        "http://1.2.65536/",
        "http://example.123/",
        "http://hooks.0x10/",
    ],
)
def test_hosts_that_look_numeric_but_are_not_valid_addresses_are_refused(url: str) -> None:
    with pytest.raises(WebhookUrlError, match="looks like an IPv4 address"):
        check_url_syntax(url)


@pytest.mark.parametrize(
    ("url", "hostname", "port"),
    [
        ("https://hooks.example.com/path?q=1", "hooks.example.com", 443),
        ("HTTPS://HOOKS.Example.COM/", "hooks.example.com", 443),
        ("http://hooks.example.com:8080/x", "hooks.example.com", 8080),
        ("http://hooks.example.com:/x", "hooks.example.com", 80),
        ("https://bücher.example/hook", "xn--bcher-kva.example", 443),
        ("http://under_score.example/", "under_score.example", 80),
        ("http://1password.example/", "1password.example", 80),
        ("http://8.8.8.8/", "8.8.8.8", 80),
        ("https://[2606:4700::1111]:8443/", "2606:4700::1111", 8443),
    ],
)
def test_acceptable_urls_are_split_and_normalised(url: str, hostname: str, port: int) -> None:
    checked = check_url_syntax(url, policy=STRICT)
    assert (checked.hostname, checked.port) == (hostname, port)
    assert checked.url == url


@pytest.mark.parametrize(
    "url",
    [
        "http://user:hunter2@hooks.example/",
        "http://user@hooks.example/",
        "http://@hooks.example/",
        "http://hooks.example@127.0.0.1/",
        "https://user:hunter2%40x@hooks.example:8443/",
        "http://[::1]@hooks.example/",
    ],
)
def test_credentials_are_refused_without_being_echoed(url: str) -> None:
    with pytest.raises(WebhookUrlError, match="credentials") as caught:
        check_url_syntax(url)
    assert "hunter2" not in str(caught.value)
    assert "user" not in str(caught.value).replace("user:password", "")


@pytest.mark.parametrize(
    "url",
    [
        "ftp://hooks.example/",
        "file:///etc/passwd",
        "gopher://127.0.0.1:6379/_FLUSHALL",
        "javascript:alert(1)",
        "ws://hooks.example/",
        "hooks.example/hook",
        "hooks.example:8080/hook",
        "//hooks.example/hook",
        "/hook",
        "http:hooks.example/",
        "http:/hooks.example/",
    ],
)
def test_only_absolute_http_and_https_urls_are_accepted(url: str) -> None:
    with pytest.raises(WebhookUrlError, match=r"http:// or https://"):
        check_url_syntax(url)


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("", "empty"),
        ("http:///hook", "no host"),
        ("http://:8080/hook", "no host"),
        ("http://hooks.example:0/", "invalid port"),
        ("http://hooks.example:65536/", "invalid port"),
        ("http://hooks.example:http/", "invalid port"),
        ("http://hooks.example:\uff18\uff10/", "invalid port"),
        ("http://hooks.example:80:80/", "invalid port"),
        ("http://[fe80::1%25eth0]/", "zone id"),
        ("http://[fe80::1%eth0]/", "zone id"),
        ("http://[::1/", "IPv6"),
        ("http://[::1]x/", "IPv6"),
        ("http://[127.0.0.1]/", "IPv4 address cannot be in brackets"),
        ("http://[v1.fe]/", "IPv6"),
        ("http://%31%32%37.0.0.1/", "percent-encoded"),
        ("http://hooks.example\\@127.0.0.1/", "backslash"),
        ("http://127.0.0.1\\.hooks.example/", "backslash"),
        ("http://hooks..example/", "not a valid domain name"),
        ("http://" + "a" * 64 + ".example/", "not a valid domain name"),
        ("http://hooks*.example/", "characters not allowed"),
        # Full-width letters: browsers map them to ASCII, httpx refuses them.
        ("https://\uff48\uff4f\uff4f\uff4b\uff53\uff0eexample/", "HTTP client"),
        ("http://hooks.example/" + "a" * 2048, "the limit is 2048"),
    ],
)
def test_malformed_urls_are_refused_with_the_reason(url: str, match: str) -> None:
    with pytest.raises(WebhookUrlError, match=match):
        check_url_syntax(url)


@given(
    char=st.one_of(
        st.characters(categories=["Cc", "Cf", "Zs", "Zl", "Zp"]),
        st.sampled_from([" ", "\t", "\n", "\r", "\x00", "\x0b", "\u200b", "\u3000", "\x85"]),
    ),
    position=st.integers(0, len("https://hooks.example/path?q=1")),
)
def test_whitespace_and_control_characters_are_refused_anywhere(char: str, position: int) -> None:
    url = "https://hooks.example/path?q=1"
    with pytest.raises(WebhookUrlError, match="whitespace or a control character"):
        check_url_syntax(url[:position] + char + url[position:])


def test_a_url_of_exactly_the_limit_is_accepted() -> None:
    base = "https://hooks.example/"
    url = base + "a" * (ssrf.MAX_URL_LENGTH - len(base))
    assert len(check_url_syntax(url).url) == ssrf.MAX_URL_LENGTH


def test_a_non_string_is_refused() -> None:
    with pytest.raises(WebhookUrlError, match="string"):
        check_url_syntax(b"http://hooks.example/")  # type: ignore[arg-type]


def test_the_refusal_says_what_is_wrong_and_what_to_do() -> None:
    with pytest.raises(WebhookUrlError) as caught:
        check_url_syntax("http://10.0.0.5/hook?token=s3cret", policy=STRICT)
    assert str(caught.value) == (
        "webhook URL http://10.0.0.5/… resolves to 10.0.0.5, a private address; the gateway "
        "only calls publicly routable addresses (an operator can allow networks with "
        "webhook_allow_networks)"
    )
    assert isinstance(caught.value, ValueError)


# --------------------------------------------------------------------------- resolution


@dataclass
class FakeDns:
    """A resolver with scripted answers: each call for a host takes its next answer, and
    the last answer repeats. Hosts it does not know fail like NXDOMAIN."""

    answers: dict[str, list[list[str]]]
    calls: list[str] = field(default_factory=list)

    async def __call__(self, host: str) -> list[str]:
        self.calls.append(host)
        script = self.answers.get(host)
        if script is None:
            raise OSError(-2, "Name or service not known")
        return script[min(self.calls.count(host), len(script)) - 1]


async def never_called(host: str) -> list[str]:
    raise AssertionError(f"resolved {host} although it is an IP literal")


async def test_a_host_with_only_public_addresses_passes() -> None:
    dns = FakeDns({"hooks.example": [[PUBLIC_V4, PUBLIC_V6, PUBLIC_V4]]})
    addresses = await resolve_and_check("https://hooks.example/hook", STRICT, dns)
    assert addresses == [ip_address(PUBLIC_V4), ip_address(PUBLIC_V6)]
    assert dns.calls == ["hooks.example"]


@given(
    public=st.lists(st.one_of(public_v4, public_v6), min_size=1, max_size=4),
    bad=st.one_of(
        refused_v4,
        st.sampled_from(V6_NETS).flatmap(lambda net: st.ip_addresses(network=net)),
    ),
    position=st.integers(0, 4),
)
async def test_one_refused_record_among_public_ones_refuses_the_url(
    public: list[IPAddress], bad: IPAddress, position: int
) -> None:
    answers = [str(ip) for ip in public]
    answers.insert(min(position, len(answers)), str(bad))
    dns = FakeDns({"hooks.example": [answers]})
    with pytest.raises(WebhookUrlError) as caught:
        await resolve_and_check("https://hooks.example/hook", STRICT, dns)
    assert caught.value.address == bad
    assert f"resolves to {bad} (one of its" in str(caught.value)


async def test_a_host_that_does_not_resolve_is_refused() -> None:
    with pytest.raises(WebhookUrlError, match="does not resolve"):
        await resolve_and_check("https://nowhere.example/", STRICT, FakeDns({}))
    empty = FakeDns({"empty.example": [[]]})
    with pytest.raises(WebhookUrlError, match="no A or AAAA records"):
        await resolve_and_check("https://empty.example/", STRICT, empty)


async def test_a_resolver_answering_garbage_is_refused() -> None:
    dns = FakeDns({"hooks.example": [["not-an-ip"]]})
    with pytest.raises(WebhookUrlError, match="not an IP address"):
        await resolve_and_check("https://hooks.example/", STRICT, dns)


async def test_a_slow_resolver_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resolution, "RESOLVE_TIMEOUT", 0.05)

    async def hangs(host: str) -> list[str]:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    with pytest.raises(WebhookUrlError, match="did not resolve within"):
        await resolve_and_check("https://hooks.example/", STRICT, hangs)


@pytest.mark.parametrize("url", ["http://0x7f.1/", "http://[::ffff:7f00:1]/", "http://10.0.0.5/"])
async def test_ip_literals_skip_dns(url: str) -> None:
    with pytest.raises(WebhookUrlError, match="publicly routable"):
        await resolve_and_check(url, STRICT, never_called)


async def test_public_literals_skip_dns_and_pass() -> None:
    assert await resolve_and_check("https://8.8.8.8/", STRICT, never_called) == [
        IPv4Address("8.8.8.8")
    ]


async def test_the_allowlist_admits_loopback_at_submit() -> None:
    dns = FakeDns({"localhost": [["127.0.0.1", "::1"]]})
    assert await resolve_and_check("http://localhost:8000/hook", LOOPBACK, dns) == [
        IPv4Address("127.0.0.1"),
        IPv6Address("::1"),
    ]
    with pytest.raises(WebhookUrlError, match="loopback"):
        await resolve_and_check("http://localhost:8000/hook", STRICT, dns)


async def test_syntax_errors_come_before_dns() -> None:
    with pytest.raises(WebhookUrlError, match="credentials"):
        await resolve_and_check("http://u:p@hooks.example/", STRICT, never_called)


async def test_the_system_resolver_returns_address_strings() -> None:
    # A numeric host: getaddrinfo answers it without any DNS traffic.
    assert await system_resolver("127.0.0.1") == ["127.0.0.1"]


# --------------------------------------------------------------------------- connect time


@dataclass
class Received:
    request_line: str
    headers: dict[str, str]
    body: bytes


@dataclass
class HookServer:
    """A minimal HTTP/1.1 server on 127.0.0.1 that counts the connections it accepts."""

    port: int
    response: bytes = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
    accepted: int = 0
    received: list[Received] = field(default_factory=list)
    server_names: list[str | None] = field(default_factory=list)

    async def handle(self, stream: ByteStream) -> None:
        self.accepted += 1
        async with stream:
            try:
                reader = BufferedByteReceiveStream(stream)
                request_line, headers, body = await read_request(reader)
                self.received.append(Received(request_line, headers, body))
                await stream.send(self.response)
            except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError):
                return


@asynccontextmanager
async def running_server(tls: ssl.SSLContext | None = None) -> AsyncIterator[HookServer]:
    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as tcp:
        server = HookServer(port=tcp.extra(SocketAttribute.local_port))  # noqa: S610
        async with anyio.create_task_group() as tasks:
            if tls is None:
                tasks.start_soon(tcp.serve, server.handle)
            else:

                def record_sni(_obj: object, name: str | None, _ctx: ssl.SSLContext) -> None:
                    server.server_names.append(name)

                tls.sni_callback = record_sni
                tasks.start_soon(
                    TLSListener(tcp, tls, standard_compatible=False).serve, server.handle
                )
            yield server
            tasks.cancel_scope.cancel()


@pytest.fixture
async def hook_server() -> AsyncIterator[HookServer]:
    async with running_server() as server:
        yield server


def guarded_client(
    policy: AddressPolicy, dns: FakeDns, verify: ssl.SSLContext | bool = True
) -> httpx.AsyncClient:
    transport = GuardedTransport(policy, resolver=dns, verify=verify)
    return httpx.AsyncClient(transport=transport, follow_redirects=False, timeout=5)


async def test_with_the_allowlist_a_webhook_is_delivered(hook_server: HookServer) -> None:
    dns = FakeDns({"hooks.example": [["127.0.0.1"]]})
    async with guarded_client(LOOPBACK, dns) as client:
        response = await client.post(
            f"http://hooks.example:{hook_server.port}/hook?x=1", content=b'{"ok":true}'
        )
    assert response.status_code == 200
    assert response.text == "ok"
    assert hook_server.accepted == 1
    [received] = hook_server.received
    assert received.request_line == "POST /hook?x=1 HTTP/1.1"
    assert received.headers["host"] == f"hooks.example:{hook_server.port}"
    assert received.body == b'{"ok":true}'
    assert dns.calls == ["hooks.example"]


async def test_without_the_allowlist_the_server_is_never_reached(hook_server: HookServer) -> None:
    dns = FakeDns({"hooks.example": [["127.0.0.1"]]})
    async with guarded_client(STRICT, dns) as client:
        with pytest.raises(WebhookConnectRefused) as caught:
            await client.post(f"http://hooks.example:{hook_server.port}/hook", content=b"{}")
    assert isinstance(caught.value, WebhookUrlError)
    assert isinstance(caught.value, httpx.ConnectError)
    assert caught.value.address == IPv4Address("127.0.0.1")
    assert "now resolves to 127.0.0.1, a loopback address" in str(caught.value)
    assert hook_server.accepted == 0


async def test_dns_rebinding_is_refused_at_connect_time(hook_server: HookServer) -> None:
    url = f"http://rebind.example:{hook_server.port}/hook"
    dns = FakeDns({"rebind.example": [[PUBLIC_V4], ["127.0.0.1"]]})
    assert await resolve_and_check(url, STRICT, dns) == [IPv4Address(PUBLIC_V4)]
    async with guarded_client(STRICT, dns) as client:
        with pytest.raises(WebhookConnectRefused, match=re.escape("127.0.0.1")):
            await client.post(url, content=b"{}")
    assert dns.calls == ["rebind.example", "rebind.example"]
    assert hook_server.accepted == 0


async def test_one_refused_answer_at_connect_time_refuses_all(hook_server: HookServer) -> None:
    dns = FakeDns({"mixed.example": [["127.0.0.1", "10.0.0.5"]]})
    async with guarded_client(LOOPBACK, dns) as client:
        with pytest.raises(WebhookConnectRefused, match=re.escape("10.0.0.5, a private address")):
            await client.post(f"http://mixed.example:{hook_server.port}/", content=b"{}")
    assert hook_server.accepted == 0


@pytest.mark.parametrize("host", ["127.0.0.1", "2130706433", "0x7f.1", "127.1", "[::ffff:7f00:1]"])
async def test_literal_hosts_are_checked_at_connect_time(
    hook_server: HookServer, host: str
) -> None:
    url = f"http://{host}:{hook_server.port}/hook"
    async with guarded_client(STRICT, FakeDns({})) as client:
        with pytest.raises(WebhookConnectRefused, match=re.escape("127.0.0.1")):
            await client.post(url, content=b"{}")
    assert hook_server.accepted == 0
    dns = FakeDns({})
    async with guarded_client(LOOPBACK, dns) as client:
        response = await client.post(url, content=b"{}")
    assert response.status_code == 200
    assert hook_server.accepted == 1
    assert dns.calls == []  # connected to the parsed address, never through a resolver


async def test_redirects_are_returned_not_followed(hook_server: HookServer) -> None:
    hook_server.response = (
        b"HTTP/1.1 302 Found\r\nlocation: http://internal.example/admin\r\n"
        b"content-length: 0\r\nconnection: close\r\n\r\n"
    )
    dns = FakeDns({"hooks.example": [["127.0.0.1"]], "internal.example": [["10.0.0.5"]]})
    async with guarded_client(LOOPBACK, dns) as client:
        response = await client.post(f"http://hooks.example:{hook_server.port}/", content=b"{}")
        assert response.status_code == 302
        assert dns.calls == ["hooks.example"]
        # Even a client that follows redirects gets every hop checked again.
        with pytest.raises(WebhookConnectRefused, match=re.escape("10.0.0.5")):
            await client.post(
                f"http://hooks.example:{hook_server.port}/", content=b"{}", follow_redirects=True
            )
    assert hook_server.accepted == 2


@pytest.mark.skipif(sys.platform != "linux", reason="needs all of 127.0.0.0/8 on loopback")
async def test_a_dead_vetted_address_falls_back_to_the_next(hook_server: HookServer) -> None:
    dns = FakeDns({"hooks.example": [["127.0.0.2", "127.0.0.1"]]})
    async with guarded_client(LOOPBACK, dns) as client:
        response = await client.post(f"http://hooks.example:{hook_server.port}/", content=b"{}")
    assert response.status_code == 200
    assert hook_server.accepted == 1


async def test_a_hanging_resolver_times_out_as_a_connect_timeout() -> None:
    async def hangs(host: str) -> list[str]:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    transport = GuardedTransport(STRICT, resolver=hangs)
    async with httpx.AsyncClient(transport=transport, timeout=0.1) as client:
        with pytest.raises(httpx.ConnectTimeout):
            await client.get("http://slow.example/")


async def test_an_unresolvable_host_is_a_connect_error() -> None:
    async with guarded_client(STRICT, FakeDns({})) as client:
        with pytest.raises(httpx.ConnectError, match="could not resolve") as caught:
            await client.get("http://nowhere.example/")
    assert not isinstance(caught.value, WebhookUrlError)


@pytest.mark.parametrize(
    ("url", "match"),
    [("ftp://127.0.0.1/", "scheme"), ("http://user:pw@127.0.0.1/", "credentials")],
)
async def test_the_transport_refuses_bad_requests_itself(url: str, match: str) -> None:
    transport = GuardedTransport(LOOPBACK, resolver=never_called)
    async with transport:
        with pytest.raises(WebhookConnectRefused, match=match):
            await transport.handle_async_request(httpx.Request("GET", url))


async def test_the_backend_never_opens_unix_sockets() -> None:
    with pytest.raises(WebhookConnectRefused, match="Unix socket"):
        await GuardedNetworkBackend(LOOPBACK).connect_unix_socket("/tmp/x.sock")


# --------------------------------------------------------------------------- TLS


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for hooks.example only (not for its address)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec",
            "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", str(key), "-out", str(cert), "-days", "2",
            "-subj", "/CN=hooks.example", "-addext", "subjectAltName=DNS:hooks.example",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def tls_contexts(certificate: tuple[Path, Path]) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    cert, key = certificate
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    return server, ssl.create_default_context(cafile=str(cert))


async def test_tls_verifies_the_host_name_while_connecting_to_the_vetted_ip(
    certificate: tuple[Path, Path],
) -> None:
    server_context, client_context = tls_contexts(certificate)
    dns = FakeDns({"hooks.example": [["127.0.0.1"]], "other.example": [["127.0.0.1"]]})
    async with (
        running_server(server_context) as server,
        guarded_client(LOOPBACK, dns, verify=client_context) as client,
    ):
        response = await client.post(f"https://hooks.example:{server.port}/", content=b"{}")
        assert response.status_code == 200
        assert server.server_names == ["hooks.example"]
        assert server.received[0].headers["host"] == f"hooks.example:{server.port}"
        # Same IP, another name: the certificate does not cover it, so TLS fails.
        with pytest.raises(httpx.ConnectError) as caught:
            await client.post(f"https://other.example:{server.port}/", content=b"{}")
        assert not isinstance(caught.value, WebhookUrlError)
        assert "certificate" in str(caught.value).lower()
