"""A PostgreSQL database of its own for a test: made on the server at 127.0.0.1:5432
(trust auth, as CI's machine has it), dropped after.

Where PostgreSQL cannot be reached the test skips, saying why; but not when `CI` is set:
there it fails, so CI can never pass by skipping what it must run.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest

__all__ = ["ADMIN_DB", "SERVER", "postgres_database", "postgres_url"]

SERVER = os.environ.get("TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
ADMIN_DB = "test"


def _admin() -> psycopg.Connection[tuple[object, ...]]:
    try:
        return psycopg.connect(f"{SERVER}/{ADMIN_DB}", autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        reason = f"PostgreSQL not reachable at {SERVER}/{ADMIN_DB}: {' '.join(str(exc).split())}"
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI is set: PostgreSQL tests must run, not skip)")
        pytest.skip(reason)


@contextmanager
def postgres_database(prefix: str = "gw_test") -> Iterator[str]:
    """The URL of a new, empty database, dropped (connections and all) on exit."""
    name = f"{prefix}_{secrets.token_hex(6)}"
    with _admin() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{SERVER}/{name}"
    finally:
        with _admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """The URL of a fresh PostgreSQL database for this test alone (`postgres_database`)."""
    with postgres_database() as url:
        yield url
