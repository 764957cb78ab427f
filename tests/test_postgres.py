"""The `postgres_url` fixture: a database of the test's own, gone after the test."""

from __future__ import annotations

import psycopg

from tests.postgres import ADMIN_URL, fresh_database


def test_each_database_is_new_empty_and_dropped_after() -> None:
    with fresh_database() as url, fresh_database() as other:
        assert url != other
        with psycopg.connect(url, autocommit=True) as db:
            db.execute("CREATE TABLE t (x int)")
            db.execute("INSERT INTO t VALUES (1)")
        with psycopg.connect(other) as db:
            found = db.execute("SELECT count(*) FROM pg_tables WHERE tablename = 't'").fetchone()
            assert found == (0,)
        name = url.rsplit("/", 1)[1]
    with psycopg.connect(ADMIN_URL) as db:
        row = db.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (name,)).fetchone()
    assert row == (0,)
