"""The fake in-process, with its network faults as the httpx errors a socket would give.

In-process there is no socket to reset, so the fake raises `SimulatedNetworkFault`; this
transport turns it into `httpx.ReadError` (reset) or `httpx.RemoteProtocolError` (no
reply, garbage), so the code under test sees what it would see in production.
"""

from __future__ import annotations

import httpx

from fakeserver import SimulatedNetworkFault

__all__ = ["FaultingASGITransport"]


class FaultingASGITransport(httpx.ASGITransport):
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            response = await super().handle_async_request(request)
            await response.aread()
        except SimulatedNetworkFault as exc:
            if exc.fault == "reset":
                raise httpx.ReadError("connection reset by peer", request=request) from exc
            raise httpx.RemoteProtocolError(f"fault {exc.fault}", request=request) from exc
        return response
