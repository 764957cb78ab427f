"""The protocol, written once and free of I/O: submit, poll, wait, retry, credits, download.

Each operation is a generator (the shape of httpx's `Auth.auth_flow`). It yields
instructions and receives their outcomes:

- `Send(request)`: the driver sends it and sends back the `httpx.Response`, body read;
  or throws the `TransportError` that the exchange raised (see `client._boundary`).
- `Fetch(request, path)`: like `Send`, but a 2xx body is streamed into `path` rather
  than read into memory; error bodies are read as usual.
- `Sleep(seconds)`: the driver sleeps on its clock; nothing is sent back.
- `Report(progress)`: the driver hands it to the caller's `on_update`.

`Client` and `AsyncClient` are thin drivers of these generators (`client._client`,
`client._async_client`), so the retry rules and the poll schedule exist once and are tested
without a network. The API key is read here only to build the auth header.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias, TypeVar
from urllib.parse import quote, urljoin, urlsplit

import httpx

import workflows

from ._boundary import scrub_exception, scrub_response
from ._config import EXPECTED_RUN_SECONDS, ClientConfig
from ._download import file_name, unique_path
from ._errors import (
    GenerationFailed,
    InvalidInput,
    Scrubber,
    SegmindError,
    TransportError,
    UnexpectedResponse,
    WaitTimeout,
    error_from_response,
)
from ._models import (
    CharacterVideoInputs,
    Credits,
    JobHandle,
    JobResult,
    JobState,
    JobStatus,
    Progress,
    raw_payload,
    validate_inputs,
)
from ._retry import (
    MAX_RETRY_AFTER,
    POLL_RETRY_STATUSES,
    RNG,
    SUBMIT_RETRY_STATUSES,
    backoff_delay,
    parse_retry_after,
)
from ._types import RawInputs

__all__ = ["Core", "Fetch", "Flow", "Instruction", "Report", "Send", "Sleep"]

T = TypeVar("T")


@dataclass(frozen=True)
class Send:
    request: httpx.Request
    request_id: str | None = None


@dataclass(frozen=True)
class Fetch:
    request: httpx.Request
    path: Path
    request_id: str | None = None


@dataclass(frozen=True)
class Sleep:
    seconds: float


@dataclass(frozen=True)
class Report:
    progress: Progress


Instruction: TypeAlias = Send | Fetch | Sleep | Report
Flow: TypeAlias = Generator[Instruction, Any, T]
JobRef: TypeAlias = "JobHandle | str"
Inputs: TypeAlias = "CharacterVideoInputs | RawInputs | None"


class Core:
    """Builds requests, reads answers and decides retries for one `ClientConfig`."""

    def __init__(self, config: ClientConfig, rng: RNG) -> None:
        self.config = config
        self.rng = rng
        self._scrubber = Scrubber(config.api_key.reveal())

    # -- requests ---------------------------------------------------------------------

    def _headers(self, *, auth: bool = True) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": self.config.user_agent}
        if auth:
            headers.update(self.config.headers)
            headers.update(self.config.auth_headers())
        return headers

    def workflow_url(self, workflow_id: str | None = None) -> str:
        workflow = quote(workflow_id or self.config.workflow_id, safe="")
        return f"{self.config.base_url}/workflows/{workflow}"

    def payload(self, inputs: Inputs, workflow_id: str | None = None) -> dict[str, Any]:
        """The validated JSON body; raises `InvalidInput` before anything is sent."""
        if isinstance(inputs, CharacterVideoInputs):
            return inputs.to_payload()
        if inputs is not None and not isinstance(inputs, Mapping):
            raise InvalidInput(
                f"inputs must be CharacterVideoInputs or a mapping, got {type(inputs).__name__}"
            )
        workflow = workflows.get(workflow_id or self.config.workflow_id)
        if workflow is not None:  # a registered workflow: its inputs are known, and checked
            return validate_inputs(inputs, workflow)
        return raw_payload(inputs or {})

    def handle(self, job: JobRef) -> JobHandle:
        """A handle from a handle, a request id or a poll URL."""
        if isinstance(job, JobHandle):
            return job
        text = str(job).strip()
        if text.lower().startswith(("http://", "https://")):
            request_id = urlsplit(text).path.rstrip("/").rpartition("/")[2]
            if not request_id:
                raise InvalidInput(f"cannot find a request id in the poll URL {text!r}")
            return JobHandle(request_id=request_id, poll_url=text)
        if not text or any(c.isspace() or c == "/" for c in text):
            raise InvalidInput(f"not a request id: {text!r} (expected e.g. 32 hex characters)")
        return JobHandle(
            request_id=text,
            poll_url=f"{self.config.base_url}/workflows/request/{quote(text, safe='')}",
        )

    # -- operations -------------------------------------------------------------------

    def submit(
        self,
        inputs: Inputs = None,
        *,
        webhook_url: str | None = None,
        idempotency_key: str | None = None,
        workflow_id: str | None = None,
    ) -> Flow[JobHandle]:
        body = self.payload(inputs, workflow_id)
        headers = self._headers()
        headers["Idempotency-Key"] = idempotency_key or str(uuid.uuid4())
        if webhook_url is not None:
            parts = urlsplit(webhook_url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise InvalidInput(f"webhook_url must be an http(s) URL, got {webhook_url!r}")
            headers["X-Webhook-Url"] = webhook_url
        request = httpx.Request("POST", self.workflow_url(workflow_id), headers=headers, json=body)
        return self._call(
            Send(request), action="submit the job", parse=self._parse_submit, idempotent=False
        )

    def status(self, job: JobRef) -> Flow[JobStatus]:
        handle = self.handle(job)
        return self._poll(handle)

    def credits(self) -> Flow[Credits]:
        request = httpx.Request(
            "GET", f"{self.config.base_url}/v1/get-user-credits", headers=self._headers()
        )
        return self._call(
            Send(request), action="read the credit balance", parse=_parse_credits, idempotent=True
        )

    def wait(
        self,
        job: JobRef,
        *,
        poll_interval: float,
        timeout: float,
        now: Callable[[], float],
    ) -> Flow[JobResult]:
        if poll_interval <= 0 or timeout < 0:
            raise InvalidInput("poll_interval must be positive and timeout not negative")
        handle = self.handle(job)
        start = now()
        tracker = _StateTimes(start)
        polls = 0
        last: JobStatus | None = None

        def progress(note: str) -> Progress:
            t = now()
            return Progress(last, t - start, polls, tracker.snapshot(t), note)

        while True:
            last = yield from self._poll(handle, progress=progress)
            polls += 1
            t = now()
            tracker.observe(last.status, t)
            yield Report(Progress(last, t - start, polls, tracker.snapshot(t)))
            if last.state is JobState.COMPLETED:
                return JobResult.from_output(
                    last.request_id,
                    last.output,
                    status=last.status,
                    cost=_float(last.body.get("cost")),
                    cache_status=_str(last.body.get("cache_status")),
                )
            if last.state is JobState.FAILED:
                raise GenerationFailed(
                    last.error or "the server gave no reason", request_id=last.request_id
                )
            remaining = timeout - (t - start)
            if remaining <= 0:
                raise WaitTimeout(
                    f"job {handle.request_id} is still {last.status} after {t - start:.0f} s "
                    f"(a run takes about {EXPECTED_RUN_SECONDS:.0f} s); it may still finish: "
                    "wait on it again with its request id",
                    request_id=handle.request_id,
                    last_status=last.status,
                )
            yield Sleep(min(poll_interval, remaining))

    def download(self, result: JobResult, directory: Path) -> Flow[dict[str, Path]]:
        """Every output with a URL, streamed into `directory`; returns {key: path}.

        Keys are `scene_N` for videos with a scene and the file's stem otherwise. The key is
        sent only to the configured API host, never to a storage host such as S3.
        """
        used: set[str] = set()
        saved: dict[str, Path] = {}
        items = sorted(
            (o for o in result.outputs if o.url),
            key=lambda o: (o.scene is None, o.scene or 0),
        )
        for index, item in enumerate(items):
            assert item.url is not None
            path = unique_path(directory, file_name(item, index), used)
            auth = _same_origin(item.url, self.config.base_url)
            request = httpx.Request("GET", item.url, headers=self._headers(auth=auth))
            yield from self._call(
                Fetch(request, path, result.request_id),
                action=f"download {path.name}",
                parse=lambda _response: None,
                idempotent=True,
                request_id=result.request_id,
            )
            saved[path.name.partition(".")[0]] = path
        return saved

    # -- the retry loop ---------------------------------------------------------------

    def _poll(
        self, handle: JobHandle, progress: Callable[[str], Progress] | None = None
    ) -> Flow[JobStatus]:
        request = httpx.Request("GET", handle.poll_url, headers=self._headers())

        def parse(response: httpx.Response) -> JobStatus:
            body = _json_object(response, "poll the job", handle.request_id)
            if "status" not in body:
                raise UnexpectedResponse(
                    "the poll answer has no status field", request_id=handle.request_id
                )
            return JobStatus.from_body(handle.request_id, body)

        return self._call(
            Send(request, handle.request_id),
            action=f"poll job {handle.request_id}",
            parse=parse,
            idempotent=True,
            request_id=handle.request_id,
            progress=progress,
        )

    def _call(
        self,
        instruction: Send | Fetch,
        *,
        action: str,
        parse: Callable[[httpx.Response], T],
        idempotent: bool,
        request_id: str | None = None,
        progress: Callable[[str], Progress] | None = None,
    ) -> Flow[T]:
        """One exchange with retries.

        `idempotent` exchanges (polls, reads) are retried on 429/500/502/504, on every
        transport error and on unreadable 2xx bodies. A submit is not idempotent: it is
        retried only on 429 and when the connection was never opened, so a job that may
        have started is never paid for twice.
        """
        policy = self.config.retry
        retry_statuses = POLL_RETRY_STATUSES if idempotent else SUBMIT_RETRY_STATUSES
        for attempt in range(policy.max_attempts):
            final = attempt == policy.max_attempts - 1
            error: SegmindError
            retry_after: float | None = None
            try:
                response: httpx.Response = yield instruction
            except TransportError as exc:
                scrub_exception(exc, self._scrubber)
                if exc.request_id is None:
                    exc.request_id = request_id
                if final or not (idempotent or exc.nothing_sent):
                    raise
                error = exc
            else:
                # The one place answers enter: nothing below sees the key, whatever the
                # server echoed (a downloaded video is streamed to its file, never read).
                streamed = isinstance(instruction, Fetch) and response.is_success
                response = scrub_response(response, self._scrubber, body=not streamed)
                if response.is_success:
                    try:
                        return parse(response)
                    except UnexpectedResponse as exc:
                        if final or not idempotent:
                            raise
                        error = exc
                else:
                    retry_after = parse_retry_after(
                        response.headers.get("Retry-After"), response.headers.get("Date")
                    )
                    api_error = error_from_response(
                        response.status_code,
                        response.content,
                        action=action,
                        request_id=request_id or _header_request_id(response),
                        retry_after=retry_after,
                        auth_hint=self.config.describe_auth(),
                        secret=self.config.api_key.reveal(),
                    )
                    too_long = retry_after is not None and retry_after > MAX_RETRY_AFTER
                    if final or too_long or response.status_code not in retry_statuses:
                        raise api_error
                    error = api_error
            delay = backoff_delay(policy, attempt, self.rng, retry_after)
            if progress is not None:
                yield Report(progress(f"{error.message}; retry {attempt + 1} in {delay:.1f} s"))
            yield Sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _parse_submit(self, response: httpx.Response) -> JobHandle:
        body = _json_object(response, "submit the job", None)
        request_id = body.get("request_id")
        if not isinstance(request_id, str) or not request_id.strip():
            raise UnexpectedResponse(
                "the submit was accepted but the answer has no request_id; a job may have "
                "started: check the account's history before submitting again",
                status_code=response.status_code,
            )
        poll_url = body.get("poll_url")
        if isinstance(poll_url, str) and poll_url.strip():
            poll_url = urljoin(self.config.base_url + "/", poll_url.strip())
            if urlsplit(poll_url).scheme not in ("http", "https"):
                raise UnexpectedResponse(
                    f"the submit answer's poll_url is not an http(s) URL: {poll_url!r}",
                    request_id=request_id,
                )
        else:
            poll_url = self.handle(request_id).poll_url
        return JobHandle(
            request_id=request_id,
            poll_url=poll_url,
            status=_str(body.get("status")) or "QUEUED",
            message=_str(body.get("message")),
        )


class _StateTimes:
    """Seconds spent in each reported status, attributing the time between polls."""

    def __init__(self, start: float) -> None:
        self.closed: dict[str, float] = {}
        self.current: str | None = None
        self.since = start

    def observe(self, status: str, t: float) -> None:
        if status != self.current:
            if self.current is not None:
                self.closed[self.current] = self.closed.get(self.current, 0.0) + t - self.since
            self.current, self.since = status, t

    def snapshot(self, t: float) -> dict[str, float]:
        times = dict(self.closed)
        if self.current is not None:
            times[self.current] = times.get(self.current, 0.0) + t - self.since
        return times


def _json_object(response: httpx.Response, action: str, request_id: str | None) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        excerpt = response.text[:80] or "an empty body"  # scrubbed on entry, in `_call`
        raise UnexpectedResponse(
            f"could not {action}: the server answered {response.status_code} with something "
            f"that is not JSON ({excerpt!r})",
            status_code=response.status_code,
            request_id=request_id,
        ) from None
    if not isinstance(body, dict):
        raise UnexpectedResponse(
            f"could not {action}: expected a JSON object, got {type(body).__name__}",
            status_code=response.status_code,
            request_id=request_id,
        )
    return body


def _parse_credits(response: httpx.Response) -> Credits:
    body = _json_object(response, "read the credit balance", None)
    credits = _float(body.get("credits"))
    if credits is None:
        raise UnexpectedResponse("the credits answer has no numeric `credits` field")
    free = _float(body.get("free-credits", body.get("free_credits"))) or 0.0
    return Credits(credits=credits, free_credits=free)


def _header_request_id(response: httpx.Response) -> str | None:
    value: str | None = response.headers.get("x-request-id")
    return value


def _same_origin(url: str, base_url: str) -> bool:
    a, b = urlsplit(url), urlsplit(base_url)
    return (a.scheme, a.netloc.lower()) == (b.scheme, b.netloc.lower())


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if number == number and abs(number) != float("inf") else None


def _str(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    return None
