"""HTML built from escaped pieces: every value that goes into a page passes `escape`
unless it is `Html` already (made here, from escaped parts). Team names, URLs, errors
and anything else a team or a receiver chose are text, never markup.

Never puts a key, a session id or a webhook secret into a page, except a new key or
secret on the one page that shows it once.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Iterable

__all__ = ["EMPTY", "Html", "ago", "dollars", "escape", "fill", "join", "moment", "seconds"]


class Html(str):
    """Markup that is safe to send as it is."""

    __slots__ = ()


EMPTY = Html("")


def escape(value: object) -> Html:
    if isinstance(value, Html):
        return value
    return Html(html.escape("" if value is None else str(value), quote=True))


def fill(template: str, /, **values: object) -> Html:
    """`template` (trusted markup, from this package) with `{name}`s replaced by escaped
    values. Braces in values cannot reach `format`: they are substituted, not parsed."""
    return Html(template.format(**{name: escape(value) for name, value in values.items()}))


def join(parts: Iterable[Html], separator: str = "") -> Html:
    return Html(separator.join(escape(part) for part in parts))


def dollars(amount: float) -> str:
    return f"${amount:,.2f}"


def seconds(value: float | None) -> str:
    """A duration the way people read one: 42 s, 11 min 3 s, 2 h 5 min."""
    if value is None:
        return "-"
    value = max(value, 0.0)
    if value < 60:
        return f"{value:.0f} s" if value >= 10 else f"{value:.1f} s"
    if value < 3600:
        return f"{int(value // 60)} min {int(value % 60)} s"
    return f"{int(value // 3600)} h {int(value % 3600 // 60)} min"


def moment(at: float | None) -> str:
    """A time on the gateway's clock, in UTC."""
    if at is None:
        return "-"
    return dt.datetime.fromtimestamp(at, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def ago(at: float | None, now: float) -> str:
    if at is None:
        return "-"
    if at > now:
        return f"in {seconds(at - now)}"
    return f"{seconds(now - at)} ago"
