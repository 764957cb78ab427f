"""`GET`/`HEAD /v1/outputs/<team>/<sha256>.<ext>?expires=...&signature=...`: a kept output,
fetchable with no header (a `<video src>`, a plain `curl -O`), by the signed URL the gateway
handed out in an answer or a webhook. A tampered or expired URL is a 403, an object since
deleted by retention a 404.

`Range` (one range) is answered 206, `If-None-Match` 304; `ETag`, `Content-Length`,
`Accept-Ranges` and the output's `Content-Type` are always sent. A folder's file is served
by `sendfile(2)` where the server offers it (proxy/edge/zerocopy.py); an S3 object is streamed
through, or answered with a presigned redirect (`outputs_serve = "redirect"`).
"""

from __future__ import annotations

import os
import re
import stat
from typing import Final

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from proxy.core.errors import GatewayError, NotFound
from proxy.core.outputs import check_signature
from proxy.db import StoreError
from proxy.edge.routes import gateway_of
from proxy.edge.zerocopy import FileResponse
from proxy.objects import ObjectStoreError, key_of
from proxy.objects.interface import etag_of

__all__ = ["ROUTES"]

RANGE = re.compile(r"bytes=(\d*)-(\d*)")
CACHE_CONTROL: Final = "private, max-age=3600"


def _range(header: str | None, size: int) -> tuple[int, int] | None:
    """(start, stop) of a single satisfiable `Range`, or None for the whole object; a
    range that cannot be satisfied raises a 416."""
    if not header:
        return None
    found = RANGE.fullmatch(header.strip())
    if found is None:
        return None  # several ranges, or another unit: the whole object (RFC 9110 allows)
    first, last = found.groups()
    if not first and not last:
        return None
    if not first:
        start, stop = max(size - int(last), 0), size
    else:
        start = int(first)
        stop = min(int(last) + 1, size) if last else size
    if start >= size or start >= stop:
        raise GatewayError(
            f"range {header.strip()!r} is outside this output of {size} bytes",
            status_code=416,
            headers={"content-range": f"bytes */{size}"},
        )
    return start, stop


async def output(request: Request) -> Response:
    gateway = gateway_of(request)
    outputs = gateway.outputs
    if outputs is None:
        raise NotFound("this gateway keeps no outputs (outputs = none)")
    team = request.path_params["team"]
    sha256, _, _ = request.path_params["name"].partition(".")
    problem = check_signature(
        outputs.secret,
        sha256,
        team,
        request.query_params.get("expires", ""),
        request.query_params.get("signature", ""),
        gateway.clock.now(),
    )
    if problem is not None:
        raise GatewayError(problem, status_code=403)
    try:
        known = await gateway.store.output_object(sha256)
    except StoreError as exc:
        raise GatewayError(f"the store is unavailable: {exc}", status_code=503) from None
    if known is None:
        raise NotFound(
            "this output is no longer kept (deleted by the gateway's retention); "
            "submit the request again"
        )
    size, content_type = known
    key = key_of(sha256)
    headers = {
        "etag": etag_of(key),
        "accept-ranges": "bytes",
        "cache-control": CACHE_CONTROL,
    }
    if request.headers.get("if-none-match", "").strip() in (headers["etag"], "*"):
        return Response(status_code=304, headers=headers)
    objects = outputs.objects
    path = objects.local_path(key)
    if path is not None:
        try:
            found = os.stat(path)
        except OSError:
            found = None
        if found is None or not stat.S_ISREG(found.st_mode):
            raise NotFound("this output's file is missing from the output folder")
        return FileResponse(path, media_type=content_type, headers=headers, stat_result=found)
    if gateway.settings.outputs_serve == "redirect":
        try:
            url = await objects.presign(key, 300, content_type)
        except ObjectStoreError as exc:
            raise GatewayError(exc.message, status_code=503) from None
        if url is not None:
            return RedirectResponse(url, status_code=307, headers=headers)
    span = _range(request.headers.get("range"), size)
    start, stop = span or (0, size)
    headers["content-length"] = str(stop - start)
    status = 200
    if span is not None:
        status = 206
        headers["content-range"] = f"bytes {start}-{stop - 1}/{size}"
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers, media_type=content_type)
    return StreamingResponse(
        objects.read(key, start, stop), status_code=status, headers=headers,
        media_type=content_type,
    )  # fmt: skip


ROUTES = [Route("/v1/outputs/{team}/{name}", output, methods=["GET", "HEAD"])]
