"""The OpenTelemetry side of `proxy/core/tracing.py`, the only module that imports it;
loaded by the app's assembly only when tracing is on.

Each gateway has its own `TracerProvider` (never the global one), so apps in one process
(tests) keep their spans apart. The trace of a request: a server span (continuing the
caller's `traceparent`), its admission, the upstream submit; then, in the background, each
upstream poll of its run and each webhook attempt of its messages, parented to the
request's span through contexts remembered in memory (a run adopted from another process
has none: its polls start traces of their own).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from proxy.core.tracing import Attributes, SpanHandle, Tracing
from proxy.edge.middleware import TEAM_KEY, route_of

__all__ = ["OtelTracing", "TracingMiddleware"]

SERVICE = "segmind-gateway"
REMEMBERED = 10_000  # contexts kept for background spans; the oldest go first
PROPAGATOR = TraceContextTextMapPropagator()
CARRIED = (b"traceparent", b"tracestate")


class OtelTracing(Tracing):
    enabled = True

    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider
        self.tracer = provider.get_tracer("proxy")
        self._contexts: dict[str, otel_context.Context] = {}

    @classmethod
    def exporting(cls) -> OtelTracing:
        """Spans batched to the OTLP/HTTP endpoint the environment names."""
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        resource = Resource.create()  # OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
        if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
            resource = resource.merge(Resource({"service.name": SERVICE}))
        provider = TracerProvider(resource=resource)
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        return cls(provider)

    def span(
        self,
        name: str,
        *,
        attributes: Attributes | None = None,
        follow: str | None = None,
    ) -> AbstractContextManager[SpanHandle]:
        parent = self._contexts.get(follow) if follow is not None else None
        if follow is not None and parent is None:
            parent = otel_context.Context()  # nothing remembered: a trace of its own
        return self.tracer.start_as_current_span(
            name, context=parent, attributes=dict(attributes or {})
        )

    def remember(self, key: str) -> None:
        if len(self._contexts) >= REMEMBERED:
            self._contexts.pop(next(iter(self._contexts)))
        self._contexts[key] = otel_context.get_current()

    def shutdown(self) -> None:
        self.provider.shutdown()


class TracingMiddleware:
    """One server span per HTTP request: a child of the caller's `traceparent` if it sent
    one, named by the route's template; its status code, never its headers, path or query."""

    def __init__(self, app: ASGIApp, tracing: OtelTracing) -> None:
        self.app = app
        self.tracer = tracing.tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        carrier = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in scope["headers"]
            if name in CARRIED
        }
        method = scope["method"]
        # Named by the route (never the raw path: a caller may put anything there).
        with self.tracer.start_as_current_span(
            f"{method} {route_of(method, scope['path'])}",
            context=PROPAGATOR.extract(carrier),
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method},
        ) as span:

            async def traced_send(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                    span.set_attribute("http.response.status_code", status)
                    if status >= 500:
                        span.set_status(Status(StatusCode.ERROR))
                await send(message)

            try:
                await self.app(scope, receive, traced_send)
            finally:
                _name_by_route(span, scope, method)


def _name_by_route(span: Any, scope: Scope, method: str) -> None:
    """Name the span by its route's template (`/workflows/request/{request_id}`), so that
    spans of one endpoint group together; and the team, once known."""
    route = getattr(scope.get("route"), "path", None)
    if isinstance(route, str):
        span.update_name(f"{method} {route}")
        span.set_attribute("http.route", route)
    team = scope.get(TEAM_KEY)
    if team:
        span.set_attribute("gateway.team", str(team))
