"""PostgreSQL for tests: each test gets a database of its own, made on the server at
127.0.0.1:5432 (user postgres, trust auth, maintenance database `test`) and dropped after,
so tests never see each other's rows and can run side by side.

Where the server cannot be reached, the tests that need it skip and say why; with `CI` set
they fail instead, so a CI run can never pass by skipping them.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

__all__ = ["ADMIN_URL", "fresh_database", "postgres_url", "require_postgres"]

# Where the maintenance connection goes; a developer with another server sets the variable.
ADMIN_URL = os.environ.get("TEST_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/test")
CONNECT_TIMEOUT = 3  # seconds: a server that is not there must not stall the suite


def require_postgres(reason: str) -> None:
    """Skip the calling test, or fail it when `CI` is set (CI must run these tests)."""
    message = f"PostgreSQL not reachable at {_where(ADMIN_URL)}: {reason}"
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI is set: these tests must run, not skip)", pytrace=False)
    pytest.skip(message)


def _where(url: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(url)
    return f"{info.get('host', 'localhost')}:{info.get('port', 5432)}"


def _admin() -> psycopg.Connection[tuple[object, ...]]:
    # CREATE and DROP DATABASE refuse to run inside a transaction block.
    return psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=CONNECT_TIMEOUT)


@contextlib.contextmanager
def fresh_database(prefix: str = "gw") -> Iterator[str]:
    """A new, empty database with a unique name; yields its URL, drops it after (also
    when a gateway still holds connections to it)."""
    name = f"{prefix}_{secrets.token_hex(6)}"
    try:
        with _admin() as db:
            db.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.OperationalError as exc:
        require_postgres(str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc))
    info = psycopg.conninfo.conninfo_to_dict(ADMIN_URL)
    info["dbname"] = name
    user, host, port = info.get("user", "postgres"), info.get("host", "127.0.0.1"), info.get("port")
    try:
        yield f"postgresql://{user}@{host}:{port or 5432}/{name}"
    finally:
        with _admin() as db:
            db.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """The URL of a fresh PostgreSQL database for this test alone (see `fresh_database`)."""
    with fresh_database() as url:
        yield url
