"""The gateway's services: the objects that run while the process lives, each owning one
job and talking to the store through `Store` and to Segmind through the client SDK.

    gateway.py     `Gateway`: the service object the edge and the console ask, by name
                   (submit, poll, credits, and what the console shows); holds the others
    upstream.py    calls to Segmind: the company key injected, the company budget kept
    poller.py      one loop per run this process holds the lease of, on the schedule
    deliverer.py   takes due webhook messages from the outbox, signs and sends them
    heartbeat.py   this process's heartbeat, and takeover of dead processes' runs
    preflight.py   fetches a run's image before paying for it
    operations.py  the admin operations, once for the command line, the API and console
    accounts.py    making teams, keys and webhook secrets (a key is shown once)
    reports.py     usage reports: the days asked for, the report as JSON or CSV
    metrics.py     the Prometheus registry of one gateway

May import `proxy.store`, `proxy.rules`, `proxy.db`, `proxy.core`, httpx and the client
SDK; never starlette (no request or response here: the edge translates), nor anything
above (edge, console, assembly, cli). Nothing here configures the process: the assembly
(`proxy/app.py`) passes the store, clocks and tracing in.
"""
