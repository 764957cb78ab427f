"""The replicas page: the gateway processes sharing this store, when each last beat, and
how many runs each polls (a run is polled by one process only: its lease holder)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from proxy.console.access import page
from proxy.console.layout import Visit, document, respond
from proxy.console.markup import fill, join, moment, seconds

__all__ = ["replicas"]


@page
async def replicas(request: Request, visit: Visit) -> Response:
    gateway = visit.gateway
    wall = gateway.wall_clock.now()  # heartbeats are wall time, whatever runs are on
    lease = gateway.settings.lease_seconds
    rows = [
        fill(
            '<tr class="{state}"><td><code>{id}</code>{me}</td><td>{state}</td>'
            "<td>{beat}</td><td>{until}</td><td>{runs}</td></tr>",
            id=i.id,
            me=" (this one)" if i.id == gateway.instance else "",
            state="alive" if i.alive_until >= wall else "gone",
            beat=f"{seconds(wall - (i.alive_until - lease))} ago",
            until=moment(i.alive_until),
            runs=i.runs,
        )
        for i in await gateway.store.instances()
    ]
    body = fill(
        "<section><table><thead><tr><th>Instance</th><th>State</th><th>Last heartbeat</th>"
        "<th>Lease until (UTC)</th><th>Runs it polls</th></tr></thead><tbody>{rows}</tbody>"
        "</table><p><small>A process beats every few seconds; one whose lease ran out is gone, "
        "and the others take its runs.</small></p></section>",
        rows=join(rows),
    )
    return respond(document("Replicas", body, visit, active="replicas"))
