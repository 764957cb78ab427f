"""Secrets never printed: a store URL's password in anything the command line says (the
suggested `migrate` command too, with --db, with PROXY_DB, with --json), and the upstream
events secret in any logged path that holds it, near misses of the events path included
(`//upstream/events/<secret>`, `/Upstream/events/<secret>`, `/upstream/./events/<secret>`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from proxy.db.backend import describe
from proxy.edge.middleware import logged_path
from tests.proxy.harness import GATEWAY_URL, Harness

MakeHarness = Callable[..., Awaitable[Harness]]
PASSWORD = "Pa55-w0rd-never-printed"
# A port nothing listens on: the store cannot be reached, and the command says so.
UNREACHABLE = f"postgresql://gateway:{PASSWORD}@127.0.0.1:9/gateway"
SECRET = "events-secret-0123456789abcdef"


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://u:{PASSWORD}@h/db",
        f"postgresql://:{PASSWORD}@h/db",
        f"postgresql://u:{PASSWORD}/x@y@h:5432/db",  # unencoded / and @ in the password
        f"postgresql://u@h/db?sslmode=require&password={PASSWORD}",
    ],
)
def test_describe_never_shows_a_password(url: str) -> None:
    shown = describe(url)
    assert "Pa55" not in shown
    assert "***" in shown


def test_an_unreachable_stores_password_is_never_printed(tmp_path: Path) -> None:
    """Every way the command line names a store it cannot reach, run side by side (each
    waits for the connection pool's deadline)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROXY_")}
    runs = [
        (["admin", "list-teams", "--db", UNREACHABLE], env),
        (["admin", "list-teams", "--json"], {**env, "PROXY_DB": UNREACHABLE}),
        (["migrate", "--db", UNREACHABLE], env),
    ]
    started = [
        subprocess.Popen(
            [sys.executable, "-m", "proxy", *args],
            cwd=tmp_path,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args, environment in runs
    ]
    for process, (args, _) in zip(started, runs, strict=True):
        out, err = process.communicate(timeout=120)
        assert process.returncode != 0, (args, out, err)
        assert "127.0.0.1:9" in out + err, (args, out, err)
        assert PASSWORD not in out + err, (args, out, err)
        if args[0] == "admin":
            assert "python -m proxy migrate --db postgresql://gateway:***@" in err


@pytest.mark.parametrize(
    "path",
    [
        f"/upstream/events/{SECRET}",
        f"//upstream/events/{SECRET}",
        f"/Upstream/events/{SECRET}",
        f"/upstream/./events/{SECRET}",
        f"/upstream//events/{SECRET}x",
        f"/UPSTREAM/../upstream/events/{SECRET[:-1]}",
        f"/elsewhere/{SECRET}",
    ],
)
def test_a_logged_path_never_holds_the_events_secret(path: str) -> None:
    shown = logged_path(path, [SECRET])
    assert SECRET[:-1] not in shown
    assert "<secret>" in shown


@pytest.mark.anyio
async def test_near_misses_of_the_events_path_are_logged_without_the_secret(
    make_harness: MakeHarness, capsys: pytest.CaptureFixture[str]
) -> None:
    harness = await make_harness(upstream_events_secret=SECRET)
    # Sent as raw paths: a client would make `//x` a host and drop `./` segments.
    paths = ["//upstream/events/", "/Upstream/events/", "/upstream/./events/"]
    sent = [p + tail for p in paths for tail in (SECRET, SECRET + "x", SECRET[:-1])]
    sent += [f"/elsewhere/{SECRET}", f"/upstream/events/{SECRET}"]
    for path in sent:
        url = httpx.URL(GATEWAY_URL).copy_with(raw_path=path.encode())
        await harness.http.post(url, json={})
    logged = capsys.readouterr().err
    assert logged.count("<secret>") == len(sent), logged
    assert SECRET[:-1] not in logged
