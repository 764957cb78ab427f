"""Traces: the gateway in-process (create_app, httpx's ASGI transport) in front of the real
fake, its spans caught by OpenTelemetry's in-memory exporter, which must live in the same
process. One request's trace: its server span, admission, the upstream submit, each poll
of its run and its webhook attempt; a caller's `traceparent` is continued; no key in any
span. Off (no endpoint, or no package), the gateway never imports OpenTelemetry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from proxy.edge.otel import OtelTracing
from tests.proxy.harness import UPSTREAM_KEY, start_harness, stop_harness

pytestmark = pytest.mark.anyio

REPO = Path(__file__).resolve().parents[2]
HOOKS = "https://93.184.215.14"  # a public literal: no DNS; the transport is in-process
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


def _tracing() -> tuple[InMemorySpanExporter, OtelTracing]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter, OtelTracing(provider)


def _named(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [span for span in spans if span.name == name]


def _ids(span: ReadableSpan) -> tuple[str, str, str | None]:
    """(trace id, span id, parent span id) in hex."""
    assert span.context is not None
    parent = None if span.parent is None else f"{span.parent.span_id:016x}"
    return f"{span.context.trace_id:032x}", f"{span.context.span_id:016x}", parent


def _attributes(span: ReadableSpan) -> dict[str, object]:
    return dict(span.attributes or {})


async def test_a_paid_request_is_one_trace_from_submit_to_webhook(tmp_path: Path) -> None:
    exporter, tracing = _tracing()
    received: list[bytes] = []

    async def hook(request: Request) -> Response:
        received.append(await request.body())
        return Response("ok")

    receiver = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
    harness = await start_harness(
        tmp_path / "gateway.sqlite",
        webhook_transport=httpx.ASGITransport(app=receiver),
        tracing=tracing,
    )
    try:
        new = harness.new_team("traced")
        headers = {"X-Webhook-Url": f"{HOOKS}/hook?token=t0ken", "traceparent": TRACEPARENT}
        answer = await harness.submit(new.key, {"Scene_1": "a traced run"}, **headers)
        assert answer.status_code == 200, answer.text
        body = await harness.advance_until_done(new.key, answer.json()["request_id"])
        assert body["status"] == "COMPLETED"
        await harness.settle_webhooks()
        assert received
    finally:
        await stop_harness(harness)
    spans = exporter.get_finished_spans()

    [server] = _named(spans, "POST /workflows/{workflow_id}")
    assert server.kind is SpanKind.SERVER
    trace_id, server_id, parent_id = _ids(server)
    assert (trace_id, parent_id) == (TRACE_ID, PARENT_ID)  # the caller's trace, continued
    assert _attributes(server)["http.response.status_code"] == 200
    assert _attributes(server)["gateway.team"] == "traced"

    [admission] = _named(spans, "admission")
    [submit] = _named(spans, "upstream.submit")
    polls = _named(spans, "upstream.poll")
    [attempt] = _named(spans, "webhook.attempt")
    assert len(polls) >= 2  # a run of about eleven minutes, polled every few
    for child in (admission, submit, *polls, attempt):
        child_trace, _, child_parent = _ids(child)
        assert (child_trace, child_parent) == (trace_id, server_id), child.name
    assert _attributes(admission)["gateway.cache_status"] == "MISS"
    assert _attributes(polls[-1])["upstream.status"] == "COMPLETED"
    assert _attributes(attempt)["server.address"] == "93.184.215.14"
    assert _attributes(attempt)["http.response.status_code"] == 200

    # The client's polls are requests of their own: traces of their own.
    for poll in _named(spans, "GET /workflows/request/{request_id}"):
        assert _ids(poll)[0] != trace_id

    exported = json.dumps([json.loads(span.to_json()) for span in spans])
    for secret in (UPSTREAM_KEY, new.key, new.webhook_secret or "-", "t0ken", "/hook"):
        assert secret not in exported


async def test_a_traceparent_is_continued_and_without_one_a_trace_begins(tmp_path: Path) -> None:
    exporter, tracing = _tracing()
    harness = await start_harness(tmp_path / "gateway.sqlite", tracing=tracing)
    try:
        key = harness.team("traced")
        for headers in ({"traceparent": TRACEPARENT}, {}):
            answer = await harness.http.get(
                "/v1/get-user-credits", headers={"x-api-key": key, **headers}
            )
            assert answer.status_code == 200
        unknown = await harness.http.get("/no/such/path", headers={"traceparent": TRACEPARENT})
        assert unknown.status_code == 404
    finally:
        await stop_harness(harness)
    continued, fresh = _named(exporter.get_finished_spans(), "GET /v1/get-user-credits")
    assert _ids(continued)[0] == TRACE_ID
    assert _ids(continued)[2] == PARENT_ID
    assert _ids(fresh)[0] != TRACE_ID
    assert _ids(fresh)[2] is None
    # An unrouted path names no span after itself: a caller may put anything in a path.
    assert _named(exporter.get_finished_spans(), "GET other")


OFF_PATH = """
import asyncio, sys, tempfile
from pathlib import Path
from tests.proxy.harness import start_harness, stop_harness

async def main() -> None:
    harness = await start_harness(Path(tempfile.mkdtemp()) / "gateway.sqlite")
    try:
        key = harness.team("untraced")
        answer = await harness.submit(key, {"Scene_1": "an untraced run"})
        body = await harness.advance_until_done(key, answer.json()["request_id"])
        assert body["status"] == "COMPLETED", body
        assert not harness.gateway.tracing.enabled
    finally:
        await stop_harness(harness)

asyncio.run(main())
# Loaded modules only (a blocked package is a None entry).
print(sorted(m for m, loaded in sys.modules.items() if m.startswith("opentelemetry") and loaded))
"""


@pytest.mark.parametrize(
    ("endpoint", "blocked"),
    [(None, False), ("http://127.0.0.1:4318", True)],
    ids=["no endpoint", "endpoint but no package"],
)
def test_off_a_whole_run_never_imports_opentelemetry(endpoint: str | None, blocked: bool) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    if endpoint is not None:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
    # A package missing: imports of it fail, as where the `otel` extra is not installed.
    prelude = "import sys; sys.modules['opentelemetry'] = None\n" if blocked else ""
    done = subprocess.run(
        [sys.executable, "-c", prelude + OFF_PATH],
        capture_output=True, text=True, timeout=120, cwd=REPO, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
    if blocked:
        assert "traces are off" in done.stderr
