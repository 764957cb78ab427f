from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

# Registered here so any test may ask for a fresh PostgreSQL database by name.
from tests.postgres import postgres_url as postgres_url
from tests.receiver import Receiver
from tests.servers import ServerProcess, start_server

# Test gateways (in process, and every process a test or a session fixture starts, which
# inherit this) run offline with the default image on Segmind's storage: its preflight
# fetch could never succeed. Preflight's own tests turn it on (tests/proxy/test_preflight.py).
os.environ["PROXY_IMAGE_PREFLIGHT"] = "false"
# Likewise kept outputs: each test that keeps them says where (tests/e2e/test_outputs.py);
# elsewhere a gateway makes no outputs/ folder beside its test store.
os.environ["PROXY_OUTPUTS"] = "none"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read the environment: no test may see the developer's keys or overrides."""
    for name in list(os.environ):
        if name.startswith(("FAKESERVER_", "PROXY_", "SEGMIND_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PROXY_IMAGE_PREFLIGHT", "false")  # as above, after the sweep
    monkeypatch.setenv("PROXY_OUTPUTS", "none")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def fake_process() -> Iterator[Callable[..., ServerProcess]]:
    """Start `python -m fakeserver` with the given flags; every process is stopped after."""
    started: list[ServerProcess] = []

    def start(*args: str) -> ServerProcess:
        server = start_server("fakeserver", *args)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def listening_receiver() -> Iterator[Receiver]:
    """A webhook receiver (`tests/receiver.py`) that listens from the start."""
    made = Receiver()
    made.start()
    yield made
    made.stop()
