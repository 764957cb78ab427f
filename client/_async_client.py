"""`AsyncClient`: the asynchronous driver of the protocol in `client._core`."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import anyio
import httpx

from ._boundary import translate_transport_errors
from ._clock import AsyncClock, AsyncSystemClock
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

__all__ = ["AsyncClient"]

T = TypeVar("T")
#: Called with each `Progress`; may be a plain function or a coroutine function.
AsyncOnUpdate = Callable[[Progress], Any]


class AsyncClient:
    """The asynchronous twin of `Client`: same arguments, same behaviour, `await`ed methods.

    >>> async with AsyncClient(api_key="...") as client:  # doctest: +SKIP
    ...     result = await client.run()
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
        transport: httpx.AsyncBaseTransport | None = None,
        clock: AsyncClock | None = None,
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
        self.clock: AsyncClock = clock or AsyncSystemClock()
        self._core = Core(self.config, rng or default_rng())
        self._http = httpx.AsyncClient(transport=transport, timeout=timeout, follow_redirects=False)

    def __repr__(self) -> str:
        return (
            f"AsyncClient(base_url={self.config.base_url!r}, "
            f"auth={self.config.auth_style.value!r}, key from {self.config.api_key.source})"
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- operations -------------------------------------------------------------------

    async def submit(
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
        return await self._drive(flow)

    async def status(self, job: JobRef) -> JobStatus:
        """One poll of a job, by handle, request id or poll URL."""
        return await self._drive(self._core.status(job))

    async def wait(
        self,
        job: JobRef,
        *,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        timeout: float = DEFAULT_WAIT_TIMEOUT,  # noqa: ASYNC109 - measured on the injected clock
        on_update: AsyncOnUpdate | None = None,
    ) -> JobResult:
        """Poll until the job ends. Raises `GenerationFailed` or `WaitTimeout`."""
        flow = self._core.wait(
            job, poll_interval=poll_interval, timeout=timeout, now=self.clock.now
        )
        return await self._drive(flow, on_update)

    async def run(
        self,
        inputs: Inputs = None,
        *,
        webhook_url: str | None = None,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        timeout: float = DEFAULT_WAIT_TIMEOUT,  # noqa: ASYNC109 - measured on the injected clock
        on_update: AsyncOnUpdate | None = None,
    ) -> JobResult:
        """Submit and wait."""
        handle = await self.submit(inputs, webhook_url=webhook_url)
        return await self.wait(
            handle, poll_interval=poll_interval, timeout=timeout, on_update=on_update
        )

    async def download(self, result: JobResult, directory: str | Path) -> dict[str, Path]:
        """Stream every output into `directory` (`scene_1.mp4`...); returns {name: path}."""
        return await self._drive(self._core.download(result, Path(directory)))

    async def credits(self) -> Credits:
        """The account's credit balance."""
        return await self._drive(self._core.credits())

    # -- the driver -------------------------------------------------------------------

    async def _drive(self, flow: Flow[T], on_update: AsyncOnUpdate | None = None) -> T:
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
                            outcome = await self._http.send(request)
                        else:
                            outcome = await self._fetch(instruction)
                except TransportError as exc:
                    failure = exc
            elif isinstance(instruction, Sleep):
                await self.clock.sleep(instruction.seconds)
            elif isinstance(instruction, Report) and on_update is not None:
                maybe = on_update(instruction.progress)
                if inspect.isawaitable(maybe):
                    await maybe

    async def _fetch(self, fetch: Fetch) -> httpx.Response:
        response = await self._http.send(fetch.request, stream=True)
        try:
            if not response.is_success:
                await response.aread()
                return response
            await anyio.Path(fetch.path.parent).mkdir(parents=True, exist_ok=True)
            partial = anyio.Path(fetch.path.with_name(fetch.path.name + ".part"))
            try:
                async with await anyio.open_file(partial, "wb") as file:
                    async for chunk in response.aiter_bytes():
                        await file.write(chunk)
                await partial.replace(fetch.path)
            finally:
                await partial.unlink(missing_ok=True)
            return response
        finally:
            await response.aclose()
