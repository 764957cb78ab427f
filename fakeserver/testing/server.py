"""The fake as a real server process on a free loopback port, for code in another process.

Settings go to it as `FAKESERVER_*` environment variables, so every `FakeSettings` field
works (`plan`, `credits`, `failure_rate`, `time_scale`, ...). By default it runs on the
virtual clock, still until `advance()`, and accepts any key, as `mock_segmind()` does.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from typing import Any

import httpx

from ..settings import FakeSettings
from .mock import MOCK_KEY
from .processes import ServiceProcess, StopsOnExit
from .stall import SegmindClockWarning, stalled_in_journal

__all__ = ["FakeServer"]

LISTENING = r"fake Segmind listening on (http://\S+)"


def _env_value(value: Any) -> str:
    # FakeSettings reads lists (and anything not a plain scalar) from the environment as JSON.
    if isinstance(value, str):
        return value
    return json.dumps(value)


class FakeServer(StopsOnExit):
    """`python -m fakeserver` with `settings` (FakeSettings fields); `stop()` ends it, as
    leaving `with FakeServer(...) as fake:` does."""

    def __init__(self, **settings: Any) -> None:
        given = {"clock": "virtual", "any_key": not settings.get("api_keys"), **settings}
        for name in ("host", "port", "public_url"):
            if name in given:
                raise ValueError(f"{name} is chosen by the fixture (loopback, a free port)")
        self.settings = FakeSettings(**given)  # checked here, with the fake's own messages
        env = {k: v for k, v in os.environ.items() if not k.startswith("FAKESERVER_")}
        env.update({f"FAKESERVER_{k.upper()}": _env_value(v) for k, v in given.items()})
        self.process = ServiceProcess(
            [sys.executable, "-m", "fakeserver", "--host", "127.0.0.1", "--port", "0"],
            env, LISTENING,
        )  # fmt: skip
        self.url = self.process.url
        self._http = httpx.Client(base_url=self.url, timeout=30.0)

    @property
    def api_key(self) -> str:
        return self.settings.api_keys[0] if self.settings.api_keys else MOCK_KEY

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        """One call to the fake's `/__admin` API, e.g. `admin("GET", "counts")`."""
        answer = self._http.request(method, f"/__admin/{path.lstrip('/')}", json=body)
        if answer.status_code >= 400:
            raise RuntimeError(f"fake admin {method} {path}: {answer.status_code} {answer.text}")
        return answer.json()

    def now(self) -> float:
        now: float = self.admin("GET", "clock")["now"]
        return now

    def advance(self, seconds: float) -> float:
        now: float = self.admin("POST", "clock/advance", {"seconds": seconds})["now"]
        return now

    def script(self, route: str, *responses: dict[str, Any]) -> int:
        queued: int = self.admin("POST", "script", {"route": route, "responses": responses})[
            "queued"
        ]
        return queued

    def journal(self, route: str | None = None) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = self._http.get(
            "/__admin/journal", params={"route": route} if route else {}
        ).json()["entries"]
        return entries

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = self.admin("GET", "counts")
        return counts

    def reset(self) -> None:
        self.admin("POST", "reset")

    def stop(self) -> str:
        """Stop the server; returns what it printed. Warns (`SegmindClockWarning`) if a
        run was polled many times while the virtual clock stood still."""
        stalled = self._stalled()
        self._http.close()
        printed = self.process.stop()
        if stalled:
            warnings.warn(stalled, SegmindClockWarning, stacklevel=2)
        return printed

    def _stalled(self) -> str | None:
        if self.process.output is not None or self.settings.clock != "virtual":
            return None  # stopped already, or a clock that moves by itself
        try:
            return stalled_in_journal(
                self.journal("poll"),
                self.now(),
                lambda run: self.admin("GET", f"jobs/{run}")["state"],
            )
        except (httpx.HTTPError, RuntimeError, KeyError, ValueError):
            return None  # a server that no longer answers has nothing to say
