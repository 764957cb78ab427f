"""The fake's output files: they live `output_ttl` after their run completes (on the fake's
clock), answer `Range` as S3 does, and can be made a realistic size (`asset_bytes`)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from urllib.parse import urlsplit

from fakeserver.outputs import ASSETS
from tests.fakeserver.conftest import Fake

DAY = 86400.0


def completed_urls(fake: Fake) -> list[str]:
    job = fake.submit(Prefer="duration=600").json()
    fake.clock.advance(601)
    answer = fake.poll(job["request_id"]).json()
    assert answer["status"] == "COMPLETED"
    return [urlsplit(o["value"]["data"]).path for o in json.loads(answer["output"])]


def test_outputs_answer_404_once_their_time_is_up(make_fake: Callable[..., Fake]) -> None:
    fake = make_fake(output_ttl=7 * DAY)
    urls = completed_urls(fake)
    assert [fake.http.get(u).status_code for u in urls] == [200] * 4
    fake.clock.advance(7 * DAY - 2)
    assert fake.http.get(urls[0]).status_code == 200
    fake.clock.advance(2)
    gone = fake.http.get(urls[0])
    assert gone.status_code == 404
    assert "deleted: outputs are kept 604800 s" in gone.json()["error"]


def test_a_range_is_answered_206_with_exactly_those_bytes(fake: Fake) -> None:
    url = completed_urls(fake)[0]
    original = (ASSETS / "scene_1.mp4").read_bytes()
    part = fake.http.get(url, headers={"range": "bytes=0-99"})
    assert part.status_code == 206
    assert part.content == original[:100]
    assert part.headers["content-range"] == f"bytes 0-99/{len(original)}"
    assert fake.http.head(url).headers["content-length"] == str(len(original))


def test_asset_bytes_makes_outputs_of_that_size_that_differ_by_run(
    make_fake: Callable[..., Fake],
) -> None:
    fake = make_fake(asset_bytes=3_000_000, duration_min=1)
    first = fake.http.get(completed_urls(fake)[0]).content
    original = (ASSETS / "scene_1.mp4").read_bytes()
    assert len(first) == 3_000_000
    assert first.startswith(original)  # still a video to whatever checks its kind
    other = fake.submit({"Scene_1": "another scene"}, Prefer="duration=600").json()
    fake.clock.advance(601)
    output = json.loads(fake.poll(other["request_id"]).json()["output"])
    second = fake.http.get(urlsplit(output[0]["value"]["data"]).path).content
    assert len(second) == 3_000_000
    assert hashlib.sha256(second).digest() != hashlib.sha256(first).digest()
