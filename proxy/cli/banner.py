"""What `serve --demo-team` prints at start-up: the demo team's key (made, or replaced,
for this start), the metrics token and the console's admin key when minted for this run,
and the curl and Python to try the gateway with."""

from __future__ import annotations

import asyncio
import time

from client import CHARACTER_VIDEO_WORKFLOW_ID
from proxy.core.config import ProxySettings
from proxy.services.accounts import NewKey, create_key, create_team
from proxy.store import Store, open_store

__all__ = ["DEMO_TEAM", "print_demo"]

DEMO_TEAM = "demo"


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


def print_demo(settings: ProxySettings, fake: bool, minted_admin: bool = False) -> None:
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
