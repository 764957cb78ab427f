"""Usage reports: per team per UTC day, what its requests were (HIT, JOIN, MISS), what its
paid runs became (failed, refunded) and the dollars spent and saved.

A request counts on the UTC day it was admitted (`requests.day`, written by admission),
a run on the day it was charged (`generations.charge_day`), so a day's `spent` is the
day's budget spend as admission and refunds left it. Saved dollars go to the team whose
request was a HIT or a JOIN (with a shared cache, another team may own the run it used);
runs, failures, refunds and spend go to the run's owner.

Reads only; never a key or a secret in a row.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import astuple, dataclass, fields

from proxy.db.tx import Tx
from proxy.rules.errors import BadPeriod
from proxy.rules.teams import team_named

__all__ = ["MAX_DAYS", "USAGE_FIELDS", "UsageRow", "check_period", "usage"]

MAX_DAYS = 366  # days one report may cover: a year, leap day included


@dataclass(frozen=True)
class UsageRow:
    """One team's one UTC day. `runs_paid`: runs charged and not refunded; `failed` and
    `refunded` count that day's runs which ended so (a refunded run is not paid); `spent`
    is what the paid runs cost, `saved` what the HIT and JOIN requests would have."""

    day: str  # YYYY-MM-DD, UTC
    team: str
    runs_paid: int = 0
    hit: int = 0
    join: int = 0
    miss: int = 0
    failed: int = 0
    refunded: int = 0
    spent: float = 0.0
    saved: float = 0.0

    def public(self) -> dict[str, str | int | float]:
        return dict(zip(USAGE_FIELDS, astuple(self), strict=True))


USAGE_FIELDS = tuple(f.name for f in fields(UsageRow))  # the CSV's columns, in this order


def check_period(since: dt.date, until: dt.date) -> None:
    """Refuse a report whose days are out of order or span more than MAX_DAYS."""
    if until < since:
        raise BadPeriod(
            f"the report ends ({until.isoformat()}) before it starts ({since.isoformat()}); "
            "give the first day, then the last"
        )
    days = (until - since).days + 1
    if days > MAX_DAYS:
        raise BadPeriod(
            f"a report covers at most {MAX_DAYS} days; {since.isoformat()} to "
            f"{until.isoformat()} is {days}: ask for a shorter period, in parts"
        )


def usage(tx: Tx, since: dt.date, until: dt.date, team: str | None = None) -> list[UsageRow]:
    """Each team's days from `since` to `until` (both included, UTC) with any request or
    run, by day then team name; only team `team`'s (a name) if given."""
    check_period(since, until)
    team_id = None if team is None else team_named(tx, team).id
    names = {t.id: t.name for t in tx.teams()}
    first, last = since.isoformat(), until.isoformat()
    counts: dict[tuple[str, str], dict[str, float]] = {}
    for owner, day, status, n, cost in tx.requests_by_day(first, last, team_id):
        row = counts.setdefault((day, owner), {})
        row[status.lower()] = n
        if status != "MISS":
            row["saved"] = row.get("saved", 0.0) + cost
    for owner, day, runs, failed, refunded, spent in tx.runs_by_day(first, last, team_id):
        row = counts.setdefault((day, owner), {})
        row.update(runs_paid=runs - refunded, failed=failed, refunded=refunded, spent=spent)
    rows = [_row(day, names.get(owner, owner), c) for (day, owner), c in counts.items()]
    return sorted(rows, key=lambda r: (r.day, r.team))


def _row(day: str, team: str, found: dict[str, float]) -> UsageRow:
    def count(name: str) -> int:
        return int(found.get(name, 0))

    def dollars(name: str) -> float:
        return round(found.get(name, 0.0), 4)

    return UsageRow(
        day,
        team,
        runs_paid=count("runs_paid"),
        hit=count("hit"),
        join=count("join"),
        miss=count("miss"),
        failed=count("failed"),
        refunded=count("refunded"),
        spent=dollars("spent"),
        saved=dollars("saved"),
    )
