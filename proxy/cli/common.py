"""What the commands share: settings from their flags, the existing store (never a new
one), the note of which store a command used, and an error told in words."""

from __future__ import annotations

import argparse
import time
from typing import Any

from pydantic import ValidationError

from proxy.core.config import ProxySettings
from proxy.core.errors import GatewayError
from proxy.db import StoreError
from proxy.rules import RuleError
from proxy.store import Store, open_store
from proxy.store.backends import location

__all__ = ["existing_store", "explain", "load_settings", "store_note"]


def load_settings(args: argparse.Namespace, **extra: Any) -> ProxySettings:
    given = {k: v for k, v in extra.items() if v is not None}
    if getattr(args, "db", None):
        given["db"] = args.db
    return ProxySettings.load(getattr(args, "config", None), **given)


def existing_store(db: str) -> Store:
    """The existing store at `db`: an admin command never makes one, which would hold
    keys no gateway knows (a new file in whatever folder the command ran from)."""
    try:
        return open_store(db, create=False)
    except (OSError, StoreError) as exc:
        reason = "no such file" if isinstance(exc, FileNotFoundError) else explain(exc)
        raise GatewayError(
            f"no gateway store at {location(db)} ({reason}); admin commands work on the store "
            "the gateway serves: pass it with --db (a path or a postgresql:// URL, or "
            f"PROXY_DB), or make a new one with {_migrate_command(db)} "
            "(`python -m proxy serve` makes it too)"
        ) from None


def _migrate_command(db: str) -> str:
    """The command that makes the store at `db`, never with its password in it: the
    operator has the URL already, and a terminal's scrollback or a CI log keeps it."""
    shown = location(db)
    if shown == db or _sqlite_like(db):
        return f"`python -m proxy migrate --db {shown}`"
    return f"`python -m proxy migrate --db {shown}` (your password in place of ***)"


def _sqlite_like(db: str) -> bool:
    return "://" not in db or db.lower().startswith("sqlite:")


async def store_note(store: Store, db: str, created: bool = False) -> str:
    """Which store a command used, and which gateway processes serve it right now."""
    now = time.time()
    alive = [i.id for i in await store.instances() if i.alive_until >= now]
    serving = f"served now by {', '.join(alive)}" if alive else "no gateway serves it right now"
    return f"store: {location(db)} ({'created; ' if created else ''}{serving})"


def explain(exc: Exception) -> str:
    if isinstance(exc, GatewayError | RuleError | StoreError):
        return exc.message
    if isinstance(exc, ValidationError):
        # Each problem's own words, without pydantic's echo of the value (a secret's).
        return "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg'].removeprefix('Value error, ')}"
            if e["loc"]
            else e["msg"].removeprefix("Value error, ")
            for e in exc.errors(include_url=False, include_input=False)
        )
    return str(exc)
