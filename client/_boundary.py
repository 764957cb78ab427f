"""The one place where httpx's exceptions become the client's `TransportError`s.

Both drivers wrap every exchange in `translate_transport_errors`; nothing else in the
package catches httpx exceptions. The original is kept as `__cause__` (`raise ... from exc`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from ._errors import ConnectError, ConnectTimeout, TransportError, TransportTimeout

__all__ = ["translate_transport_errors"]


@contextmanager
def translate_transport_errors(url: httpx.URL, request_id: str | None = None) -> Iterator[None]:
    where = f"{url.scheme}://{url.netloc.decode('ascii', errors='replace')}"
    try:
        yield
    except httpx.ConnectTimeout as exc:
        raise ConnectTimeout(
            f"timed out connecting to {where}; nothing was sent. Check the network or the base URL",
            request_id=request_id,
        ) from exc
    except httpx.ConnectError as exc:
        raise ConnectError(
            f"could not connect to {where} ({exc or type(exc).__name__}); nothing was sent. "
            "Check the base URL and that the server is up",
            request_id=request_id,
        ) from exc
    except httpx.TimeoutException as exc:
        phase = type(exc).__name__.removesuffix("Timeout").lower() or "request"
        raise TransportTimeout(
            f"no answer from {where} in time ({phase} timeout); raise the timeout or retry later",
            request_id=request_id,
        ) from exc
    except httpx.UnsupportedProtocol as exc:
        raise TransportError(
            f"cannot talk to {where}: unsupported URL scheme; use http:// or https://",
            request_id=request_id,
        ) from exc
    except (httpx.TransportError, httpx.StreamError) as exc:
        raise TransportError(
            f"the connection to {where} broke ({type(exc).__name__}: {exc}); "
            "it may have been sent, check before resending a paid request",
            request_id=request_id,
        ) from exc
