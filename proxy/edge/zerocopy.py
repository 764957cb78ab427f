"""Zero-copy file bodies: the ASGI `http.response.zerocopy` extension, which uvicorn lacks.

A kept output is served from the output folder. Read into Python and written back out, a
20 MB video costs the gateway two copies and a core's worth of time under load
(bench/outputs.py: 0.4x nginx); the kernel's `sendfile(2)` moves it from the page cache to
the socket with neither. uvicorn implements no file-sending extension, so this module adds
the one the ASGI spec defines ("Zero Copy Send": `file`, `offset`, `count`, `more_body`) to
its httptools protocol, and `FileResponse` (below) uses it when the scope offers it.

Where it is not offered (uvicorn's h11 parser, TLS, another server), `FileResponse` reads
and sends as Starlette's does, in 1 MiB chunks.

How a body is sent: uvicorn writes the head as usual; once the transport's buffer has
drained, `os.sendfile` writes straight to the connection's socket, in a worker thread (a
file not in the page cache would otherwise stall the event loop on the disk), and a full
socket is waited for on the loop through a duplicate of its descriptor (the transport owns
the original). A client that takes nothing for `STALL_SECONDS` is cut off.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from typing import Any, Final

import anyio
from starlette.datastructures import MutableHeaders
from starlette.responses import FileResponse as _StarletteFileResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["EXTENSION", "FileResponse", "offer_zerocopy"]

EXTENSION: Final = "http.response.zerocopy"
FILE_CHUNK: Final = 1024 * 1024  # the read-and-send fallback's chunk
SEND_CHUNK: Final = 8 * 1024 * 1024  # at most this much per sendfile call
STALL_SECONDS: Final = 60.0
# File work (open, sendfile, close) runs on these threads, not anyio's: its per-call
# bookkeeping was a fifth of the event loop's time serving ranges (py-spy, bench/outputs.py),
# and a slow disk then holds these eight, not the threads the store and the app share.
_FILES: Final = ThreadPoolExecutor(max_workers=8, thread_name_prefix="zerocopy")


def offer_zerocopy(app: ASGIApp) -> ASGIApp:
    """`app`, offered the zero-copy extension on each plain-TCP request of uvicorn's
    httptools protocol (the cycle object behind `send`; it is pinned to uvicorn 0.54 as
    proxy/edge/connections.py is)."""

    async def offered(scope: Scope, receive: Receive, send: Send) -> None:
        cycle: Any = getattr(send, "__self__", None)
        transport = getattr(cycle, "transport", None)
        if (
            scope["type"] == "http"
            and hasattr(cycle, "expected_content_length")
            and transport is not None
            and transport.get_extra_info("sslcontext") is None
            and transport.get_extra_info("socket") is not None
        ):
            scope["extensions"] = {**(scope.get("extensions") or {}), EXTENSION: {}}
            send = _ZeroCopySender(cycle, send).send
        await app(scope, receive, send)

    return offered


class _ZeroCopySender:
    """One request's `send`: zero-copy messages are sent here, everything else by uvicorn."""

    def __init__(self, cycle: Any, send: Send) -> None:
        self.cycle = cycle
        self.forward: Callable[[Message], Awaitable[None]] = send

    async def send(self, message: Message) -> None:
        if message["type"] != EXTENSION:
            await self.forward(message)
            return
        cycle = self.cycle
        offset, count = message["offset"], message["count"]  # (FileResponse gives both)
        if cycle.chunked_encoding is not False or count > cycle.expected_content_length:
            # Bytes sent past uvicorn's framing must be what its Content-Length announced.
            raise RuntimeError(f"{EXTENSION} needs a Content-Length that holds its count")
        sent = 0
        if not cycle.disconnected:
            sent = await _sendfile(cycle.transport, message["file"].fileno(), offset, count)
        if sent < count:
            # The client went, stalled, or the file was shorter than promised: the length
            # the head announced cannot be kept, so the connection ends here.
            cycle.transport.close()
            cycle.disconnected = True
            return
        cycle.expected_content_length -= sent
        more = message.get("more_body", False)
        await self.forward({"type": "http.response.body", "body": b"", "more_body": more})


async def _sendfile(transport: asyncio.Transport, file_fd: int, offset: int, count: int) -> int:
    """Send `count` bytes of `file_fd` from `offset` on the transport's socket; return how
    many went (fewer when the client went or stalled, or the file ended early)."""
    loop = asyncio.get_running_loop()
    sock = transport.get_extra_info("socket")
    fd = os.dup(sock.fileno())
    sent = 0
    try:
        # What uvicorn wrote (the head) leaves the transport's buffer first, so the file's
        # bytes follow it on the socket: the transport flushes when the socket has room.
        while transport.get_write_buffer_size() and not transport.is_closing():
            if not await _writable(loop, fd):
                return 0
            await asyncio.sleep(0)  # the transport's own flush runs on the same wake-up
        while sent < count and not transport.is_closing():
            try:
                part = min(count - sent, SEND_CHUNK)
                n = await loop.run_in_executor(
                    _FILES, os.sendfile, fd, file_fd, offset + sent, part
                )
            except BlockingIOError:
                if not await _writable(loop, fd):
                    break
                continue
            except OSError:  # reset, broken pipe: the client is gone
                break
            if n == 0:  # the file is shorter than the range
                break
            sent += n
    finally:
        os.close(fd)
    return sent


async def _writable(loop: asyncio.AbstractEventLoop, fd: int) -> bool:
    """Wait until the socket can take more; False after STALL_SECONDS without room."""
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_writer(fd, wake)
    try:
        await asyncio.wait_for(ready, STALL_SECONDS)
        return True
    except TimeoutError:
        return False
    finally:
        # Before the duplicate is closed: epoll keeps a registration while any descriptor
        # of the socket is open, so an unremoved one would outlive its number.
        loop.remove_writer(fd)


class FileResponse(_StarletteFileResponse):
    """Starlette's `FileResponse`, whose whole-file and single-range bodies go by the
    zero-copy extension where the server offers it, and else in 1 MiB chunks (Starlette's
    64 KiB cost ~300 worker-thread hops per 20 MB video)."""

    chunk_size = FILE_CHUNK
    _zerocopy = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._zerocopy = scope["type"] == "http" and EXTENSION in (scope.get("extensions") or {})
        if self._zerocopy:
            # Starlette runs a body of ASGI < 2.4 beside a task listening for the client's
            # disconnect; a zero-copy body notices it by itself (its sendfile fails), so
            # that task and its task group are spared.
            scope = {**scope, "asgi": {**scope.get("asgi", {}), "spec_version": "2.4"}}
        await super().__call__(scope, receive, send)

    async def _handle_simple(self, send: Send, send_header_only: bool, send_pathsend: bool) -> None:
        if not self._zerocopy or send_header_only or send_pathsend:
            await super()._handle_simple(send, send_header_only, send_pathsend)
            return
        size = int(self.headers["content-length"])
        start = {"type": "http.response.start", "status": self.status_code}
        await send({**start, "headers": self.raw_headers})
        await self._send_file(send, 0, size)

    async def _handle_single_range(
        self, send: Send, start: int, end: int, file_size: int, send_header_only: bool
    ) -> None:
        if not self._zerocopy or send_header_only:
            await super()._handle_single_range(send, start, end, file_size, send_header_only)
            return
        headers = MutableHeaders(raw=list(self.raw_headers))
        headers["content-range"] = f"bytes {start}-{end - 1}/{file_size}"
        headers["content-length"] = str(end - start)
        await send({"type": "http.response.start", "status": 206, "headers": headers.raw})
        await self._send_file(send, start, end - start)

    async def _send_file(self, send: Send, offset: int, count: int) -> None:
        loop = asyncio.get_running_loop()
        file = await loop.run_in_executor(_FILES, open, self.path, "rb")
        try:
            await send({"type": EXTENSION, "file": file, "offset": offset, "count": count})
        finally:
            with anyio.CancelScope(shield=True), suppress(OSError):
                await loop.run_in_executor(_FILES, file.close)
