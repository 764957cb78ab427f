"""Zero-copy file bodies (proxy/edge/zerocopy.py), in a real uvicorn process on loopback.

On uvicorn's httptools parser (the gateway's) a file body goes by `sendfile(2)`; on h11
the same `FileResponse` reads and sends. Either way a client gets exactly the file's bytes
for a whole file, a range, a suffix range and a HEAD; a client that leaves mid-body, a slow
reader, and a file shorter than its announced length cost the server nothing it keeps.
"""

from __future__ import annotations

import hashlib
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from proxy.edge.zerocopy import EXTENSION
from tests.servers import ServerProcess, start_server

SIZE = 24 * 1024 * 1024 + 12345  # past a sendfile call, a socket buffer and a read chunk
WAIT = 30.0


@pytest.fixture(scope="module")
def content(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    path = tmp_path_factory.mktemp("zerocopy") / "video.mp4"
    block = hashlib.sha256(b"zerocopy").digest() * 2048  # 64 KiB that is not all one byte
    data = (block * (SIZE // len(block) + 1))[:SIZE]
    path.write_bytes(data)
    return path, data


@pytest.fixture(scope="module", params=["auto", "h11"])
def server(request: pytest.FixtureRequest, content: tuple[Path, bytes]) -> Iterator[ServerProcess]:
    started = start_server(
        "tests.guarded_server", "--parser", request.param, env={"GUARD_FILE": str(content[0])}
    )
    yield started
    started.stop()


def _offered(server: ServerProcess) -> bool:
    return EXTENSION in httpx.get(f"{server.url}/fds", timeout=WAIT).json()["extensions"]


def _fds(server: ServerProcess) -> int:
    count: int = httpx.get(f"{server.url}/fds", timeout=WAIT).json()["fds"]
    return count


def test_httptools_is_offered_zero_copy_and_h11_is_not(server: ServerProcess) -> None:
    assert _offered(server) is (server.argv[-1] == "auto")


@pytest.mark.parametrize(
    ("header", "start", "stop"),
    [
        (None, 0, SIZE),
        ("bytes=0-99", 0, 100),
        ("bytes=1000000-9999999", 1_000_000, 10_000_000),
        ("bytes=-4096", SIZE - 4096, SIZE),
        ("bytes=20000000-", 20_000_000, SIZE),
    ],
)
def test_every_body_is_the_files_bytes(
    server: ServerProcess, content: tuple[Path, bytes], header: str | None, start: int, stop: int
) -> None:
    headers = {"range": header} if header else {}
    got = httpx.get(f"{server.url}/file", headers=headers, timeout=WAIT)
    assert got.status_code == (206 if header else 200)
    assert int(got.headers["content-length"]) == stop - start
    assert hashlib.sha256(got.content).digest() == hashlib.sha256(content[1][start:stop]).digest()
    if header:
        assert got.headers["content-range"] == f"bytes {start}-{stop - 1}/{SIZE}"


def test_a_head_has_the_length_and_no_body(server: ServerProcess) -> None:
    got = httpx.head(f"{server.url}/file", headers={"range": "bytes=0-99"}, timeout=WAIT)
    assert (got.status_code, got.headers["content-length"], got.content) == (206, "100", b"")


def _request(server: ServerProcess, path: str, rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(WAIT)
    sock.connect(("127.0.0.1", server.port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
    return sock


def _read_all(sock: socket.socket, chunk: int) -> bytes:
    """Everything until the server closes or the announced body is complete."""
    got = bytearray()
    total = None
    while total is None or len(got) < total:
        part = sock.recv(chunk)
        if not part:
            break
        got += part
        end = got.find(b"\r\n\r\n")
        if total is None and end >= 0:
            length = re.search(rb"content-length: (\d+)", bytes(got[:end]).lower())
            total = end + 4 + int(length.group(1)) if length else None
    return bytes(got)


def test_a_slow_reader_gets_every_byte(server: ServerProcess, content: tuple[Path, bytes]) -> None:
    # A 4 KiB receive buffer read 4 KiB at a time: the server's socket fills again and
    # again, so the body is sent across many waits for room.
    with _request(server, "/file", rcvbuf=4096) as sock:
        got = _read_all(sock, 4096)
    body = got.partition(b"\r\n\r\n")[2]
    assert hashlib.sha256(body).digest() == hashlib.sha256(content[1]).digest()


def test_a_client_that_leaves_mid_body_leaves_nothing_open(server: ServerProcess) -> None:
    before = _fds(server)
    for _ in range(5):
        with _request(server, "/file", rcvbuf=4096) as sock:
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
    # The server notices each reset on its next write; a request after them is answered,
    # and once it is, every descriptor those bodies used (file, socket, its duplicate) is
    # closed: the count comes back to what it was, within the /fds request's own socket.
    assert httpx.get(f"{server.url}/file", headers={"range": "bytes=0-9"}, timeout=WAIT).is_success
    for _ in range(50):
        if _fds(server) <= before:
            break
    assert _fds(server) <= before


def test_a_file_shorter_than_announced_closes_the_connection(server: ServerProcess) -> None:
    with _request(server, "/file-short") as sock:
        got = _read_all(sock, 1 << 20)
    head, _, body = got.partition(b"\r\n\r\n")
    assert b"content-length: %d" % (SIZE + 1024 * 1024) in head.lower()
    assert len(body) == SIZE  # all the file has, then the connection ends: never a hang
    assert httpx.get(f"{server.url}/healthz", timeout=WAIT).is_success
