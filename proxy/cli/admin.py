"""`python -m proxy admin ...`: teams, keys, limits, webhooks and usage, on the store the
gateway serves (no running gateway needed), and what each command prints for people."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from proxy.cli.common import existing_store, load_settings, store_note
from proxy.core.config import ProxySettings
from proxy.services.operations import OPERATIONS, Operator
from proxy.services.reports import usage_csv
from proxy.store import Store, open_store
from proxy.store.backends import is_new, location

__all__ = ["LIMIT_FLAGS", "run_admin"]

LIMIT_FLAGS = (
    ("submits_per_minute", int, "submits a minute (HIT, JOIN and MISS alike)"),
    ("polls_per_minute", int, "polls a minute"),
    ("max_concurrent", int, "unfinished paid runs at once"),
    ("daily_budget", float, "dollars a UTC day"),
    ("monthly_budget", float, "dollars a UTC month"),
    ("weight", float, "share of the company's upstream slots while other teams wait (default 1)"),
)


def _limit_changes(args: argparse.Namespace) -> dict[str, Any]:
    """The limits given as flags (the others stay as they are, or the defaults)."""
    return {
        name: getattr(args, name) for name, _, _ in LIMIT_FLAGS if getattr(args, name) is not None
    }


def run_admin(args: argparse.Namespace) -> int:
    """One admin command on the existing store (only `init` may make it), printed as text,
    CSV or JSON."""
    settings = load_settings(args)
    command = args.admin_command
    created = command == "init" and is_new(settings.db)
    store = open_store(settings.db) if command == "init" else existing_store(settings.db)
    try:
        return asyncio.run(_admin_command(args, settings, store, created))
    finally:
        store.close()


async def _admin_command(
    args: argparse.Namespace, settings: ProxySettings, store: Store, created: bool
) -> int:
    command = args.admin_command
    out: dict[str, Any]
    # --json keeps stdout one JSON document: the store goes to stderr there.
    note = await store_note(store, settings.db, created)
    print(note, file=sys.stderr if args.json else sys.stdout, flush=True)
    if command == "init":
        out = {"store": location(settings.db), "created": created}
        text = "a new store" if created else "the store was already there; nothing changed"
    else:
        arguments = {k: v for k, v in vars(args).items() if k in ARGUMENTS}
        if command in ("create-team", "set-limits"):
            arguments["limits"] = _limit_changes(args)
        out = await OPERATIONS[command](Operator(store, time.time(), settings), arguments)
        text = TEXTS[command](out)
    as_csv = getattr(args, "csv", False)
    if as_csv:
        text = CSV_TEXTS[command](out)
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(text, end="" if as_csv else "\n")  # CSV ends its own last line
    return 0


ARGUMENTS = (
    "name", "team", "prefix", "request_id", "webhook_id", "since", "until", "url", "clear",
)  # fmt: skip


def _instances_text(out: dict[str, Any]) -> str:
    lines = [
        f"{i['id']}: {'alive' if i['alive'] else 'stopped'}, polls {i['runs']} run(s)"
        for i in out["instances"]
    ]
    return "\n".join(lines) or "no gateway process has run on this store yet"


def _revoked_text(out: dict[str, Any]) -> str:
    count = out["revoked"]
    return f"revoked {count} key(s)" if count else "no live key matched; nothing revoked"


def _usage_text(out: dict[str, Any]) -> str:
    lines = [
        f"{r['day']} {r['team']}: {r['runs_paid']} paid run(s), HIT {r['hit']}, "
        f"JOIN {r['join']}, MISS {r['miss']}, failed {r['failed']}, refunded "
        f"{r['refunded']}; spent ${r['spent']:.2f}, saved ${r['saved']:.2f}"
        for r in out["rows"]
    ]
    total = out["totals"]
    lines.append(
        f"{out['from']} to {out['to']}: spent ${total['spent']:.2f}, saved ${total['saved']:.2f}"
    )
    return "\n".join(lines)


# What the command line prints for people (--json prints the operation's answer itself).
TEXTS: dict[str, Callable[[dict[str, Any]], str]] = {
    "create-team": lambda out: (
        f"team {out['team']['name']!r} created\napi key (shown once): {out['api_key']}\n"
        f"webhook secret (shown once): {out['webhook_secret']}"
    ),
    "create-key": lambda out: f"new key for {out['team']!r} (shown once): {out['api_key']}",
    "list-teams": lambda out: (
        "\n".join(_team_line(t) for t in out["teams"]) or "no teams yet: admin create-team NAME"
    ),
    "list-instances": _instances_text,
    "revoke-key": _revoked_text,
    "revoke-team": _revoked_text,
    "rotate-secret": lambda out: (
        f"new webhook secret for {out['team']!r} (shown once): {out['webhook_secret']}\n"
        f"the previous secret keeps signing for {out['overlap_seconds'] / 3600:g} h: "
        "update your receivers"
    ),
    "webhooks": lambda out: json.dumps(out, indent=2),
    "resend": lambda out: f"{out['webhook_id']} queued again for {out['url'].split('?')[0]}",
    "recover": lambda out: f"{out['queued']} failed message(s) queued again",
    "set-limits": lambda out: _team_line(out),
    "set-webhook": lambda out: f"{out['name']}: webhook URL {out['webhook_url'] or 'none'}",
    "usage": _usage_text,
    "outputs": lambda out: _outputs_text(out),  # defined below, with the other texts
}
# What a command prints with --csv (the commands that have it).
CSV_TEXTS: dict[str, Callable[[dict[str, Any]], str]] = {"usage": usage_csv}


def _outputs_text(out: dict[str, Any]) -> str:
    if out["outputs"] is None:
        head = "outputs are not kept (outputs = none, or the default beside PostgreSQL)"
    else:
        head = f"outputs kept in {out['outputs']}"
    oldest = out["oldest_use"]
    age = (
        ""
        if oldest is None
        else f", oldest used {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(oldest))}"
    )
    return (
        f"{head}\n{out['objects']} object(s), {out['bytes']:,} bytes{age}\n"
        f"{out['mirror_failures']} completed run(s) without copies (mirror failures)"
    )


def _team_line(team: dict[str, Any]) -> str:
    live = [k["prefix"] for k in team["keys"] if k["revoked_at"] is None]
    limits = ", ".join(f"{k}={v}" for k, v in team["limits"].items())
    return (
        f"{team['name']}: keys {', '.join(live) or 'none'}; {limits}; "
        f"spent ${team['spent_today']:.2f} today, ${team['spent_this_month']:.2f} this month"
    )
