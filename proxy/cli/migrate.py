"""`python -m proxy migrate`: make the store, or bring its schema up to date."""

from __future__ import annotations

import argparse
import asyncio

from proxy.cli.common import load_settings, store_note
from proxy.db.migrations import latest_version
from proxy.store import open_store

__all__ = ["run_migrate"]


def run_migrate(args: argparse.Namespace) -> int:
    """Make the store, or bring its schema up to this version (start-up does it too)."""
    settings = load_settings(args)
    store = open_store(settings.db)
    try:
        print(asyncio.run(store_note(store, settings.db)))
        print(f"schema version {latest_version()}: up to date")
    finally:
        store.close()
    return 0
