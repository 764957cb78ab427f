"""`make demo` as a user runs it: `python -m proxy demo` as a real process, starting its own
gateway, fake and webhook receiver. The fake runs 1000x faster than Segmind (~0.7 s), so a
run takes a few seconds of real time; the demo itself waits in real time, the test never
sleeps."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

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
    done = subprocess.run(
        demo_argv("--time-scale", FAST, "--out", str(out)),
        capture_output=True, text=True, timeout=60, env=demo_env(), cwd=tmp_path,
    )  # fmt: skip
    printed = done.stdout + done.stderr
    assert done.returncode == 0, printed

    videos = sorted(out.glob("*.mp4"))
    assert [v.name for v in videos] == [f"scene_{n}.mp4" for n in range(1, 5)], printed
    for video in videos:
        head = video.read_bytes()[:8]
        assert head[4:8] == b"ftyp", f"{video.name} is not an MP4: {head!r}"
        assert str(video.resolve()) in done.stdout  # where each was saved is printed
    assert re.search(r"webhook job\.completed for \w+ arrived verified", done.stdout), printed
    assert "COMPLETED" in done.stdout
    assert COMPANY_KEY not in printed
    assert "fake-upstream-" not in printed  # the fake's own upstream key, made per run
    assert not list(tmp_path.glob("*.sqlite")), "the store belongs in a temporary directory"


def test_ctrl_c_stops_the_demo_and_its_gateway(tmp_path: Path) -> None:
    # Real-time runs (~11 min): the interrupt lands while the job is still running.
    demo = subprocess.Popen(
        demo_argv("--time-scale", "1", "--out", str(tmp_path / "videos")),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=demo_env(), cwd=tmp_path,
    )  # fmt: skip
    try:
        assert demo.stdout is not None
        gateway = None
        for line in demo.stdout:  # bounded by pytest's timeout
            gateway = gateway or re.search(r"gateway on (http://\S+)", line)
            if line.startswith("submitted job"):
                break
        assert gateway is not None
        demo.send_signal(signal.SIGINT)
        out, err = demo.communicate(timeout=30)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    assert demo.returncode == 130, out + err
    assert "interrupted" in err
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{gateway[1]}/healthz", timeout=5)
    assert not (tmp_path / "videos").exists()
