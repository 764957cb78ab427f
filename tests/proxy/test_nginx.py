"""`python -m proxy nginx-config`: a configuration nginx itself accepts, with the retry
policy that never sends a submit twice."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from proxy.cli.nginx import render


def test_the_retry_policy_never_passes_a_sent_submit_on() -> None:
    text = render("8080", ["10.0.0.1:8000", "10.0.0.2:8000"])
    assert "proxy_next_upstream error timeout;" in text
    assert "non_idempotent" not in text.replace("`non_idempotent`", "")
    assert "proxy_next_upstream_tries 2;" in text
    assert "add_header Retry-After 1 always;" in text
    assert "server 10.0.0.2:8000 max_fails=1 fail_timeout=2s;" in text


@pytest.mark.parametrize("bad", ["", "a b:1", "x;y", "h:1}"])
def test_an_address_nginx_would_misread_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="address"):
        render("8080", [bad])
    with pytest.raises(ValueError, match="replica"):
        render("8080", [])


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")
def test_nginx_accepts_the_configuration(tmp_path: Path) -> None:
    config = tmp_path / "nginx.conf"
    config.write_text(render("127.0.0.1:1", ["127.0.0.1:2"], str(tmp_path / "access.log")))
    settings = f"pid {tmp_path}/nginx.pid; error_log {tmp_path}/error.log;"
    done = subprocess.run(
        ["nginx", "-t", "-p", str(tmp_path), "-c", str(config), "-g", settings],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
