"""Store outages a test can start and end: the real database made unreachable or unwritable,
never a store of ours told to fail.

- `SQLiteOutage`: the store's file and its WAL made immutable (`chattr +i`, as root): every
  write fails with SQLite's "disk I/O error", as on a failed or read-only disk, while reads
  still answer. (Its shared-memory index is left alone: SQLite maps it, and an immutable
  map would kill the process with SIGBUS, which no disk failure does.)
- `PostgresRelay`: a TCP relay between the gateway and the real PostgreSQL; `cut()` resets
  every connection through it and stops listening (connection refused), as a server
  stopped with `-m immediate` does; `restore()` listens again on the same port.

Where `chattr` cannot be used (not root, a file system without the flag) the SQLite outage
skips, saying why; but not when `CI` is set: there it fails.
"""

from __future__ import annotations

import os
import random
import selectors
import shutil
import socket
import struct
import subprocess
import threading
from pathlib import Path

import pytest

__all__ = ["PostgresRelay", "SQLiteOutage", "relayed"]


class SQLiteOutage:
    def __init__(self, db: Path) -> None:
        self.files = [db, db.with_name(db.name + "-wal")]
        self.active = False
        if shutil.which("chattr") is None or os.geteuid() != 0:
            reason = "an SQLite outage needs chattr, as root (files made immutable)"
            if os.environ.get("CI"):
                pytest.fail(f"{reason} (CI is set: this test must run, not skip)")
            pytest.skip(reason)

    def start(self) -> None:
        subprocess.run(["chattr", "+i", *map(str, self.files)], check=True)
        self.active = True

    def end(self) -> None:
        if self.active:
            subprocess.run(["chattr", "-i", *map(str, self.files)], check=True)
            self.active = False


class PostgresRelay:
    """127.0.0.1:<port> relayed to `target` (host, port), on one thread of its own."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._stopped = False
        self._listener: socket.socket | None = None
        self.port = self._listen_below_ephemeral()
        self._thread = threading.Thread(target=self._run, name="pg-relay", daemon=True)
        self._thread.start()

    def _listen_below_ephemeral(self) -> int:
        """A port outside the ephemeral range: while the relay is cut, a client connecting
        to a port of that range can be given it as its own source port and connect to
        itself (TCP's simultaneous open), and the relay could not listen there again."""
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
        for _ in range(100):
            try:
                return self._listen(random.randrange(max(1024, low - 12000), low))
            except OSError:
                continue
        raise OSError("no free port below the ephemeral range for the relay")

    def _listen(self, port: int) -> int:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(64)
        listener.setblocking(False)
        with self._lock:
            self._listener = listener
            self._selector.register(listener, selectors.EVENT_READ, "accept")
        self._wake()
        bound: int = listener.getsockname()[1]
        return bound

    def _wake(self) -> None:
        self._wake_w.send(b"x")

    def cut(self) -> None:
        """Reset every relayed connection and refuse new ones."""
        with self._lock:
            if self._listener is not None:
                self._selector.unregister(self._listener)
                self._listener.close()
                self._listener = None
            for client, server in self._pairs:
                for sock in (client, server):
                    # RST, not FIN: what a killed server's peer sees.
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self._selector.unregister(sock)
                    sock.close()
            self._pairs.clear()
        self._wake()

    def restore(self) -> None:
        """Listen again (if cut)."""
        if self._listener is None:
            self._listen(self.port)

    def close(self) -> None:
        self.cut()
        self._stopped = True
        self._wake()
        self._thread.join(timeout=5)
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    def _run(self) -> None:
        while not self._stopped:
            for key, _ in self._selector.select(timeout=0.5):
                if key.fileobj is self._wake_r:
                    self._wake_r.recv(4096)
                    continue
                with self._lock:
                    if key.data == "accept":
                        self._accept(key.fileobj)  # type: ignore[arg-type]
                    elif key.data is not None:
                        self._pump(key.fileobj, key.data)  # type: ignore[arg-type]

    def _accept(self, listener: socket.socket) -> None:
        try:
            client, _ = listener.accept()
        except OSError:
            return
        try:
            server = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()
            return
        for sock in (client, server):
            sock.setblocking(False)
        self._pairs.append((client, server))
        self._selector.register(client, selectors.EVENT_READ, server)
        self._selector.register(server, selectors.EVENT_READ, client)

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            data = source.recv(65536)
            if data:
                sink.setblocking(True)  # a relay's own back-pressure: a bounded local write
                sink.sendall(data)
                sink.setblocking(False)
                return
        except OSError:
            pass
        for pair in [p for p in self._pairs if source in p]:
            self._pairs.remove(pair)
            for sock in pair:
                self._selector.unregister(sock)
                sock.close()


def relayed(url: str, relay: PostgresRelay) -> str:
    """`url` (postgresql://user@127.0.0.1:5432/db) through `relay` instead."""
    head, _, rest = url.partition("@")
    _, _, path = rest.partition("/")
    return f"{head}@127.0.0.1:{relay.port}/{path}"
