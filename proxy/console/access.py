"""Who may see a console page or press one of its buttons: only a browser holding a live
session (`session.py`); a POST also needs the session's CSRF token and a same-origin
request. Everything else is sent to the login page, or refused with a page that says why.

A team key opens nothing here: the console reads its session cookie and nothing else, so
`x-api-key`, `Authorization` and `X-Admin-Key` headers are ignored on /admin/ui.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response

from proxy.console.layout import BASE, Visit, document, notice, redirect, respond
from proxy.console.markup import Html
from proxy.console.security import same_origin
from proxy.console.session import COOKIE, Sessions
from proxy.core.config import MIN_SECRET_LENGTH, MINT_COMMAND
from proxy.services.gateway import Gateway

__all__ = ["Form", "action", "form_of", "page", "sessions_of"]

MAX_FORM_BYTES = 16_384
Form = dict[str, str]
Page = Callable[[Request, Visit], Awaitable[Response]]
Action = Callable[[Request, Visit, Form], Awaitable[Response]]


def gateway_of(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


def sessions_of(gateway: Gateway) -> Sessions | None:
    """The console's sessions; None while the gateway runs without an admin key."""
    key = gateway.settings.admin_key
    return None if key is None else Sessions(gateway.store, key, gateway.wall_clock)


def refused(message: str, status: int) -> Response:
    return respond(document("Not allowed", Html(""), notices=notice("error", message)), status)


def off() -> Response:
    return refused(
        "The console is off: it opens when the gateway starts with PROXY_ADMIN_KEY set to a "
        f"secret of {MIN_SECRET_LENGTH}+ characters (make one with {MINT_COMMAND}).",
        403,
    )


async def _visit(request: Request) -> Visit | Response:
    gateway = gateway_of(request)
    sessions = sessions_of(gateway)
    if sessions is None:
        return off()
    session_id = request.cookies.get(COOKIE)
    if session_id is None or not await sessions.valid(session_id):
        return redirect(f"{BASE}/login")
    return Visit(gateway, session_id, sessions.csrf_token(session_id), gateway.clock.now())


async def form_of(request: Request) -> Form | None:
    """The urlencoded form a POST carries (None if it is too large or not a form)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return None
    try:
        return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=50))
    except (UnicodeDecodeError, ValueError):
        return None


def page(handler: Page) -> Callable[[Request], Awaitable[Response]]:
    """A GET page for a logged-in operator."""

    async def guarded(request: Request) -> Response:
        visit = await _visit(request)
        if isinstance(visit, Response):
            return visit
        return await handler(request, visit)

    return guarded


def action(handler: Action) -> Callable[[Request], Awaitable[Response]]:
    """A POST for a logged-in operator, from a page of this console, with its CSRF token."""

    async def guarded(request: Request) -> Response:
        if not same_origin(request):
            return refused("Refused: this form was not sent from a page of this console.", 403)
        visit = await _visit(request)
        if isinstance(visit, Response):
            return visit
        form = await form_of(request)
        sessions = sessions_of(visit.gateway)
        assert sessions is not None  # `_visit` found a session
        if form is None or not sessions.csrf_ok(visit.session_id, form.get("csrf", "")):
            return refused("Refused: the form's token is missing or stale; reload the page.", 403)
        return await handler(request, visit, form)

    return guarded
