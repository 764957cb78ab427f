"""Logging in and out of the console. The login form posts the admin key once; the answer
sets the session cookie (HttpOnly, SameSite=Strict, Path=/admin/ui, Secure over https)
and never carries the key back. Wrong keys are limited per client, together with those
presented to the admin API and /metrics (`proxy/edge/auth.py`, `KeyAttempts`)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from proxy.console.access import Form, action, form_of, gateway_of, off, refused, sessions_of
from proxy.console.layout import BASE, Visit, document, notice, redirect, respond
from proxy.console.markup import EMPTY, Html, fill
from proxy.console.security import is_https, same_origin
from proxy.console.session import COOKIE, SESSION_SECONDS
from proxy.core.errors import LimitExceeded
from proxy.core.keys import matches_a_secret
from proxy.edge.auth import key_attempts

__all__ = ["login", "login_form", "logout"]


def _form(message: Html = EMPTY, status: int = 200) -> Response:
    body = fill(
        '<form class="login" method="post" action="{a}"><label>Admin key '
        '<input type="password" name="admin_key" autocomplete="current-password" required '
        'autofocus></label><button type="submit" data-test="login">Log in</button></form>'
        "<p><small>The key the gateway runs with (PROXY_ADMIN_KEY; `make run` prints one). "
        "A team key opens nothing here.</small></p>",
        a=f"{BASE}/login",
    )
    return respond(document("Log in", body, notices=message), status)


async def login_form(request: Request) -> Response:
    gateway = gateway_of(request)
    sessions = sessions_of(gateway)
    if sessions is None:
        return off()
    if await sessions.valid(request.cookies.get(COOKIE)):
        return redirect(f"{BASE}/teams")
    return _form()


async def login(request: Request) -> Response:
    gateway = gateway_of(request)
    sessions = sessions_of(gateway)
    if sessions is None:
        return off()
    if not same_origin(request):
        return refused("Refused: log in from the console's own login page.", 403)
    attempts, client = key_attempts(request)
    try:
        attempts.check(client, gateway.wall_clock.now())
        form = await form_of(request) or {}
        now = gateway.wall_clock.now()
        attempts.check(client, now)  # again: others may have failed while the form came
    except LimitExceeded as exc:
        wait = f"Too many wrong keys from this address; try again in {exc.retry_after} s."
        return _form(notice("error", wait), 429)
    given = form.get("admin_key", "").strip()
    if not matches_a_secret(given, gateway.settings.admin_key):
        if given:  # a guess; an empty form guesses nothing
            attempts.failed(client, now)
        return _form(notice("error", "That is not the admin key."), 401)
    session_id = await sessions.open()
    answer = redirect(f"{BASE}/teams")
    answer.set_cookie(
        COOKIE,
        session_id,
        max_age=int(SESSION_SECONDS),
        path=BASE,
        secure=is_https(request),
        httponly=True,
        samesite="strict",
    )
    return answer


@action
async def logout(request: Request, visit: Visit, form: Form) -> Response:
    sessions = sessions_of(visit.gateway)
    assert sessions is not None
    await sessions.close(visit.session_id)
    answer = redirect(f"{BASE}/login")
    answer.delete_cookie(
        COOKIE, path=BASE, secure=is_https(request), httponly=True, samesite="strict"
    )
    return answer
