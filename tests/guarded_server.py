"""`python -m tests.guarded_server --host H --port P --parser h11|auto`: a minimal app under
uvicorn with the gateway's connection guard (proxy.edge.connections), so the guard can be held
to the same behaviour on each HTTP parser uvicorn may use. Limits come from the
environment: GUARD_HEADER_TIMEOUT, GUARD_BODY_TIMEOUT, GUARD_MAX_CONNECTIONS,
GUARD_MAX_CONNECTIONS_PER_CLIENT, GUARD_MAX_HEAD_BYTES.

`/file` serves the file GUARD_FILE with the gateway's FileResponse (proxy.edge.zerocopy);
`/file-short` serves it announcing 1 MiB more than it holds (a file cut short after its size
was read); `/fds` names the extensions the request was offered and this process's open
descriptors, so a test can see a zero-copy body leaves none behind."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import stat
import sys
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from proxy.edge.connections import ConnectionLimits, guarded_protocol
from proxy.edge.zerocopy import FileResponse


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def echo(request: Request) -> JSONResponse:
    return JSONResponse({"bytes": len(await request.body())})


def _file() -> Path:
    return Path(os.environ["GUARD_FILE"])


async def file(request: Request) -> FileResponse:
    return FileResponse(_file(), media_type="video/mp4")


async def file_short(request: Request) -> FileResponse:
    real = os.stat(_file())
    fields = list(real)
    fields[stat.ST_SIZE] = real.st_size + 1024 * 1024
    return FileResponse(_file(), media_type="video/mp4", stat_result=os.stat_result(fields))


async def fds(request: Request) -> JSONResponse:
    offered = sorted(request.scope.get("extensions") or {})
    return JSONResponse({"extensions": offered, "fds": len(os.listdir("/proc/self/fd"))})


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--parser", choices=["auto", "h11"], default="auto")
    args = p.parse_args()
    per_client = os.environ.get("GUARD_MAX_CONNECTIONS_PER_CLIENT")
    limits = ConnectionLimits(
        header_timeout=float(os.environ.get("GUARD_HEADER_TIMEOUT", "5")),
        body_timeout=float(os.environ.get("GUARD_BODY_TIMEOUT", "15")),
        max_connections=int(os.environ.get("GUARD_MAX_CONNECTIONS", "1000")),
        max_connections_per_client=int(per_client) if per_client else None,
        max_head_bytes=int(os.environ.get("GUARD_MAX_HEAD_BYTES", "32768")),
    )
    app = Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/echo", echo, methods=["POST"]),
            Route("/file", file, methods=["GET", "HEAD"]),
            Route("/file-short", file_short),
            Route("/fds", fds),
        ]
    )
    # Bound here and kept, so --port 0 names the port the system picked (tests.servers
    # reads it from the line below) and no other process can take it meanwhile.
    listener = socket.socket()
    listener.bind((args.host, args.port))
    print(f"guarded server listening on http://{args.host}:{listener.getsockname()[1]}",
          flush=True)  # fmt: skip
    config = uvicorn.Config(app, log_level="warning", http=guarded_protocol(limits, args.parser))
    # uvicorn re-raises SIGTERM after its graceful stop; exiting through Python instead
    # lets coverage save what this process ran (the suite measures its servers too).
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    uvicorn.Server(config).run(sockets=[listener])


if __name__ == "__main__":
    main()
