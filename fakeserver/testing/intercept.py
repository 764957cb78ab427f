"""Segmind's hosts answered by the in-process fake, for `requests` and for `httpx`.

`responses` patches `requests` (every session and the module functions) and `respx`
patches httpcore beneath `httpx` (sync and async clients and the module functions), so the
code under test runs unchanged. Only Segmind's hosts are answered; every other URL passes
through to the real network untouched (`OTHER_HOSTS`), so the code's own services, a
`segmind_server` on loopback and whatever else a test talks to keep working.

A network fault forced on the fake (`fault=reset`, `empty`, `garbage`) has no socket to
break in-process: it reaches the caller as the error its library raises for that fault on
a real connection (`requests.ConnectionError`; `httpx.ReadError` or
`httpx.RemoteProtocolError`).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import httpx
import requests
import responses
import respx

from ..errors import SimulatedNetworkFault
from .inprocess import InProcessFake

__all__ = ["OTHER_HOSTS", "SEGMIND_HOSTS", "intercepting"]

#: What the fake answers: api.segmind.com and any other host under segmind.com, so no
#: call of the code under test can reach a paid host by a name we did not think of.
_HOST = r"(?:[a-z0-9-]+\.)*segmind\.com"
SEGMIND_HOSTS = re.compile(rf"^{_HOST}$", re.IGNORECASE)
#: Everything else passes through.
OTHER_HOSTS = "pass through"
_URL = rf"https?://(?:[^/@]*@)?{_HOST}(?::\d+)?(?:[/?#]|$)"
_SEGMIND_URL = re.compile(rf"^{_URL}", re.IGNORECASE)
_NOT_SEGMIND_URL = re.compile(rf"^(?!{_URL})", re.IGNORECASE)
_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
# What a client library raises when a real server breaks the connection that way.
_HTTPX_FAULTS: dict[str, type[httpx.TransportError]] = {
    "reset": httpx.ReadError,
    "empty": httpx.RemoteProtocolError,
    "garbage": httpx.RemoteProtocolError,
}


def _fault_message(fault: SimulatedNetworkFault) -> str:
    return f"the fake Segmind broke the connection (fault={fault.fault}), as asked"


def _body_of(request: requests.PreparedRequest) -> bytes:
    body = request.body
    if body is None:
        return b""
    if isinstance(body, str):
        return body.encode()
    if isinstance(body, bytes):
        return body
    if hasattr(body, "read"):  # a file passed as data=
        data = body.read()
        return data.encode() if isinstance(data, str) else data
    return b"".join(part.encode() if isinstance(part, str) else part for part in body)


@contextlib.contextmanager
def intercepting(fake: InProcessFake) -> Iterator[None]:
    """While open, `requests` and `httpx` calls to Segmind's hosts reach `fake`."""
    with _requests_to(fake), _httpx_to(fake):
        yield


@contextlib.contextmanager
def _requests_to(fake: InProcessFake) -> Iterator[None]:
    def answer(request: requests.PreparedRequest) -> tuple[int, dict[str, str], bytes]:
        headers = [
            (k, v if isinstance(v, str) else v.decode("latin-1"))
            for k, v in request.headers.items()
        ]
        try:
            got = fake.answer(
                request.method or "GET", request.url or "", headers, _body_of(request)
            )
        except SimulatedNetworkFault as fault:
            raise requests.ConnectionError(_fault_message(fault), request=request) from fault
        return got.status, dict(got.headers), got.body

    # assert_all_requests_are_fired: the code under test need not call every method.
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        for method in _METHODS:
            mock.add_callback(method, _SEGMIND_URL, callback=answer, content_type=None)
        mock.add_passthru(_NOT_SEGMIND_URL)
        yield


@contextlib.contextmanager
def _httpx_to(fake: InProcessFake) -> Iterator[None]:
    def answer(request: httpx.Request) -> httpx.Response:
        try:
            got = fake.answer(
                request.method, str(request.url), list(request.headers.multi_items()),
                request.content,
            )  # fmt: skip
        except SimulatedNetworkFault as fault:
            raise _HTTPX_FAULTS[fault.fault](_fault_message(fault), request=request) from fault
        return httpx.Response(got.status, headers=got.headers, content=got.body)

    with respx.mock(assert_all_called=False, assert_all_mocked=True) as router:
        router.route(host__regex=SEGMIND_HOSTS).mock(side_effect=answer)
        router.route().pass_through()
        yield
