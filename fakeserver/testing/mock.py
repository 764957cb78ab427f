"""`mock_segmind()`: Segmind answered in-process while code under test runs unchanged.

    from fakeserver.testing import mock_segmind

    with mock_segmind() as segmind:
        run_the_code_under_test()          # requests / httpx to https://api.segmind.com/...
        assert segmind.journal("submit")

It is a context manager (`with`, `async with`) and a decorator (of sync and async
functions, like moto's `mock_aws`). Each entry builds a fresh fake; on exit every patch is
undone (`responses`, `respx` and the sleeps), however the block ends. One mock at a time in
a process: a second one inside the first is refused, since both would claim the same
hosts. Separate processes (pytest-xdist workers) each have their own.

Sleeps on the entering thread move the fake's clock by default (`advance_on_sleep=True`),
so polling code finishes a run in milliseconds; with `advance_on_sleep=False` the clock
moves only by `advance()`, and a run polled while it stands still is reported
(`SegmindClockWarning`, `stall.py`) rather than polled forever in silence.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar, cast

from ..accounts import Account
from ..app import create_app
from ..clock import VirtualClock
from ..errors import InvalidInput
from ..jobs import Job, state_of
from ..settings import FakeSettings
from ..state import FakeState
from .inprocess import InProcessFake
from .intercept import intercepting
from .sleeps import sleeps_advance
from .stall import StallWatch

__all__ = ["MOCK_KEY", "SEGMIND_URL", "SegmindMock", "active_mock", "mock_segmind"]

#: Poll and video URLs the in-process fake hands out: the real host, intercepted too.
SEGMIND_URL = "https://api.segmind.com"
#: A key for tests to send; with no `api_keys`, any key works (each its own account).
MOCK_KEY = "segmind-test-key"

F = TypeVar("F", bound=Callable[..., Any])

_active: SegmindMock | None = None
_active_lock = threading.Lock()


def active_mock() -> SegmindMock:
    """The handle of the running `mock_segmind()` (for a decorated test, which gets none)."""
    if _active is None:
        raise RuntimeError("no mock_segmind() is active in this process")
    return _active


class SegmindMock:
    """The handle `mock_segmind()` yields: the in-process fake and the means to steer it."""

    def __init__(self, settings: FakeSettings) -> None:
        self.settings = settings
        self.clock = VirtualClock()
        self.app = create_app(settings, clock=self.clock)
        self.state: FakeState = self.app.state.fake
        self.url = settings.base_url
        self._fake = InProcessFake(self.app, self.url, StallWatch(self.clock))

    # keys and credits

    @property
    def api_key(self) -> str:
        """The first configured key, or `MOCK_KEY` when any key is accepted."""
        return self.settings.api_keys[0] if self.settings.api_keys else MOCK_KEY

    def credits(self, key: str | None = None) -> float:
        return self._account(key).credits

    def set_credits(self, credits: float, key: str | None = None) -> None:
        if credits < 0:
            raise ValueError(f"credits must be 0 or more; got {credits}")
        self._account(key).credits = float(credits)

    def _account(self, key: str | None) -> Account:
        account = self.state.accounts.find(key or self.api_key)
        if account is None:
            raise KeyError(f"the fake has no account for that key; its keys are {self.api_key!r}")
        return account

    # time

    def now(self) -> float:
        return self.clock.now()

    def advance(self, seconds: float) -> float:
        """Move the fake's clock forward; returns the new time."""
        return self.clock.advance(seconds)

    # forced answers

    def force(self, prefer: str, route: str = "any", times: int = 1) -> None:
        """The next `times` requests on `route` (submit, poll, credits, any) behave as if
        they carried `Prefer: <prefer>`: `force("code=429", "submit")`,
        `force("outcome=failed")`, `force("fault=reset, after")`. See docs/fake.md."""
        self._fake.force(prefer, route, times)

    def script(self, route: str, *responses: dict[str, Any]) -> int:
        """Queue scripted answers, as `POST /__admin/script`: `script("poll", {"code": 502,
        "times": 2})`. Returns how many are pending on the route."""
        try:
            return self.state.faults.script(route, list(responses))
        except InvalidInput as exc:
            raise ValueError(exc.message) from None

    def pending(self) -> dict[str, int]:
        """Forced and scripted answers not yet used, by route."""
        forced, scripted = self._fake.pending(), self.state.faults.pending()
        return {r: forced.get(r, 0) + scripted.get(r, 0) for r in {*forced, *scripted}}

    # what happened

    def journal(self, route: str | None = None) -> list[dict[str, Any]]:
        """Requests that reached the fake, in order (keys by label, never the key)."""
        return self.state.journal.entries(route)

    def counts(self) -> dict[str, int]:
        return self.state.journal.counts()

    @property
    def jobs(self) -> dict[str, Job]:
        """Every job by request id (its inputs, plan, polls)."""
        return dict(self.state.jobs)

    def job_state(self, request_id: str) -> str:
        """QUEUED, PROCESSING, COMPLETED, FAILED, or EXPIRED, at the fake's current time."""
        job = self.state.jobs[request_id]
        found = state_of(job, self.clock.now(), self.settings.result_ttl)
        return found.value if found else "EXPIRED"

    def reset(self) -> None:
        """Forget jobs, journal and scripts; credits and rate windows back to the start."""
        self.state.reset()


class mock_segmind:  # lower case, as it reads like moto's mock_aws: a function's name
    """Answer Segmind's hosts in-process. Options: `advance_on_sleep` (default True: sleeps
    on this thread move the fake's clock instead of waiting; see `sleeps.py` for the
    trade-offs; False keeps real sleeps and a clock moved only by `advance()`) and any
    `FakeSettings` field (`plan="free"`, `credits=5`, `failure_rate=0.5`, `time_scale=0.01`,
    `api_keys=[...]` to refuse other keys, `seed=1`...)."""

    def __init__(self, *, advance_on_sleep: bool = True, **settings: Any) -> None:
        given = {"public_url": SEGMIND_URL, "any_key": not settings.get("api_keys"), **settings}
        self.settings = FakeSettings(**given)  # checked now: a bad option fails at the call
        self.advance_on_sleep = advance_on_sleep
        self._stack: contextlib.ExitStack | None = None

    def __enter__(self) -> SegmindMock:
        global _active
        handle = SegmindMock(self.settings)
        with _active_lock:
            if _active is not None:
                raise RuntimeError(
                    "mock_segmind() is already active in this process (a fixture, a decorator "
                    "or an outer `with`): use the handle it gave, not a second mock"
                )
            _active = handle
        stack = contextlib.ExitStack()
        try:
            stack.callback(_release)
            handle._fake.start()
            stack.callback(handle._fake.stop)
            stack.enter_context(intercepting(handle._fake))
            if self.advance_on_sleep:
                stack.enter_context(sleeps_advance(handle.clock))
        except BaseException:
            stack.close()
            raise
        self._stack = stack
        return handle

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            stack.close()

    async def __aenter__(self) -> SegmindMock:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    def __call__(self, func: F) -> F:
        """As a decorator: each call of `func` runs under a fresh mock (`active_mock()`
        gives its handle)."""
        options = {"advance_on_sleep": self.advance_on_sleep, **self._given()}
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                async with mock_segmind(**options):
                    return await func(*args, **kwargs)

            return cast(F, run_async)

        @functools.wraps(func)
        def run(*args: Any, **kwargs: Any) -> Any:
            with mock_segmind(**options):
                return func(*args, **kwargs)

        return cast(F, run)

    def _given(self) -> dict[str, Any]:
        return self.settings.model_dump(exclude_unset=True)


def _release() -> None:
    global _active
    with _active_lock:
        _active = None
