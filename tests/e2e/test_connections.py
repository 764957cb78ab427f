"""Half-open connections and connection caps, against a real gateway process on loopback.

A socket that never finishes its request head (or its body) is closed by the gateway, with
a 408 when part of a request came; past `max_connections`, or past
`max_connections_per_client` from one address, a new connection is answered and closed at
once while the open ones keep working. Every wait here is bounded by a socket timeout, and
every assertion is about what the socket saw, never about how fast.
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.servers import ServerProcess, start_server

ADMIN_KEY = "test-admin-key-connections-3f9a1c"
WAIT = 10.0  # seconds a socket read may block: far past every deadline the servers use
HEAD = b"POST /workflows/x HTTP/1.1\r\nHost: gateway\r\n"  # a head without its blank line
HEALTH = b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n"


def _gateway(db: Path, **settings: str) -> ServerProcess:
    env = {
        "SEGMIND_API_KEY": "test-upstream-key-connections",
        "PROXY_ADMIN_KEY": ADMIN_KEY,
        **{f"PROXY_{name.upper()}": value for name, value in settings.items()},
    }
    # The upstream is never called: nothing here is admitted.
    return start_server("proxy", "--upstream-url", "http://127.0.0.1:9", "--db", str(db), env=env)


def _h11_app(**settings: str) -> ServerProcess:
    """The same guard on uvicorn's other parser (h11, used where httptools is missing)."""
    env = {f"GUARD_{name.upper()}": value for name, value in settings.items()}
    return start_server("tests.guarded_server", "--parser", "h11", env=env)


def _start(kind: str, tmp: Path, **settings: str) -> ServerProcess:
    if kind == "gateway":
        return _gateway(tmp / "gateway.sqlite", **settings)
    return _h11_app(**settings)


# The gateway as shipped (uvicorn's "auto" parser: httptools here), and the guard on h11.
PARSERS = ["gateway", "h11"]


@pytest.fixture(scope="module", params=PARSERS)
def quick(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """Short deadlines, caps nothing here reaches."""
    server = _start(
        request.param,
        tmp_path_factory.mktemp("quick"),
        header_timeout="0.5",
        body_timeout="1",
        max_connections="1000",
        max_connections_per_client="100",
        max_head_bytes="4096",
    )
    yield server
    server.stop()


@pytest.fixture(scope="module", params=PARSERS)
def capped(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """Small caps, deadlines no test reaches (a held connection must stay open)."""
    server = _start(
        request.param,
        tmp_path_factory.mktemp("capped"),
        header_timeout="60",
        max_connections="6",
        max_connections_per_client="3",
    )
    yield server
    server.stop()


def _connect(server: ServerProcess, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), WAIT, (source, 0))
    sock.settimeout(WAIT)
    return sock


def _until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection; raises TimeoutError if it
    keeps the connection open for WAIT seconds (what the unguarded server does)."""
    received = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk


def _one_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 answer with a Content-Length, read off a kept-alive connection."""
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(65536)
        assert chunk, f"closed before a full answer: {received!r}"
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    while len(body) < int(headers.get("content-length", "0")):
        chunk = sock.recv(65536)
        assert chunk, f"closed inside the body: {received!r}"
        body += chunk
    return int(status_line.split()[1]), headers, body


def _status_and_error(answer: bytes) -> tuple[int, str]:
    head, _, body = answer.partition(b"\r\n\r\n")
    error: str = json.loads(body)["error"]
    return int(head.split()[1]), error


def test_a_partial_head_gets_408_and_is_closed_while_others_are_served(
    quick: ServerProcess,
) -> None:
    with _connect(quick) as slow:
        slow.sendall(HEAD)
        # The server is not blocked meanwhile: an ordinary request is answered.
        assert httpx.get(f"{quick.url}/healthz", timeout=WAIT).status_code == 200
        status, error = _status_and_error(_until_closed(slow))
    assert status == 408
    assert "header_timeout" in error


def test_a_connection_that_sends_nothing_is_closed_without_an_answer(
    quick: ServerProcess,
) -> None:
    with _connect(quick) as silent:
        assert _until_closed(silent) == b""


def _drip(sock: socket.socket, byte: bytes) -> bytes:
    """Send `byte` every 0.2 s, 100 times at most (20 s, far past every deadline here),
    until the server closes the connection; everything it sent."""
    sock.settimeout(0.2)  # paces the drip
    answer = b""
    for _ in range(100):
        try:
            sock.sendall(byte)
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except (BrokenPipeError, ConnectionResetError):
            break
        if not chunk:
            break
        answer += chunk
    sock.settimeout(WAIT)
    return answer + _until_closed(sock)


def test_a_head_dripped_a_byte_at_a_time_is_closed(quick: ServerProcess) -> None:
    """Each byte arrives well inside any per-read timeout; only a deadline on the whole
    head stops it."""
    with _connect(quick) as drip:
        drip.sendall(HEAD)
        answer = _drip(drip, b"X")
    assert _status_and_error(answer)[0] == 408


def test_line_ends_dripped_between_requests_do_not_keep_a_connection(
    quick: ServerProcess,
) -> None:
    """Any byte cancels uvicorn's keep-alive timer, even a CRLF that begins no request:
    the head deadline must take over."""
    with _connect(quick) as drip:
        drip.sendall(HEALTH)
        assert _one_answer(drip)[0] == 200
        answer = _drip(drip, b"\r\n")  # raises TimeoutError if the server keeps it open
    # httptools skips the CRLFs (then 408 at the deadline); h11 refuses them at once (400).
    assert answer == b"" or int(answer.split()[1]) in (400, 408)


def test_a_head_over_max_head_bytes_gets_431_and_is_closed(quick: ServerProcess) -> None:
    """Fast enough for any deadline, but larger than a head may be: bounded in bytes."""
    with _connect(quick) as fine:  # a large head within the limit is served
        fine.sendall(HEALTH[:-2] + b"X-Pad: " + b"a" * 3000 + b"\r\n\r\n")
        assert _one_answer(fine)[0] == 200
    path = "/admin/teams" if "proxy" in quick.argv else "/echo"
    body = json.dumps({"name": "x" * 50_000}).encode()  # in the same read as its head
    with _connect(quick) as large_body:  # a body is no part of the head
        large_body.sendall(
            f"POST {path} HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
            f"X-Admin-Key: {ADMIN_KEY}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        assert _one_answer(large_body)[0] not in (408, 431)
    with _connect(quick) as big:
        big.sendall(HEAD + b"X-Pad: ")
        answer = b""
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            for _ in range(64):  # 64 KiB at most, in 1 KiB pieces the server sees one by one
                big.sendall(b"a" * 1024)
        answer = _until_closed(big)
    status, error = _status_and_error(answer)
    assert status == 431
    assert "max_head_bytes" in error


def test_a_kept_alive_connection_gets_the_deadline_for_its_next_head(
    quick: ServerProcess,
) -> None:
    with _connect(quick) as conn:
        conn.sendall(HEALTH)
        assert _one_answer(conn)[0] == 200
        conn.sendall(b"GET /healthz HTTP/1.1\r\n")  # the next head, never finished
        status, error = _status_and_error(_until_closed(conn))
    assert status == 408
    assert "header_timeout" in error


def test_a_slow_body_is_cut_off_with_408(quick: ServerProcess) -> None:
    """The gateway's admin create reads its body (a submit without a key is refused before
    it); the h11 app's /echo does too."""
    path = "/admin/teams" if "proxy" in quick.argv else "/echo"
    with _connect(quick) as conn:
        conn.sendall(
            f"POST {path} HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
            f"X-Admin-Key: {ADMIN_KEY}\r\nContent-Length: 100\r\n\r\n".encode()
            + b'{"name": "slow'
        )
        status, error = _status_and_error(_until_closed(conn))
    assert status == 408
    assert "body_timeout" in error
    if path == "/admin/teams":  # the request the body belonged to was never carried out
        teams = httpx.get(f"{quick.url}/admin/teams", headers={"x-admin-key": ADMIN_KEY})
        assert teams.status_code == 200
        assert "slow" not in teams.text
    # A client gone mid-body is not an error: no traceback in the server's log.
    assert httpx.get(f"{quick.url}/healthz").status_code == 200
    assert "Exception in ASGI application" not in quick.printed()


def test_past_the_per_client_cap_a_connection_gets_429_others_are_served(
    capped: ServerProcess,
) -> None:
    held = [_connect(capped, "127.0.0.1") for _ in range(3)]
    try:
        with _connect(capped, "127.0.0.1") as extra:
            extra.sendall(HEALTH)
            status, error = _status_and_error(_until_closed(extra))
        assert status == 429
        assert "max_connections_per_client" in error
        for conn in held:  # the open ones still work
            conn.sendall(HEALTH)
            assert _one_answer(conn)[0] == 200
        with _connect(capped, "127.0.0.2") as other:  # another address is not refused
            other.sendall(HEALTH)
            assert _one_answer(other)[0] == 200
    finally:
        for conn in held:
            conn.close()


def test_past_max_connections_a_connection_gets_503_and_a_closed_one_frees_its_place(
    capped: ServerProcess,
) -> None:
    held = [_connect(capped, f"127.0.0.{n}") for n in (11, 11, 11, 12, 12, 12)]
    try:
        for conn in held:  # all six are open and served
            conn.sendall(HEALTH)
            assert _one_answer(conn)[0] == 200
        with _connect(capped, "127.0.0.13") as extra:
            extra.sendall(HEALTH)
            answer = _until_closed(extra)
        status, error = _status_and_error(answer)
        assert status == 503
        assert "max_connections" in error
        assert b"retry-after:" in answer.lower()
        held.pop().close()
        # The server learns of the close when its loop reads the FIN: a few tries, bounded.
        for _ in range(50):
            with _connect(capped, "127.0.0.13") as late:
                late.sendall(HEALTH)
                status = _one_answer(late)[0]
            if status == 200:
                break
        assert status == 200
    finally:
        for conn in held:
            conn.close()


def test_websocket_upgrades_leave_no_place_taken(capped: ServerProcess) -> None:
    """An upgraded connection passes to another protocol; its place under the per-client
    cap must be given back (the gateway refuses upgrades; the h11 app accepts them)."""
    upgrade = (
        b"GET /healthz HTTP/1.1\r\nHost: gateway\r\nConnection: Upgrade\r\n"
        b"Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n"
    )
    for _ in range(4):  # more than the cap of 3
        with _connect(capped, "127.0.0.21") as conn:
            conn.sendall(upgrade)
            assert conn.recv(65536).startswith(b"HTTP/1.1 ")
    # The server learns of each close when its loop reads the FIN: a few tries, bounded.
    for _ in range(50):
        held = [_connect(capped, "127.0.0.21") for _ in range(3)]
        try:
            for conn in held:
                conn.sendall(HEALTH)
            statuses = [_one_answer(conn)[0] for conn in held]
        finally:
            for conn in held:
                conn.close()
        if statuses == [200, 200, 200]:
            break
    assert statuses == [200, 200, 200]
