"""Traces, when asked for: OpenTelemetry spans of each request, its admission, the upstream
submit and polls of its run, and its webhook attempts (`proxy/edge/otel.py`).

Off by default, and then free: `Tracing` here does nothing, and neither this module nor
anything it loads imports `opentelemetry`. The app's assembly (`proxy/app.py`) turns it on
when the `otel` extra is installed and `OTEL_EXPORTER_OTLP_ENDPOINT` is set (the
OpenTelemetry SDK reads its other `OTEL_*` variables itself); the endpoint set without the
extra logs one warning and stays off.

Spans never carry a key: their attributes are chosen here and in `proxy/edge/otel.py` (team names,
ids, statuses, hosts), never a header, a body or a URL's path or query.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Any, Protocol

__all__ = ["ENDPOINT_VARIABLE", "SpanHandle", "Tracing"]

ENDPOINT_VARIABLE = "OTEL_EXPORTER_OTLP_ENDPOINT"
Attributes = Mapping[str, str | int | float | bool]


class SpanHandle(Protocol):
    def set_attribute(self, key: str, value: str | int | float | bool) -> Any: ...


class _NoSpan:
    def set_attribute(self, key: str, value: str | int | float | bool) -> None:
        return None


NO_SPAN = _NoSpan()


class _NoSpanScope(AbstractContextManager[SpanHandle]):
    """One shared, reusable scope of no span: entering it costs a method call."""

    def __enter__(self) -> SpanHandle:
        return NO_SPAN

    def __exit__(self, *exc: object) -> None:
        return None


NO_SCOPE = _NoSpanScope()


class Tracing:
    """No tracing: every span is a no-op. `otel.OtelTracing` is the real one."""

    enabled = False

    def span(
        self,
        name: str,
        *,
        attributes: Attributes | None = None,
        follow: str | None = None,
    ) -> AbstractContextManager[SpanHandle]:
        """A span named `name`, current within; a child of the current span, or (with
        `follow`) of the context remembered under that key, for background work (a poll,
        a webhook attempt) that runs outside the request that started it."""
        return NO_SCOPE

    def remember(self, key: str) -> None:
        """Remember the current context under `key`, for spans that `follow` it later."""

    def shutdown(self) -> None:
        """Send what is still buffered, then stop."""
