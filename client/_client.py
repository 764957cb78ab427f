"""`Client`: the synchronous driver of the protocol in `client._core`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import httpx

from ._boundary import translate_transport_errors
from ._clock import Clock, SystemClock
from ._config import (
    CHARACTER_VIDEO_WORKFLOW_ID,
    DEFAULT_POLL_INTERVAL,
    DEFAULT_TIMEOUT,
    DEFAULT_WAIT_TIMEOUT,
    ApiKey,
    AuthStyle,
    ClientConfig,
    resolve_base_url,
)
from ._core import Core, Fetch, Flow, Inputs, JobRef, Report, Send, Sleep
from ._errors import TransportError
from ._models import Credits, JobHandle, JobResult, JobStatus, Progress
from ._retry import RNG, RetryPolicy, default_rng

__all__ = ["Client"]

T = TypeVar("T")
OnUpdate = Callable[[Progress], Any]


class Client:
    """A synchronous client for Segmind workflows (by default the character-video one).

    >>> with Client(api_key="...") as client:  # doctest: +SKIP
    ...     result = client.run({"Scene_1": "A knight on a misty bridge"})
    ...     print(result.video(1))
    """

    def __init__(
        self,
        api_key: str | ApiKey | None = None,
        *,
        base_url: str | None = None,
        auth: str | AuthStyle = AuthStyle.X_API_KEY,
        workflow_id: str = CHARACTER_VIDEO_WORKFLOW_ID,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        clock: Clock | None = None,
        rng: RNG | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.config = ClientConfig(
            api_key=ApiKey.resolve(api_key),
            base_url=resolve_base_url(base_url),
            auth_style=AuthStyle.parse(auth),
            workflow_id=workflow_id,
            timeout=timeout,
            retry=retry or RetryPolicy(),
            headers=tuple((headers or {}).items()),
        )
        self.clock: Clock = clock or SystemClock()
        self._core = Core(self.config, rng or default_rng())
        self._http = httpx.Client(transport=transport, timeout=timeout, follow_redirects=False)

    def __repr__(self) -> str:
        return (
            f"Client(base_url={self.config.base_url!r}, auth={self.config.auth_style.value!r}, "
            f"key from {self.config.api_key.source})"
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- operations -------------------------------------------------------------------

    def submit(
        self,
        inputs: Inputs = None,
        *,
        webhook_url: str | None = None,
        idempotency_key: str | None = None,
        workflow_id: str | None = None,
    ) -> JobHandle:
        """Queue a job; inputs are validated first. Returns the handle to wait on."""
        flow = self._core.submit(
            inputs,
            webhook_url=webhook_url,
            idempotency_key=idempotency_key,
            workflow_id=workflow_id,
        )
        return self._drive(flow)

    def status(self, job: JobRef) -> JobStatus:
        """One poll of a job, by handle, request id or poll URL."""
        return self._drive(self._core.status(job))

    def wait(
        self,
        job: JobRef,
        *,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        timeout: float = DEFAULT_WAIT_TIMEOUT,
        on_update: OnUpdate | None = None,
    ) -> JobResult:
        """Poll until the job ends. Raises `GenerationFailed` or `WaitTimeout`."""
        flow = self._core.wait(
            job, poll_interval=poll_interval, timeout=timeout, now=self.clock.now
        )
        return self._drive(flow, on_update)

    def run(
        self,
        inputs: Inputs = None,
        *,
        webhook_url: str | None = None,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        timeout: float = DEFAULT_WAIT_TIMEOUT,
        on_update: OnUpdate | None = None,
    ) -> JobResult:
        """Submit and wait."""
        handle = self.submit(inputs, webhook_url=webhook_url)
        return self.wait(handle, poll_interval=poll_interval, timeout=timeout, on_update=on_update)

    def download(self, result: JobResult, directory: str | Path) -> dict[str, Path]:
        """Stream every output into `directory` (`scene_1.mp4`...); returns {name: path}."""
        return self._drive(self._core.download(result, Path(directory)))

    def credits(self) -> Credits:
        """The account's credit balance."""
        return self._drive(self._core.credits())

    # -- the driver -------------------------------------------------------------------

    def _drive(self, flow: Flow[T], on_update: OnUpdate | None = None) -> T:
        outcome: Any = None
        failure: TransportError | None = None
        while True:
            try:
                instruction = flow.throw(failure) if failure is not None else flow.send(outcome)
            except StopIteration as stop:
                result: T = stop.value
                return result
            outcome, failure = None, None
            if isinstance(instruction, Send | Fetch):
                request = instruction.request
                try:
                    with translate_transport_errors(request.url, instruction.request_id):
                        if isinstance(instruction, Send):
                            outcome = self._http.send(request)
                        else:
                            outcome = self._fetch(instruction)
                except TransportError as exc:
                    failure = exc
            elif isinstance(instruction, Sleep):
                self.clock.sleep(instruction.seconds)
            elif isinstance(instruction, Report) and on_update is not None:
                on_update(instruction.progress)

    def _fetch(self, fetch: Fetch) -> httpx.Response:
        response = self._http.send(fetch.request, stream=True)
        try:
            if not response.is_success:
                response.read()
                return response
            fetch.path.parent.mkdir(parents=True, exist_ok=True)
            partial = fetch.path.with_name(fetch.path.name + ".part")
            try:
                with partial.open("wb") as file:
                    for chunk in response.iter_bytes():
                        file.write(chunk)
                partial.replace(fetch.path)
            finally:
                partial.unlink(missing_ok=True)
            return response
        finally:
            response.close()
