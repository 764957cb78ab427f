"""The shell every console page shares (head, navigation, logout), the small forms its
buttons are, and the answers themselves, each with the console's security headers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from starlette.responses import HTMLResponse, RedirectResponse, Response

from proxy.console.markup import EMPTY, Html, escape, fill, join
from proxy.console.security import HEADERS
from proxy.services.gateway import Gateway

__all__ = [
    "BASE",
    "PAGES",
    "Visit",
    "button",
    "csrf_field",
    "document",
    "notice",
    "redirect",
    "respond",
]

BASE = "/admin/ui"
PAGES = (
    ("teams", "Teams"),
    ("runs", "Runs"),
    ("webhooks", "Webhooks"),
    ("upstream", "Upstream"),
    ("replicas", "Replicas"),
)


@dataclass(frozen=True)
class Visit:
    """One logged-in operator's request: the gateway, the session's CSRF token, the time."""

    gateway: Gateway
    session_id: str
    csrf: str
    now: float  # the gateway's clock (virtual in tests): runs and budgets are on it


def respond(body: Html, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return HTMLResponse(str(body), status, headers={**HEADERS, **(headers or {})})


def redirect(path: str, headers: Mapping[str, str] | None = None) -> Response:
    """See Other: after a POST, the browser GETs `path` (a reload repeats nothing)."""
    return RedirectResponse(path, 303, headers={**HEADERS, **(headers or {})})


def button(
    visit: Visit,
    action: str,
    label: str,
    fields: Mapping[str, str] | None = None,
    *,
    danger: bool = False,
    test_id: str = "",
) -> Html:
    """A one-button POST form carrying the session's CSRF token."""
    hidden = [
        fill('<input type="hidden" name="{n}" value="{v}">', n=n, v=v)
        for n, v in (fields or {}).items()
    ]
    return fill(
        '<form class="inline" method="post" action="{action}">'
        '<input type="hidden" name="csrf" value="{csrf}">{hidden}'
        '<button type="submit" class="{cls}" data-test="{tid}">{label}</button></form>',
        action=f"{BASE}/{action}",
        csrf=visit.csrf,
        hidden=join(hidden),
        cls="danger" if danger else "",
        tid=test_id,
        label=label,
    )


def csrf_field(visit: Visit) -> Html:
    return fill('<input type="hidden" name="csrf" value="{csrf}">', csrf=visit.csrf)


def document(
    title: str,
    body: Html,
    visit: Visit | None = None,
    *,
    active: str = "",
    notices: Html = EMPTY,
    replace: str = "",
) -> Html:
    """A whole page; `replace` is the address the browser shows for it (console.js puts it
    in the history in place of a POST's, so that a reload GETs the page again)."""
    nav = Html("")
    if visit is not None:
        links = [
            fill(
                '<a href="{href}" class="{cls}">{label}</a>',
                href=f"{BASE}/{name}",
                cls="active" if name == active else "",
                label=label,
            )
            for name, label in PAGES
        ]
        logout = fill(
            '<form class="inline" method="post" action="{a}">{csrf}'
            '<button type="submit" data-test="logout">Log out</button></form>',
            a=f"{BASE}/logout",
            csrf=csrf_field(visit),
        )
        find = fill(
            '<form class="inline find" method="get" action="{a}" role="search">'
            '<input type="search" name="q" placeholder="request, run or team" '
            'aria-label="Search a request id, run id, Segmind id or team" maxlength="200" '
            'data-test="nav-search"></form>',
            a=f"{BASE}/search",
        )
        nav = fill(
            '<nav><span class="brand">Gateway console</span>{links}{find}{logout}</nav>',
            links=join(links),
            find=find,
            logout=logout,
        )
    return fill(
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>{title} · gateway console</title>"
        '<link rel="icon" href="{base}/static/favicon.svg" type="image/svg+xml">'
        '<link rel="stylesheet" href="{base}/static/console.css">'
        '<script src="{base}/static/console.js" defer></script></head>'
        '<body data-replace="{replace}">{nav}<main><h1>{title}</h1>{notices}{body}</main>'
        "</body></html>",
        title=title,
        base=BASE,
        nav=nav,
        notices=notices,
        body=body,
        replace=replace,
    )


def notice(kind: str, text: object) -> Html:
    return fill('<p class="notice {kind}" role="status">{text}</p>', kind=kind, text=escape(text))
