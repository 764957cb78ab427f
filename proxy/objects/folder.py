"""`FolderStore`: outputs as files under one folder (the default beside a SQLite store, or a
mount several replicas share). A file is written as `tmp/<random>.part`, flushed to disk,
then renamed to its key: a rename within one file system is atomic, so a reader sees the
whole file or none, and a process killed mid-write leaves only a `.part` file, which the
next start clears away.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path
from typing import Final

from proxy.objects.errors import ObjectMissing, ObjectStoreUnavailable
from proxy.objects.interface import Hashing, ObjectInfo, StoredObject, checked_key, etag_of, key_of

__all__ = ["FolderStore"]

READ_CHUNK: Final = 256 * 1024
STALE_PART_SECONDS: Final = 3600.0  # a .part file older than this belongs to a dead writer


class FolderStore:
    kind = "folder"

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self._tmp = self.root / "tmp"
        try:
            self._tmp.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ObjectStoreUnavailable(
                f"cannot create the outputs folder {self.root}: {exc.strerror}; "
                "set PROXY_OUTPUTS to a writable folder, an s3:// URL, or none"
            ) from exc
        self._clear_stale_parts()

    def _clear_stale_parts(self) -> None:
        # Only old ones: another replica sharing this folder may be writing a fresh one.
        cutoff = time.time() - STALE_PART_SECONDS
        for part in self._tmp.glob("*.part"):
            try:
                if part.stat().st_mtime < cutoff:
                    part.unlink()
            except FileNotFoundError:
                pass

    def _path(self, key: str) -> Path:
        return self.root / checked_key(key)

    async def put(
        self, chunks: AsyncIterable[bytes], *, content_type: str, max_bytes: int
    ) -> StoredObject:
        part = self._tmp / f"{secrets.token_hex(16)}.part"
        hashing = Hashing(chunks, max_bytes)
        try:
            with part.open("wb") as sink:
                async for chunk in hashing:
                    sink.write(chunk)
                sink.flush()
                await asyncio.to_thread(os.fsync, sink.fileno())
            key = key_of(hashing.sha256)
            final = self.root / key
            existed = final.exists()
            if not existed:
                final.parent.mkdir(exist_ok=True)
                os.replace(part, final)
            return StoredObject(key, hashing.size, hashing.sha256, existed)
        except OSError as exc:
            raise ObjectStoreUnavailable(
                f"cannot write to the outputs folder {self.root}: {exc.strerror}"
            ) from exc
        finally:
            part.unlink(missing_ok=True)

    async def stat(self, key: str) -> ObjectInfo | None:
        try:
            size = self._path(key).stat().st_size
        except FileNotFoundError:
            return None
        except ObjectMissing:
            return None
        except OSError as exc:
            raise ObjectStoreUnavailable(f"cannot read the outputs folder: {exc.strerror}") from exc
        return ObjectInfo(key, size, etag_of(key))

    async def read(self, key: str, start: int = 0, stop: int | None = None) -> AsyncIterator[bytes]:
        try:
            source = self._path(key).open("rb")
        except FileNotFoundError:
            raise ObjectMissing(f"no object {key}") from None
        with source:
            source.seek(start)
            left = None if stop is None else max(stop - start, 0)
            while left is None or left > 0:
                chunk = source.read(READ_CHUNK if left is None else min(READ_CHUNK, left))
                if not chunk:
                    return
                if left is not None:
                    left -= len(chunk)
                yield chunk

    async def delete(self, key: str) -> None:
        try:
            self._path(key).unlink(missing_ok=True)
        except ObjectMissing:
            return
        except OSError as exc:
            raise ObjectStoreUnavailable(
                f"cannot remove an output in the folder: {exc.strerror}"
            ) from exc

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    async def presign(self, key: str, seconds: float, content_type: str) -> str | None:
        return None

    async def aclose(self) -> None:
        return None
