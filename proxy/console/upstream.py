"""The upstream page: the company's calls to Segmind in the last minute against its
budget (`upstream_requests_per_minute`, shared by every replica), the pause every process
honours after a 429, this process's calls by kind and answer, polls per run, and the
outputs the gateway keeps of what Segmind made (files, bytes, oldest use, failed copies), and
the company's Segmind balance with its spend rate and the hours it lasts."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from proxy.console.access import page
from proxy.console.forecast import scheduled_polls
from proxy.console.layout import Visit, document, respond
from proxy.console.markup import Html, ago, fill, join
from proxy.console.plots import budget_bar, histogram
from proxy.rules.balance import Balance
from proxy.rules.budget import WINDOW

__all__ = ["upstream"]

BUCKET = 5.0  # seconds per bar of the last-minute plot


def _last_minute(calls: list[float], now: float, per_minute: int) -> Html:
    buckets = int(WINDOW / BUCKET)
    ages = [now - at for at in calls]
    edges = [BUCKET * i for i in range(buckets + 1)]
    return histogram(
        f"Calls granted per {BUCKET:.0f} s, the last minute (0: now)",
        ages,
        edges,
        "calls (count)",
        limit=per_minute * BUCKET / WINDOW,
        limit_label="the budget's even pace",
        x_label="seconds ago",
    )


def _polls_per_run(visit: Visit, runs: list[tuple[float, int]]) -> Html:
    """The upstream polls each of the latest completed runs took (counted in the store,
    by every replica), beside what the schedule, as it has learnt, plans for runs as long."""
    if not runs:
        return Html("<p>No finished runs yet.</p>")
    counted = [float(polls) for _, polls in runs]
    planned = [float(scheduled_polls(visit.gateway, seconds)) for seconds, _ in runs]
    mean, plan = sum(counted) / len(counted), sum(planned) / len(planned)
    plot = histogram(
        "Upstream polls per run, the latest completed runs",
        counted,
        [float(n) for n in range(int(max(counted)) + 2)],
        "runs (count)",
        x_label="upstream polls the run took",
    )
    return fill(
        "<p>{mean} polls a run over the last {n} completed runs; the schedule plans {plan} "
        "for runs as long (they differ where notifications from Segmind brought polls "
        "forward, failed polls were retried, or the poller fell behind its schedule).</p>{plot}",
        mean=f"{mean:.1f}",
        n=len(counted),
        plan=f"{plan:.1f}",
        plot=plot,
    )


def _balance(visit: Visit, found: Balance | None) -> Html:
    """The company's Segmind balance as last read, the spend since, and how long it lasts."""
    if found is None:
        return Html(
            '<section><h2>Segmind balance</h2><p data-test="balance">Not read yet: the '
            "gateway reads it every few minutes, and after a 406.</p></section>"
        )
    hours = found.hours_left
    return fill(
        '<section><h2>Segmind balance</h2><p data-test="balance"><strong>{left}</strong> '
        "credits left: {read} read {at}, less {spent} of runs sent since. Spend rate: "
        '{rate} an hour; <span data-test="hours-left">{hours}</span>.</p></section>',
        left=f"{found.estimate:.2f}",
        read=f"{found.credits:.2f}",
        at=ago(found.read_at, visit.now),
        spent=f"{found.spent_since:.2f}",
        rate=f"{found.spend_per_hour:.2f}",
        hours="no spend in the last hour" if hours is None else f"{hours:.1f} hours left",
    )


@page
async def upstream(request: Request, visit: Visit) -> Response:
    gateway = visit.gateway
    per_minute = gateway.settings.upstream_requests_per_minute
    calls = await gateway.store.upstream_calls_between(visit.now - WINDOW, visit.now)
    paused_until, submits_until = await gateway.store.upstream_pause()
    answers = visit.gateway.upstream_calls_by_answer()
    pauses = sum(count for _, status, count in answers if status == "429")
    polls = sum(count for kind, _, count in answers if kind == "poll")
    plot = _polls_per_run(visit, await gateway.store.finished_polls(200))
    balance = _balance(visit, await gateway.upstream_balance())
    paused = (
        f"paused {ago(paused_until, visit.now)} (after a 429)"
        if paused_until > visit.now
        else "not paused"
    )
    body = fill(
        "{balance}"
        '<section><h2>Company budget</h2><p class="budget">{bar}</p>'
        "<p>Calls to Segmind in the last minute, every replica: <strong>{n}</strong> of "
        "{per_minute}. Upstream: {paused}.{submits}</p><figure>{minute}</figure></section>"
        "<section><h2>This process's calls</h2><p>{pauses} answered 429 (each pauses every "
        "caller for its Retry-After); {polls} polls.</p><table><thead><tr><th>Kind</th>"
        "<th>Answer</th><th>Calls</th></tr></thead><tbody>{answers}</tbody></table></section>"
        "<section><h2>Polls per run</h2><figure>{plot}</figure></section>",
        bar=budget_bar(len(calls), per_minute, "calls in the last minute", money=False),
        n=len(calls),
        per_minute=per_minute,
        paused=paused,
        submits=" Polls step aside for a waiting submit." if submits_until > visit.now else "",
        minute=_last_minute(calls, visit.now, per_minute),
        pauses=f"{pauses:.0f}",
        polls=f"{polls:.0f}",
        answers=join(
            fill("<tr><td>{k}</td><td>{s}</td><td>{c}</td></tr>", k=k, s=s, c=f"{c:.0f}")
            for k, s, c in answers
        ),
        plot=plot,
        balance=balance,
    )
    body = Html(body + await _kept_outputs(visit))
    return respond(document("Upstream", body, visit, active="upstream"))


async def _kept_outputs(visit: Visit) -> Html:
    settings = visit.gateway.settings
    where = settings.outputs_target
    if where is None:
        return Html(
            "<section><h2>Kept outputs</h2><p>Off: answers carry Segmind's URLs, which it "
            "deletes after 7 days (set <code>outputs</code>).</p></section>"
        )
    summary = await visit.gateway.store.outputs_summary()
    return fill(
        "<section><h2>Kept outputs</h2><p>In <code>{where}</code>: <strong>{objects}</strong> "
        "files, {size} MB; oldest last use {oldest}; {failures} completed runs without "
        "copies (they answer with Segmind's URLs; retried while Segmind keeps them).</p>"
        "</section>",
        where=where,
        objects=summary.objects,
        size=f"{summary.bytes / 1e6:,.1f}",
        oldest="none" if summary.oldest_use is None else ago(summary.oldest_use, visit.now),
        failures=summary.failures,
    )
