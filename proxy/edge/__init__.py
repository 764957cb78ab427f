"""The HTTP edge: where requests are read and answers written, and the only layer (with
the console and the assembly) that imports starlette.

    routes.py       the team-facing API: Segmind's submit and poll, credits, /v1/usage
    probes.py       /healthz, /readyz and /metrics
    admin_api.py    /admin/*: the admin operations over HTTP, with the admin key
    events.py       POST /upstream/events/<secret>: Segmind's notifications as hints
    openapi.py      the gateway's OpenAPI document (a declarative table)
    auth.py         the team key or operator credential a request presents
    bodies.py       a request body: bounded in bytes and time, strict JSON
    responses.py    errors and refusals as JSON answers; usage reports as JSON or CSV
    middleware.py   request ids, one metrics sample and one access-log line a request
    connections.py  head and body deadlines and connection caps (uvicorn protocol classes)
    otel.py         OpenTelemetry spans, loaded only when tracing is on

May import the services and every layer below them; never the console, the assembly or
the command line. Handlers parse, ask a service by a named method, and format: a rule
written here would be a rule the command line and the console do not keep.
"""
