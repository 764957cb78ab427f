"""A running gateway in front of a running fake, both real uvicorn processes on free
loopback ports and virtual clocks, with one team made over the admin API: what the
end-to-end and contract suites drive."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.servers import ServerProcess, start_server

UPSTREAM_KEY = "test-upstream-key-e2e-5d1c9a7b3f"
ADMIN_KEY = "test-admin-key-e2e-8e2f4a6c"
WORKFLOW = "68628fe34727e611dfa219b4-v4"


@dataclass
class Stack:
    fake: ServerProcess
    gateway: ServerProcess
    db: Path
    team_key: str

    def gateway_env(self) -> dict[str, str]:
        return gateway_env(self.fake.url)

    def journal(self, route: str) -> list[dict[str, object]]:
        entries: list[dict[str, object]] = httpx.get(
            f"{self.fake.url}/__admin/journal", params={"route": route}
        ).json()["entries"]
        return entries


class BothClocks:
    """A clock for `client.Client` whose sleep moves the fake's and the gateway's clocks;
    the gateway answers only once its poll loops have caught up."""

    def __init__(self, stack: Stack, local_address: str | None = None) -> None:
        """`local_address`: the loopback address to call from, for a test whose other
        requests present wrong admin keys (the gateway limits those per client)."""
        self.stack = stack
        self.http = httpx.Client(transport=httpx.HTTPTransport(local_address=local_address))

    def now(self) -> float:
        now: float = self.http.get(f"{self.stack.fake.url}/__admin/clock").json()["now"]
        return now

    def sleep(self, seconds: float) -> None:
        self.http.post(
            f"{self.stack.fake.url}/__admin/clock/advance", json={"seconds": seconds}
        ).raise_for_status()
        self.http.post(
            f"{self.stack.gateway.url}/admin/clock/advance",
            json={"seconds": seconds},
            headers={"x-admin-key": ADMIN_KEY},
        ).raise_for_status()

    def close(self) -> None:
        self.http.close()


def gateway_env(fake_url: str) -> dict[str, str]:
    # Test webhook receivers listen on loopback, which the gateway refuses by default. A
    # restarted test gateway gets a new port, so it keeps its instance id explicitly, as an
    # operator restarting one process would: it takes its runs back at once.
    return {
        "SEGMIND_API_KEY": UPSTREAM_KEY,
        "PROXY_ADMIN_KEY": ADMIN_KEY,
        "PROXY_WEBHOOK_ALLOW_NETWORKS": '["127.0.0.0/8"]',
        "PROXY_INSTANCE_ID": "e2e-gateway",
    }


def start_gateway(fake_url: str, db: Path, env: dict[str, str] | None = None) -> ServerProcess:
    """A gateway process on store `db`; `env` adds to (or overrides) `gateway_env`."""
    return start_server(
        "proxy", "--upstream-url", fake_url, "--db", str(db), "--clock", "virtual",
        env={**gateway_env(fake_url), **(env or {})},
    )  # fmt: skip


@contextlib.contextmanager
def running_stack(
    db: Path, team: str = "e2e", *fake_args: str, env: dict[str, str] | None = None
) -> Iterator[Stack]:
    """The fake (keyed with UPSTREAM_KEY, extra `fake_args`) and a gateway on store `db`
    (`env` adds to its environment)."""
    fake = start_server("fakeserver", "--api-key", UPSTREAM_KEY, "--clock", "virtual", *fake_args)
    try:
        gateway = start_gateway(fake.url, db, env)
    except BaseException:
        fake.stop()
        raise
    built = Stack(fake, gateway, db, "")
    try:
        made = httpx.post(
            f"{gateway.url}/admin/teams",
            json={"name": team},
            headers={"x-admin-key": ADMIN_KEY},
        )
        assert made.status_code == 201, made.text
        built.team_key = made.json()["api_key"]
        yield built
    finally:
        built.gateway.stop()
        fake.stop()
