"""The output store's contract, run on both backends: a folder, and a bucket on a real S3
API server (moto's server mode on loopback)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator

import httpx
import pytest

from proxy.objects import (
    ObjectMissing,
    ObjectStore,
    ObjectTooLarge,
    SourceFailed,
    key_of,
)

pytestmark = pytest.mark.anyio

MB = 1024 * 1024


async def chunks(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for at in range(0, len(data), size):
        yield data[at : at + size]


async def failing(data: bytes) -> AsyncIterator[bytes]:
    yield data
    raise ConnectionResetError("the asset host hung up")


async def read_all(
    objects: ObjectStore, key: str, start: int = 0, stop: int | None = None
) -> bytes:
    return b"".join([chunk async for chunk in objects.read(key, start, stop)])


async def test_a_stream_is_stored_under_its_hash_and_read_back_whole(objects: ObjectStore) -> None:
    # Over one S3 part, so the multipart path is what runs.
    data = os.urandom(7 * MB + 123)
    stored = await objects.put(chunks(data), content_type="video/mp4", max_bytes=10 * MB)
    digest = hashlib.sha256(data).hexdigest()
    assert (stored.key, stored.size, stored.sha256, stored.existed) == (
        key_of(digest), len(data), digest, False,
    )  # fmt: skip
    info = await objects.stat(stored.key)
    assert info is not None
    assert info.size == len(data)
    assert info.etag.startswith('"')
    assert hashlib.sha256(await read_all(objects, stored.key)).hexdigest() == digest


async def test_identical_bytes_are_stored_once(objects: ObjectStore) -> None:
    data = b"the same video" * 1000
    first = await objects.put(chunks(data), content_type="video/mp4", max_bytes=MB)
    again = await objects.put(chunks(data, 7), content_type="video/mp4", max_bytes=MB)
    assert again.key == first.key
    assert again.existed
    assert not first.existed


async def test_a_range_reads_exactly_its_bytes(objects: ObjectStore) -> None:
    data = os.urandom(300_000)
    key = (await objects.put(chunks(data), content_type="video/mp4", max_bytes=MB)).key
    assert await read_all(objects, key, 0, 100) == data[:100]
    assert await read_all(objects, key, 299_990) == data[299_990:]
    assert await read_all(objects, key, 1000, 200_001) == data[1000:200_001]


async def test_past_the_limit_nothing_is_stored(objects: ObjectStore) -> None:
    data = os.urandom(MB + 1)
    with pytest.raises(ObjectTooLarge):
        await objects.put(chunks(data), content_type="video/mp4", max_bytes=MB)
    assert await objects.stat(key_of(hashlib.sha256(data).hexdigest())) is None
    assert await objects.stat(key_of(hashlib.sha256(data[:MB]).hexdigest())) is None


async def test_a_source_that_fails_leaves_nothing(objects: ObjectStore) -> None:
    data = os.urandom(1000)
    with pytest.raises(SourceFailed) as caught:
        await objects.put(failing(data), content_type="video/mp4", max_bytes=MB)
    assert isinstance(caught.value.__cause__, ConnectionResetError)
    assert await objects.stat(key_of(hashlib.sha256(data).hexdigest())) is None


async def test_deleted_objects_are_gone_and_deleting_twice_is_fine(objects: ObjectStore) -> None:
    key = (await objects.put(chunks(b"x" * 10), content_type="video/mp4", max_bytes=MB)).key
    await objects.delete(key)
    await objects.delete(key)
    assert await objects.stat(key) is None
    with pytest.raises(ObjectMissing):
        await read_all(objects, key)


@pytest.mark.parametrize("key", ["../../etc/passwd", "ab/../../x", "tmp/anything", ""])
async def test_a_key_it_never_made_names_nothing(objects: ObjectStore, key: str) -> None:
    assert await objects.stat(key) is None
    with pytest.raises(ObjectMissing):
        await read_all(objects, key)


async def test_a_bucket_signs_urls_and_a_folder_gives_its_file(objects: ObjectStore) -> None:
    data = os.urandom(5000)
    key = (await objects.put(chunks(data), content_type="video/mp4", max_bytes=MB)).key
    url = await objects.presign(key, 60, "video/mp4")
    path = objects.local_path(key)
    if objects.kind == "s3":
        assert url is not None
        assert path is None
        async with httpx.AsyncClient() as http:
            answer = await http.get(url, timeout=10.0)
        assert answer.content == data
        assert answer.headers["content-type"] == "video/mp4"
    else:
        assert url is None
        assert path is not None
        assert path.read_bytes() == data
