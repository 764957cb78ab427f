"""The ground floor: parts every other layer stands on, each a value or a pure function
with no knowledge of HTTP requests, the store or the running gateway.

    config.py      the settings (pydantic-settings: environment and TOML) and team limits
    clock.py       the injected clock: system time, or virtual time tests move
    quotas.py      rate-limit arithmetic (GCRA), budget periods, the `RateLimit` fields
    schedule.py    when to poll a run next: the learnt duration model and the schedule
    cache.py       what makes two requests identical: the canonical inputs and cache key
    keys.py        team keys (made, hashed, shown as a prefix) and operator secrets
    webhooks.py    what a webhook says, how it is signed, when it is retried
    ssrf/          which URLs the gateway may call, and the transport that holds to it
    errors.py      the gateway's exception tree: status codes as data, no responses
    logs.py        JSON-lines logging with the upstream key scrubbed
    tracing.py     the tracing seam (a no-op unless the assembly plugs OpenTelemetry in)

May import: the standard library, third-party libraries other than starlette, the
`client` package's public API and `workflows`; of `proxy`, only `proxy.core` itself.
"""
