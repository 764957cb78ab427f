"""The teams page: each team's limits, keys (prefixes only), spend today and this month
against its budgets, and what HITs and JOINs saved it this month; buttons to create a team
(its key and webhook secret shown once, on the answer to that POST only), add a key,
change limits and revoke keys."""

from __future__ import annotations

import datetime as dt

from starlette.requests import Request
from starlette.responses import Response

from proxy.console.access import Form, action, page
from proxy.console.layout import BASE, Visit, button, csrf_field, document, notice, respond
from proxy.console.markup import EMPTY, Html, dollars, fill, join, moment
from proxy.console.operate import Refused, run
from proxy.console.plots import budget_bar, line_chart
from proxy.core.config import TeamLimits
from proxy.core.quotas import budget_periods
from proxy.db import Team, TeamKey
from proxy.rules.usage import UsageRow

__all__ = ["add_key", "change_limits", "create", "revoke", "teams"]

SPEND_DAYS = 14
LIMIT_NAMES = tuple(TeamLimits.model_fields)
NULLABLE_LIMITS = tuple(name for name in LIMIT_NAMES if name != "weight")


def _keys(visit: Visit, keys: list[TeamKey]) -> Html:
    rows = []
    for key in keys:
        state = (
            fill("revoked {at}", at=moment(key.revoked_at))
            if key.revoked_at is not None
            else button(
                visit,
                "keys/revoke",
                "Revoke",
                {"prefix": key.prefix},
                danger=True,
                test_id=f"revoke-{key.prefix}",
            )
        )
        rows.append(fill("<li><code>{prefix}…</code> {state}</li>", prefix=key.prefix, state=state))
    return fill('<ul class="keys">{rows}</ul>', rows=join(rows))


def _limits_form(visit: Visit, team: Team) -> Html:
    values = team.limits.model_dump()
    inputs = [
        fill(
            '<label>{name}<input name="{name}" value="{value}" inputmode="decimal" '
            'placeholder="none"></label>',
            name=name,
            value="" if values[name] is None else values[name],
        )
        for name in LIMIT_NAMES
    ]
    return fill(
        '<details><summary>Limits</summary><form class="limits" method="post" action="{a}">'
        '{csrf}<input type="hidden" name="team" value="{team}">{inputs}'
        '<button type="submit" data-test="limits-{team}">Save limits</button></form></details>',
        a=f"{BASE}/teams/limits",
        csrf=csrf_field(visit),
        team=team.name,
        inputs=join(inputs),
    )


async def _team_row(visit: Visit, team: Team, saved: tuple[int, int, float]) -> Html:
    store = visit.gateway.store
    day, month = await store.spent(team.id, visit.now)
    hits, joins, dollars_saved = saved
    return fill(
        '<tr data-team="{name}"><th scope="row">{name}</th><td>{keys}{add}</td>'
        '<td class="spend-today">{today}</td><td class="spend-month">{month}</td>'
        '<td class="saved">{saved}<br><small>{hits} HIT, {joins} JOIN</small></td>'
        "<td>{limits}</td></tr>",
        name=team.name,
        keys=_keys(visit, await store.keys(team.name)),
        add=button(visit, "teams/key", "New key", {"team": team.name}, test_id=f"key-{team.name}"),
        today=budget_bar(day, team.limits.daily_budget, f"{team.name} today"),
        month=budget_bar(month, team.limits.monthly_budget, f"{team.name} this month"),
        saved=dollars(dollars_saved),
        hits=hits,
        joins=joins,
        limits=_limits_form(visit, team),
    )


def _days(now: float) -> list[dt.date]:
    """The UTC days the page reports on: the plot's last SPEND_DAYS and this month's."""
    today = dt.datetime.fromtimestamp(now, dt.UTC).date()
    first = min(today - dt.timedelta(days=SPEND_DAYS - 1), today.replace(day=1))
    return [first + dt.timedelta(days=n) for n in range((today - first).days + 1)]


def _saved(rows: list[UsageRow], month: str) -> dict[str, tuple[int, int, float]]:
    """Per team name: this month's (HITs, JOINs, dollars they saved), from the usage rows."""
    found: dict[str, tuple[int, int, float]] = {}
    for row in rows:
        if row.day.startswith(month):
            hits, joins, saved = found.get(row.team, (0, 0, 0.0))
            found[row.team] = (hits + row.hit, joins + row.join, saved + row.saved)
    return found


def _spend_plot(rows: list[UsageRow], days: list[dt.date], teams: list[Team]) -> Html:
    shown = [d.isoformat() for d in days[-SPEND_DAYS:]]
    series = {team.name: [0.0] * len(shown) for team in teams}
    for row in rows:
        if row.team in series and row.day in shown:
            series[row.team][shown.index(row.day)] = row.spent
    return line_chart(
        f"Spend per day per team, last {SPEND_DAYS} days (UTC)",
        [d[5:] for d in shown],
        series,
        "dollars (USD)",
        "day (UTC, month-day)",
    )


def _create_form(visit: Visit) -> Html:
    return fill(
        '<form class="create" method="post" action="{a}">{csrf}'
        '<label>Team name<input name="name" required maxlength="64" '
        'pattern="[A-Za-z0-9][A-Za-z0-9._\\-]*"></label>'
        '<label>Daily budget ($)<input name="daily_budget" inputmode="decimal" '
        'placeholder="default"></label>'
        '<label>Monthly budget ($)<input name="monthly_budget" inputmode="decimal" '
        'placeholder="default"></label>'
        '<button type="submit" data-test="create-team">Create team</button></form>',
        a=f"{BASE}/teams/create",
        csrf=csrf_field(visit),
    )


async def render(visit: Visit, notices: Html = EMPTY, status: int = 200) -> Response:
    store = visit.gateway.store
    teams_ = await store.teams()
    day, month = budget_periods(visit.now)
    days = _days(visit.now)
    # The usage report's rows (`proxy/rules/usage.py`): the plot and the savings agree with it.
    usage = await store.usage(days[0], days[-1])
    saved = _saved(usage, month)
    rows = [await _team_row(visit, t, saved.get(t.name, (0, 0, 0.0))) for t in teams_]
    body = fill(
        '<section><table class="teams"><thead><tr><th>Team</th><th>Keys</th>'
        "<th>Spent today ({day})</th><th>Spent this month ({month})</th>"
        "<th>Saved this month (HIT, JOIN)</th><th>Limits</th></tr></thead>"
        "<tbody>{rows}</tbody></table></section>"
        "<section><h2>Spend per day</h2><figure>{plot}</figure></section>"
        "<section><h2>New team</h2>{create}</section>",
        day=day,
        month=month,
        rows=join(rows),
        plot=_spend_plot(usage, days, teams_),
        create=_create_form(visit),
    )
    # After a POST, the address bar (and a reload) shows the plain page again.
    return respond(
        document("Teams", body, visit, active="teams", notices=notices, replace=f"{BASE}/teams"),
        status,
    )


@page
async def teams(request: Request, visit: Visit) -> Response:
    return await render(visit)


def _shown_once(title: str, secrets: dict[str, str]) -> Html:
    items = [
        fill(
            '<dt>{name}</dt><dd><code data-test="{name}">{value}</code></dd>',
            name=name,
            value=value,
        )
        for name, value in secrets.items()
    ]
    return fill(
        '<section class="notice once" role="status"><h2>{title}</h2>'
        "<p>Shown this once: copy it now. The gateway keeps only its hash.</p>"
        "<dl>{items}</dl></section>",
        title=title,
        items=join(items),
    )


def _limit_values(form: Form, names: tuple[str, ...], *, blank_is_none: bool) -> dict[str, object]:
    """The limits a form sets: a blank field is no limit (or, with `blank_is_none` off,
    left as it is)."""
    changes: dict[str, object] = {}
    for name in names:
        value = form.get(name, "").strip()
        if value or blank_is_none:
            changes[name] = value or None
    return changes


@action
async def create(request: Request, visit: Visit, form: Form) -> Response:
    limits = _limit_values(form, ("daily_budget", "monthly_budget"), blank_is_none=False)
    try:
        made = await run(visit, "create-team", name=form.get("name", ""), limits=limits)
    except Refused as exc:
        return await render(visit, notice("error", exc.message), 400)
    name = made["team"]["name"]
    once = _shown_once(
        f"Team {name} created",
        {"api key": made["api_key"], "webhook secret": made["webhook_secret"]},
    )
    return await render(visit, once)


@action
async def add_key(request: Request, visit: Visit, form: Form) -> Response:
    try:
        made = await run(visit, "create-key", team=form.get("team", ""))
    except Refused as exc:
        return await render(visit, notice("error", exc.message), 400)
    return await render(
        visit, _shown_once(f"New key for {made['team']}", {"api key": made["api_key"]})
    )


@action
async def change_limits(request: Request, visit: Visit, form: Form) -> Response:
    team = form.get("team", "")
    try:
        await run(
            visit,
            "set-limits",
            team=team,
            limits={
                **_limit_values(form, NULLABLE_LIMITS, blank_is_none=True),
                # A weight is never "none": a blank one leaves it as it is.
                **_limit_values(form, ("weight",), blank_is_none=False),
            },
        )
    except Refused as exc:
        return await render(visit, notice("error", exc.message), 400)
    return await render(visit, notice("ok", f"Limits of {team} saved."))


@action
async def revoke(request: Request, visit: Visit, form: Form) -> Response:
    prefix = form.get("prefix", "")
    try:
        done = await run(visit, "revoke-key", prefix=prefix)
    except Refused as exc:
        return await render(visit, notice("error", exc.message), 400)
    return await render(visit, notice("ok", f"Revoked {done['revoked']} key(s) starting {prefix}."))
