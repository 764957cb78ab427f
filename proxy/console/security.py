"""What keeps the console's pages to the operator who logged in: the headers every answer
carries (no framing, no caching, no inline script or style) and the same-origin check of
every POST. (Wrong keys at the login are limited with all others: `proxy/edge/auth.py`.)

Never trusts a request's own word that it is same-origin beyond what a browser sets and
a page cannot forge (Origin, Sec-Fetch-Site).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.requests import Request

__all__ = ["HEADERS", "is_https", "same_origin"]

HEADERS = {
    # Pages load only the package's own CSS and JS; plots are inline SVG (no script).
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # Not no-referrer: under it a browser sends `Origin: null` with the console's own POSTs.
    "Referrer-Policy": "same-origin",
    # A page seen after logout (the back button) must come from the server, which refuses.
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def is_https(request: Request) -> bool:
    """Served over TLS, here or at the proxy in front (which may only add `Secure`)."""
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return request.url.scheme == "https" or forwarded == "https"


def same_origin(request: Request) -> bool:
    """Whether a POST comes from a page of this console: a browser names the page's site
    in Sec-Fetch-Site and its origin in Origin, and no page of another site can set either."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site != "same-origin":
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return site == "same-origin"  # an old browser sends neither: refused
    host = request.headers.get("host", "")
    return origin != "null" and urlsplit(origin).netloc.lower() == host.lower()
