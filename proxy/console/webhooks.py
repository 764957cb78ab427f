"""The webhooks page: each team's endpoints (messages, attempts, what waits, what failed,
the next attempt, the last error) with a button to queue its failed messages again, and
the latest messages with a button to send one again."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from proxy.console.access import Form, action, page
from proxy.console.investigate import request_link
from proxy.console.layout import Visit, button, document, notice, respond
from proxy.console.markup import EMPTY, Html, ago, fill, join, moment
from proxy.console.operate import Refused, run
from proxy.db import Endpoint, OutboxMessage

__all__ = ["recover", "resend", "webhooks"]

RECOVER_DAYS = 7  # how far back the recover button looks for failed messages


def _endpoint_row(visit: Visit, e: Endpoint) -> Html:
    since = str(visit.now - RECOVER_DAYS * 86400)
    again = (
        button(
            visit,
            "webhooks/recover",
            f"Recover {e.failed}",
            {"team": e.team_name, "since": since},
            test_id=f"recover-{e.team_name}",
        )
        if e.failed
        else Html("")
    )
    return fill(
        '<tr><td>{team}</td><td class="url">{url}</td><td>{messages}</td><td>{attempts}</td>'
        '<td>{pending}</td><td>{failed} {again}</td><td>{next}</td><td class="error">{error}'
        "</td></tr>",
        team=e.team_name,
        url=e.url,
        messages=e.messages,
        attempts=e.attempts,
        pending=e.pending,
        failed=e.failed,
        again=again,
        next=ago(e.next_attempt_at, visit.now),
        error=e.last_error or "",
    )


def _message_row(visit: Visit, message: OutboxMessage, team: str) -> Html:
    return fill(
        '<tr data-message="{id}"><td><code>{id}</code><br>for {request}</td><td>{team}</td>'
        "<td>{event}</td>"
        '<td>{at}</td><td class="state">{state}</td><td class="attempts">{attempts}</td>'
        '<td>{next}</td><td class="error">{error}</td><td>{resend}</td></tr>',
        id=message.id,
        request=request_link(message.request_id),
        team=team,
        event=message.event,
        at=moment(message.created_at),
        state=message.state,
        attempts=message.attempts,
        next=ago(message.next_attempt_at, visit.now),
        error=message.last_error or "",
        resend=button(
            visit,
            "webhooks/resend",
            "Resend",
            {"webhook_id": message.id},
            test_id=f"resend-{message.id}",
        ),
    )


async def render(visit: Visit, notices: Html = EMPTY, status: int = 200) -> Response:
    store = visit.gateway.store
    endpoints = await store.endpoints()
    messages = await store.recent_messages()
    body = fill(
        "<section><h2>Endpoints</h2><table><thead><tr><th>Team</th><th>URL</th>"
        "<th>Messages</th><th>Attempts</th><th>Pending</th><th>Failed</th>"
        "<th>Next attempt</th><th>Last error</th></tr></thead><tbody>{endpoints}</tbody>"
        "</table>{no_endpoints}<p><small>A <strong>Recover</strong> button appears beside a "
        "team whose messages failed: it queues again that team's failed and disabled "
        "messages of the last {days} days.</small></p></section>"
        "<section><h2>Latest messages</h2><table><thead><tr><th>Webhook id</th><th>Team</th>"
        "<th>Event</th><th>Created (UTC)</th><th>State</th><th>Attempts</th>"
        "<th>Next attempt</th><th>Last error</th><th></th></tr></thead>"
        "<tbody>{messages}</tbody></table>{no_messages}</section>",
        endpoints=join(_endpoint_row(visit, e) for e in endpoints),
        no_endpoints=EMPTY
        if endpoints
        else Html(
            '<p class="empty">No webhook endpoint yet. A team gets one by sending '
            "<code>X-Webhook-Url</code> with a submit (or by a default URL set with "
            "<code>python -m proxy admin set-webhook</code>); its deliveries show here.</p>"
        ),
        days=RECOVER_DAYS,
        messages=join(_message_row(visit, m, team) for m, team in messages),
        no_messages=EMPTY
        if messages
        else Html(
            '<p class="empty">No webhook message yet: one is queued for each request with a '
            "webhook URL when its run ends. To follow one request's deliveries, search its "
            "id above.</p>"
        ),
    )
    return respond(
        document(
            "Webhooks",
            body,
            visit,
            active="webhooks",
            notices=notices,
            replace="/admin/ui/webhooks",
        ),
        status,
    )


@page
async def webhooks(request: Request, visit: Visit) -> Response:
    return await render(visit)


@action
async def resend(request: Request, visit: Visit, form: Form) -> Response:
    webhook_id = form.get("webhook_id", "")
    try:
        await run(visit, "resend", webhook_id=webhook_id)
    except Refused as exc:
        return await render(visit, notice("error", exc.message), 400)
    visit.gateway.wake_deliverer()
    return await render(visit, notice("ok", f"Message {webhook_id} queued to be sent again."))


@action
async def recover(request: Request, visit: Visit, form: Form) -> Response:
    team = form.get("team") or None
    try:
        done = await run(visit, "recover", since=form.get("since", ""), team=team)
    except Refused as exc:
        return await render(visit, notice("error", exc.message), 400)
    visit.gateway.wake_deliverer()
    return await render(visit, notice("ok", f"{done['queued']} failed message(s) queued again."))
