"""The fake's output files, as Segmind's storage serves them: each run's videos exist from
the moment it completes until `output_ttl` seconds later on the fake's clock (Segmind keeps
outputs 7 days after inference, then deletes them), and answer `Range` as S3 does.

With `asset_bytes` set, each output is the scene's video followed by filler derived from
the run's digest, up to that size: files of a realistic size (tens of MB) for benches, that
differ from run to run as real outputs do. They are written once to a cache folder shared
by fake processes, under a temporary name then renamed, and served from disk.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import tempfile
import threading
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path
from typing import Final

__all__ = ["ASSETS", "OutputFiles", "size_of", "throttled"]

ASSETS = resources.files("fakeserver") / "assets"
CACHE: Final = Path(tempfile.gettempdir()) / "segmind-fake-assets"


class OutputFiles:
    def __init__(self, ttl: float, asset_bytes: int | None) -> None:
        self.ttl = ttl
        self.asset_bytes = asset_bytes
        # digest -> when its outputs were made (a run's end, on the fake's clock). A digest
        # the fake never made outputs for is served as before (tests fetch assets directly).
        self._made: dict[str, float] = {}
        self._lock = threading.Lock()

    def made(self, digest: str, at: float) -> None:
        """A run with this digest completes at `at`: its outputs live `ttl` from then (the
        latest run's, when the same inputs ran again)."""
        with self._lock:
            self._made[digest] = max(at, self._made.get(digest, at))

    def expired(self, digest: str, now: float) -> bool:
        made = self._made.get(digest)
        return made is not None and now >= made + self.ttl

    def sweep(self, now: float) -> None:
        with self._lock:
            for digest in [d for d, at in self._made.items() if now >= at + self.ttl]:
                del self._made[digest]

    def reset(self) -> None:
        with self._lock:
            self._made.clear()

    def path(self, digest: str, name: str) -> str:
        """The file holding the output `name` of the run with `digest`."""
        original = str(ASSETS / name)
        if self.asset_bytes is None:
            return original
        path = CACHE / f"{digest}-{self.asset_bytes}-{name}"
        if not path.exists():
            self._write(path, Path(original).read_bytes(), digest, name)
        return str(path)

    def _write(self, path: Path, video: bytes, digest: str, name: str) -> None:
        CACHE.mkdir(parents=True, exist_ok=True)
        block = hashlib.sha256(f"{digest}/{name}".encode()).digest() * 2048  # 64 KiB
        part = path.with_name(f"{path.name}.{secrets.token_hex(4)}.part")
        with part.open("wb") as sink:
            sink.write(video[: self.asset_bytes])
            left = max(self.asset_bytes - len(video), 0) if self.asset_bytes else 0
            while left > 0:
                sink.write(block[:left])
                left -= min(len(block), left)
        os.replace(part, path)


THROTTLE_CHUNK: Final = 64 * 1024


async def throttled(path: str, bytes_per_second: float) -> AsyncIterator[bytes]:
    """The file's bytes, no faster than `bytes_per_second` (real time: a slow storage host
    is slow on the wall clock, whatever the fake's clock says)."""
    with open(path, "rb") as source:  # noqa: ASYNC230 (small reads between real pauses)
        while chunk := source.read(THROTTLE_CHUNK):
            yield chunk
            await asyncio.sleep(len(chunk) / bytes_per_second)


def size_of(path: str) -> int:
    return Path(path).stat().st_size
