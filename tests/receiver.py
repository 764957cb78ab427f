"""A team's webhook receiver for tests: Starlette under uvicorn in a thread on a free
loopback port, keeping every request it is sent exactly as received."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

__all__ = ["Received", "Receiver", "eventually"]


def eventually(check: Callable[[], Any], seconds: float = 15.0, what: str = "") -> Any:
    """Until `check()` is truthy: a bounded real wait for work crossing a socket."""
    deadline = time.monotonic() + seconds
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s: {what}")
        time.sleep(0.02)


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]


class Receiver:
    """A team's webhook receiver on a fixed loopback port: Starlette under uvicorn in a
    thread. It records every request; while `hang` is set it holds requests unanswered.

    Its port is bound from the start and listened on from `start()`: until then connections
    are refused (a receiver that is down), and no other process can take the port."""

    def __init__(self) -> None:
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self.port: int = self._socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/hooks/segmind?token=t0ken"
        self.received: list[Received] = []
        self.hang = threading.Event()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    async def hook(self, request: Request) -> Response:
        self.received.append(Received(dict(request.headers), await request.body()))
        # Holds the connection open, as a stuck receiver would; the flag is set by the test
        # thread, so there is no event of this loop's to await.
        while self.hang.is_set():  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        return Response("ok")

    def start(self) -> None:
        app = Starlette(routes=[Route("/hooks/segmind", self.hook, methods=["POST"])])
        config = uvicorn.Config(
            app, log_level="warning", lifespan="off", ws="none", timeout_graceful_shutdown=1,
        )  # fmt: skip
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )
        self._thread.start()
        server = self._server
        eventually(lambda: server.started, 10, "the receiver listens")

    def stop(self) -> None:
        self.hang.clear()
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(10)
            self._server = None
        self._socket.close()  # (a no-op once uvicorn has served on it and closed it)
