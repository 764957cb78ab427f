"""`python -m tests.guarded_server --host H --port P --parser h11|auto`: a minimal app under
uvicorn with the gateway's connection guard (proxy.edge.connections), so the guard can be held
to the same behaviour on each HTTP parser uvicorn may use. Limits come from the
environment: GUARD_HEADER_TIMEOUT, GUARD_BODY_TIMEOUT, GUARD_MAX_CONNECTIONS,
GUARD_MAX_CONNECTIONS_PER_CLIENT, GUARD_MAX_HEAD_BYTES."""

from __future__ import annotations

import argparse
import os
import socket

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from proxy.edge.connections import ConnectionLimits, guarded_protocol


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def echo(request: Request) -> JSONResponse:
    return JSONResponse({"bytes": len(await request.body())})


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
    app = Starlette(routes=[Route("/healthz", healthz), Route("/echo", echo, methods=["POST"])])
    # Bound here and kept, so --port 0 names the port the system picked (tests.servers
    # reads it from the line below) and no other process can take it meanwhile.
    listener = socket.socket()
    listener.bind((args.host, args.port))
    print(f"guarded server listening on http://{args.host}:{listener.getsockname()[1]}",
          flush=True)  # fmt: skip
    config = uvicorn.Config(app, log_level="warning", http=guarded_protocol(limits, args.parser))
    uvicorn.Server(config).run(sockets=[listener])


if __name__ == "__main__":
    main()
