"""`make demo` as a user runs it: `python -m proxy demo` as a real process, starting its own
gateway, fake and webhook receiver. The fake runs 1000x faster than Segmind (~0.7 s), so a
run takes a few seconds of real time; the demo itself waits in real time, the test never
sleeps. Each demo runs in a process group of its own, stopped whole when its test ends
(`tests.processes`), so a failing test leaves no gateway or fake behind either."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.processes import alive, descendants, group_popen

# In the developer's shell this would be the company's key: the demo must neither use it
# (it runs against the fake) nor print it.
COMPANY_KEY = "company-segmind-key-must-not-leak-7c1e9b"
FAST = "0.001"


def demo_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "proxy", "demo", *args]


def demo_env() -> dict[str, str]:
    return {**os.environ, "SEGMIND_API_KEY": COMPANY_KEY, "PYTHONUNBUFFERED": "1"}


def test_the_demo_generates_four_videos_and_receives_a_verified_webhook(tmp_path: Path) -> None:
    out = tmp_path / "videos"
    with group_popen(
        demo_argv("--time-scale", FAST, "--out", str(out)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=demo_env(), cwd=tmp_path,
    ) as demo:  # fmt: skip
        stdout, stderr = demo.communicate(timeout=60)
    printed = stdout + stderr
    assert demo.returncode == 0, printed

    videos = sorted(out.glob("*.mp4"))
    assert [v.name for v in videos] == [f"scene_{n}.mp4" for n in range(1, 5)], printed
    for video in videos:
        head = video.read_bytes()[:8]
        assert head[4:8] == b"ftyp", f"{video.name} is not an MP4: {head!r}"
        assert str(video.resolve()) in stdout  # where each was saved is printed
    assert re.search(r"webhook job\.completed for \w+ arrived verified", stdout), printed
    assert "COMPLETED" in stdout
    assert COMPANY_KEY not in printed
    assert "fake-upstream-" not in printed  # the fake's own upstream key, made per run
    assert not list(tmp_path.glob("*.sqlite")), "the store belongs in a temporary directory"


def _sigint(handler: signal.Handlers) -> Callable[[], None]:
    """For `preexec_fn`: the demo starts with SIGINT set to `handler`, as a shell would
    start it (SIG_IGN for `demo &` in a script, SIG_DFL in the foreground)."""

    def set_it() -> None:
        signal.signal(signal.SIGINT, handler)

    return set_it


def _wait_for_the_job(demo: subprocess.Popen[str]) -> tuple[str, list[int]]:
    """Read the demo's output until it has submitted; its gateway URL and process tree.

    Real-time runs (~11 min, `--time-scale 1`): whatever the test does next lands while
    the job is still running.
    """
    assert demo.stdout is not None
    gateway = None
    for line in demo.stdout:  # bounded by pytest's timeout
        gateway = gateway or re.search(r"gateway on (http://\S+)", line)
        if line.startswith("submitted job"):
            break
    assert gateway is not None
    tree = descendants(demo.pid)
    commands = [_command(pid) for pid in tree]
    assert any("proxy serve" in c for c in commands), commands  # the gateway...
    assert any("-m fakeserver" in c for c in commands), commands  # ...and its fake
    return gateway[1], tree


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _left_running(tree: list[int]) -> list[str]:
    return [f"{pid}: {_command(pid)}" for pid in tree if alive(pid)]


def test_ctrl_c_stops_the_demo_and_its_gateway(tmp_path: Path) -> None:
    with group_popen(
        demo_argv("--time-scale", "1", "--out", str(tmp_path / "videos")),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=demo_env(), cwd=tmp_path,
        preexec_fn=_sigint(signal.SIG_DFL),  # however pytest itself was started
    ) as demo:  # fmt: skip
        gateway, tree = _wait_for_the_job(demo)
        os.killpg(demo.pid, signal.SIGINT)  # what Ctrl-C at a terminal does: the whole group
        out, err = demo.communicate(timeout=30)
    assert demo.returncode == 130, out + err
    assert "interrupted (SIGINT)" in err
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{gateway}/healthz", timeout=5)
    assert not (tmp_path / "videos").exists()
    assert _left_running(tree) == []


def test_sigterm_stops_a_demo_started_with_sigint_ignored(tmp_path: Path) -> None:
    # `python -m proxy demo &` from a script: SIGINT is ignored and stays so; `kill PID`
    # (SIGTERM, to the demo alone) still stops the demo, its gateway and the fake.
    with group_popen(
        demo_argv("--time-scale", "1", "--out", str(tmp_path / "videos")),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=demo_env(), cwd=tmp_path,
        preexec_fn=_sigint(signal.SIG_IGN),
    ) as demo:  # fmt: skip
        gateway, tree = _wait_for_the_job(demo)
        demo.send_signal(signal.SIGTERM)
        out, err = demo.communicate(timeout=30)
    assert demo.returncode == 128 + signal.SIGTERM, out + err
    assert "interrupted (SIGTERM): stopping the gateway and the fake" in err
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{gateway}/healthz", timeout=5)
    assert _left_running(tree) == []


def test_killing_the_demos_process_group_leaves_no_gateway_or_fake(tmp_path: Path) -> None:
    # What a test runner or CI does to a job it gives up on: SIGKILL to its process group,
    # no clean-up possible. The gateway and the fake are in the demo's group, so they go too.
    tree: list[int] = []
    try:
        with group_popen(
            demo_argv("--time-scale", "1", "--out", str(tmp_path / "videos")),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=demo_env(), cwd=tmp_path,
        ) as demo:  # fmt: skip
            _, tree = _wait_for_the_job(demo)
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait(30)
            # A killed process is gone once the kernel has torn it down, not at once.
            for pid in tree:
                _wait_gone(pid)
        assert _left_running(tree) == []
    finally:
        for pid in tree:  # were the assertion above to fail: still leave nothing running
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def _wait_gone(pid: int, seconds: float = 10.0) -> None:
    """Wait on the kernel tearing a killed process down (/proc), not on a job."""
    deadline = time.monotonic() + seconds
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
