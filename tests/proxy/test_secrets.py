"""The upstream key never leaves the gateway: a whole flow, error paths included, with an
upstream that echoes the key back in every error it can, and every output grepped.

Outputs: every HTTP answer (status line, headers, body), every poll_url, the gateway's JSON
log lines, every other log record (client, httpx), stdout and stderr, /metrics, /readyz,
/healthz, the texts (and tracebacks) of exceptions the upstream layer raises, the settings'
printed forms, and the store file where error texts are kept for later answers.
"""

from __future__ import annotations

import io
import logging
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

import client
from proxy.core.cache import canonical_inputs
from proxy.core.errors import GatewayError
from tests.proxy.harness import GATEWAY_URL, UPSTREAM_KEY, WORKFLOW, Harness

pytestmark = pytest.mark.anyio

MakeHarness = Callable[..., Awaitable[Harness]]
WORKFLOW_ID = WORKFLOW.removeprefix("/workflows/")
METRICS_TOKEN = "test-metrics-token-secrets-5e0b"  # /metrics needs a credential
# The distinctive part of the key too, to catch an echo cut short.
NEEDLES = (UPSTREAM_KEY, UPSTREAM_KEY[-16:])
# An upstream that echoes the key it was sent (servers sometimes echo headers).
ECHO = f"invalid x-api-key {UPSTREAM_KEY}; Authorization: Bearer {UPSTREAM_KEY}"


def shown(answer: httpx.Response) -> str:
    head = "\n".join(f"{k}: {v}" for k, v in answer.headers.multi_items())
    return f"{answer.status_code} {answer.reason_phrase}\n{head}\n\n{answer.text}"


def exception_text(exc: BaseException) -> str:
    """Everything an exception would print: str, repr, and the traceback with its chain."""
    parts = [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
    cause = exc.__cause__ or exc.__context__
    while cause is not None:
        parts += [str(cause), repr(cause)]
        cause = cause.__cause__ or cause.__context__
    return "\n".join(parts)


def record_text(record: logging.LogRecord) -> str:
    formatted = logging.Formatter("%(name)s %(levelname)s %(message)s").format(record)
    return f"{formatted}\n{record.__dict__!r}"


class Interrupts:
    """Wraps the upstream transport: the next n submits or polls time out, as a socket would."""

    def __init__(self, inner: Callable[[httpx.Request], Awaitable[httpx.Response]]) -> None:
        self.inner = inner
        self.timeouts = {"submit": 0, "poll": 0}

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        route = "poll" if request.url.path.startswith("/workflows/request/") else "submit"
        if self.timeouts[route] > 0:
            self.timeouts[route] -= 1
            raise httpx.ReadTimeout("timed out waiting for the answer", request=request)
        return await self.inner(request)


async def advance_until(h: Harness, key: str, request_id: str, status: str) -> dict[str, Any]:
    for _ in range(400):
        body: dict[str, Any] = (await h.poll(key, request_id)).json()
        if body["status"] == status:
            return body
        await h.advance(10)
    raise AssertionError(f"request {request_id} never reached {status}")


async def test_the_upstream_key_appears_in_no_output(
    make_harness: MakeHarness,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    h = await make_harness(log_level="DEBUG", give_up_after=60.0, metrics_token=METRICS_TOKEN)
    gateway_logs = io.StringIO()
    handlers = [x for x in logging.getLogger("proxy").handlers if x.get_name() == "proxy.json"]
    assert len(handlers) == 1, "the gateway configured its one JSON log handler"
    handler = handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(gateway_logs)
    interrupts = Interrupts(h.upstream_transport.handle_async_request)
    monkeypatch.setattr(h.upstream_transport, "handle_async_request", interrupts)

    key = h.team("leakcheck", submits_per_minute=None, polls_per_minute=None)
    auth = {"x-api-key": key}
    outputs: list[str] = []
    poll_urls: list[str] = []
    errors: list[str] = []

    def seen(answer: httpx.Response, *expected: int) -> httpx.Response:
        outputs.append(shown(answer))
        if expected:
            assert answer.status_code in expected, shown(answer)
        if answer.headers.get("content-type") == "application/json":
            body = answer.json()
            if isinstance(body, dict) and "poll_url" in body:
                poll_urls.append(body["poll_url"])
        return answer

    # Bad input: refused before any upstream call.
    seen(await h.http.post(WORKFLOW, content=b"{not json", headers=auth), 400)
    seen(await h.submit(key, {"Scene_1": 5}), 400)
    seen(await h.submit(key, {"Character_Image": "not-an-image"}), 400)
    seen(await h.submit(key, {"Unknown_Input": 1}), 400)
    seen(await h.submit(key, [1, 2]), 400)
    seen(await h.http.post("/workflows/no-such-workflow", json={}, headers=auth), 404)
    seen(await h.http.post(WORKFLOW, content=b"{" + b" " * 70_000 + b"}", headers=auth), 413)
    seen(await h.submit(key, {}, **{"X-Webhook-Url": "ftp://example.com/hook"}), 400)
    assert h.upstream_calls("submit") == []

    # A team that sends the company key, as either header: refused, not echoed.
    seen(await h.http.post(WORKFLOW, json={}, headers={"x-api-key": UPSTREAM_KEY}), 401)
    bearer = {"Authorization": f"Bearer {UPSTREAM_KEY}"}
    seen(await h.http.get("/v1/get-user-credits", headers=bearer), 401)
    seen(await h.http.post(WORKFLOW, json={}), 401)

    # Every submit error the upstream can answer, each echoing the key back.
    for code, expected in ((401, 502), (403, 502), (500, 502), (502, 502), (503, 502),
                           (504, 504), (406, 503), (400, 400), (404, 502)):  # fmt: skip
        h.fake_state.faults.script("submit", [{"code": code, "message": ECHO}])
        seen(await h.submit(key, {"Scene_1": f"Failing submit {code}"}), expected)
    interrupts.timeouts["submit"] = 1
    seen(await h.submit(key, {"Scene_1": "A submit that times out"}), 504)
    assert interrupts.timeouts["submit"] == 0

    # A run whose polls fail (timeout, 500, 401, 429, each echoing the key), then FAILED
    # with the key in its error message.
    first = seen(await h.submit(key, {"Scene_1": "A doomed run"}), 200)
    doomed = first.json()["request_id"]
    interrupts.timeouts["poll"] = 1
    h.fake_state.faults.script(
        "poll",
        [
            {"code": 500, "message": ECHO},
            {"code": 401, "message": ECHO},
            {"code": 429, "message": ECHO, "headers": {"Retry-After": "5"}},
            {"code": 200, "body": {"status": "FAILED", "error_message": ECHO, "error": ECHO}},
        ],
    )
    failed = await advance_until(h, key, doomed, "FAILED")
    seen(await h.poll(key, doomed), 200)
    assert failed["status"] == "FAILED"
    assert interrupts.timeouts["poll"] == 0
    assert h.fake_state.faults.pending() == {}

    # A run that COMPLETES with an output that echoes the key.
    second = seen(await h.submit(key, {"Scene_1": "An echoing run"}), 200)
    h.fake_state.faults.script(
        "poll",
        [{"code": 200, "body": {"status": "COMPLETED",
                                "output": [f"https://cdn.example/v.mp4?k={UPSTREAM_KEY}"]}}],
    )  # fmt: skip
    await advance_until(h, key, second.json()["request_id"], "COMPLETED")
    seen(await h.poll(key, second.json()["request_id"]), 200)

    # A run the gateway gives up polling: the upstream answers 500 (echoing) for too long.
    third = seen(await h.submit(key, {"Scene_1": "An abandoned run"}), 200)
    h.fake_state.faults.script("poll", [{"code": 500, "message": ECHO, "times": 200}])
    abandoned = await advance_until(h, key, third.json()["request_id"], "FAILED")
    assert "gave up" in abandoned["error_message"]
    seen(await h.poll(key, third.json()["request_id"]), 200)
    h.fake_state.faults.reset()

    # A plain run to the end, then a cache hit and a join-free second team.
    fourth = seen(await h.submit(key, {"Scene_1": "A good run"}), 200)
    await advance_until(h, key, fourth.json()["request_id"], "COMPLETED")
    seen(await h.poll(key, fourth.json()["request_id"]), 200)
    hit = seen(await h.submit(key, {"Scene_1": "A good run"}), 200)
    assert hit.headers["x-cache-status"] == "HIT"
    seen(await h.poll(key, hit.json()["request_id"]), 200)

    # Every other endpoint.
    seen(await h.http.get("/v1/get-user-credits", headers=auth), 200)
    seen(await h.http.get("/metrics", headers={"authorization": f"Bearer {METRICS_TOKEN}"}), 200)
    seen(await h.http.get("/readyz"), 200)
    seen(await h.http.get("/healthz"), 200)
    seen(await h.http.get("/no/such/route"), 404)
    seen(await h.http.delete(WORKFLOW, headers=auth), 405)
    seen(await h.http.get("/admin/teams"), 403)

    # The upstream layer's own exceptions, with their chains.
    inputs = canonical_inputs(WORKFLOW_ID, {})
    for code in (401, 500, 406, 400):
        h.fake_state.faults.script("submit", [{"code": code, "message": ECHO}])
        with pytest.raises(GatewayError) as raised:
            await h.gateway.upstream.submit(WORKFLOW_ID, inputs, f"direct-{code}")
        errors.append(exception_text(raised.value))
    h.fake_state.faults.script("poll", [{"code": 500, "message": ECHO}])
    with pytest.raises(client.SegmindError) as polled:
        await h.gateway.upstream.status("an-upstream-job-id")
    errors.append(exception_text(polled.value))
    settings = h.gateway.settings
    errors += [repr(settings), str(settings), settings.model_dump_json()]

    # The upstream really was asked with the key, and really echoed it.
    statuses = {entry["status"] for entry in h.fake_state.journal.entries("submit")}
    assert {401, 403, 500, 406, 400} <= statuses

    await h.advance(10)
    logs = gateway_logs.getvalue()
    assert "rejected the gateway's own key" in logs, "the loud log line was captured"
    assert "poll of generation" in logs
    captured = capsys.readouterr()
    other_records = [record_text(r) for r in caplog.records]
    db = Path(settings.db)
    stored = b"".join(p.read_bytes() for p in db.parent.iterdir() if p.name.startswith(db.name))

    for url in poll_urls:
        assert url.startswith(f"{GATEWAY_URL}/workflows/request/")
    assert len(poll_urls) == 5
    everything = {
        "answers": "\n".join(outputs),
        "poll urls": "\n".join(poll_urls),
        "gateway logs": logs,
        "other log records": "\n".join(other_records),
        "stdout": captured.out,
        "stderr": captured.err,
        "exceptions": "\n".join(errors),
        "store": stored.decode("utf-8", errors="replace"),
    }
    for where, text in everything.items():
        for needle in NEEDLES:
            assert needle not in text, f"the upstream key leaked into the {where}"
