from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import proxy.core.logs
from proxy.core.logs import (
    MIN_SECRET_LENGTH,
    REDACTED,
    UVICORN_LOGGERS,
    JsonFormatter,
    Redactor,
    SecretScrubber,
    bind_request_id,
    configure_logging,
    request_id_var,
)

SECRET = "SG_not-a-real-key-0123"
TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
Capture = Callable[..., tuple[logging.Logger, io.StringIO]]


@pytest.fixture(autouse=True)
def _restore_loggers() -> Iterator[None]:
    """configure_logging() changes process-wide loggers: put them back after each test."""
    saved = []
    for name in ("proxy", *UVICORN_LOGGERS):
        logger = logging.getLogger(name)
        saved.append((logger, list(logger.handlers), logger.level, logger.propagate))
    yield
    for logger, handlers, level, propagate in saved:
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


@pytest.fixture
def capture() -> Iterator[Capture]:
    """A fresh logger writing to a StringIO through the given formatter and filters."""
    made: list[logging.Logger] = []

    def make(
        formatter: logging.Formatter | None = None, *filters: logging.Filter
    ) -> tuple[logging.Logger, io.StringIO]:
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        handler.setFormatter(formatter or JsonFormatter())
        for item in filters:
            handler.addFilter(item)
        logger = logging.getLogger(f"tests.logs.{uuid.uuid4().hex}")
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
        logger.propagate = False
        made.append(logger)
        return logger, stream

    yield make
    for logger in made:
        logger.handlers.clear()


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    text = stream.getvalue()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def test_exports_are_defined() -> None:
    assert sorted(proxy.core.logs.__all__) == sorted(set(proxy.core.logs.__all__))
    for name in proxy.core.logs.__all__:
        assert hasattr(proxy.core.logs, name)


def test_a_line_is_one_json_object_with_the_fixed_fields(capture: Capture) -> None:
    logger, stream = capture()
    logger.warning("polled %s after %d s", "gen-1", 7)
    [line] = lines(stream)
    assert set(line) == {"ts", "level", "logger", "msg"}
    assert TS.match(line["ts"])
    assert line["level"] == "WARNING"
    assert line["logger"] == logger.name
    assert line["msg"] == "polled gen-1 after 7 s"


def test_timestamp_is_utc_with_milliseconds() -> None:
    record = logging.LogRecord("proxy", logging.INFO, __file__, 1, "hello", None, None)
    record.created = 1_767_225_600.5  # 2026-01-01T00:00:00.5Z
    line = json.loads(JsonFormatter().format(record))
    assert line["ts"] == "2026-01-01T00:00:00.500Z"


def test_extra_fields_sit_at_the_top_level(capture: Capture) -> None:
    logger, stream = capture()
    extra = {"team": "a", "generation_id": "g-1", "ms": 12.5, "inputs": {"seed": [1, 2]}}
    logger.info("submitted", extra=extra)
    [line] = lines(stream)
    assert {key: line[key] for key in extra} == extra
    assert line["msg"] == "submitted"
    for standard in ("args", "pathname", "lineno", "funcName", "exc_info", "created"):
        assert standard not in line


def test_fixed_fields_win_over_extra_fields_of_the_same_name(capture: Capture) -> None:
    logger, stream = capture()
    logger.info("hello", extra={"level": "fake", "ts": "fake", "logger": "fake"})
    [line] = lines(stream)
    assert line["level"] == "INFO"
    assert line["ts"] != "fake"
    assert line["logger"] == logger.name


def test_exception_traceback_goes_in_exc(capture: Capture) -> None:
    logger, stream = capture()
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("poll failed")
    [line] = lines(stream)
    assert line["msg"] == "poll failed"
    assert line["level"] == "ERROR"
    assert line["exc"].startswith("Traceback (most recent call last):")
    assert line["exc"].endswith("ValueError: boom")


def test_request_id_is_bound_for_a_block(capture: Capture) -> None:
    logger, stream = capture()
    logger.info("before")
    with bind_request_id("req-1"):
        logger.info("inside")
        with bind_request_id("req-2"):
            logger.info("nested")
        logger.info("inside again")
    logger.info("after")
    logger.info("explicit", extra={"request_id": "req-x"})
    found = [line.get("request_id") for line in lines(stream)]
    assert found == [None, "req-1", "req-2", "req-1", None, "req-x"]
    assert request_id_var.get() is None


@pytest.mark.anyio
async def test_request_ids_do_not_leak_between_asyncio_tasks(capture: Capture) -> None:
    logger, stream = capture()

    async def handle(request_id: str) -> None:
        with bind_request_id(request_id):
            for step in range(3):
                logger.info("step %d", step, extra={"expected": request_id})
                await asyncio.sleep(0)  # let the other requests interleave
            # A task started inside the block inherits the id.
            await asyncio.create_task(child(request_id))

    async def child(request_id: str) -> None:
        await asyncio.sleep(0)
        logger.info("child", extra={"expected": request_id})

    await asyncio.gather(*(handle(f"req-{n}") for n in range(4)))
    logger.info("outside", extra={"expected": None})

    found = lines(stream)
    assert len(found) == 4 * 4 + 1
    assert [line["msg"] for line in found[:4]] == ["step 0"] * 4  # they did interleave
    for line in found:
        assert line.get("request_id") == line["expected"]


def log_every_path(logger: logging.Logger) -> None:
    """Puts SECRET in a log record by every path a record offers."""
    secret = SECRET
    logger.info(f"literal {secret}")
    logger.info("args %s and %r", secret, secret)
    logger.info("mapping %(key)s", {"key": secret})
    logger.info("joined %s%s", secret[:5], secret[5:])
    logger.info("object %s", {"x-api-key": secret})
    logger.info(
        "extra",
        extra={"key": secret, "headers": {"x-api-key": secret}, "keys": [secret], "n": 1},
    )
    try:
        raise RuntimeError(f"upstream refused key {secret}")
    except RuntimeError:
        logger.exception("exception")
    try:
        try:
            raise KeyError(secret)
        except KeyError as exc:
            raise ConnectionError("wrapped") from exc
    except ConnectionError:
        logger.error("chained", exc_info=True)
    logger.info(RuntimeError(secret))
    logger.info("stack %s", secret, stack_info=True)


def test_json_formatter_alone_never_writes_a_secret(capture: Capture) -> None:
    logger, stream = capture(JsonFormatter(secrets=[SECRET]))
    log_every_path(logger)
    output = stream.getvalue()
    assert SECRET not in output
    found = lines(stream)
    assert len(found) == 10
    assert found[0]["msg"] == f"literal {REDACTED}"
    assert found[1]["msg"] == f"args {REDACTED} and '{REDACTED}'"
    assert found[5]["key"] == REDACTED
    assert found[5]["headers"] == {"x-api-key": REDACTED}
    assert found[5]["n"] == 1
    assert f"RuntimeError: upstream refused key {REDACTED}" in found[6]["exc"]
    assert "KeyError" in found[7]["exc"]


def test_scrubber_cleans_the_record_for_any_other_handler(capture: Capture) -> None:
    records: list[logging.LogRecord] = []

    class Keep(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            records.append(record)
            return True

    plain = logging.Formatter("%(levelname)s %(message)s")
    logger, stream = capture(plain, SecretScrubber([SECRET]), Keep())
    log_every_path(logger)
    assert SECRET not in stream.getvalue()
    assert f"INFO literal {REDACTED}" in stream.getvalue()
    assert f"RuntimeError: upstream refused key {REDACTED}" in stream.getvalue()
    assert len(records) == 10
    for record in records:
        assert SECRET not in record.getMessage()
        assert SECRET not in repr(record.args)
        assert SECRET not in (record.exc_text or "")
        assert SECRET not in (record.stack_info or "")
        for key in ("key", "headers", "keys"):
            assert SECRET not in repr(getattr(record, key, ""))
    assert records[1].args == (REDACTED, REDACTED)  # args stay args when they can


def test_scrubber_keeps_numbers_for_numeric_formats(capture: Capture) -> None:
    logger, stream = capture(logging.Formatter("%(message)s"), SecretScrubber([SECRET]))
    logger.info("%s took %d ms (%.1f%%)", SECRET, 12, 99.5)
    assert stream.getvalue() == f"{REDACTED} took 12 ms (99.5%)\n"


def test_a_secret_that_json_would_escape_is_caught_escaped(capture: Capture) -> None:
    secret = 'sk"with\\quote\n'
    logger, stream = capture(JsonFormatter(secrets=[secret]))
    logger.info("plain %s", secret)
    logger.info("object %s", [secret])  # repr() escapes the backslash a second way
    output = stream.getvalue()
    assert secret not in output
    assert json.dumps(secret)[1:-1] not in output
    assert lines(stream)[0]["msg"] == f"plain {REDACTED}"


def test_short_and_empty_secrets_are_ignored(capture: Capture) -> None:
    short = "x" * (MIN_SECRET_LENGTH - 1)
    logger, stream = capture(JsonFormatter(secrets=["", short]), SecretScrubber(["", short]))
    logger.info("the word %s stays", short)
    assert lines(stream)[0]["msg"] == f"the word {short} stays"
    assert not Redactor(["", short])


def test_the_longest_secret_is_redacted_whole() -> None:
    redactor = Redactor([SECRET, SECRET + "-and-more"])
    assert redactor.scrub(f"a {SECRET}-and-more b {SECRET}") == f"a {REDACTED} b {REDACTED}"


@given(
    secrets=st.lists(st.text(min_size=MIN_SECRET_LENGTH, max_size=24), min_size=1, max_size=3),
    pieces=st.lists(st.text(max_size=12), max_size=6),
)
def test_no_secret_survives_scrubbing(secrets: list[str], pieces: list[str]) -> None:
    text = "".join(piece + secrets[n % len(secrets)] for n, piece in enumerate(pieces))
    scrubbed = Redactor(secrets).scrub(text)
    for secret in secrets:
        assert secret not in scrubbed


@given(text=st.text(alphabet=st.characters(blacklist_characters="S"), max_size=40))
def test_text_without_secrets_is_left_alone(text: str) -> None:
    assert Redactor([SECRET]).scrub(text) == text


def test_configure_logging_writes_scrubbed_json_on_the_proxy_logger() -> None:
    stream = io.StringIO()
    root_handlers = list(logging.getLogger().handlers)
    logger = configure_logging("DEBUG", secrets=[SECRET], stream=stream)
    assert logger is logging.getLogger("proxy")
    assert logger.level == logging.DEBUG
    assert logger.propagate is False
    assert logging.getLogger().handlers == root_handlers

    log_every_path(logging.getLogger("proxy.app"))
    assert SECRET not in stream.getvalue()
    found = lines(stream)
    assert len(found) == 10
    assert {line["logger"] for line in found} == {"proxy.app"}


def test_configure_logging_twice_replaces_its_handler() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging("INFO", secrets=["first-secret"], stream=first)
    logger = configure_logging("WARNING", secrets=["second-secret"], stream=second)

    # Only its own handler counts: pytest may attach capture handlers to any logger.
    ours = [h for h in logger.handlers if type(h) is logging.StreamHandler]
    assert len(ours) == 1
    for name in UVICORN_LOGGERS:
        assert ours[0] in logging.getLogger(name).handlers
    logger.info("dropped at WARNING")
    logger.warning("kept second-secret first-secret")
    assert first.getvalue() == ""
    [line] = lines(second)
    assert line["msg"] == f"kept {REDACTED} first-secret"


def test_configure_logging_refuses_an_unknown_level() -> None:
    with pytest.raises(ValueError, match=r"expected one of .*DEBUG.*INFO"):
        configure_logging("LOUD")


def test_uvicorn_lines_come_out_as_scrubbed_json() -> None:
    stream = io.StringIO()
    configure_logging("INFO", secrets=[SECRET], stream=stream)
    logging.getLogger("uvicorn.error").info("Started server process [%d]", 42)
    logging.getLogger("uvicorn.access").info(
        '%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", f"/x?key={SECRET}", "1.1", 200
    )
    for name in UVICORN_LOGGERS:
        assert len(logging.getLogger(name).handlers) == 1
    started, access = lines(stream)
    assert started["logger"] == "uvicorn.error"
    assert started["msg"] == "Started server process [42]"
    assert access["msg"] == f'127.0.0.1:5000 - "GET /x?key={REDACTED} HTTP/1.1" 200'


def test_a_real_uvicorn_server_logs_json_when_given_no_log_config() -> None:
    stream = io.StringIO()
    configure_logging("INFO", secrets=[SECRET], stream=stream)

    async def hello(request: Request) -> PlainTextResponse:
        logging.getLogger("proxy.test").info("handled", extra={"path": request.url.path})
        return PlainTextResponse("hi")

    app = Starlette(routes=[Route("/hello", hello)])
    config = uvicorn.Config(app, log_config=None, http="h11", ws="none", lifespan="off")
    server = uvicorn.Server(config)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for _ in range(200):
            if server.started:
                break
            threading.Event().wait(0.025)
        assert server.started
        response = httpx.get(f"http://127.0.0.1:{port}/hello?key={SECRET}")
        assert response.text == "hi"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()

    output = stream.getvalue()
    assert SECRET not in output
    found = lines(stream)
    loggers = {line["logger"] for line in found}
    assert {"uvicorn.error", "uvicorn.access", "proxy.test"} <= loggers
    [access] = [line for line in found if line["logger"] == "uvicorn.access"]
    assert f"GET /hello?key={REDACTED} HTTP/1.1" in access["msg"]
