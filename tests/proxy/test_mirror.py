"""Mirroring against a real asset host on loopback that misbehaves (tests/hostile_assets.py):
a good file is kept whole and checked; an endless body, a web page, a 20 GB declared size, a
trickle, and redirects inside or elsewhere are each refused with a reason, without memory or
disk going past one file's limit, and nothing partial is kept."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from fakeserver.outputs import ASSETS
from proxy.core.clock import VirtualClock
from proxy.core.config import ProxySettings
from proxy.objects.folder import FolderStore
from proxy.services.mirror import RETRY_PAUSE, Mirror, MirrorReport

pytestmark = pytest.mark.anyio

LIMIT = 5_000_000


def document(*urls: str, kind: str = "video") -> str:
    return json.dumps(
        [
            {"keyname": f"Scene_{n}_Video", "value": {"data": url, "type": kind}}
            for n, url in enumerate(urls, start=1)
        ]
    )


def mirror_for(tmp_path: Path, clock: VirtualClock, **overrides: Any) -> Mirror:
    settings = ProxySettings(
        db=str(tmp_path / "g.sqlite"),
        output_allow_hosts=["127.0.0.1", "169.254.169.254"],
        output_allow_networks=["127.0.0.0/8"],
        output_max_bytes=LIMIT,
        **overrides,
    )
    return Mirror(settings, clock, FolderStore(tmp_path / "outputs"))


def kept_files(tmp_path: Path) -> list[Path]:
    return [p for p in (tmp_path / "outputs").rglob("*") if p.is_file()]


async def until(condition: Any) -> None:
    # Waiting for the copy to reach a point (real bytes over loopback), not for a job.
    for _ in range(400):
        if condition():
            return
        await asyncio.sleep(0.025)
    raise AssertionError("the copy never got there")


async def test_good_files_are_kept_whole_checked_and_once(tmp_path: Path, asset_host: str) -> None:
    clock = VirtualClock()
    mirror = mirror_for(tmp_path, clock)
    urls = [f"{asset_host}/good/{n}.mp4" for n in (1, 2, 3, 4)] + [f"{asset_host}/good/1.mp4"]
    report = await mirror.keep(document(*urls))
    await mirror.aclose()
    assert report.complete, report.problem
    originals = [(ASSETS / f"scene_{n}.mp4").read_bytes() for n in (1, 2, 3, 4, 1)]
    assert [k.sha256 for k in report.kept] == [hashlib.sha256(o).hexdigest() for o in originals]
    assert [k.size for k in report.kept] == [len(o) for o in originals]
    assert {k.content_type for k in report.kept} == {"video/mp4"}
    assert [k.source for k in report.kept] == urls
    # Five outputs, four distinct contents: four files, each whole.
    files = kept_files(tmp_path)
    assert sorted(hashlib.sha256(f.read_bytes()).hexdigest() for f in files) == sorted(
        {k.sha256 for k in report.kept}
    )


async def refused(tmp_path: Path, url: str, kind: str = "video") -> MirrorReport:
    mirror = mirror_for(tmp_path, VirtualClock())
    report = await mirror.keep(document(url, kind=kind))
    await mirror.aclose()
    assert not report.complete
    assert report.kept == []
    assert kept_files(tmp_path) == []  # nothing partial left behind either
    assert report.problem is not None
    assert report.problem.startswith("the gateway could not keep a copy of Scene_1_Video: ")
    return report


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/endless.mp4", f"it is over output_max_bytes ({LIMIT:,} bytes)"),
        ("/page.mp4", "it is not a video as declared (text/html, no known video or image"),
        ("/huge.mp4", f"it is 20,000,000,000 bytes, over output_max_bytes ({LIMIT:,})"),
        ("/inside.mp4", "led to 169.254.169.254 (by a redirect or a changed DNS answer)"),
        ("/elsewhere.mp4", "leads to host storage.elsewhere.test, which is not in output_allow"),
        ("/nothing-here.mp4", "answered HTTP 404, not the file"),
    ],
)
async def test_a_hostile_or_broken_file_is_refused_saying_why(
    tmp_path: Path, asset_host: str, path: str, reason: str
) -> None:
    report = await refused(tmp_path, f"{asset_host}{path}")
    assert reason in (report.problem or "")


async def test_a_video_where_an_image_was_declared_is_refused(
    tmp_path: Path, asset_host: str
) -> None:
    report = await refused(tmp_path, f"{asset_host}/good/1.mp4", kind="image")
    assert "not a image as declared" in (report.problem or "")


async def test_a_host_off_the_allowlist_is_never_fetched(tmp_path: Path, asset_host: str) -> None:
    mirror = mirror_for(tmp_path, VirtualClock())
    mirror.settings = mirror.settings.model_copy(update={"output_allow_hosts": ["segmind.com"]})
    report = await mirror.keep(document(f"{asset_host}/good/1.mp4"))
    await mirror.aclose()
    assert "leads to host 127.0.0.1, which is not in output_allow_hosts" in (report.problem or "")


async def test_an_internal_address_is_refused_before_any_connection(tmp_path: Path) -> None:
    report = await refused(tmp_path, "http://10.0.0.8/video.mp4")
    assert "10.0.0.8" in (report.problem or "")


async def test_a_trickle_is_cut_at_the_files_deadline(tmp_path: Path, asset_host: str) -> None:
    clock = VirtualClock()
    mirror = mirror_for(tmp_path, clock, mirror_file_timeout=60.0)
    task = asyncio.ensure_future(mirror.keep(document(f"{asset_host}/trickle.mp4")))
    await until(lambda: clock.sleepers >= 1)
    await asyncio.sleep(0.3)  # a few drips arrive
    clock.advance(60.0)
    report = await task
    await mirror.aclose()
    assert "did not arrive whole within 60 s (mirror_file_timeout)" in (report.problem or "")
    assert kept_files(tmp_path) == []


async def test_a_passing_failure_is_tried_again(tmp_path: Path, asset_host: str) -> None:
    clock = VirtualClock()
    mirror = mirror_for(tmp_path, clock, mirror_attempts=2)
    task = asyncio.ensure_future(mirror.keep(document(f"{asset_host}/flaky/2.mp4")))
    # The first try got a 503: the copy pauses before the second (the file's deadline,
    # the only other sleeper, is minutes away).
    await until(lambda: clock.next_deadline == clock.now() + RETRY_PAUSE)
    clock.advance(RETRY_PAUSE)
    report = await task
    await mirror.aclose()
    assert report.complete, report.problem
    assert report.kept[0].size == len((ASSETS / "scene_2.mp4").read_bytes())


async def test_an_endless_body_costs_at_most_one_limit_of_memory(
    tmp_path: Path, asset_host: str
) -> None:
    import tracemalloc

    tracemalloc.start()
    try:
        await refused(tmp_path, f"{asset_host}/endless.mp4")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The copy streams: what Python holds at once is a few chunks, far from the 5 MB read.
    assert peak < LIMIT / 2
