"""The output service's upkeep on a real store (SQLite file), a real folder and a real asset
host on loopback: a failed copy is tried again and then answers with the gateway's URLs and
a lasting cache entry; retention deletes the bytes with the records; `admin outputs` says
what is kept."""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import anyio
import pytest

from proxy.core.clock import VirtualClock
from proxy.core.config import ProxySettings, TeamLimits
from proxy.db import Team
from proxy.objects.folder import FolderStore
from proxy.rules import AdmissionRequest, Fence
from proxy.services.outputs import RETRY_EVERY, OutputService
from proxy.store import Store, open_store

pytestmark = pytest.mark.anyio

DAY = 86400.0


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = open_store(str(tmp_path / "g.sqlite"))
    yield opened
    opened.close()


async def service(tmp_path: Path, store: Store, clock: VirtualClock) -> OutputService:
    settings = ProxySettings(
        db=str(tmp_path / "g.sqlite"),
        output_allow_hosts=["127.0.0.1"],
        output_allow_networks=["127.0.0.0/8"],
        mirror_attempts=1,
    )
    made = OutputService(settings, clock, store, FolderStore(tmp_path / "outputs"))
    await made.load_key()  # not start(): the tests run the upkeep themselves
    return made


async def completed_run(
    store: Store, clock: VirtualClock, output: str, outputs: OutputService
) -> tuple[str, AdmissionRequest]:
    """A run admitted, sent and completed through the rules, as the poller would; its
    copy made by `outputs`. Returns the run and the request that made it."""
    team = await store.create_team(
        Team(uuid.uuid4().hex, f"t-{uuid.uuid4().hex[:6]}", clock.now(), TeamLimits())
    )
    scope = uuid.uuid4().hex
    ask = AdmissionRequest(
        team=team, request_id=uuid.uuid4().hex, generation_id=uuid.uuid4().hex,
        scope_key=scope, workflow_id="w", inputs={}, price=1.0, instance="a",
    )  # fmt: skip
    admitted = await store.admit(ask, clock.now())
    fence = Fence("a", admitted.token or 0)
    await store.mark_submitted(admitted.generation.id, "up", clock.now(), clock.now(), fence)
    kept, note = await outputs.copy(output)
    await store.record_status(
        admitted.generation.id, "COMPLETED", clock.now(), fence=fence, output=output,
        terminal=True, cache_ttl=outputs.cache_ttl(kept), kept=kept, mirror_note=note,
        mirror_retry_at=outputs.retry_at(clock.now(), note),
    )  # fmt: skip
    return admitted.generation.id, ask


def document(url: str) -> str:
    return json.dumps([{"keyname": "Scene_1_Video", "value": {"data": url, "type": "video"}}])


async def test_a_failed_copy_is_tried_again_and_then_lasts(
    tmp_path: Path, store: Store, asset_host: str
) -> None:
    clock = VirtualClock()
    outputs = await service(tmp_path, store, clock)
    # The host answers 503 the first time: with one attempt, the copy fails.
    run, ask = await completed_run(store, clock, document(f"{asset_host}/flaky/3.mp4"), outputs)
    state = await store.kept_outputs(run)
    assert state is not None
    assert state.kept == []
    assert "HTTP 503" in (state.note or "")
    assert await outputs.retry_due() == 0  # not due yet
    clock.advance(RETRY_EVERY)
    assert await outputs.retry_due() == 1
    state = await store.kept_outputs(run)
    assert state is not None
    assert len(state.kept) == 1
    output, extra = outputs.render("team", document(f"{asset_host}/flaky/3.mp4"), state)
    assert extra == {"outputs_kept": True}
    assert "/v1/outputs/team/" in (output or "")
    assert (await store.outputs_summary()).failures == 0
    # Its cache entry now lasts as long as the copy is kept (30 days), not cache_ttl.
    clock.advance(20 * DAY)
    again = replace(ask, request_id=uuid.uuid4().hex, generation_id=uuid.uuid4().hex)
    assert (await store.admit(again, clock.now())).request.cache_status == "HIT"
    await outputs.aclose()


async def test_retention_deletes_the_bytes_with_the_records(
    tmp_path: Path, store: Store, asset_host: str
) -> None:
    clock = VirtualClock()
    outputs = await service(tmp_path, store, clock)
    await completed_run(store, clock, document(f"{asset_host}/good/2.mp4"), outputs)
    files = [p for p in (tmp_path / "outputs").rglob("*") if p.is_file()]
    assert len(files) == 1
    clock.advance(31 * DAY)
    assert await outputs.expire() == 1
    assert not files[0].exists()
    assert (await store.outputs_summary()).objects == 0
    await outputs.aclose()


async def test_admin_outputs_says_what_is_kept(
    tmp_path: Path, store: Store, asset_host: str
) -> None:
    clock = VirtualClock()
    outputs = await service(tmp_path, store, clock)
    await completed_run(store, clock, document(f"{asset_host}/good/1.mp4"), outputs)
    await completed_run(store, clock, document(f"{asset_host}/page.mp4"), outputs)
    await outputs.aclose()
    done = await anyio.run_process(
        [sys.executable, "-m", "proxy", "admin", "outputs", "--db", str(tmp_path / "g.sqlite"),
         "--json"],
        env={"PATH": "/usr/bin:/bin", "PROXY_OUTPUTS": "auto"},
    )  # fmt: skip
    out = json.loads(done.stdout)
    assert (out["objects"], out["mirror_failures"]) == (1, 1)
    assert out["bytes"] > 0
    assert out["outputs"] == str(tmp_path / "outputs")
