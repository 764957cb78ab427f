"""What only the PostgreSQL backend has to prove: no statement holds a worker forever."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from proxy.db import StorageUnavailable
from proxy.db.postgres import PostgresBackend
from tests.postgres import postgres_database

pytestmark = pytest.mark.anyio


@pytest.fixture
def url() -> Iterator[str]:
    with postgres_database("gw_backend") as made:
        yield made


async def test_a_statement_past_its_time_ends_as_the_store_being_unavailable(url: str) -> None:
    backend = PostgresBackend(url, statement_timeout=0.2)
    try:
        # A bounded real wait (1 s at most): the server cancels the statement at 0.2 s.
        with pytest.raises(StorageUnavailable):
            await backend.write(lambda tx: tx.db.execute("SELECT pg_sleep(1)").fetchone())
        assert await backend.read(lambda tx: tx.meta("auth_version")) == 0  # still serving
    finally:
        backend.close()
