"""Administering teams and keys: the command line (a real subprocess on the store file) and
the admin HTTP API under /admin, guarded by the admin key."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from proxy.app import create_app
from proxy.core.config import ProxySettings
from proxy.core.keys import hash_key, key_prefix
from proxy.services.gateway import Gateway
from proxy.store import open_store
from tests.proxy.harness import GATEWAY_URL, UPSTREAM_KEY, WORKFLOW, Harness

pytestmark = pytest.mark.anyio

MakeHarness = Callable[..., Awaitable[Harness]]
ADMIN_KEY = "test-admin-key-0123"
KEY = re.compile(r"sgw_[A-Za-z0-9_-]{43}")


# -- the command line ----------------------------------------------------------------------


async def cli(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m proxy admin ARGS --db DB`, run in the store's folder."""
    done = await anyio.run_process(
        [sys.executable, "-m", "proxy", "admin", *args, "--db", str(db)],
        cwd=db.parent,
        check=False,
    )
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode(), done.stderr.decode()
    )


async def live_team(db: Path, key: str) -> str | None:
    store = open_store(str(db), create=False)
    try:
        team = await store.team_for_key(hash_key(key))
    finally:
        store.close()
    return None if team is None else team.name


def one_key(text: str) -> str:
    keys = KEY.findall(text)
    assert len(keys) == 1, text
    key: str = keys[0]
    return key


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A store as `serve` or `admin init` makes it: admin commands never create one."""
    path = tmp_path / "admin.sqlite"
    open_store(str(path)).close()
    return path


async def test_create_team_prints_its_key_once(db: Path) -> None:
    made = await cli(db, "create-team", "video-team", "--daily-budget", "25")
    assert made.returncode == 0, made.stderr
    assert "'video-team' created" in made.stdout
    assert "shown once" in made.stdout
    key = one_key(made.stdout)
    assert await live_team(db, key) == "video-team"

    listed = await cli(db, "list-teams")
    assert listed.returncode == 0, listed.stderr
    assert key not in listed.stdout
    assert KEY.search(listed.stdout) is None, "lists show prefixes, never keys"
    assert key_prefix(key) in listed.stdout
    assert "video-team" in listed.stdout
    assert "daily_budget=25.0" in listed.stdout
    assert key.encode() not in await anyio.Path(db).read_bytes()


async def test_json_output(db: Path) -> None:
    made = await cli(db, "create-team", "json-team", "--json", "--max-concurrent", "3")
    assert made.returncode == 0, made.stderr
    out: dict[str, Any] = json.loads(made.stdout)
    key = out["api_key"]
    assert KEY.fullmatch(key)
    assert out["team"]["name"] == "json-team"
    assert out["team"]["limits"]["max_concurrent"] == 3
    assert [k["prefix"] for k in out["team"]["keys"]] == [key_prefix(key)]

    listed = await cli(db, "list-teams", "--json")
    teams = json.loads(listed.stdout)["teams"]
    assert [t["name"] for t in teams] == ["json-team"]
    assert teams[0]["keys"][0]["prefix"] == key_prefix(key)
    assert teams[0]["keys"][0]["revoked_at"] is None
    assert key not in listed.stdout
    assert "api_key" not in listed.stdout

    extra = await cli(db, "create-key", "json-team", "--json")
    second = json.loads(extra.stdout)
    assert second["team"] == "json-team"
    assert second["prefix"] == key_prefix(second["api_key"])

    revoked = await cli(db, "revoke-key", key_prefix(key), "--json")
    assert json.loads(revoked.stdout) == {"revoked": 1}

    limits = await cli(db, "set-limits", "json-team", "--json", "--submits-per-minute", "7")
    assert json.loads(limits.stdout)["limits"]["submits_per_minute"] == 7


async def test_keys_are_created_and_revoked(db: Path) -> None:
    first = one_key((await cli(db, "create-team", "keyring")).stdout)
    made = await cli(db, "create-key", "keyring")
    assert made.returncode == 0, made.stderr
    assert "shown once" in made.stdout
    second = one_key(made.stdout)
    assert second != first
    assert await live_team(db, first) == await live_team(db, second) == "keyring"
    listed = (await cli(db, "list-teams")).stdout
    assert key_prefix(first) in listed
    assert key_prefix(second) in listed

    revoked = await cli(db, "revoke-key", key_prefix(first))
    assert revoked.returncode == 0, revoked.stderr
    assert "revoked 1 key(s)" in revoked.stdout
    assert await live_team(db, first) is None
    assert await live_team(db, second) == "keyring"
    assert key_prefix(first) not in (await cli(db, "list-teams")).stdout, "only live keys"

    third = one_key((await cli(db, "create-key", "keyring")).stdout)
    everything = await cli(db, "revoke-team", "keyring")
    assert everything.returncode == 0, everything.stderr
    assert "revoked 2 key(s)" in everything.stdout
    assert await live_team(db, second) is None
    assert await live_team(db, third) is None
    assert "keys none" in (await cli(db, "list-teams")).stdout


async def test_revoking_a_prefix_that_matches_nothing_is_an_error(db: Path) -> None:
    """An operator revoking a leaked key with a typo must not be told it worked."""
    key = one_key((await cli(db, "create-team", "typo")).stdout)
    wrong = await cli(db, "revoke-key", "sgw_notakey0")
    assert wrong.returncode == 2
    assert "sgw_notakey0" in wrong.stderr
    assert await live_team(db, key) == "typo"
    assert (await cli(db, "revoke-key", key_prefix(key))).returncode == 0
    again = await cli(db, "revoke-key", key_prefix(key))
    assert again.returncode == 2, "already revoked: nothing was revoked now"


async def test_set_limits_changes_only_what_is_given(db: Path) -> None:
    await cli(db, "create-team", "tunable", "--daily-budget", "40", "--max-concurrent", "4")
    changed = await cli(db, "set-limits", "tunable", "--submits-per-minute", "3",
                        "--monthly-budget", "99.5", "--weight", "2")  # fmt: skip
    assert changed.returncode == 0, changed.stderr
    assert "submits_per_minute=3" in changed.stdout
    store = open_store(str(db), create=False)
    try:
        limits = (await store.team("tunable")).limits
    finally:
        store.close()
    assert limits.submits_per_minute == 3
    assert limits.monthly_budget == 99.5
    assert limits.daily_budget == 40.0
    assert limits.max_concurrent == 4
    assert limits.weight == 2.0  # its share of the upstream slots while others wait


@pytest.mark.parametrize(
    "name", ["two words", "a/b", "x" * 65, "", "d\u0435sign", "..", ".hidden", "caf\u00e9"]
)
async def test_a_bad_team_name_exits_2_and_says_why(db: Path, name: str) -> None:
    done = await cli(db, "create-team", name)
    assert done.returncode == 2, done.stdout
    assert done.stderr.startswith("proxy: team names are 1 to 64 characters: ASCII letters")
    assert "Traceback" not in done.stderr
    assert "no teams yet" in (await cli(db, "list-teams")).stdout


async def test_a_duplicate_team_is_refused_clearly(db: Path) -> None:
    first = one_key((await cli(db, "create-team", "twins")).stdout)
    again = await cli(db, "create-team", "twins")
    assert again.returncode == 2
    assert "a team named 'twins' already exists" in again.stderr
    assert KEY.search(again.stdout + again.stderr) is None, "no second key was made"
    assert await live_team(db, first) == "twins"


@pytest.mark.parametrize(
    "args",
    [
        ("create-key", "ghost"),
        ("revoke-team", "ghost"),
        ("set-limits", "ghost", "--daily-budget", "1"),
    ],
)
async def test_an_unknown_team_exits_2(db: Path, args: tuple[str, ...]) -> None:
    done = await cli(db, *args)
    assert done.returncode == 2
    assert "no team named 'ghost'" in done.stderr
    assert "Traceback" not in done.stderr


async def test_an_invalid_limit_exits_2(db: Path) -> None:
    done = await cli(db, "create-team", "negative", "--daily-budget", "-5")
    assert done.returncode == 2
    assert "daily_budget" in done.stderr
    assert "Traceback" not in done.stderr
    assert "no teams yet" in (await cli(db, "list-teams")).stdout


async def test_the_cli_administers_a_running_gateways_store(harness: Harness) -> None:
    db = Path(harness.gateway.settings.db)
    key = one_key((await cli(db, "create-team", "live-team")).stdout)
    answer = await harness.submit(key)
    assert answer.status_code == 200, answer.text
    assert (await cli(db, "set-limits", "live-team", "--submits-per-minute", "0")).returncode == 0
    assert (await harness.submit(key, {"Scene_1": "Other"})).status_code == 429
    assert (await cli(db, "revoke-key", key_prefix(key))).returncode == 0
    assert (await harness.poll(key, answer.json()["request_id"])).status_code == 401


# -- the admin HTTP API --------------------------------------------------------------------


def admin(key: str = ADMIN_KEY) -> dict[str, str]:
    return {"X-Admin-Key": key}


ROUTES: list[tuple[str, str, Any]] = [
    ("GET", "/admin/teams", None),
    ("POST", "/admin/teams", {"name": "x"}),
    ("POST", "/admin/teams/x/keys", None),
    ("POST", "/admin/teams/x/revoke", None),
    ("PATCH", "/admin/teams/x/limits", {"daily_budget": 1}),
    ("DELETE", "/admin/keys/sgw_abcdefgh", None),
    ("POST", "/admin/clock/advance", {"seconds": 1}),
    ("GET", "/admin/instances", None),
]


async def test_the_admin_api_is_off_without_an_admin_key(harness: Harness) -> None:
    for method, path, body in ROUTES:
        answer = await harness.http.request(method, path, json=body, headers=admin())
        assert answer.status_code == 403, (path, answer.text)
        assert "PROXY_ADMIN_KEY" in answer.json()["error"]
    assert await harness.gateway.store.teams() == []


@pytest.mark.parametrize("given", [None, "wrong-admin-key", ADMIN_KEY + "x", ADMIN_KEY[:-1]])
async def test_the_admin_api_refuses_a_wrong_admin_key(
    make_harness: MakeHarness, given: str | None
) -> None:
    harness = await make_harness(admin_key=ADMIN_KEY)
    team_key = harness.team("insider")
    sending = ({} if given is None else admin(given), {"x-api-key": team_key}, admin(team_key))
    for n, sent in enumerate(sending):
        # A client of its own each: one client's wrong keys are limited to 10 a minute.
        transport = httpx.ASGITransport(app=harness.app, client=(f"192.0.2.{n + 1}", 4000))
        async with httpx.AsyncClient(transport=transport, base_url=GATEWAY_URL) as http:
            for method, path, body in ROUTES:
                answer = await http.request(method, path, json=body, headers=sent)
                assert answer.status_code == 401, (path, answer.text)
                assert "X-Admin-Key" in answer.json()["error"]
                if given:
                    assert given not in answer.text
    assert [t.name for t in await harness.gateway.store.teams()] == ["insider"]


async def test_teams_and_keys_through_the_admin_api(make_harness: MakeHarness) -> None:
    harness = await make_harness(admin_key=ADMIN_KEY)
    http = harness.http
    made = await http.post(
        "/admin/teams",
        json={"name": "api-team", "limits": {"daily_budget": 20, "submits_per_minute": 5}},
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
    )
    assert made.status_code == 201, made.text
    key = made.json()["api_key"]
    assert KEY.fullmatch(key)
    assert made.json()["team"]["limits"]["daily_budget"] == 20
    assert made.json()["team"]["limits"]["submits_per_minute"] == 5
    assert made.json()["team"]["keys"][0]["prefix"] == key_prefix(key)
    assert (await harness.submit(key)).status_code == 200

    extra = await http.post("/admin/teams/api-team/keys", headers=admin())
    assert extra.status_code == 201, extra.text
    second = extra.json()["api_key"]
    assert extra.json()["prefix"] == key_prefix(second)
    assert (await harness.submit(second, {"Scene_1": "With the second key"})).status_code == 200

    listed = await http.get("/admin/teams", headers=admin())
    assert listed.status_code == 200
    assert key not in listed.text
    assert second not in listed.text
    assert KEY.search(listed.text) is None
    (team,) = listed.json()["teams"]
    assert {k["prefix"] for k in team["keys"]} == {key_prefix(key), key_prefix(second)}
    assert team["spent_today"] == pytest.approx(2 * 3.9674, abs=1e-4)

    # Revocation is immediate: the very next request with the key fails.
    gone = await http.delete(f"/admin/keys/{key_prefix(key)}", headers=admin())
    assert gone.json() == {"revoked": 1}
    assert (await harness.submit(key, {"Scene_1": "After revocation"})).status_code == 401
    again = await http.delete(f"/admin/keys/{key_prefix(key)}", headers=admin())
    assert again.status_code == 404
    assert (await harness.submit(second, {"Scene_1": "Still fine"})).status_code == 200

    everyone = await http.post("/admin/teams/api-team/revoke", headers=admin())
    assert everyone.json() == {"revoked": 1}
    assert (await harness.submit(second, {"Scene_1": "Now refused"})).status_code == 401


async def test_limits_through_the_admin_api_apply_at_once(make_harness: MakeHarness) -> None:
    harness = await make_harness(admin_key=ADMIN_KEY)
    key = harness.team("tuned", submits_per_minute=None)
    changed = await harness.http.patch(
        "/admin/teams/tuned/limits", json={"submits_per_minute": 1}, headers=admin()
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["limits"]["submits_per_minute"] == 1
    assert changed.json()["limits"]["daily_budget"] == 100.0, "the rest is unchanged"
    assert (await harness.submit(key)).status_code == 200
    refused = await harness.submit(key, {"Scene_1": "A second one"})
    assert refused.status_code == 429
    assert refused.json()["limit"] == "submits_per_minute"

    unlimited = await harness.http.post(
        "/admin/teams/tuned/limits", json={"submits_per_minute": None}, headers=admin()
    )
    assert unlimited.status_code == 200, unlimited.text
    assert (await harness.submit(key, {"Scene_1": "A second one"})).status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "says"),
    [
        ("POST", "/admin/teams", {"name": "bad name"}, 400, "team names are"),
        ("POST", "/admin/teams", {}, 400, "team names are"),
        ("POST", "/admin/teams", [1], 400, "JSON object"),
        ("POST", "/admin/teams", {"name": "dup"}, 409, "already exists"),
        ("POST", "/admin/teams", {"name": "n", "limits": {"daily_budget": -1}}, 400, "limits"),
        ("POST", "/admin/teams", {"name": "n", "limits": {"daily_bugdet": 5}}, 400,
         "daily_bugdet"),
        ("POST", "/admin/teams", {"name": "n", "limits": [5]}, 400, "limits"),
        ("POST", "/admin/teams", {"name": "n", "daily_budget": 5}, 400, "daily_budget"),
        ("PATCH", "/admin/teams/dup/limits", {"max_concurrent": "many"}, 400, "max_concurrent"),
        ("PATCH", "/admin/teams/dup/limits", {"submits_per_min": 5}, 400, "submits_per_min"),
        ("PATCH", "/admin/teams/ghost/limits", {"max_concurrent": 1}, 404, "no team named"),
        ("POST", "/admin/teams/ghost/keys", None, 404, "no team named"),
        ("POST", "/admin/teams/ghost/revoke", None, 404, "no team named"),
        ("DELETE", "/admin/keys/sgw_nothing0", None, 404, "no live key"),
        ("POST", "/admin/clock/advance", {"seconds": -1}, 400, "seconds"),
        ("POST", "/admin/clock/advance", {"seconds": "ten"}, 400, "seconds"),
        ("POST", "/admin/clock/advance", {"seconds": True}, 400, "seconds"),
        ("POST", "/admin/clock/advance", {}, 400, "seconds"),
    ],
)  # fmt: skip
async def test_admin_api_errors_are_clear(
    make_harness: MakeHarness, method: str, path: str, body: Any, status: int, says: str
) -> None:
    harness = await make_harness(admin_key=ADMIN_KEY)
    harness.team("dup", daily_budget=50.0)
    answer = await harness.http.request(method, path, json=body, headers=admin())
    assert answer.status_code == status, answer.text
    assert says in answer.json()["error"]
    teams = await harness.gateway.store.teams()
    assert [t.name for t in teams] == ["dup"], "nothing was created"
    assert teams[0].limits.daily_budget == 50.0, "nothing was changed"


async def test_the_clock_advances_through_the_admin_api(make_harness: MakeHarness) -> None:
    harness = await make_harness(admin_key=ADMIN_KEY)
    start = harness.clock.now()
    key = harness.team("timed")
    assert (await harness.submit(key)).status_code == 200
    polls = len(harness.upstream_calls("poll"))

    moved = await harness.http.post("/admin/clock/advance", json={"seconds": 100}, headers=admin())
    assert moved.status_code == 200, moved.text
    assert moved.json() == {"now": start + 100}
    assert harness.clock.now() == start + 100
    # It waited for the poll loop: the upstream was polled before the answer came.
    assert len(harness.upstream_calls("poll")) == polls + 1

    still = await harness.http.post("/admin/clock/advance", json={"seconds": 0}, headers=admin())
    assert still.json() == {"now": start + 100}


async def test_the_clock_cannot_be_advanced_on_the_system_clock(tmp_path: Path) -> None:
    settings = ProxySettings(
        db=str(tmp_path / "system.sqlite"),
        upstream_key=UPSTREAM_KEY,
        admin_key=ADMIN_KEY,
        clock="system",
    )
    app = create_app(settings)
    gateway: Gateway = app.state.gateway
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://gateway.test"
        ) as http:
            answer = await http.post("/admin/clock/advance", json={"seconds": 10}, headers=admin())
            assert answer.status_code == 409, answer.text
            assert "system clock" in answer.json()["error"]
            listed = await http.get("/admin/teams", headers=admin())
            assert listed.json() == {"teams": []}
            assert (await http.post(WORKFLOW, json={})).status_code == 401
    finally:
        await gateway.stop()
