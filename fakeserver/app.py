"""The app factory: `create_app(settings, clock=...)` for uvicorn and in-process tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import admin, api, openapi
from .clock import Clock
from .errors import ApiError
from .faults import FaultMiddleware
from .journal import JournalMiddleware
from .notify import running
from .settings import FakeSettings
from .state import FakeState

__all__ = ["create_app"]


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return exc.response()


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
    else:
        message = f"Not Found: no endpoint {request.url.path}; see docs/fake.md"
    # Keep the router's headers: a 405 must say what is allowed (`Allow`, RFC 9110).
    return JSONResponse({"error": message}, exc.status_code, headers=exc.headers)


def create_app(settings: FakeSettings | None = None, clock: Clock | None = None) -> Starlette:
    """A fake Segmind server; `app.state.fake` holds its state for tests."""
    state = FakeState(settings or FakeSettings(), clock)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with running(state.notifier):  # notifications of ended runs, when asked for
            yield

    app = Starlette(
        routes=[
            *api.routes,
            Route("/openapi.json", openapi.openapi, methods=["GET"]),
            *admin.routes,
        ],
        middleware=[
            Middleware(JournalMiddleware, journal=state.journal, accounts=state.accounts),
            Middleware(FaultMiddleware, plan=state.faults),
        ],
        exception_handlers={ApiError: _api_error, HTTPException: _http_error},
        lifespan=lifespan,
    )
    app.state.fake = state
    return app
