"""The command line, in-process against the fake (virtual clock) and as a real subprocess."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from client._cli import run_cli
from client._errors import (
    ConnectTimeout,
    GenerationFailed,
    InsufficientCredits,
    NotFound,
    SegmindError,
    Unauthorized,
)
from client._exit_codes import EXIT_CODES, exit_code_for
from tests.client.fake_upstream import (
    FAKE_KEY,
    FAKE_URL,
    Fake,
    SyncASGITransport,
    VirtualTime,
    running_fake,
)
from tests.servers import ServerProcess

Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture
def fake_cli() -> Iterator[tuple[Fake, Cli]]:
    with running_fake() as (fake, portal):

        def cli(*argv: str) -> tuple[int, str, str]:
            out, err = io.StringIO(), io.StringIO()
            code = run_cli(
                list(argv),
                transport=SyncASGITransport(fake.app, portal),
                clock=VirtualTime(fake.clock),
                stdout=out,
                stderr=err,
            )
            return code, out.getvalue(), err.getvalue()

        yield fake, cli


def base(*extra: str) -> list[str]:
    return ["--base-url", FAKE_URL, "--api-key", FAKE_KEY, *extra]


def test_exit_codes_are_distinct_and_resolved_by_class() -> None:
    codes = list(EXIT_CODES.values())
    assert len(codes) == len(set(codes))
    assert not {0, 1, 2, 130} & set(codes)
    assert exit_code_for(ConnectTimeout("x")) == 24
    assert exit_code_for(SegmindError("x")) == 1
    assert exit_code_for(ValueError("x")) == 1


def test_generate_waits_and_prints_the_four_videos(
    fake_cli: tuple[Fake, Cli], tmp_path: Path
) -> None:
    fake, cli = fake_cli
    code, out, err = cli(
        "generate",
        *base(
            "--image",
            "https://img.test/me.jpg",
            "--scene",
            "A",
            "--scene",
            "B",
            "--out",
            str(tmp_path),
        ),
    )
    assert code == 0, err
    assert all(f"scene {n}: {tmp_path / f'scene_{n}.mp4'}" in out for n in range(1, 5))
    body = fake.journal("submit")[0]["body"]
    assert body["Character_Image"] == "https://img.test/me.jpg"
    assert (body["Scene_1"], body["Scene_2"]) == ("A", "B")
    assert body["Scene_3"] == "Model by waterfall, mist creating natural wind effects"
    assert "COMPLETED" in err  # progress lines on stderr when it is not a terminal


def test_json_mode_prints_exactly_one_document(fake_cli: tuple[Fake, Cli]) -> None:
    _, cli = fake_cli
    code, out, _ = cli("generate", *base("--json"))
    assert code == 0
    document = json.loads(out)
    assert document["ok"] is True
    assert sorted(document["videos"]) == ["1", "2", "3", "4"]


def test_no_wait_then_status_wait_and_download(fake_cli: tuple[Fake, Cli], tmp_path: Path) -> None:
    _fake, cli = fake_cli
    code, out, _ = cli("generate", *base("--no-wait", "--json"))
    assert code == 0
    job = json.loads(out)["request_id"]
    code, out, _ = cli("status", job, *base("--json"))
    assert (code, json.loads(out)["status"]) == (0, "QUEUED")
    code, out, _ = cli("download", job, *base("--out", str(tmp_path)))
    assert code == 21  # not finished yet: WaitTimeout
    code, out, _ = cli("wait", job, *base("--json"))
    assert code == 0
    assert json.loads(out)["status"] == "COMPLETED"
    code, out, _ = cli("download", job, *base("--out", str(tmp_path), "--json"))
    assert code == 0
    assert sorted(json.loads(out)["files"]) == ["scene_1", "scene_2", "scene_3", "scene_4"]
    assert len(list(tmp_path.glob("scene_*.mp4"))) == 4


def test_credits(fake_cli: tuple[Fake, Cli]) -> None:
    _, cli = fake_cli
    code, out, _ = cli("credits", *base())
    assert code == 0
    assert "credits: 1000.00" in out


def test_not_enough_credits_says_balance_and_price(fake_cli: tuple[Fake, Cli]) -> None:
    fake, cli = fake_cli
    fake.set_credits("key-1", 2.1)
    code, out, err = cli("generate", *base("--json"))
    assert code == EXIT_CODES[InsufficientCredits]
    assert "not enough credits: balance 2.10, a run costs 3.97" in err
    assert json.loads(out)["error"]["type"] == "InsufficientCredits"


def test_a_bad_flag_key_names_the_flag_and_header_but_not_the_key(
    fake_cli: tuple[Fake, Cli],
) -> None:
    _, cli = fake_cli
    code, out, err = cli(
        "credits", "--base-url", FAKE_URL, "--api-key", "nope-secret-9", "--auth", "bearer"
    )
    assert code == EXIT_CODES[Unauthorized]
    assert "--api-key flag" in err
    assert "Authorization header" in err
    assert "nope-secret-9" not in err + out


def test_a_bad_env_key_names_the_variable(
    fake_cli: tuple[Fake, Cli], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, cli = fake_cli
    monkeypatch.setenv("SEGMIND_API_KEY", "env-secret-7")
    code, out, err = cli("credits", "--base-url", FAKE_URL)
    assert code == EXIT_CODES[Unauthorized]
    assert "SEGMIND_API_KEY" in err
    assert "x-api-key header" in err
    assert "env-secret-7" not in err + out


def test_failures_and_unknown_ids_have_their_exit_codes(fake_cli: tuple[Fake, Cli]) -> None:
    _, cli = fake_cli
    code, _, err = cli("status", "0" * 32, *base())
    assert code == EXIT_CODES[NotFound]
    assert "not found" in err


def test_a_failed_generation(fake_cli: tuple[Fake, Cli]) -> None:
    fake, cli = fake_cli
    fake.script("poll", {"status": 200, "body": {"status": "FAILED", "error": "no face found"}})
    code, _, err = cli("generate", *base())
    assert code == EXIT_CODES[GenerationFailed]
    assert "no face found" in err


@pytest.mark.parametrize(("retries", "code", "tries"), [("0", 18, 1), ("1", 18, 2), ("2", 0, 3)])
def test_retries_sets_how_often_a_failed_exchange_is_tried_again(
    fake_cli: tuple[Fake, Cli], retries: str, code: int, tries: int
) -> None:
    fake, cli = fake_cli
    fake.script("credits", {"status": 502}, {"status": 502})  # then the real answer
    assert cli("credits", *base("--retries", retries))[0] == code
    assert len(fake.journal("credits")) == tries


def test_retries_must_be_a_whole_number(fake_cli: tuple[Fake, Cli]) -> None:
    fake, cli = fake_cli
    assert cli("credits", *base("--retries", "-1"))[0] == 2
    assert cli("credits", *base("--retries", "many"))[0] == 2
    assert fake.journal("credits") == []


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["generate", "--image", "not-a-url"], 3),
        (["generate", "--scene", ""], 3),
        (["generate", *["--scene", "x"] * 5], 3),
        (["frobnicate"], 2),
        ([], 2),
    ],
)
def test_usage_and_input_errors_send_nothing(
    fake_cli: tuple[Fake, Cli], argv: list[str], code: int
) -> None:
    fake, cli = fake_cli
    full = [*argv, *base()] if argv else []
    assert cli(*full)[0] == code
    assert fake.journal("submit") == []


def test_no_key_at_all_is_a_configuration_error(fake_cli: tuple[Fake, Cli]) -> None:
    _, cli = fake_cli
    code, _, err = cli("credits", "--base-url", FAKE_URL)
    assert code == 4
    assert "SEGMIND_API_KEY" in err


def run_module(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "client", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def test_the_module_runs_end_to_end_against_a_real_fake_process(
    fake_process: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    # Runs of a few milliseconds: done by the CLI's first or second poll, so the test never
    # waits through a job (the CLI is a separate process; it cannot share a virtual clock).
    server = fake_process("--api-key", "proc-key", "--time-scale", "0.00001")
    common = ["--base-url", server.url, "--api-key", "proc-key"]
    done = run_module(
        "generate", *common, "--poll-interval", "0.05", "--out", str(tmp_path), "--json"
    )
    assert done.returncode == 0, done.stderr
    document: dict[str, Any] = json.loads(done.stdout)
    assert sorted(document["files"]) == ["scene_1", "scene_2", "scene_3", "scene_4"]
    assert (tmp_path / "scene_4.mp4").stat().st_size > 100
    bad = run_module("credits", "--base-url", server.url, "--api-key", "wrong")
    assert bad.returncode == 12
    assert "wrong" not in bad.stderr.replace("--api-key", "")


def test_the_module_reports_a_refused_connection() -> None:
    from tests.servers import refused_port

    # --retries 0: the default four retries with backoff would only add seconds here.
    with refused_port() as port:
        url = f"http://127.0.0.1:{port}"
        done = run_module("credits", "--base-url", url, "--api-key", "k", "--retries", "0")
    assert done.returncode == 24
    assert "could not connect" in done.stderr


def test_the_live_display_shows_state_elapsed_and_time_per_state() -> None:
    from rich.console import Console

    from client._models import JobState, JobStatus, Progress
    from client._progress import ProgressDisplay

    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=100, color_system=None)
    status = JobStatus("job-1", JobState.PROCESSING, "PROCESSING")
    with ProgressDisplay(console, "job-1") as display:
        display.update(Progress(status, 301.0, 43, {"QUEUED": 21.0, "PROCESSING": 280.0}))
        display.update(Progress(status, 308.0, 43, {}, note="poll failed: 502; retry 1 in 1.0 s"))
    text = screen.getvalue()
    assert "job-1" in text
    assert "PROCESSING" in text
    assert "5:01 of ~11:13 expected" in text
    assert "QUEUED" in text
    assert "0:21" in text
    assert "retry 1 in 1.0 s" in text
