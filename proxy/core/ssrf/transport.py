"""Connect time: `GuardedTransport`, the httpx transport webhooks are delivered through.
On every new connection it resolves the host itself, checks every address against the
policy, and connects to a vetted IP, while TLS still verifies the certificate for the
host name. That check is what defeats DNS rebinding (a name that answers a public address
when the URL is submitted and 127.0.0.1 when the webhook is delivered).

It must never: connect to an address it has not checked in the same call; let the
system resolver or the HTTP client resolve a webhook host behind its back; follow a
redirect; go through a proxy; or echo credentials, paths or query strings into an error
message.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from contextlib import contextmanager
from ipaddress import IPv6Address
from typing import Final

import anyio
import httpcore
import httpx

from proxy.core.ssrf.policy import AddressPolicy, IPAddress, _only_public
from proxy.core.ssrf.refusal import WebhookUrlError
from proxy.core.ssrf.resolution import Resolver, _unique_addresses, system_resolver
from proxy.core.ssrf.syntax import _DEFAULT_PORTS, _host_of_connection

__all__ = ["GuardedNetworkBackend", "GuardedTransport", "WebhookConnectRefused"]


class WebhookConnectRefused(WebhookUrlError, httpx.ConnectError):
    """Raised at connect time when the host now resolves to a refused address (DNS
    rebinding, or a redirect hop): both a `WebhookUrlError` and an `httpx.ConnectError`,
    so a deliverer can catch it either way."""

    def __init__(self, message: str, *, address: IPAddress | None = None) -> None:
        httpx.ConnectError.__init__(self, message)
        self.message = message
        self.address = address


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
