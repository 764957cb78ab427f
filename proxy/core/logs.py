"""The gateway's logs: one JSON object per line, and never a secret in any of them.

`JsonFormatter` writes `ts`, `level`, `logger`, `msg`, the bound `request_id`, every `extra=`
field and `exc` (the traceback). `SecretScrubber` replaces each secret (the upstream key, and
anything else the caller names) with "[REDACTED]" in the record: message, args, extra fields,
traceback. The formatter scrubs again, on every value and on the finished line, so a secret
that reaches the record by a path the filter did not foresee still never reaches the output.

`configure_logging()` sets this up on the "proxy" logger and on uvicorn's loggers; run uvicorn
with `log_config=None` so it keeps these handlers instead of installing its own.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import IO, Any

from client import Scrubber

__all__ = [
    "LIBRARY_LOGGERS",
    "MIN_SECRET_LENGTH",
    "REDACTED",
    "UVICORN_LOGGERS",
    "JsonFormatter",
    "Redactor",
    "SecretScrubber",
    "bind_request_id",
    "configure_logging",
    "request_id_var",
]

REDACTED = "[REDACTED]"
# Shorter strings would redact ordinary words; no real key is this short.
MIN_SECRET_LENGTH = 8
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")
# Loggers of the HTTP stack that quote what a server sent (filters apply per logger, not to
# its children, so each one that writes records is named).
LIBRARY_LOGGERS = (
    "httpx",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
)
_HANDLER_NAME = "proxy.json"

# Attributes every LogRecord has; whatever else is on a record came from `extra=`.
_RECORD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "asctime",
    "message",
    "taskName",
}

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "proxy_request_id", default=None
)


@contextmanager
def bind_request_id(value: str | None) -> Iterator[None]:
    """Tag every log line written inside the block (and tasks started in it) with `value`."""
    token = request_id_var.set(value)
    try:
        yield
    finally:
        request_id_var.reset(token)


class Redactor:
    """Replaces every occurrence of the given secrets in a string with `REDACTED`.

    Each secret is matched in every spelling the client's own scrubber knows (as is,
    JSON-escaped, URL-encoded, as HTML character references: `client.Scrubber`),
    so a secret holding a quote or a backslash cannot slip through a serialised line, and
    an upstream's echo that reached a record by a path nobody foresaw is caught here too.
    Secrets shorter than `MIN_SECRET_LENGTH` are ignored.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        kept = [s for s in secrets if isinstance(s, str) and len(s) >= MIN_SECRET_LENGTH]
        self._scrubber = Scrubber(*kept, marker=REDACTED)

    def __bool__(self) -> bool:
        return bool(self._scrubber)

    def scrub(self, text: str) -> str:
        return self._scrubber(text)

    def scrub_value(self, value: Any) -> Any:
        """A JSON-ready copy of `value` with every string in it scrubbed."""
        if value is None or isinstance(value, bool | int | float):
            return value
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, Mapping):
            return {self.scrub(str(key)): self.scrub_value(item) for key, item in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self.scrub_value(item) for item in value]
        return self.scrub(str(value))

    def contains_secret(self, text: str) -> bool:
        return self._scrubber.found_in(text)


class SecretScrubber(logging.Filter):
    """Scrubs secrets out of a record in place, for every handler that sees it after."""

    def __init__(self, secrets: Iterable[str], name: str = "") -> None:
        super().__init__(name)
        self.redactor = Redactor(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        redactor = self.redactor
        if not redactor:
            return True
        if isinstance(record.msg, str):
            record.msg = redactor.scrub(record.msg)
        if isinstance(record.args, Mapping):
            record.args = {key: self._arg(item) for key, item in record.args.items()}
        elif isinstance(record.args, tuple):
            record.args = tuple(self._arg(item) for item in record.args)
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: the handler reports it, from scrubbed parts
            message = None
        if message is not None and redactor.contains_secret(message):
            # Pieces that are harmless apart can join into a secret: keep the joined text.
            record.msg = redactor.scrub(message)
            record.args = None
        for key, value in list(record.__dict__.items()):
            if key not in _RECORD_ATTRIBUTES:
                record.__dict__[key] = self._extra(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redactor.scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = redactor.scrub(record.stack_info)
        return True

    def _arg(self, value: object) -> object:
        # Numbers stay numbers so "%d" still works; anything that prints a secret becomes text.
        if isinstance(value, str):
            return self.redactor.scrub(value)
        if self.redactor.contains_secret(str(value)) or self.redactor.contains_secret(repr(value)):
            return self.redactor.scrub(str(value))
        return value

    def _extra(self, value: object) -> object:
        if value is None or isinstance(value, bool | int | float):
            return value
        if isinstance(value, str):
            return self.redactor.scrub(value)
        text = f"{value}\n{value!r}"
        return self.redactor.scrub_value(value) if self.redactor.contains_secret(text) else value


class JsonFormatter(logging.Formatter):
    """One JSON object per line; with `secrets`, none of them ever appears in a line.

    Fields: `ts` (UTC, milliseconds, "Z"), `level`, `logger`, `msg`, `request_id` (an
    `extra=` value wins over the bound one), every other `extra=` field at the top level
    (the fixed fields win on a name clash), `exc` and `stack` when present.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.redactor = Redactor(secrets)

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = record.__dict__.get("request_id") or request_id_var.get()
        if request_id is not None:
            payload["request_id"] = request_id
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRIBUTES and key not in payload and key not in ("exc", "stack"):
                payload[key] = value
        exc_text = record.exc_text
        if record.exc_info and not exc_text:
            exc_text = self.formatException(record.exc_info)
        if exc_text:
            payload["exc"] = exc_text
        if record.stack_info:
            payload["stack"] = self.formatStack(record.stack_info)
        # One pass over the finished line is enough: the redactor also matches each secret
        # as JSON escapes it, so no field can smuggle one through serialisation.
        line = json.dumps(payload, ensure_ascii=False, default=str)
        return self.redactor.scrub(line)


def _level(level: str) -> int:
    names = logging.getLevelNamesMapping()
    try:
        return names[level.upper()]
    except KeyError:
        valid = ", ".join(sorted(names, key=names.__getitem__))
        raise ValueError(f"unknown log level {level!r}: expected one of {valid}") from None


def configure_logging(
    level: str = "INFO", secrets: Iterable[str] = (), stream: IO[str] | None = None
) -> logging.Logger:
    """Send the "proxy" and uvicorn loggers to one JSON, scrubbed handler; returns "proxy".

    Calling it again replaces that handler (new level, secrets, stream); it never stacks a
    second one. uvicorn's own handlers are removed so its lines cannot bypass the scrubber.
    """
    secrets = tuple(secrets)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(JsonFormatter(secrets))
    # No SecretScrubber filter here: the formatter scrubs every finished line, which covers
    # message, args, extras and tracebacks at a fraction of the per-field cost.
    # (SecretScrubber stays available for handlers with formatters of their own.)
    resolved = _level(level)

    proxy_logger = logging.getLogger("proxy")
    for name in ("proxy", *UVICORN_LOGGERS):
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            if name != "proxy" or old.get_name() == _HANDLER_NAME:
                logger.removeHandler(old)
                if old.get_name() == _HANDLER_NAME:
                    old.close()
        logger.addHandler(handler)
        logger.setLevel(resolved)
        logger.propagate = False
    # The HTTP libraries log the upstream's status line (httpx, INFO) and headers (httpcore,
    # DEBUG) to whatever handlers the host set up: scrub those records where they are made.
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        for old_filter in [f for f in logger.filters if isinstance(f, _LibraryScrubber)]:
            logger.removeFilter(old_filter)
        if secrets:
            logger.addFilter(_LibraryScrubber(secrets))
    return proxy_logger


class _LibraryScrubber(SecretScrubber):
    """The filter `configure_logging` puts on `LIBRARY_LOGGERS` (and replaces on a re-call)."""
