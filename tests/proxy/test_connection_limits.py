"""The connection cap is kept below what the process's file limit allows: a cap above it
would let client connections use up the descriptors the store and upstream calls need."""

from __future__ import annotations

import resource
import subprocess
import sys
from collections.abc import Iterator

import pytest

from proxy.core.config import ProxySettings
from proxy.edge.connections import FILE_RESERVE, connection_limits


@pytest.fixture
def file_limit() -> Iterator[tuple[int, int]]:
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    yield before
    resource.setrlimit(resource.RLIMIT_NOFILE, before)


def _settings(**values: object) -> ProxySettings:
    return ProxySettings(upstream_key="test-upstream-key-limits", **values)  # type: ignore[arg-type]


def test_the_soft_file_limit_is_raised_to_fit_the_cap(file_limit: tuple[int, int]) -> None:
    _, hard = file_limit
    settings = _settings(max_connections=600)
    wanted = 600 + FILE_RESERVE + settings.webhook_concurrency
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.skip(f"the hard file limit here ({hard}) is below {wanted}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    limits = connection_limits(settings)
    assert limits.max_connections == 600
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= wanted


def test_a_cap_the_hard_limit_cannot_hold_is_lowered() -> None:
    # Lowering the hard limit cannot be undone: in a process of its own.
    code = (
        "import resource\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (400, 400))\n"
        "from proxy.core.config import ProxySettings\n"
        "from proxy.edge.connections import connection_limits\n"
        "s = ProxySettings(upstream_key='test-upstream-key-limits', max_connections=1000)\n"
        "print(connection_limits(s).max_connections)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    reserve = FILE_RESERVE + _settings().webhook_concurrency
    assert int(done.stdout.split()[-1]) == 400 - reserve
    assert "max_connections lowered from 1000" in done.stderr + done.stdout


def test_settings_carry_the_deadlines_and_caps() -> None:
    settings = _settings(
        header_timeout=2.5, body_timeout=7, max_connections=50, max_connections_per_client=0
    )
    limits = connection_limits(settings)
    assert (limits.header_timeout, limits.body_timeout) == (2.5, 7)
    assert (limits.max_connections, limits.max_connections_per_client) == (50, None)
