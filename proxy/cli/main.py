"""`python -m proxy` (or `segmind-gateway`): serve the gateway, or administer its teams.

    python -m proxy serve [--host H] [--port P] [--upstream-url URL] [--db PATH] [--config F]
    python -m proxy demo [--time-scale 0.01] [--out demo-videos]   # one run, start to finish
    python -m proxy admin create-team NAME [--db PATH] [--daily-budget 50 ...]
    python -m proxy admin list-teams | list-instances | create-key TEAM | revoke-key PREFIX |
                          revoke-team TEAM | set-limits TEAM [...]
    python -m proxy admin init [--db PATH]                         # a new, empty store
    python -m proxy nginx-config --listen 8080 --replica HOST:PORT [--replica ...]

Admin commands work on the same store file as the server (`--db`), so they need no
running gateway; they never create one (only `serve` and `admin init` do) and say which
store they used. A new key is printed once and never again.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import json
import os
import secrets
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from types import FrameType
from typing import Any

from pydantic import SecretStr, ValidationError

from client import CHARACTER_VIDEO_WORKFLOW_ID
from proxy.cli.demo import add_arguments as add_demo_arguments
from proxy.cli.demo import run_demo
from proxy.cli.embedded import EmbeddedFake
from proxy.cli.nginx import DEFAULT_ACCESS_LOG
from proxy.cli.nginx import render as render_nginx
from proxy.core.config import ProxySettings
from proxy.core.errors import GatewayError
from proxy.db import StoreError, is_new, location
from proxy.db.migrations import latest_version
from proxy.rules import RuleError
from proxy.services.accounts import (
    NewKey,
    create_key,
    create_team,
)
from proxy.services.operations import OPERATIONS, Operator
from proxy.services.reports import usage_csv
from proxy.store import Store, open_store

__all__ = ["main"]

LIMIT_FLAGS = (
    ("submits_per_minute", int, "submits a minute (HIT, JOIN and MISS alike)"),
    ("polls_per_minute", int, "polls a minute"),
    ("max_concurrent", int, "unfinished paid runs at once"),
    ("daily_budget", float, "dollars a UTC day"),
    ("monthly_budget", float, "dollars a UTC month"),
)
DEMO_TEAM = "demo"
FAKE_PORT = "embedded_fake_port"  # what the store remembers between starts of `make run`
TWIN_MARGIN = 3.0  # seconds a due heartbeat may be late (a busy store) before it is missed
TWIN_WATCH_STEP = 0.25


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m proxy", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="run the gateway (the default command)")
    add = serve.add_argument
    add("--host")
    add("--port", type=int)
    add("--public-url", help="base URL of poll_url answers (default: the served address)")
    add(
        "--upstream-url",
        help="Segmind's base URL (default: real Segmind; key from SEGMIND_API_KEY)",
    )
    add("--db", help="the store: a path or sqlite:///path (default gateway.sqlite), or "
                      "postgresql://user@host:port/dbname for several replicas")  # fmt: skip
    add("--config", help="a TOML file of settings")
    add("--clock", choices=["system", "virtual"])
    add("--log-level")
    add("--instance-id", help="this process's name among gateways on the store "
                              "(default: host name and port)")  # fmt: skip
    add("--workflow-module", dest="workflow_modules", action="append", metavar="MODULE",
        help="a Python module that registers more workflows (workflows.register); repeat "
             "for more; an embedded fake imports it too")  # fmt: skip
    add("--with-fake", action="store_true",
        help="with no SEGMIND_API_KEY and no --upstream-url, start the fake upstream beside "
             "the gateway on loopback")  # fmt: skip
    add(
        "--fake-args",
        default="--time-scale 0.01",
        help="flags for the embedded fake (default: '--time-scale 0.01', ~7 s runs)",
    )
    add(
        "--demo-team",
        action="store_true",
        help="create team 'demo' (or replace its key); print its key, curl and Python to try",
    )
    demo = sub.add_parser(
        "demo",
        help="one four-scene generation through a local gateway and fake, with its webhook",
    )
    add_demo_arguments(demo)
    nginx = sub.add_parser(
        "nginx-config", help="print an nginx configuration balancing over gateway replicas"
    )
    nginx.add_argument("--listen", default="8080", help="nginx's PORT or HOST:PORT (8080)")
    nginx.add_argument("--replica", action="append", required=True, metavar="HOST:PORT",
                       help="a gateway replica (repeat for each)")  # fmt: skip
    nginx.add_argument("--access-log", default=DEFAULT_ACCESS_LOG, help="nginx's access log")
    migrate = sub.add_parser(
        "migrate", help="make the store, or bring its schema up to date (start-up does it too)"
    )
    migrate.add_argument("--db", help="the store: a path, sqlite:///path or postgresql://...")
    migrate.add_argument("--config", help="a TOML file of settings (for db)")
    admin = sub.add_parser("admin", help="create, list and revoke teams and keys")
    admin_sub = admin.add_subparsers(dest="admin_command", required=True)

    def with_db(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        parser.add_argument(
            "--db", help="the store the server uses: a path (default gateway.sqlite) or URL"
        )
        parser.add_argument("--config", help="a TOML file of settings (for db and defaults)")
        parser.add_argument("--json", action="store_true", help="print JSON")
        return parser

    def with_limits(parser: argparse.ArgumentParser) -> None:
        for name, kind, what in LIMIT_FLAGS:
            parser.add_argument(f"--{name.replace('_', '-')}", type=kind, help=what)

    with_db(admin_sub.add_parser("init", help="a new, empty store (serve makes one too)"))
    create = with_db(admin_sub.add_parser("create-team", help="a new team and its first key"))
    create.add_argument("name")
    with_limits(create)
    with_db(admin_sub.add_parser("list-teams", help="teams, limits, key prefixes, spend"))
    with_db(
        admin_sub.add_parser(
            "list-instances", help="gateway processes on the store, and the runs each polls"
        )
    )
    key = with_db(admin_sub.add_parser("create-key", help="another key for a team"))
    key.add_argument("team")
    revoke = with_db(admin_sub.add_parser("revoke-key", help="revoke one key by its prefix"))
    revoke.add_argument("prefix")
    revoke_all = with_db(admin_sub.add_parser("revoke-team", help="revoke all of a team's keys"))
    revoke_all.add_argument("team")
    rotate = with_db(admin_sub.add_parser("rotate-secret", help="a new webhook secret"))
    rotate.add_argument("team")
    hooks = with_db(admin_sub.add_parser("webhooks", help="a request's webhook attempts"))
    hooks.add_argument("request_id")
    resend = with_db(admin_sub.add_parser("resend", help="send a webhook message again"))
    resend.add_argument("webhook_id")
    recover = with_db(
        admin_sub.add_parser("recover", help="send again every failed message since a time")
    )
    recover.add_argument("--since", required=True, help="Unix seconds or ISO 8601 (UTC)")
    recover.add_argument("--team", help="only this team's messages")
    usage = with_db(
        admin_sub.add_parser("usage", help="per team per UTC day: requests, runs, dollars")
    )
    usage.add_argument("--since", required=True, help="the first day, YYYY-MM-DD (UTC)")
    usage.add_argument("--until", help="the last day, YYYY-MM-DD (default: today, UTC)")
    usage.add_argument("--team", help="only this team")
    usage.add_argument("--csv", action="store_true", help="print CSV with a header row")
    hook = with_db(
        admin_sub.add_parser("set-webhook", help="a team's own webhook URL (budget alerts)")
    )
    hook.add_argument("team")
    hook.add_argument("url", nargs="?", help="http(s) URL of the team's receiver")
    hook.add_argument("--clear", action="store_true", help="remove the team's webhook URL")
    limits = with_db(admin_sub.add_parser("set-limits", help="change a team's limits"))
    limits.add_argument("team")
    with_limits(limits)
    return p


def _settings(args: argparse.Namespace, **extra: Any) -> ProxySettings:
    given = {k: v for k, v in extra.items() if v is not None}
    if getattr(args, "db", None):
        given["db"] = args.db
    return ProxySettings.load(getattr(args, "config", None), **given)


def _limit_changes(args: argparse.Namespace) -> dict[str, Any]:
    """The limits given as flags (the others stay as they are, or the defaults)."""
    return {
        name: getattr(args, name) for name, _, _ in LIMIT_FLAGS if getattr(args, name) is not None
    }


def _open_store(db: str) -> Store:
    """The existing store at `db`: an admin command never makes one, which would hold
    keys no gateway knows (a new file in whatever folder the command ran from)."""
    try:
        return open_store(db, create=False)
    except (OSError, StoreError) as exc:
        reason = "no such file" if isinstance(exc, FileNotFoundError) else _explain(exc)
        raise GatewayError(
            f"no gateway store at {location(db)} ({reason}); admin commands work on the store "
            "the gateway serves: pass it with --db (a path or a postgresql:// URL, or "
            f"PROXY_DB), or make a new one with `python -m proxy migrate --db {db}` "
            "(`python -m proxy serve` makes it too)"
        ) from None


async def _store_note(store: Store, db: str, created: bool = False) -> str:
    """Which store a command used, and which gateway processes serve it right now."""
    now = time.time()
    alive = [i.id for i in await store.instances() if i.alive_until >= now]
    serving = f"served now by {', '.join(alive)}" if alive else "no gateway serves it right now"
    return f"store: {location(db)} ({'created; ' if created else ''}{serving})"


def _migrate(args: argparse.Namespace) -> int:
    """Make the store, or bring its schema up to this version (start-up does it too)."""
    settings = _settings(args)
    store = open_store(settings.db)
    try:
        print(asyncio.run(_store_note(store, settings.db)))
        print(f"schema version {latest_version()}: up to date")
    finally:
        store.close()
    return 0


def _admin(args: argparse.Namespace) -> int:
    settings = _settings(args)
    command = args.admin_command
    created = command == "init" and is_new(settings.db)
    store = open_store(settings.db) if command == "init" else _open_store(settings.db)
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
    note = await _store_note(store, settings.db, created)
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
}
# What a command prints with --csv (the commands that have it).
CSV_TEXTS: dict[str, Callable[[dict[str, Any]], str]] = {"usage": usage_csv}


def _team_line(team: dict[str, Any]) -> str:
    live = [k["prefix"] for k in team["keys"] if k["revoked_at"] is None]
    limits = ", ".join(f"{k}={v}" for k, v in team["limits"].items())
    return (
        f"{team['name']}: keys {', '.join(live) or 'none'}; {limits}; "
        f"spent ${team['spent_today']:.2f} today, ${team['spent_this_month']:.2f} this month"
    )


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from proxy.app import create_app
    from proxy.edge.connections import uvicorn_options

    settings = _settings(
        args, host=args.host, port=args.port, public_url=args.public_url,
        upstream_url=args.upstream_url, clock=args.clock, log_level=args.log_level,
        instance_id=args.instance_id, workflow_modules=args.workflow_modules,
    )  # fmt: skip
    with_fake = args.with_fake and settings.upstream_key is None and settings.upstream_url is None
    if settings.upstream_key is None and not with_fake:
        print(
            "no upstream key: set SEGMIND_API_KEY, or pass --with-fake to run against the fake",
            file=sys.stderr,
        )
        return 4
    # The port first: a second `make run` must fail here, before it touches the store
    # (a new demo key, the first one's runs taken over) or starts a fake.
    listener = _bind(settings.host, settings.port)
    fake = None
    try:
        port = listener.getsockname()[1]  # the one the system picked, for --port 0
        settings = settings.model_copy(update={"port": port})
        # The default id is this host and port, and this process holds the port now: no
        # live process on this host can have it, so a fresh heartbeat under it is this
        # gateway's own previous run (killed), whose runs it takes back at once.
        default_id = settings.instance_id is None
        settings = settings.model_copy(update={"instance_id": settings.instance})
        if not default_id:
            _refuse_a_live_twin(settings)
        if with_fake:
            fake_args = [*args.fake_args.split(), *_workflow_flags(settings)]
            scaled = _scaled_for(fake_args, settings)
            fake = _start_fake(settings, _with_plan(fake_args, scaled, settings))
            settings = settings.model_copy(
                update={
                    "upstream_url": fake.url,
                    "upstream_key": fake.key_secret(),
                    **scaled,
                    # A local demo's webhook receiver listens on loopback.
                    "webhook_allow_networks": [
                        *settings.webhook_allow_networks,
                        "127.0.0.0/8",
                        "::1/128",
                    ],
                    # The fake never loads the image and charges no real money, and the
                    # default image (on Segmind's storage) is out of reach offline: the
                    # check would only refuse the demo. Setting it explicitly still wins.
                    "image_preflight": "image_preflight" in settings.model_fields_set
                    and settings.image_preflight,
                }
            )
        else:
            print(f"upstream: {settings.upstream_base_url}", flush=True)
        if args.demo_team:
            minted_admin = settings.admin_key is None
            if settings.metrics_token is None and minted_admin:
                # For this run only: /metrics wants a credential, and a demo shows how.
                minted = SecretStr(secrets.token_urlsafe(24))
                settings = settings.model_copy(update={"metrics_token": minted})
            if minted_admin:
                # For this run only, likewise: the console (/admin/ui) opens with the admin key.
                admin_key = SecretStr(secrets.token_urlsafe(24))
                settings = settings.model_copy(update={"admin_key": admin_key})
            _print_demo(settings, fake=fake is not None, minted_admin=minted_admin)
        print(f"gateway listening on http://{settings.host}:{settings.port}", flush=True)
        config = uvicorn.Config(
            create_app(settings), log_config=None, access_log=False,
            **uvicorn_options(settings),  # head/body deadlines, connection caps
        )  # fmt: skip
        server = uvicorn.Server(config)
        with _sigterm_as_exit():
            server.run(sockets=[listener])
        if not server.started:
            return 3  # uvicorn has logged why (the gateway's start-up failed)
    except KeyboardInterrupt:  # Ctrl-C: uvicorn has shut down gracefully already
        return 130
    finally:
        listener.close()
        if fake is not None:
            fake.stop()
    return 0


def _bind(host: str, port: int) -> socket.socket:
    """The gateway's listening socket, bound (uvicorn listens on it once the app is up)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
    try:
        listener.bind((host, port))
    except OSError as exc:
        listener.close()
        if exc.errno == errno.EADDRINUSE:
            raise GatewayError(
                f"port {port} on {host} is in use, by another gateway (`make run` already "
                f"running?) or another program; nothing was changed. Stop it, or start this "
                f"one on another port: `PORT={port + 1} make run` or `--port {port + 1}`"
            ) from None
        raise GatewayError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return listener


def _refuse_a_live_twin(settings: ProxySettings) -> None:
    """Two live processes under one instance id would both poll (and take back) the same
    runs: refuse to start, having changed nothing in the store.

    A fresh heartbeat alone does not tell a live twin from this process's own previous
    run, killed a moment ago (whose runs a restart must take back at once). A live process
    beats every `lease_seconds / 3`: watch for that next beat, read-only. It comes: a
    twin, refused. The row is released (a clean stop) or stays still: proceed."""
    seen = _heartbeat_of(settings)
    now = time.time()
    if seen is None or seen < now:
        return
    # It last beat at `seen - lease_seconds` (our lease; processes on one store share it).
    next_beat = seen - settings.lease_seconds + settings.lease_seconds / 3
    deadline = max(next_beat, now) + TWIN_MARGIN
    print(
        f"instance id {settings.instance!r} has a fresh heartbeat on this store; waiting up "
        f"to {deadline - now:.0f} s for its next one, to tell a live process from a "
        "killed one",
        file=sys.stderr,
        flush=True,
    )
    while time.time() < deadline:
        time.sleep(TWIN_WATCH_STEP)
        latest = _heartbeat_of(settings)
        if latest is None or latest < time.time():
            return  # released by a clean stop, or lapsed
        if latest > seen:
            raise GatewayError(
                f"a live gateway process on store {location(settings.db)} already "
                f"has instance id {settings.instance!r} (it beat again just now); starting "
                "would take over its runs. Give this process its own id with --instance-id "
                "or PROXY_INSTANCE_ID (or another port, `PORT=...`, when the id is the "
                "default host:port). Nothing was changed"
            )
    return  # no beat when one was due: that process is gone; this one takes its runs


def _heartbeat_of(settings: ProxySettings) -> float | None:
    """Until when the store holds this instance id alive (None: no row), read-only."""
    try:
        store = open_store(settings.db, create=False)
    except (OSError, StoreError):
        return None  # a new store has no processes; or not readable now: start says why
    try:
        twin = next((i for i in asyncio.run(store.instances()) if i.id == settings.instance), None)
    except StoreError:
        return None
    finally:
        store.close()
    return None if twin is None else twin.alive_until


def _workflow_flags(settings: ProxySettings) -> list[str]:
    """The embedded fake serves the workflows the gateway was told of, too."""
    return [flag for name in settings.workflow_modules for flag in ("--workflow-module", name)]


def _start_fake(settings: ProxySettings, fake_args: list[str]) -> EmbeddedFake:
    """The fake on the port it had last time on this store, so that results cached then
    (their video URLs name that port) still download."""
    from proxy.cli.embedded import start_fake

    store = open_store(settings.db)
    try:
        before = asyncio.run(store.remembered(FAKE_PORT))
        fake = start_fake(settings.host, fake_args, port=before)
        if before is None:
            asyncio.run(store.remember(FAKE_PORT, fake.port))
    finally:
        store.close()
    print(f"upstream: the fake Segmind at {fake.url} (no SEGMIND_API_KEY set)", flush=True)
    if before is not None and fake.port != before:
        print(
            f"the fake's usual port {before} is busy (another `make run` on this store?), so "
            f"it runs on {fake.port}: video URLs of runs it makes name {fake.port}, and stop "
            "downloading once this gateway stops",
            file=sys.stderr,
            flush=True,
        )
    return fake


@contextlib.contextmanager
def _sigterm_as_exit() -> Iterator[None]:
    """After a graceful shutdown uvicorn re-raises the signal that asked for it; SIGTERM's
    default action would end the process on the spot, skipping the `finally` that stops
    the embedded fake (an orphan on a port). Exit through Python instead."""

    def exit_(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set handlers; uvicorn sets none there either
        return
    previous = signal.signal(signal.SIGTERM, exit_)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _scaled_for(fake_args: list[str], settings: ProxySettings) -> dict[str, float]:
    """A time-scaled fake runs jobs in seconds: scale the poll schedule's expectations
    with it, so the demo is polled as densely, relatively, as real Segmind would be."""
    if "--time-scale" not in fake_args:
        return {}
    try:
        scale = float(fake_args[fake_args.index("--time-scale") + 1])
    except (IndexError, ValueError):
        return {}
    scaled: dict[str, float] = {
        "expected_run_seconds": settings.expected_run_seconds * scale,
        "poll_target_delay": settings.poll_target_delay * scale,
        "upstream_events_poll_delay": settings.upstream_events_poll_delay * scale,
        "poll_min_interval": max(settings.poll_min_interval * scale, 0.05),
        "poll_interval": max(settings.poll_interval * scale, 0.05),
    }
    if scale > 0:
        # Runs 1/scale times faster poll 1/scale times as often; the company budget (and
        # the fake's plan, `_with_plan`) scales with them, or one user's demo runs wait
        # for it. Rate windows stay a real minute on both sides.
        budget = max(1, round(settings.upstream_requests_per_minute / scale))
        plan = _plan_of(fake_args)
        scaled["upstream_requests_per_minute"] = min(budget, plan) if plan else budget
    return scaled


def _plan_of(fake_args: list[str]) -> int | None:
    """The requests a minute a `--plan` in the fake's flags allows (None: no limit given,
    0: unlimited)."""
    if "--plan" not in fake_args or fake_args.index("--plan") + 1 >= len(fake_args):
        return None
    # The fake's plan names (fakeserver --help); the gateway never imports the fake.
    value = fake_args[fake_args.index("--plan") + 1].lower()
    named = {"free": 5, "pro": 50, "unlimited": 0}
    return int(value) if value.isdigit() else named.get(value)


def _with_plan(
    fake_args: list[str], scaled: dict[str, float], settings: ProxySettings
) -> list[str]:
    """The fake's flags with a `--plan` equal to the gateway's company budget, unless one
    is given: a budget at or under the upstream's limit, counted in a sliding window as
    the fake counts it, can never draw a 429."""
    if "--plan" in fake_args:
        return fake_args
    budget = int(scaled.get("upstream_requests_per_minute", settings.upstream_requests_per_minute))
    return [*fake_args, "--plan", str(budget)]


async def _demo_key(store: Store, settings: ProxySettings) -> tuple[NewKey, int, list[str]]:
    """The demo team's key (the team made on first start), how many keys it replaced, and
    the other live gateways on the store."""
    now = time.time()
    others = [i.id for i in await store.instances()
              if i.alive_until >= now and i.id != settings.instance]  # fmt: skip
    if not any(t.name == DEMO_TEAM for t in await store.teams()):
        return await create_team(store, DEMO_TEAM, settings.default_limits, now), 0, others
    # One demo key, not one more each start: keys are stored hashed, so the previous
    # one cannot be shown again; it is replaced. Unless another live gateway serves this
    # store: its printed key must keep working.
    replaced = 0 if others else await store.revoke_keys(now, team_name=DEMO_TEAM)
    return await create_key(store, DEMO_TEAM, now), replaced, others


def _print_demo(settings: ProxySettings, fake: bool, minted_admin: bool = False) -> None:
    store = open_store(settings.db)
    try:
        made, replaced, others = asyncio.run(_demo_key(store, settings))
    finally:
        store.close()
    base = settings.base_url
    submit = f"{base}/workflows/{CHARACTER_VIDEO_WORKFLOW_ID}"
    lines = ["", f"demo team {DEMO_TEAM!r} (the key and secret are shown once, here):",
             f"  api key:        {made.key}"]  # fmt: skip
    if replaced:
        lines.append("  (a new key each start: the previous start's key no longer works)")
    elif others:
        lines.append(f"  (one more: {', '.join(others)} also serves this store, and its key works)")
    if made.webhook_secret:
        lines.append(f"  webhook secret: {made.webhook_secret}")
    if settings.metrics_token is not None:
        lines += [
            "",
            "metrics (a token for this run; set PROXY_METRICS_TOKEN to keep one):",
            f"  curl -s {base}/metrics "
            f"-H 'Authorization: Bearer {settings.metrics_token.get_secret_value()}'",
        ]
    lines += ["", *_console_lines(settings, minted_admin)]
    lines += [
        "",
        "submit with curl (the answer's poll_url is where the result appears):",
        f"  curl -s -X POST {submit} -H 'x-api-key: {made.key}' -d '{{}}'",
        f"  curl -s {base}/workflows/request/REQUEST_ID -H 'x-api-key: {made.key}'",
        "",
        "or with the Python SDK: paste the lines between the rules into .venv/bin/python",
        "-" * 72,
        _python_snippet(base, made.key, poll_interval=1.0 if fake else None),
        "-" * 72,
        "",
    ]
    print("\n".join(lines), flush=True)


def _console_lines(settings: ProxySettings, minted_admin: bool) -> list[str]:
    """Where the operator console is, and the key that opens it (when made for this run)."""
    url = f"{settings.base_url}/admin/ui"
    if not minted_admin or settings.admin_key is None:
        return [f"console: {url}  (log in with the admin key, PROXY_ADMIN_KEY)"]
    return [
        "console (an admin key for this run; set PROXY_ADMIN_KEY to keep one):",
        f"  console:        {url}",
        f"  admin key:      {settings.admin_key.get_secret_value()}",
    ]


def _python_snippet(base_url: str, key: str, *, poll_interval: float | None = None) -> str:
    """Copy-paste Python for one run through this gateway, printing the four video URLs.
    A gateway answers polls from its store, so a fast fake can be polled every second."""
    poll = f", poll_interval={poll_interval:g}" if poll_interval is not None else ""
    return "\n".join([
        "from client import Client",
        "",
        f'with Client(api_key="{key}", base_url="{base_url}") as client:',
        f'    result = client.run({{"Scene_1": "A knight crosses a misty bridge"}}{poll})',
        "    for scene, url in result.videos.items():",
        '        print(f"scene {scene}: {url}")',
    ])  # fmt: skip


def _explain(exc: Exception) -> str:
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


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-"):
        argv.insert(0, "serve")  # `python -m proxy --port 8000` means serve
    args = _parser().parse_args(argv)
    try:
        if args.command == "admin":
            code = _admin(args)
        elif args.command == "migrate":
            code = _migrate(args)
        elif args.command == "demo":
            code = run_demo(args)
        elif args.command == "nginx-config":
            print(render_nginx(args.listen, args.replica, args.access_log), end="")
            code = 0
        else:
            code = _serve(args)
    except (GatewayError, RuleError, StoreError, ValueError, ValidationError) as exc:
        print(f"proxy: {_explain(exc)}", file=sys.stderr)
        code = 2
    sys.exit(code)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
