"""The operator console at /admin/ui: server-rendered pages over the admin operations and
the store's reads, behind a login with the admin key.

    access.py     who may see a page or press a button (session, CSRF, same origin)
    session.py    sessions in the store, their CSRF tokens
    security.py   the headers of every answer, the same-origin check, the login throttle
    login.py      log in, log out
    teams.py, runs.py, webhooks.py, upstream.py, replicas.py    the pages and their buttons
    layout.py, markup.py, plots.py    the page shell, escaped HTML, SVG plots
    static/       the one stylesheet and the one script (no build step, no CDN)

Never shows the admin key, a team's key (only its prefix, except once to whoever created
it), a webhook secret (once, likewise) or the upstream key; never acts on a GET; never
answers a team key: it reads its own session cookie only.

May import the edge, the services and every layer below them; asks `Gateway` by named
methods (or the store, settings and clocks it holds), never its services' insides.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from proxy.console import investigate, login, replicas, runs, teams, upstream, webhooks
from proxy.console.access import page
from proxy.console.layout import BASE, Visit, redirect
from proxy.console.security import HEADERS

__all__ = ["routes"]

STATIC = {
    name: (Path(__file__).with_name("static").joinpath(name).read_bytes(), kind)
    for name, kind in (
        ("console.css", "text/css"),
        ("console.js", "text/javascript"),
        ("favicon.svg", "image/svg+xml"),
    )
}


async def static(request: Request) -> Response:
    found = STATIC.get(request.path_params["name"])
    if found is None:
        return Response("not found", 404, headers=HEADERS, media_type="text/plain")
    body, kind = found
    return Response(body, headers=HEADERS, media_type=kind)


@page
async def home(request: Request, visit: Visit) -> Response:
    return redirect(f"{BASE}/teams")


routes: list[BaseRoute] = [
    Route(BASE, home, methods=["GET"]),
    Route(f"{BASE}/", home, methods=["GET"]),
    Route(f"{BASE}/static/{{name}}", static, methods=["GET"]),
    Route(f"{BASE}/login", login.login_form, methods=["GET"]),
    Route(f"{BASE}/login", login.login, methods=["POST"]),
    Route(f"{BASE}/logout", login.logout, methods=["POST"]),
    Route(f"{BASE}/teams", teams.teams, methods=["GET"]),
    Route(f"{BASE}/teams/create", teams.create, methods=["POST"]),
    Route(f"{BASE}/teams/key", teams.add_key, methods=["POST"]),
    Route(f"{BASE}/teams/limits", teams.change_limits, methods=["POST"]),
    Route(f"{BASE}/keys/revoke", teams.revoke, methods=["POST"]),
    Route(f"{BASE}/runs", runs.runs, methods=["GET"]),
    Route(f"{BASE}/runs/{{run_id}}", investigate.run_page, methods=["GET"]),
    Route(f"{BASE}/requests/{{request_id}}", investigate.request_page, methods=["GET"]),
    Route(f"{BASE}/search", investigate.search, methods=["GET"]),
    Route(f"{BASE}/webhooks", webhooks.webhooks, methods=["GET"]),
    Route(f"{BASE}/webhooks/resend", webhooks.resend, methods=["POST"]),
    Route(f"{BASE}/webhooks/recover", webhooks.recover, methods=["POST"]),
    Route(f"{BASE}/upstream", upstream.upstream, methods=["GET"]),
    Route(f"{BASE}/replicas", replicas.replicas, methods=["GET"]),
]
