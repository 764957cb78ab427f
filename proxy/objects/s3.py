"""`BucketStore`: outputs in S3-compatible object storage (AWS S3, MinIO, Ceph, R2, GCS's XML
API), for replicas on several machines. Through obstore (Rust's `object_store`, an Apache
Arrow project): async, streams both ways (a multipart upload from an async iterator; a ranged
download as chunks), signs presigned URLs, and reads the standard AWS variables itself
(`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`); the
endpoint comes from `AWS_ENDPOINT_URL_S3` or else `AWS_ENDPOINT_URL`, as AWS's own SDKs read it.

An upload goes to `tmp/<random>` first, then is copied (server side) to its key and the
temporary object deleted: a reader never sees a key before all its bytes are in. A process
killed mid-upload leaves a `tmp/` object (or an unfinished multipart upload), which a bucket
lifecycle rule should expire (docs/outputs.md says how).

It must never: hold a whole object in memory (one part of `PART_BYTES` at a time), or put
the credentials in an error or a log line.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import AsyncIterable, AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any, Final

import obstore
from obstore.exceptions import BaseError, NotFoundError
from obstore.store import S3Store

from proxy.objects.errors import ObjectMissing, ObjectStoreUnavailable
from proxy.objects.interface import Hashing, ObjectInfo, StoredObject, checked_key, etag_of, key_of

__all__ = ["BucketStore", "endpoint_from_environment"]

PART_BYTES: Final = 5 * 1024 * 1024  # S3's smallest multipart part
READ_CHUNK: Final = 256 * 1024
TIMEOUT: Final = "60s"  # one request to the bucket at most


def endpoint_from_environment(environ: dict[str, str] | None = None) -> str | None:
    env = os.environ if environ is None else environ
    return env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None


def _unavailable(what: str, exc: Exception) -> ObjectStoreUnavailable:
    # The library's message names the bucket and path, never the credentials; its first
    # line is enough and keeps a log line short.
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ObjectStoreUnavailable(f"the output bucket could not {what}: {first[:300]}")


class BucketStore:
    kind = "s3"

    def __init__(self, url: str, *, environ: dict[str, str] | None = None) -> None:
        self.url = url
        endpoint = endpoint_from_environment(environ)
        config: dict[str, Any] = {}
        if endpoint:
            config["endpoint"] = endpoint
        client: dict[str, Any] = {"timeout": TIMEOUT, "connect_timeout": "10s"}
        if endpoint and endpoint.startswith("http://"):
            client["allow_http"] = True  # a loopback MinIO or moto: the operator chose it
        try:
            self._store = S3Store.from_url(url, config=config, client_options=client)  # type: ignore[arg-type]
        except BaseError as exc:
            what = "be opened (check s3://bucket/prefix and the AWS_* variables)"
            raise _unavailable(what, exc) from None
        except ValueError as exc:
            raise ObjectStoreUnavailable(f"outputs {url!r} is not a usable S3 URL: {exc}") from exc

    async def put(
        self, chunks: AsyncIterable[bytes], *, content_type: str, max_bytes: int
    ) -> StoredObject:
        tmp = f"tmp/{secrets.token_hex(16)}"
        hashing = Hashing(chunks, max_bytes)
        failure: Exception | None = None
        try:
            await obstore.put_async(
                self._store,
                tmp,
                hashing,
                attributes={"Content-Type": content_type},
                chunk_size=PART_BYTES,
                max_concurrency=1,  # one part in memory at a time
            )
        except Exception as exc:
            failure = exc
        if failure is not None:
            await self._forget(tmp)
            # The source's own error (too large, or its cause kept), not the library's
            # wrapping of it.
            raise hashing.error or _unavailable("store an output", failure)
        key = key_of(hashing.sha256)
        try:
            existed = await self.stat(key) is not None
            if not existed:
                await obstore.copy_async(self._store, tmp, key, overwrite=True)
        except BaseError as exc:
            raise _unavailable("store an output", exc) from None
        finally:
            await self._forget(tmp)
        return StoredObject(key, hashing.size, hashing.sha256, existed)

    async def _forget(self, tmp: str) -> None:
        # What is left in tmp/ (the bucket unreachable now) a lifecycle rule clears.
        with contextlib.suppress(BaseError):
            await obstore.delete_async(self._store, tmp)

    async def stat(self, key: str) -> ObjectInfo | None:
        try:
            meta = await obstore.head_async(self._store, checked_key(key))
        except (NotFoundError, ObjectMissing, FileNotFoundError):
            return None
        except BaseError as exc:
            raise _unavailable("be read", exc) from None
        return ObjectInfo(key, int(meta["size"]), etag_of(key))

    async def read(self, key: str, start: int = 0, stop: int | None = None) -> AsyncIterator[bytes]:
        if stop is not None and stop <= start:
            return
        options: Any = {"range": (start, stop) if stop is not None else {"offset": start}}
        try:
            result = await obstore.get_async(self._store, checked_key(key), options=options)
        except (NotFoundError, FileNotFoundError):
            raise ObjectMissing(f"no object {key}") from None
        except BaseError as exc:
            raise _unavailable("be read", exc) from None
        try:
            async for chunk in result.stream(min_chunk_size=READ_CHUNK):
                yield bytes(chunk)
        except BaseError as exc:
            raise _unavailable("be read", exc) from None

    async def delete(self, key: str) -> None:
        try:
            await obstore.delete_async(self._store, checked_key(key))
        except (NotFoundError, FileNotFoundError, ObjectMissing):
            return
        except BaseError as exc:
            raise _unavailable("delete an output", exc) from None

    def local_path(self, key: str) -> Path | None:
        return None

    async def presign(self, key: str, seconds: float, content_type: str) -> str | None:
        try:
            return await obstore.sign_async(
                self._store, "GET", checked_key(key), timedelta(seconds=seconds)
            )
        except BaseError as exc:
            raise _unavailable("sign a URL", exc) from None

    async def aclose(self) -> None:
        return None
