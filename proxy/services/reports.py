"""Usage reports: the days a person asks for (query string or command line), and the
report as a JSON document or CSV. The rows come from `Store.usage` (`proxy/rules/usage.py`);
the edge answers with them (`proxy/edge/responses.py`).

`GET /admin/usage` (admin key) reports every team, or one with `team=`; `GET /v1/usage`
(a team key) reports the key's own team only, and refuses `team=` naming another.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from proxy.core.errors import BadInput
from proxy.rules import USAGE_FIELDS, UsageRow

__all__ = [
    "DEFAULT_DAYS",
    "QUERY_NAMES",
    "UsageQuery",
    "day_of",
    "parse_query",
    "period",
    "report",
    "usage_csv",
]

DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
DEFAULT_DAYS = 30  # days a report covers when no first day is given, today included
QUERY_NAMES = ("from", "to", "team", "format")
FORMATS = ("json", "csv")
FORMULA_STARTS = ("=", "+", "-", "@")  # a spreadsheet would run a cell starting so


def day_of(value: str, what: str) -> dt.date:
    """A UTC day written YYYY-MM-DD (only so: no week dates, no other digits)."""
    try:
        if not DAY.fullmatch(value):
            raise ValueError(value)
        return dt.date.fromisoformat(value)
    except ValueError:
        raise BadInput(
            f"{what} must be a day written YYYY-MM-DD (UTC), e.g. 2026-11-25; got {value[:40]!r}"
        ) from None


@dataclass(frozen=True)
class UsageQuery:
    """What a report request asks for: its days as given (None: the default), its team
    (None: every team) and its format."""

    since: str | None
    until: str | None
    team: str | None
    form: str


def parse_query(params: Mapping[str, str]) -> UsageQuery:
    """`from`, `to`, `team` and `format` (json or csv) from a query string; anything else
    is refused rather than silently ignored (a misspelt `form=` would report other days)."""
    unknown = sorted(set(params) - set(QUERY_NAMES))
    if unknown:
        raise BadInput(f"unknown parameters {unknown}; a usage report takes {list(QUERY_NAMES)}")
    form = params.get("format", "json")
    if form not in FORMATS:
        raise BadInput(f"format must be one of {', '.join(FORMATS)}; got {form[:20]!r}")
    return UsageQuery(
        params.get("from") or None, params.get("to") or None, params.get("team") or None, form
    )


def period(since: str | None, until: str | None, now: float) -> tuple[dt.date, dt.date]:
    """The days asked for (YYYY-MM-DD, UTC); by default the DEFAULT_DAYS days up to the
    day of `now`, or from `since` to that day."""
    last = day_of(until, "to") if until else dt.datetime.fromtimestamp(now, dt.UTC).date()
    if since:
        return day_of(since, "from"), last
    if last.toordinal() < DEFAULT_DAYS:  # its default first day would be before year 1
        raise BadInput(
            f"to={last.isoformat()} leaves no room for the default {DEFAULT_DAYS} days before "
            "it; give from= too, or a later day"
        )
    return last - dt.timedelta(days=DEFAULT_DAYS - 1), last


def report(
    since: dt.date, until: dt.date, team: str | None, rows: Iterable[UsageRow]
) -> dict[str, Any]:
    """The report as JSON: its days, its rows and their totals."""
    listed = [row.public() for row in rows]
    totals = {
        name: round(sum(float(row[name]) for row in listed), 4)
        if name in ("spent", "saved")
        else sum(int(row[name]) for row in listed)
        for name in USAGE_FIELDS[2:]
    }
    return {
        "from": since.isoformat(),
        "to": until.isoformat(),
        "team": team,
        "columns": list(USAGE_FIELDS),
        "rows": listed,
        "totals": totals,
    }


def _cell(value: object) -> object:
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def usage_csv(document: Mapping[str, Any]) -> str:
    """A report's rows as CSV: a header row, then one row per team and day, in the column
    order of USAGE_FIELDS (stable: scripts may read columns by position)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(USAGE_FIELDS)
    for row in document["rows"]:
        writer.writerow([_cell(row[name]) for name in USAGE_FIELDS])
    return out.getvalue()
