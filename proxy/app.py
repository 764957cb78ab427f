"""The assembly: one gateway process put together from its layers.

`create_app` is where the process is configured and nothing else is: logging, tracing, the
store's backend (from the `db` setting), the clocks, the services (`proxy/services/`), and
the HTTP surface (`proxy/edge/`, `proxy/console/`) on one Starlette app. Constructors below
it take what they need as arguments and never reach for the environment themselves.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Route

from proxy import console
from proxy.core.clock import Clock, SystemClock, VirtualClock
from proxy.core.config import ProxySettings
from proxy.core.logs import configure_logging
from proxy.core.tracing import ENDPOINT_VARIABLE, Tracing
from proxy.edge import admin_api, events, openapi, probes, routes
from proxy.edge import outputs as output_routes
from proxy.edge.middleware import NulGuard, ObservabilityMiddleware
from proxy.edge.responses import EXCEPTION_HANDLERS
from proxy.objects import ObjectStore, open_object_store
from proxy.services.gateway import Gateway
from proxy.store import open_store

__all__ = ["create_app", "tracing_from_environment"]

log = logging.getLogger("proxy.tracing")
outputs_log = logging.getLogger("proxy.outputs")


def tracing_from_environment(environ: Mapping[str, str] | None = None) -> Tracing:
    """Tracing as the environment asks: on with an OTLP endpoint and the `otel` extra."""
    environ = os.environ if environ is None else environ
    if not environ.get(ENDPOINT_VARIABLE):
        return Tracing()
    try:
        # Imported here only: the `otel` extra is optional, and off it is never loaded.
        from proxy.edge.otel import OtelTracing
    except ImportError as exc:
        log.warning(
            "%s is set but the OpenTelemetry packages are missing (%s): traces are off; "
            "install the gateway with its `otel` extra",
            ENDPOINT_VARIABLE,
            exc.name,
        )
        return Tracing()
    return OtelTracing.exporting()


def _tracing_layers(tracing: Tracing) -> list[Middleware]:
    """One server span per HTTP request (continuing a `traceparent`); none when off."""
    if not tracing.enabled:
        return []
    from proxy.edge.otel import OtelTracing, TracingMiddleware  # loaded already: it is on

    assert isinstance(tracing, OtelTracing)
    return [Middleware(TracingMiddleware, tracing=tracing)]


def _routes() -> list[BaseRoute]:
    return [
        *routes.ROUTES,
        *output_routes.ROUTES,
        *probes.ROUTES,
        Route("/openapi.json", openapi.openapi, methods=["GET"]),
        Route("/upstream/events/{secret}", events.upstream_events, methods=["POST"]),
        *admin_api.routes,
        *console.routes,
    ]


def _output_store(settings: ProxySettings) -> ObjectStore | None:
    """The output store the `outputs` setting names; says at start where outputs go."""
    objects = open_object_store(settings)
    if objects is not None:
        where = settings.outputs_target
        outputs_log.info("outputs kept in %s (%s)", where, objects.kind)
    elif settings.outputs.strip().lower() != "none":
        outputs_log.warning(
            "outputs are not kept: with a PostgreSQL store, replicas share no folder; set "
            "PROXY_OUTPUTS to s3://bucket/prefix (or a folder all replicas mount), or to "
            "none to say so"
        )
    return objects


def create_app(
    settings: ProxySettings | None = None,
    *,
    clock: Clock | None = None,
    upstream_transport: httpx.AsyncBaseTransport | None = None,
    webhook_transport: httpx.AsyncBaseTransport | None = None,
    wall_clock: Clock | None = None,
    tracing: Tracing | None = None,
    asset_transport: httpx.AsyncBaseTransport | None = None,
) -> Starlette:
    """The gateway; `app.state.gateway` holds its service object (store, poller, clock).

    The transports are for tests: the upstream's stands in for Segmind (the fake,
    in-process); the webhook one replaces the SSRF-guarded socket transport. `wall_clock`
    times the process's heartbeat (default: real time, whatever `clock` is). `tracing`:
    the spans' destination (default: as the environment says, usually off)."""
    settings = settings or ProxySettings()
    # Scrubbed from every log line: the company key, and the events secret (a path).
    secrets = [
        s.get_secret_value() for s in (settings.upstream_key, settings.upstream_events_secret) if s
    ]
    configure_logging(settings.log_level, secrets=secrets)
    store = open_store(settings.db, wait=True)  # started before its database: waits
    gateway = Gateway(
        settings,
        store,
        clock or (VirtualClock() if settings.clock == "virtual" else SystemClock()),
        wall_clock=wall_clock,
        upstream_transport=upstream_transport,
        webhook_transport=webhook_transport,
        tracing=tracing or tracing_from_environment(),
        objects=_output_store(settings),
        asset_transport=asset_transport,
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gateway.start()
        try:
            yield
        finally:
            await gateway.stop()

    app = Starlette(
        routes=_routes(),
        middleware=[
            *_tracing_layers(gateway.tracing),
            Middleware(
                ObservabilityMiddleware,
                metrics=gateway.metrics,
                log_polls=settings.log_polls,
                secrets=[s.get_secret_value() for s in [settings.upstream_events_secret] if s],
            ),
            Middleware(NulGuard),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    app.state.gateway = gateway
    return app
