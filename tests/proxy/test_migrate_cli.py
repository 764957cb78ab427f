"""`python -m proxy migrate` says what it did: made the schema of an empty store, or found
it current (it used to print "up to date" in both cases)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from proxy.cli.migrate import migrate_report
from proxy.db.migrations import latest_version


def migrate(db: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "proxy", "migrate", "--db", str(db)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()[-1]


def test_migrate_says_it_created_the_schema_then_that_nothing_was_left(tmp_path: Path) -> None:
    latest = latest_version()
    db = tmp_path / "gateway.sqlite"
    assert migrate(db) == (
        f"schema version {latest}: schema created (migrations 1 to {latest} applied)"
    )
    assert migrate(db) == f"schema version {latest}: already up to date, nothing to do"


def test_a_store_brought_up_from_an_older_version_says_from_which() -> None:
    assert migrate_report([5, 6], 6) == "schema version 6: migrated from version 4 (applied 5 to 6)"
    assert migrate_report([6], 6) == "schema version 6: migrated from version 5 (applied 6)"
