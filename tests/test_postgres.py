"""`postgres_database` and the `postgres_url` fixture: a database of its own, gone after."""

from __future__ import annotations

import psycopg

from tests.postgres import ADMIN_DB, SERVER, postgres_database


def test_each_database_is_new_empty_and_dropped_after() -> None:
    with postgres_database() as url, postgres_database() as other:
        assert url != other
        with psycopg.connect(url, autocommit=True) as db:
            db.execute("CREATE TABLE t (x int)")
            db.execute("INSERT INTO t VALUES (1)")
        with psycopg.connect(other) as db:
            found = db.execute("SELECT count(*) FROM pg_tables WHERE tablename = 't'").fetchone()
            assert found == (0,)
        name = url.rsplit("/", 1)[1]
    with psycopg.connect(f"{SERVER}/{ADMIN_DB}") as db:
        row = db.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (name,)).fetchone()
    assert row == (0,)
