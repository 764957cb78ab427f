"""Investigating one complaint ("team X says its video never arrived"): the search box
(a request id, a run id, Segmind's id for a run, or a team name), a page per request (its
team, cache outcome, cost, run, webhook messages with every attempt and what the receiver
answered) and a page per run (its upstream id, state, polls, cost, outputs, and every
request it answered), each linking to the other.

Reads only: nothing here changes a request, a run or a message."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from proxy.console.access import page
from proxy.console.layout import BASE, Visit, document, notice, redirect, respond
from proxy.console.markup import EMPTY, Html, ago, dollars, fill, join, moment, seconds
from proxy.db import Attempt, CacheStatus, Generation, OutboxMessage, RequestView

__all__ = ["request_link", "request_page", "run_link", "run_page", "search", "when"]

LONGEST_QUERY = 200  # characters of a search: ids are 32, team names shorter
HELP = (
    "Search takes a request id (what a team's submit answered), a run id, Segmind's id for "
    "a run, or a team name."
)


def when(at: float | None) -> Html:
    """A time shown in the viewer's local time (console.js), UTC on hover and without
    JavaScript."""
    if at is None:
        return Html("-")
    utc = moment(at)
    return fill(
        '<time datetime="{iso}Z" title="{utc} UTC" data-local>{utc} UTC</time>',
        iso=utc.replace(" ", "T"),
        utc=utc,
    )


def request_link(request_id: str) -> Html:
    return _link("requests", "request-link", request_id)


def run_link(generation_id: str) -> Html:
    return _link("runs", "run-link", generation_id)


def _link(pages: str, test: str, id_: str) -> Html:
    return fill(
        '<a href="{base}/{pages}/{id}" data-test="{test}"><code>{short}</code></a>',
        base=BASE, pages=pages, id=id_, test=test, short=id_[:12],
    )  # fmt: skip


def _code(text: str) -> Html:
    return fill("<code>{t}</code>", t=text)  # escaped: Segmind's ids are not ours


def _facts(rows: list[tuple[str, object]]) -> Html:
    return fill(
        '<dl class="facts">{rows}</dl>',
        rows=join(fill("<dt>{k}</dt><dd>{v}</dd>", k=k, v=v) for k, v in rows),
    )


def _cost(view: RequestView) -> str:
    paid = view.request.cache_status is CacheStatus.MISS
    return (
        dollars(view.generation.cost)
        if paid
        else f"nothing (saved {dollars(view.generation.cost)})"
    )


# A signature for the page's viewer, not for a team's code: it need outlive the visit only.
CONSOLE_URL_TTL = 3600.0


async def _videos(visit: Visit, generation: Generation, team_id: str | None) -> Html:
    """The outputs of a COMPLETED run, as links: the gateway's copies, signed for the team
    that asked (as its poll would answer), where it keeps them; else Segmind's URLs, and
    why. What else a run has, said plainly."""
    if generation.status != "COMPLETED":
        return Html(f"<p>No outputs: the run is {generation.status}.</p>")
    output, said = generation.output, EMPTY
    outputs = visit.gateway.outputs
    if outputs is not None and team_id is not None:
        state = await outputs.state_of(generation.id)
        output, extra = outputs.render(team_id, output, state, CONSOLE_URL_TTL)
        if extra.get("outputs_kept"):
            said = Html("<p>Kept by the gateway: these links are signed for an hour.</p>")
        elif extra:
            said = fill(
                "<p>Not kept by the gateway ({note}): these are Segmind's URLs, which it "
                "deletes 7 days after the run.</p>",
                note=str(extra.get("outputs_note") or "no reason recorded"),
            )
    urls = _output_urls(output)
    if not urls:
        return Html("<p>The run completed but its answer names no output URL.</p>")
    return fill(
        "{said}<ul>{items}</ul>",
        said=said,
        items=join(
            fill('<li>{name}: <a href="{url}" rel="noreferrer">{url}</a></li>', name=n, url=u)
            for n, u in urls
        ),
    )


def _output_urls(output: str | None) -> list[tuple[str, str]]:
    try:
        nodes: Any = json.loads(output or "")
    except ValueError:
        return []
    found = []
    for node in nodes if isinstance(nodes, list) else []:
        value = node.get("value") if isinstance(node, dict) else None
        url = value.get("data") if isinstance(value, dict) else None
        if isinstance(url, str) and url.startswith(("http://", "https://")):
            found.append((str(node.get("keyname", "output")), url))
    return found


# -- search ---------------------------------------------------------------------------------


def _search_form(query: str = "") -> Html:
    return fill(
        '<form class="filter" method="get" action="{a}" role="search"><label>Find '
        '<input type="search" name="q" value="{q}" size="34" maxlength="{n}" '
        'placeholder="request id, run id, Segmind id or team" data-test="search"></label>'
        '<button type="submit" data-test="search-go">Search</button></form>',
        a=f"{BASE}/search",
        q=query,
        n=LONGEST_QUERY,
    )


@page
async def search(request: Request, visit: Visit) -> Response:
    query = (request.query_params.get("q") or "").strip()
    store = visit.gateway.store
    if query and len(query) <= LONGEST_QUERY:
        if await store.request_view(query) is not None:
            return redirect(f"{BASE}/requests/{query}")
        found = await store.run_by_id(query)
        if found is not None:
            return redirect(f"{BASE}/runs/{found[0].id}")
        if query in {t.name for t in await store.teams()}:
            return redirect(f"{BASE}/runs?team={query}")
    notices = notice("error", f"Nothing matches {query!r}. {HELP}") if query else EMPTY
    body = fill("{form}<p>{help}</p>", form=_search_form(query), help=HELP)
    return respond(document("Search", body, visit, notices=notices), 404 if query else 200)


# -- one request ----------------------------------------------------------------------------


def _attempt_row(attempt: Attempt) -> Html:
    return fill(
        "<tr><td>{n}</td><td>{at}</td><td>{status}</td><td>{latency}</td>"
        '<td class="answer"><code>{answer}</code></td><td class="error">{error}</td></tr>',
        n=attempt.attempt,
        at=when(attempt.at),
        status=attempt.status_code if attempt.status_code is not None else "no answer",
        latency=f"{attempt.latency_ms:.0f} ms" if attempt.latency_ms is not None else "-",
        answer=attempt.response or "",
        error=attempt.error or "",
    )


def _message(visit: Visit, message: OutboxMessage, attempts: list[Attempt]) -> Html:
    rows = join(_attempt_row(a) for a in attempts) or Html(
        '<tr><td colspan="6">No attempt yet: it is queued, the next one is due '
        f"{ago(message.next_attempt_at, visit.now)}.</td></tr>"
    )
    return fill(
        '<section data-test="webhook-{id}"><h3>Webhook <code>{id}</code>: {event}, {state}'
        '</h3><p class="url">to {url}; next attempt {next}</p><table><thead><tr><th>#</th>'
        "<th>At</th><th>Receiver's status</th><th>Latency</th><th>Receiver's answer "
        "(first 512 characters)</th><th>Error</th></tr></thead><tbody>{rows}</tbody>"
        "</table></section>",
        id=message.id,
        event=message.event,
        state=message.state,
        url=message.url,
        next=ago(message.next_attempt_at, visit.now),
        rows=rows,
    )


@page
async def request_page(request: Request, visit: Visit) -> Response:
    request_id = request.path_params["request_id"]
    store = visit.gateway.store
    view = await store.request_view(request_id)
    if view is None:
        body = fill("{form}<p>{help}</p>", form=_search_form(request_id), help=HELP)
        found = notice("error", f"No request {request_id!r}.")
        return respond(document("Request", body, visit, notices=found), 404)
    r, g = view.request, view.generation
    messages = await store.messages_for_request(None, r.id)
    hooks = join(_message(visit, m, a) for m, a in messages) or Html(
        "<p>No webhook for this request: its submit sent no <code>X-Webhook-Url</code> "
        "header and its team has no default webhook URL. The team learns the outcome by "
        "polling.</p>"
    )
    facts = _facts([
        ("Request", _code(r.id)),
        ("Team", fill('<a href="{b}/runs?team={t}">{t}</a>', b=BASE, t=view.team_name)),
        ("Submitted", when(r.created_at)),
        ("Cache outcome", fill('<span class="tag {c}">{c}</span>', c=r.cache_status.value)),
        ("Cost to the team", _cost(view)),
        ("Run", run_link(g.id)),
        ("Run status", g.status),
        ("Webhook URL", r.webhook_url or "-"),
        ("Idempotency key", r.idempotency_key or "-"),
    ])  # fmt: skip
    body = fill(
        "{search}{facts}<section><h2>Webhook deliveries</h2>{hooks}</section>"
        "<section><h2>Outputs</h2>{videos}</section>",
        search=_search_form(),
        facts=facts,
        hooks=hooks,
        videos=await _videos(visit, g, r.team_id),
    )
    return respond(document(f"Request {r.id[:12]}", body, visit, active="runs"))


# -- one run --------------------------------------------------------------------------------


def _request_row(view: RequestView) -> Html:
    r = view.request
    return fill(
        "<tr><td>{link}</td><td>{team}</td><td>{at}</td>"
        '<td><span class="tag {cache}">{cache}</span></td><td>{cost}</td><td>{hook}</td></tr>',
        link=request_link(r.id),
        team=view.team_name,
        at=when(r.created_at),
        cache=r.cache_status.value,
        cost=_cost(view),
        hook="yes" if r.webhook_url else "no",
    )


@page
async def run_page(request: Request, visit: Visit) -> Response:
    run_id = request.path_params["run_id"]
    store = visit.gateway.store
    found = await store.run_by_id(run_id)
    if found is None:
        body = fill("{form}<p>{help}</p>", form=_search_form(run_id), help=HELP)
        return respond(
            document("Run", body, visit, notices=notice("error", f"No run {run_id!r}.")), 404
        )
    g, polls = found
    requests = await store.run_requests(g.id)
    duration = None if g.finished_at is None else g.finished_at - g.created_at
    facts = _facts([
        ("Run", _code(g.id)),
        ("Segmind's id", _code(g.upstream_id) if g.upstream_id else "not sent yet"),
        ("Workflow", g.workflow_id),
        ("Status", g.status),
        ("Sent", when(g.created_at)),
        ("Finished", when(g.finished_at)),
        ("Duration", seconds(duration)),
        ("Upstream polls", polls),
        ("Next poll", "-" if g.terminal else ago(g.next_poll_at, visit.now)),
        ("Polls failing since", when(g.failing_since) if g.failing_since else "-"),
        ("Upstream error", g.error or "-"),
        ("Cost", dollars(g.cost)),
    ])  # fmt: skip
    body = fill(
        "{search}{facts}<section><h2>Requests it answered ({n})</h2><table><thead><tr>"
        "<th>Request</th><th>Team</th><th>At</th><th>Cache</th><th>Cost</th><th>Webhook</th>"
        "</tr></thead><tbody>{rows}</tbody></table></section>"
        "<section><h2>Outputs</h2>{videos}</section>",
        search=_search_form(),
        facts=facts,
        n=len(requests),
        rows=join(_request_row(v) for v in requests),
        videos=await _videos(visit, g, next((v.request.team_id for v in requests), None)),
    )
    return respond(document(f"Run {g.id[:12]}", body, visit, active="runs"))
