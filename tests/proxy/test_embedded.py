"""The fake started beside the gateway by `--with-fake` (`make run`)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from proxy.cli.embedded import start_fake


def test_the_embedded_fake_takes_its_key_by_environment_not_argv() -> None:
    fake = start_fake("127.0.0.1", ["--time-scale", "0.001"])
    try:
        cmdline = Path(f"/proc/{fake.process.pid}/cmdline")
        if not cmdline.exists():
            pytest.skip("no /proc on this system to read another process's argv from")
        assert fake.key not in cmdline.read_bytes().decode(errors="replace")  # ps shows argv
        accepted = httpx.post(
            f"{fake.url}/workflows/68628fe34727e611dfa219b4-v4",
            json={}, headers={"x-api-key": fake.key},
        )  # fmt: skip
        assert accepted.status_code == 200, accepted.text
        refused = httpx.post(
            f"{fake.url}/workflows/68628fe34727e611dfa219b4-v4",
            json={}, headers={"x-api-key": "fake-demo-key"},
        )  # fmt: skip
        assert refused.status_code == 401  # the demo key is off when a key is given
    finally:
        fake.stop()
