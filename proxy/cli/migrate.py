"""`python -m proxy migrate`: make the store, or bring its schema up to date."""

from __future__ import annotations

import argparse
import asyncio
import time

from proxy.cli.common import load_settings, store_note
from proxy.db.migrations import latest_version
from proxy.store import open_store

__all__ = ["migrate_report", "run_migrate"]


def run_migrate(args: argparse.Namespace) -> int:
    """Make the store, or bring its schema up to this version (start-up does it too)."""
    settings = load_settings(args)
    started = time.time()  # opening the store applies what is missing, stamped from now on
    store = open_store(settings.db)
    try:
        print(asyncio.run(store_note(store, settings.db)))
        history = asyncio.run(store.migrations_applied())
    finally:
        store.close()
    print(migrate_report([v for v, at in history if at >= started], latest_version()))
    return 0


def migrate_report(applied: list[int], latest: int) -> str:
    """What `migrate` did, in words: made the schema, brought it up, or found it current."""
    if not applied:
        return f"schema version {latest}: already up to date, nothing to do"
    done = f"{applied[0]}" if len(applied) == 1 else f"{applied[0]} to {applied[-1]}"
    if applied[0] == 1:
        return f"schema version {latest}: schema created (migrations {done} applied)"
    return f"schema version {latest}: migrated from version {applied[0] - 1} (applied {done})"
