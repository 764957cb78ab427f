"""`python -m tests.hostile_assets --port 0`: an asset host that misbehaves in every way the
gateway's mirroring must survive, each at its own path, under uvicorn:

    /good/<n>.mp4      a real video (the fake's scene n), answering Range
    /endless.mp4       a video header, then bytes forever (no Content-Length)
    /page.mp4          an HTML page, whatever its name says
    /huge.mp4          declares 20 GB (Content-Length), then sends a few bytes
    /trickle.mp4       a video header, then one byte every 0.2 s
    /slow/<n>.mp4      scene n, 64 KiB every 0.1 s: slow enough to be killed mid-copy
    /inside.mp4        302 to the cloud metadata address (169.254.169.254)
    /elsewhere.mp4     302 to a host that is not on any allowlist
    /flaky/<n>.mp4     HTTP 503 on the first request for it, then scene n
"""

from __future__ import annotations

import argparse
import asyncio
import socket
from collections.abc import AsyncIterator

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route

from fakeserver.outputs import ASSETS

HEAD = (ASSETS / "scene_1.mp4").read_bytes()[:64]
_tries: dict[str, int] = {}


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def good(request: Request) -> Response:
    return FileResponse(
        str(ASSETS / f"scene_{request.path_params['n']}.mp4"), media_type="video/mp4"
    )


async def endless(request: Request) -> Response:
    async def forever() -> AsyncIterator[bytes]:
        yield HEAD
        block = b"\0" * 65536
        while True:
            yield block
            # After the client hangs up, uvicorn's send returns at once: without a pause
            # this loop would hold the event loop and starve every other path.
            await asyncio.sleep(0)

    return StreamingResponse(forever(), media_type="video/mp4")


async def page(request: Request) -> Response:
    return Response("<html><body>Not the video</body></html>" * 20, media_type="text/html")


async def huge(request: Request) -> Response:
    async def little() -> AsyncIterator[bytes]:
        yield HEAD

    return StreamingResponse(
        little(), media_type="video/mp4", headers={"content-length": str(20 * 10**9)}
    )


async def trickle(request: Request) -> Response:
    async def drip() -> AsyncIterator[bytes]:
        yield HEAD
        while True:
            await asyncio.sleep(0.2)
            yield b"\0"

    return StreamingResponse(drip(), media_type="video/mp4")


async def slow(request: Request) -> Response:
    data = (ASSETS / f"scene_{request.path_params['n']}.mp4").read_bytes()

    async def paced() -> AsyncIterator[bytes]:
        for at in range(0, len(data), 65536):
            yield data[at : at + 65536]
            await asyncio.sleep(0.1)

    return StreamingResponse(
        paced(), media_type="video/mp4", headers={"content-length": str(len(data))}
    )


async def inside(request: Request) -> Response:
    return RedirectResponse("http://169.254.169.254/latest/meta-data/", status_code=302)


async def elsewhere(request: Request) -> Response:
    return RedirectResponse("http://storage.elsewhere.test/video.mp4", status_code=302)


async def flaky(request: Request) -> Response:
    path = request.url.path
    _tries[path] = _tries.get(path, 0) + 1
    if _tries[path] == 1:
        return JSONResponse({"error": "try again"}, status_code=503)
    return await good(request)


app = Starlette(
    routes=[
        Route("/healthz", healthz),
        Route("/good/{n:int}.mp4", good),
        Route("/endless.mp4", endless),
        Route("/page.mp4", page),
        Route("/huge.mp4", huge),
        Route("/trickle.mp4", trickle),
        Route("/slow/{n:int}.mp4", slow),
        Route("/inside.mp4", inside),
        Route("/elsewhere.mp4", elsewhere),
        Route("/flaky/{n:int}.mp4", flaky),
    ]
)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args()
    # Bound here and kept, so --port 0 names the port the system picked.
    listener = socket.socket()
    listener.bind((args.host, args.port))
    port = listener.getsockname()[1]
    print(f"hostile asset host listening on http://{args.host}:{port}", flush=True)
    config = uvicorn.Config(app, log_level="warning")
    uvicorn.Server(config).run(sockets=[listener])


if __name__ == "__main__":
    main()
