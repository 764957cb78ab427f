from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from proxy.objects import ObjectStore
from proxy.objects.folder import FolderStore
from proxy.objects.s3 import BucketStore
from tests.moto import MotoServer, moto_server, s3_environment


@pytest.fixture(scope="session")
def moto() -> Iterator[MotoServer]:
    with moto_server() as server:
        yield server


@pytest.fixture(params=["folder", "s3"])
async def objects(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[ObjectStore]:
    """Each backend in turn: a fresh folder, or a fresh bucket on moto's server."""
    store: ObjectStore
    if request.param == "folder":
        store = FolderStore(tmp_path / "outputs")
    else:
        server: MotoServer = request.getfixturevalue("moto")
        for name, value in s3_environment(server).items():
            monkeypatch.setenv(name, value)
        store = BucketStore(f"s3://{server.bucket()}/kept")
    yield store
    await store.aclose()
