"""`python -m proxy` (or `segmind-gateway`): serve the gateway, or administer its teams.

    python -m proxy serve [--host H] [--port P] [--upstream-url URL] [--db PATH] [--config F]
    python -m proxy demo [--time-scale 0.01] [--out demo-videos]   # one run, start to finish
    python -m proxy admin create-team NAME [--db PATH] [--daily-budget 50 ...]
    python -m proxy admin list-teams | list-instances | create-key TEAM | revoke-key PREFIX |
                          revoke-team TEAM | set-limits TEAM [...] | outputs
    python -m proxy admin init [--db PATH]                         # a new, empty store
    python -m proxy nginx-config --listen 8080 --replica HOST:PORT [--replica ...]

Admin commands work on the same store file as the server (`--db`), so they need no
running gateway; they never create one (only `serve` and `admin init` do) and say which
store they used. A new key is printed once and never again.

This module holds the argument parser and hands each command to its module: `serve`,
`admin`, `migrate`, `demo` and `nginx` (as `nginx-config`).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from proxy.cli.admin import LIMIT_FLAGS, run_admin
from proxy.cli.common import explain
from proxy.cli.demo import add_arguments as add_demo_arguments
from proxy.cli.demo import run_demo
from proxy.cli.migrate import run_migrate
from proxy.cli.nginx import DEFAULT_ACCESS_LOG
from proxy.cli.nginx import render as render_nginx
from proxy.cli.serve import run_serve
from proxy.core.errors import GatewayError
from proxy.db import StoreError
from proxy.rules import RuleError

__all__ = ["main"]


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
    add("--workers", type=int, default=1, metavar="N",
        help="gateway processes sharing the port and the store (default 1), each under its "
             "own instance id (the process's, plus /1, /2...)")  # fmt: skip
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
    with_db(
        admin_sub.add_parser(
            "outputs", help="kept outputs: objects, bytes, oldest, and mirror failures"
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


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-"):
        argv.insert(0, "serve")  # `python -m proxy --port 8000` means serve
    args = _parser().parse_args(argv)
    try:
        if args.command == "admin":
            code = run_admin(args)
        elif args.command == "migrate":
            code = run_migrate(args)
        elif args.command == "demo":
            code = run_demo(args)
        elif args.command == "nginx-config":
            print(render_nginx(args.listen, args.replica, args.access_log), end="")
            code = 0
        else:
            code = run_serve(args)
    except (GatewayError, RuleError, StoreError, ValueError, ValidationError) as exc:
        print(f"proxy: {explain(exc)}", file=sys.stderr)
        code = 2
    sys.exit(code)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
