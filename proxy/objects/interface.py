"""`ObjectStore`, the interface both backends implement and one contract suite tests
(`tests/objects/`), and `Hashing`, the counting and hashing both apply to what they write."""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from proxy.objects.errors import ObjectMissing, ObjectTooLarge, SourceFailed

__all__ = ["Hashing", "ObjectInfo", "ObjectStore", "StoredObject", "key_of"]

KEY = re.compile(r"[0-9a-f]{2}/[0-9a-f]{64}")


def key_of(sha256: str) -> str:
    """The key of content with this SHA-256 (hex): two levels, so no folder holds millions."""
    return f"{sha256[:2]}/{sha256}"


def checked_key(key: str) -> str:
    """`key` if it is one `key_of` makes; else `ObjectMissing` (never a path outside)."""
    if not KEY.fullmatch(key):
        raise ObjectMissing(f"no object {key!r}: keys are <2 hex>/<64 hex>")
    return key


@dataclass(frozen=True)
class StoredObject:
    """What `put` wrote: its key, size in bytes, SHA-256 (hex) and whether the same bytes
    were already there (then nothing new was written)."""

    key: str
    size: int
    sha256: str
    existed: bool = False


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str  # a strong validator for the bytes: derived from the SHA-256 the key names


class ObjectStore(Protocol):
    """Where kept outputs live. Keys come from `key_of`; every method may raise
    `ObjectStoreUnavailable`, and reads of an unknown key raise `ObjectMissing`."""

    kind: str  # "folder" or "s3": for messages, metrics and the admin page

    async def put(
        self, chunks: AsyncIterable[bytes], *, content_type: str, max_bytes: int
    ) -> StoredObject:
        """Stream `chunks` in, never more than `max_bytes` (else `ObjectTooLarge`); an error
        of `chunks` is raised as `SourceFailed`. Nothing is readable under the key until
        every byte is in."""
        ...

    async def stat(self, key: str) -> ObjectInfo | None: ...

    def read(self, key: str, start: int = 0, stop: int | None = None) -> AsyncIterator[bytes]:
        """Bytes `start` up to (not including) `stop` of the object, in chunks."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the object; removing one that is not there is not an error."""
        ...

    def local_path(self, key: str) -> Path | None:
        """The file holding the object, for zero-copy serving; None where there is none."""
        ...

    async def presign(self, key: str, seconds: float, content_type: str) -> str | None:
        """A URL anyone may GET the object from for `seconds`; None where the backend has
        no such thing (a folder)."""
        ...

    async def aclose(self) -> None: ...


def etag_of(key: str) -> str:
    return f'"{key.rpartition("/")[2][:32]}"'


class Hashing:
    """Wraps a source of chunks: counts and hashes what passes, stops past `max_bytes`, and
    turns the source's own errors into `SourceFailed` (keeping the cause)."""

    def __init__(self, chunks: AsyncIterable[bytes], max_bytes: int) -> None:
        self._chunks = chunks
        self.max_bytes = max_bytes
        self.size = 0
        self._hash = hashlib.sha256()
        # Set when the wrapped iteration ended in an error: a backend whose library
        # swallows the exception raised inside the iteration re-raises this one.
        self.error: Exception | None = None

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._chunks:
                self.size += len(chunk)
                if self.size > self.max_bytes:
                    raise ObjectTooLarge(self.max_bytes)
                self._hash.update(chunk)
                yield chunk
        except (ObjectTooLarge, SourceFailed) as exc:
            self.error = exc
            raise
        except Exception as exc:
            self.error = SourceFailed(f"the source failed: {type(exc).__name__}")
            raise self.error from exc
