"""Reading one HTTP/1.1 request off a raw socket stream, for test receivers that must see
exactly what crossed the wire (no framework in between)."""

from __future__ import annotations

from anyio.streams.buffered import BufferedByteReceiveStream

__all__ = ["read_request"]

MAX_HEAD = 65536


async def read_request(reader: BufferedByteReceiveStream) -> tuple[str, dict[str, str], bytes]:
    """The request line, the headers (lower-cased names) and the body."""
    head = await reader.receive_until(b"\r\n\r\n", MAX_HEAD)
    request_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.receive_exactly(int(headers.get("content-length", "0")))
    return request_line, headers, body
