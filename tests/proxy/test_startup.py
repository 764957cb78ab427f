"""Starting the gateway and administering its store, as a user at a shell does: real
`python -m proxy` processes on loopback ports and real SQLite files.

What is refused must be refused before anything is spent or changed: a bad secret or a
gateway key in SEGMIND_API_KEY stops the start; a busy port or a live process with the
same instance id stops it before the store is touched; an admin command never makes a
store. And `make run` restarted keeps one demo key and cached results that download.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from client import CHARACTER_VIDEO_WORKFLOW_ID
from proxy.core.keys import hash_key
from proxy.store import open_store
from tests.proxy.harness import blocking
from tests.servers import ServerProcess, launch
from tests.stack import gateway_env, running_stack

ADMIN_KEY = "test-admin-key-startup-6b2e9d"
GATEWAY_SHAPED = "sgw_" + "A" * 43  # what `admin create-team` prints, shape for shape
SUBMIT = f"/workflows/{CHARACTER_VIDEO_WORKFLOW_ID}"
PRINTED_KEY = re.compile(r"api key: +(sgw_\S+)")
# The fake's asset URLs, or (with kept outputs, `make run`'s default) the gateway's own.
VIDEO_URL = re.compile(r"http://127\.0\.0\.1:\d+/(?:assets|v1/outputs)/[^\"\s\\]+")


def clean_env(**changes: str) -> dict[str, str]:
    """The test's environment minus the gateway's and Segmind's settings, plus `changes`."""
    kept = {k: v for k, v in os.environ.items() if not k.startswith(("PROXY_", "SEGMIND_"))}
    return {**kept, **changes}


def proxy(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`python -m proxy ARGS` to its end: a command, or a start that must be refused."""
    return subprocess.run(
        [sys.executable, "-m", "proxy", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def serve(port: int, *args: str, cwd: Path, env: dict[str, str]) -> ServerProcess:
    """`python -m proxy serve --port PORT ARGS`, once /healthz answers; its output in a
    file. Raises with the output if it exits first. PORT 0: one the gateway picks and
    holds, read back from its start-up line (a restarted `make run` keeps its port)."""
    argv = [sys.executable, "-m", "proxy", "serve", "--port", str(port), *args]
    return launch(argv, cwd=cwd, env=env)


def make_run_args(db: Path, *fake_args: str) -> list[str]:
    """What `make run` passes (its fake 1000x fast unless `fake_args` say otherwise)."""
    return ["--db", str(db), "--with-fake", "--fake-args",
            " ".join(fake_args or ("--time-scale", "0.001")), "--demo-team"]  # fmt: skip


def demo_keys(db: Path) -> list[tuple[str, float | None]]:
    """The demo team's keys: (prefix, revoked_at) each, oldest first."""
    store = open_store(str(db), create=False)
    try:
        return [(k.prefix, k.revoked_at) for k in blocking(store.keys("demo"))]
    finally:
        store.close()


def key_is_live(db: Path, key: str) -> bool:
    store = open_store(str(db), create=False)
    try:
        return blocking(store.team_for_key(hash_key(key))) is not None
    finally:
        store.close()


def store_rows(db: Path) -> list[str]:
    """Every row of the store, as SQL, but the heartbeat a live gateway renews itself."""
    with contextlib.closing(sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)) as conn:
        return [line for line in conn.iterdump() if not line.startswith('INSERT INTO "instances"')]


@pytest.fixture
def elsewhere(tmp_path: Path) -> Iterator[Path]:
    """A folder that holds no store, as a user's home directory would."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    yield folder
    assert not (folder / "gateway.sqlite").exists(), "nothing made a store here"


# -- secrets and keys refused at start-up (items 3 and 14) -------------------------------


@pytest.mark.parametrize("admin_key", ["", "   ", "fifteen-chars!!"])
def test_an_empty_or_short_admin_key_stops_the_start(admin_key: str, elsewhere: Path) -> None:
    env = clean_env(PROXY_ADMIN_KEY=admin_key, SEGMIND_API_KEY="test-upstream-key-startup")
    started = proxy(
        "serve", "--port", "0", "--upstream-url", "http://127.0.0.1:9",
        cwd=elsewhere, env=env,
    )  # fmt: skip
    assert started.returncode == 2, started.stdout + started.stderr
    assert "PROXY_ADMIN_KEY" in started.stderr
    assert "16 characters" in started.stderr
    assert "secrets.token_urlsafe" in started.stderr  # how to make a good one
    assert "Traceback" not in started.stderr


def test_a_gateway_key_in_segmind_api_key_stops_make_run(elsewhere: Path) -> None:
    started = proxy(
        "serve", "--port", "0", "--with-fake", "--demo-team",
        cwd=elsewhere, env=clean_env(SEGMIND_API_KEY=GATEWAY_SHAPED),
    )  # fmt: skip
    assert started.returncode == 2, started.stdout + started.stderr
    assert "gateway team key" in started.stderr
    assert "env -u SEGMIND_API_KEY make run" in started.stderr  # what to do instead
    assert GATEWAY_SHAPED not in started.stdout + started.stderr
    assert "upstream:" not in started.stdout, "nothing was started"


# -- a second gateway on a busy port, or with a live twin's id (item 12) ------------------


def test_a_second_make_run_on_the_same_port_changes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "gateway.sqlite"
    first = serve(0, *make_run_args(db), cwd=tmp_path, env=clean_env())
    port = first.port
    try:
        key = PRINTED_KEY.search(first.printed())
        assert key is not None, first.printed()
        before = store_rows(db)

        second = proxy("serve", "--port", str(port), *make_run_args(db),
                       cwd=tmp_path, env=clean_env())  # fmt: skip

        assert second.returncode == 2, second.stdout + second.stderr
        assert f"port {port}" in second.stderr
        assert f"PORT={port + 1} make run" in second.stderr
        assert "api key" not in second.stdout, "no demo key for a start that fails"
        assert "fake Segmind" not in second.stdout, "no fake either"
        assert store_rows(db) == before
        assert len(demo_keys(db)) == 1
        answer = httpx.get(f"{first.url}/v1/get-user-credits", headers={"x-api-key": key[1]})
        assert answer.status_code == 200, answer.text
    finally:
        first.stop()


def test_a_live_process_with_the_same_instance_id_is_not_taken_over(tmp_path: Path) -> None:
    db = tmp_path / "gateway.sqlite"
    with running_stack(db) as stack:
        queued = httpx.post(
            stack.gateway.url + SUBMIT, json={"Scene_1": "A run the first gateway polls"},
            headers={"x-api-key": stack.team_key},
        )  # fmt: skip
        assert queued.status_code == 200, queued.text
        before = store_rows(db)
        assert any("poll_leases" in row and "e2e-gateway" in row for row in before), before

        # Another port, but the id the first process runs under (tests.stack sets it).
        twin = proxy(
            "serve", "--port", "0", "--upstream-url", stack.fake.url,
            "--db", str(db), "--clock", "virtual",
            cwd=tmp_path, env=clean_env(**gateway_env(stack.fake.url)),
        )  # fmt: skip

        assert twin.returncode == 2, twin.stdout + twin.stderr
        assert "'e2e-gateway'" in twin.stderr
        assert "--instance-id" in twin.stderr
        assert "PORT=" in twin.stderr
        assert store_rows(db) == before


def test_make_run_killed_takes_its_runs_back_at_once_on_restart(tmp_path: Path) -> None:
    """Under the default id (host and port) the restarted process holds the port, so the
    fresh heartbeat it finds can only be its own killed predecessor's: no wait for it."""
    db = tmp_path / "gateway.sqlite"
    args = make_run_args(db, "--time-scale", "1", "--clock", "virtual")
    first = serve(0, *args, cwd=tmp_path, env=clean_env())
    port = first.port
    try:
        key = PRINTED_KEY.search(first.printed())
        assert key is not None, first.printed()
        queued = httpx.post(f"{first.url}{SUBMIT}", json={"Scene_1": "A run to take back"},
                            headers={"x-api-key": key[1]})  # fmt: skip
        assert queued.status_code == 200, queued.text
        first.proc.kill()  # SIGKILL: the heartbeat row stays fresh for lease_seconds
        first.proc.wait()
        second = serve(port, *args, cwd=tmp_path, env=clean_env())
        try:
            assert "fresh heartbeat" not in second.printed(), second.printed()
            store = open_store(str(db), create=False)
            try:
                owners = {i.id: i.runs for i in blocking(store.instances())}
            finally:
                store.close()
            assert sum(owners.values()) == 1, owners
        finally:
            second.stop()
    finally:
        first.stop()


# -- admin commands and the store they use (item 13) ------------------------------------


@pytest.mark.parametrize("command", [("list-teams",), ("create-key", "demo"), ("list-instances",)])
def test_an_admin_command_never_creates_a_store(command: tuple[str, ...], elsewhere: Path) -> None:
    done = proxy("admin", *command, cwd=elsewhere, env=clean_env())
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"no gateway store at {elsewhere.resolve() / 'gateway.sqlite'}" in done.stderr
    assert "--db" in done.stderr
    # It says how to make one (the hint names `migrate` now; `admin init` still works).
    assert "python -m proxy migrate --db" in done.stderr
    assert "Traceback" not in done.stderr
    assert not list(elsewhere.iterdir()), "not even an empty file, nor -wal or -shm"


def test_admin_commands_say_which_store_they_used(tmp_path: Path, elsewhere: Path) -> None:
    db = tmp_path / "team-store.sqlite"
    made = proxy("admin", "init", "--db", str(db), cwd=elsewhere, env=clean_env())
    assert made.returncode == 0, made.stderr
    assert made.stdout.startswith(f"store: {db} (created; no gateway serves it right now)")

    team = proxy("admin", "create-team", "video", "--db", str(db), cwd=elsewhere, env=clean_env())
    assert team.returncode == 0, team.stderr
    assert team.stdout.startswith(f"store: {db} (")

    listed = proxy("admin", "list-teams", "--json", "--db", str(db),
                   cwd=elsewhere, env=clean_env())  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    assert [t["name"] for t in json.loads(listed.stdout)["teams"]] == ["video"]
    assert f"store: {db} (" in listed.stderr  # stdout stays one JSON document

    again = proxy("admin", "init", "--db", str(db), cwd=elsewhere, env=clean_env())
    assert again.returncode == 0, again.stderr
    assert "nothing changed" in again.stdout


def test_an_admin_command_names_the_gateway_serving_its_store(tmp_path: Path) -> None:
    db = tmp_path / "gateway.sqlite"
    gateway = serve(0, *make_run_args(db), "--instance-id", "the-demo-gateway",
                    cwd=tmp_path, env=clean_env())  # fmt: skip
    try:
        listed = proxy("admin", "list-teams", "--db", str(db), cwd=tmp_path, env=clean_env())
    finally:
        gateway.stop()
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.startswith(f"store: {db} (served now by the-demo-gateway)")


# -- `make run` restarted (items 15 and 19) ---------------------------------------------


def test_make_run_keeps_one_demo_key_across_restarts(tmp_path: Path) -> None:
    db = tmp_path / "gateway.sqlite"
    port = 0  # the first start picks one; the restarts keep it
    printed = []
    for _ in range(3):
        gateway = serve(port, *make_run_args(db), cwd=tmp_path, env=clean_env())
        port = gateway.port
        try:
            found = PRINTED_KEY.search(gateway.printed())
            assert found is not None, gateway.printed()
            printed.append(found[1])
            credits = httpx.get(f"{gateway.url}/v1/get-user-credits",
                                headers={"x-api-key": found[1]})  # fmt: skip
            assert credits.status_code == 200, credits.text
        finally:
            gateway.stop()

    live = [prefix for prefix, revoked in demo_keys(db) if revoked is None]
    assert live == [printed[-1][:12]], demo_keys(db)
    assert [key_is_live(db, key) for key in printed] == [False, False, True]


def test_a_second_make_run_on_another_port_leaves_the_first_ones_key_working(
    tmp_path: Path,
) -> None:
    """The demo key is replaced on a restart, not while another gateway on the store
    still serves the key it printed (`PORT=8001 make run` beside `make run`)."""
    db = tmp_path / "gateway.sqlite"
    first = serve(0, *make_run_args(db), cwd=tmp_path, env=clean_env())
    try:
        second = serve(0, *make_run_args(db), cwd=tmp_path, env=clean_env())
        try:
            keys = [PRINTED_KEY.search(g.printed()) for g in (first, second)]
            assert all(keys), [g.printed() for g in (first, second)]
            assert [key_is_live(db, k[1]) for k in keys if k] == [True, True]
            assert "also serves this store" in second.printed()
        finally:
            second.stop()
    finally:
        first.stop()


def advance_until_done(gateway: str, fake: str, key: str, request_id: str) -> dict[str, object]:
    """Move both virtual clocks (the fake's, then the gateway's, which answers once its
    poll loops have caught up) until the run has ended; no real time passes for it."""
    with httpx.Client(timeout=30) as http:
        for _ in range(40):  # 40 x 120 s covers the fake's longest run, 1800 s
            poll = f"{gateway}/workflows/request/{request_id}"
            body: dict[str, object] = http.get(poll, headers={"x-api-key": key}).json()
            if body.get("status") in ("COMPLETED", "FAILED"):
                return body
            http.post(f"{fake}/__admin/clock/advance", json={"seconds": 120}).raise_for_status()
            http.post(f"{gateway}/admin/clock/advance", json={"seconds": 120},
                      headers={"x-admin-key": ADMIN_KEY}).raise_for_status()  # fmt: skip
    raise AssertionError(f"run {request_id} did not end: {body}")


def test_cached_results_still_download_after_make_run_restarts(tmp_path: Path) -> None:
    db = tmp_path / "gateway.sqlite"
    env = clean_env(PROXY_ADMIN_KEY=ADMIN_KEY)  # to move the gateway's virtual clock
    args = [*make_run_args(db, "--clock", "virtual"), "--clock", "virtual"]
    inputs = {"Scene_1": "A lighthouse keeper at dawn"}

    first = serve(0, *args, cwd=tmp_path, env=env)
    port = first.port
    try:
        key = PRINTED_KEY.search(first.printed())
        fake = re.search(r"the fake Segmind at (http://\S+)", first.printed())
        assert key is not None, first.printed()
        assert fake is not None, first.printed()
        queued = httpx.post(first.url + SUBMIT, json=inputs, headers={"x-api-key": key[1]})
        assert queued.headers["x-cache-status"] == "MISS", queued.text
        done = advance_until_done(first.url, fake[1], key[1], queued.json()["request_id"])
        assert done["status"] == "COMPLETED", done
    finally:
        first.stop()

    second = serve(port, *args, cwd=tmp_path, env=env)
    try:
        key = PRINTED_KEY.search(second.printed())
        assert key is not None, second.printed()
        hit = httpx.post(second.url + SUBMIT, json=inputs, headers={"x-api-key": key[1]})
        assert hit.headers["x-cache-status"] == "HIT", hit.text
        result = httpx.get(hit.json()["poll_url"], headers={"x-api-key": key[1]})
        assert result.json()["status"] == "COMPLETED", result.text
        videos = VIDEO_URL.findall(result.text)
        assert len(videos) == 4, result.text
        for url in videos:
            video = httpx.get(url, timeout=10)
            assert video.status_code == 200, url
            assert video.content[4:8] == b"ftyp"
    finally:
        second.stop()
