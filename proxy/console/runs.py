"""The runs page: runs in flight (age, status, when the next poll is, when the learnt
duration model expects the run to end, how many requests share it) and recent requests
(HIT, JOIN or MISS, cost, outcome, duration), filterable by team; and the plot of run
durations against the distribution the poll schedule has learnt (`proxy/core/schedule.py`)."""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from proxy.console.access import page
from proxy.console.forecast import expected_finish, seen_at
from proxy.console.investigate import request_link, run_link, when
from proxy.console.layout import BASE, Visit, document, notice, respond
from proxy.console.markup import EMPTY, Html, ago, dollars, fill, join, seconds
from proxy.console.plots import edges_for, histogram
from proxy.core.schedule import DurationModel
from proxy.db import CacheStatus, RequestView, RunView
from proxy.rules import UnknownTeam

__all__ = ["runs"]

RECENT = 100
DURATIONS = 500
QUEUE_SHOWN = 100  # held runs whose place in the fair queue the page works out


def _in_flight_row(
    run: RunView, visit: Visit, model: DurationModel, queue: dict[str, float] | None = None
) -> Html:
    g = run.generation
    age = visit.now - g.created_at
    if g.status == "WAITING" and queue is not None:
        place, send_at = int(queue["position"]), queue["estimated_send_at"]
        finish = (f"waiting for a slot in the upstream budget: place {place} in the fair "
                  f"queue, sent {ago(send_at, visit.now)}")  # fmt: skip
    elif g.status == "WAITING":
        finish = "waiting for a slot in the upstream budget"
    elif g.status in ("SUBMITTING", "QUEUED"):
        finish = f"{seconds(model.median)} after it starts (median)"
    else:
        ends = expected_finish(model, age)
        seen = seen_at(visit.gateway, (g.next_poll_at or visit.now) - g.created_at, ends)
        finish = (f"{ago(g.created_at + ends, visit.now)}; seen at the poll "
                  f"{ago(g.created_at + seen, visit.now)}")  # fmt: skip
    return fill(
        "<tr><td>{id}</td><td>{team}</td><td>{status}</td><td>{age}</td>"
        "<td>{poll}</td><td>{finish}</td><td>{requests}</td></tr>",
        id=run_link(g.id),
        team=run.team_name,
        status=g.status,
        age=seconds(age),
        poll=ago(g.next_poll_at, visit.now),
        finish=finish,
        requests=run.requests,
    )


def _recent_row(view: RequestView) -> Html:
    r, g = view.request, view.generation
    paid = r.cache_status is CacheStatus.MISS
    duration = None if g.finished_at is None else g.finished_at - g.created_at
    return fill(
        '<tr class="{cache}"><td>{id}</td><td>{team}</td><td>{at}</td>'
        '<td><span class="tag {cache}">{cache}</span></td><td>{cost}</td><td>{outcome}</td>'
        "<td>{duration}</td></tr>",
        id=request_link(r.id),
        team=view.team_name,
        at=when(r.created_at),
        cache=r.cache_status.value,
        cost=dollars(g.cost) if paid else f"saved {dollars(g.cost)}",
        outcome=g.status,
        duration=seconds(duration),
    )


def _filter(names: list[str], chosen: str | None) -> Html:
    options = [
        fill(
            '<option value="{n}"{sel}>{n}</option>',
            n=n,
            sel=Html(" selected") if n == chosen else "",
        )
        for n in names
    ]
    return fill(
        '<form class="filter" method="get" action="{a}"><label>Team '
        '<select name="team"><option value="">all teams</option>{options}</select></label>'
        '<button type="submit">Show</button></form>',
        a=f"{BASE}/runs",
        options=join(options),
    )


def _durations_plot(durations: list[float], model: DurationModel) -> Html:
    if not durations:
        return Html("<p>No finished runs yet.</p>")
    high = max(*durations, model.quantile(0.999))
    edges = edges_for([*durations, high], bins=24)
    return histogram(
        f"Durations of the last {len(durations)} completed runs, and the learnt distribution",
        durations,
        edges,
        "runs (count)",
        curve=model.pdf,
        x_label="seconds from send to finish",
        curve_label=f"learnt lognormal: median {seconds(model.median)}, log-sd {model.sigma:.2f}",
    )


def _before(value: str | None) -> float | None:
    """The `before` of a page of requests: Unix seconds; anything else is the first page."""
    try:
        return float(value) if value else None
    except ValueError:
        return None


def _pages(recent: list[RequestView], team: str | None, before: float | None) -> Html:
    """Links to the first page and to older requests (the list shows `RECENT` at a time)."""
    if not recent and before is None:
        return Html('<p class="empty">No request yet. Requests appear here as teams submit; '
                    "search a request id in the bar above to open one.</p>")  # fmt: skip
    kept = {"team": team} if team else {}
    links = []
    if before is not None:
        href = f"{BASE}/runs?{urlencode(kept)}"
        links.append(fill('<a href="{h}" data-test="newest">Newest</a>', h=href))
    if len(recent) == RECENT:
        older = urlencode({**kept, "before": repr(recent[-1].request.created_at)})
        href = f"{BASE}/runs?{older}"
        links.append(fill('<a href="{h}" data-test="older">Older requests</a>', h=href))
    return fill('<p class="pages">{links}</p>', links=join(links, " · ")) if links else EMPTY


@page
async def runs(request: Request, visit: Visit) -> Response:
    store, model = visit.gateway.store, visit.gateway.duration_model()
    team = request.query_params.get("team") or None
    before = _before(request.query_params.get("before"))
    notices = Html("")
    try:
        recent = await store.requests_page(RECENT, team, before)
    except UnknownTeam:
        notices, team = notice("error", f"No team named {team}; showing all teams."), None
        recent = await store.requests_page(RECENT, None, before)
    flying = await store.runs_in_flight()
    # Where each held run stands in the fair queue (the first QUEUE_SHOWN held: one read each).
    held = [r.generation for r in flying if r.generation.status == "WAITING"][:QUEUE_SHOWN]
    places = {g.id: await visit.gateway.queue_place(g) for g in held}
    names = [t.name for t in await store.teams()]
    durations = await store.finished_durations(DURATIONS)
    body = fill(
        "{filter}<section><h2>In flight ({n})</h2><table><thead><tr><th>Run</th><th>Owner</th>"
        "<th>Status</th><th>Age</th><th>Next poll</th><th>Expected finish</th>"
        "<th>Requests</th></tr></thead><tbody>{flying}</tbody></table></section>"
        "<section><h2>Recent requests{of}</h2><table><thead><tr><th>Request</th><th>Team</th>"
        "<th>Submitted</th><th>Cache</th><th>Cost</th><th>Outcome</th><th>Duration</th></tr>"
        "</thead><tbody>{recent}</tbody></table>{pages}</section>"
        "<section><h2>Run durations</h2><figure>{plot}</figure></section>",
        filter=_filter(names, team),
        n=len(flying),
        flying=join(_in_flight_row(r, visit, model, places.get(r.generation.id)) for r in flying),
        of=f" of {team}" if team else "",
        recent=join(_recent_row(v) for v in recent),
        pages=_pages(recent, team, before),
        plot=_durations_plot(durations, model),
    )
    return respond(document("Runs", body, visit, active="runs", notices=notices))
