"""Webhook URLs are attacker-controlled input: this package decides which ones the gateway
may call, and makes sure the address it actually connects to is one it vetted.

It owns three checks, applied in order:

* `check_url_syntax` (`syntax`): http(s) only, a host, no credentials, a valid port, no
  whitespace or control characters, at most 2048 characters. A host written as an IP
  literal in any form that browsers or `inet_aton` accept (``2130706433``, ``0x7f.1``,
  ``0177.0.0.1``, ``127.1``, ``[::ffff:7f00:1]``, full-width digits...) is normalised to
  the address it really names, so that it can be judged like any other.
* `AddressPolicy` (`policy`): an address is callable iff it is in an operator's
  allowlisted network or is globally routable. Loopback, private, link-local (and the
  cloud metadata address), CGNAT, multicast, reserved, documentation and benchmarking
  ranges, unique-local IPv6, Teredo, and IPv6 forms that embed a non-global IPv4 address
  (mapped, compatible, NAT64, 6to4) are refused.
* `resolve_and_check` (`resolution`) at submit time (every A and AAAA record must pass),
  and `GuardedTransport` (`transport`) at connect time: it resolves the host itself,
  checks every address, and connects to a vetted IP while TLS still verifies the
  certificate for the host name. That second check is what defeats DNS rebinding (a name
  that answers a public address when the URL is submitted and 127.0.0.1 when the webhook
  is delivered).

Its modules import one way only: `policy` <- `refusal` <- `syntax` <- `resolution` <-
`transport` (each may import those before it, never one after it). This file only
re-exports; every name has its home in one module.

It must never: connect to an address it has not checked in the same call; let the
system resolver or the HTTP client resolve a webhook host behind its back; follow a
redirect; go through a proxy; or echo credentials, paths or query strings (where
webhook secrets live) into an error message.
"""

from __future__ import annotations

from proxy.core.ssrf.policy import ALLOW_SETTING, AddressPolicy, IPAddress
from proxy.core.ssrf.refusal import WebhookUrlError
from proxy.core.ssrf.resolution import (
    RESOLVE_TIMEOUT,
    Resolver,
    resolve_and_check,
    system_resolver,
)
from proxy.core.ssrf.syntax import MAX_URL_LENGTH, WebhookUrl, check_url_syntax
from proxy.core.ssrf.transport import GuardedNetworkBackend, GuardedTransport, WebhookConnectRefused

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
