"""The client against the fake Segmind in-process, on the fake's virtual clock."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from client import (
    AsyncClient,
    BadGateway,
    Client,
    ConnectError,
    Credits,
    GenerationFailed,
    InsufficientCredits,
    NotFound,
    Progress,
    RateLimited,
    RetryPolicy,
    TransportError,
    Unauthorized,
    WaitTimeout,
)
from client._models import DEFAULT_SCENES
from tests.client.doubles import TopRNG
from tests.client.fake_upstream import (
    FAKE_KEY,
    FAKE_URL,
    AsyncVirtualTime,
    Fake,
    SyncASGITransport,
    VirtualTime,
    running_fake,
)
from tests.faulting import FaultingASGITransport

MakeFakeClient = Callable[..., Client]


@pytest.fixture
def fake_env() -> Iterator[tuple[Fake, MakeFakeClient]]:
    with running_fake() as (fake, portal):
        made: list[Client] = []

        def make(**kwargs: Any) -> Client:
            kwargs.setdefault("api_key", FAKE_KEY)
            kwargs.setdefault("base_url", FAKE_URL)
            kwargs.setdefault("rng", TopRNG())
            client = Client(
                transport=SyncASGITransport(fake.app, portal),
                clock=VirtualTime(fake.clock),
                **kwargs,
            )
            made.append(client)
            return client

        yield fake, make
        for c in made:
            c.close()


@pytest.fixture
def fake(fake_env: tuple[Fake, MakeFakeClient]) -> Fake:
    return fake_env[0]


@pytest.fixture
def make(fake_env: tuple[Fake, MakeFakeClient]) -> MakeFakeClient:
    return fake_env[1]


def test_a_full_run_of_eleven_virtual_minutes(
    fake: Fake, make: MakeFakeClient, tmp_path: Path
) -> None:
    client = make()
    start = fake.clock.now()
    updates: list[Progress] = []
    result = client.run(on_update=updates.append)
    took = fake.clock.now() - start
    assert 300 <= took <= 1800
    assert sorted(result.videos) == [1, 2, 3, 4]
    assert all(url.startswith(f"{FAKE_URL}/assets/") for url in result.videos.values())
    seen = [u.status.status for u in updates if u.status]
    assert seen[-1] == "COMPLETED"
    assert "PROCESSING" in seen
    submits = fake.journal("submit")
    assert len(submits) == 1
    assert submits[0]["body"] == {
        "Character_Image": submits[0]["body"]["Character_Image"],
        **{f"Scene_{i}": s for i, s in enumerate(DEFAULT_SCENES, 1)},
    }
    polls = fake.journal("poll")
    assert len(polls) == len(updates)
    gaps = [b["at"] - a["at"] for a, b in itertools.pairwise(polls)]
    assert all(gap == 7.0 for gap in gaps)

    saved = client.download(result, tmp_path)
    assert sorted(p.name for p in saved.values()) == [f"scene_{i}.mp4" for i in range(1, 5)]
    assert all(p.stat().st_size > 100 for p in saved.values())
    assert saved["scene_1"].read_bytes()[4:8] == b"ftyp"


def test_bearer_auth_works_too(make: MakeFakeClient) -> None:
    client = make(auth="bearer", headers={"Prefer": "polls=1"})
    assert sorted(client.run().videos) == [1, 2, 3, 4]


@pytest.mark.parametrize("key", ["error_message", "error"])
def test_failed_runs_raise_generation_failed(key: str) -> None:
    with running_fake(failure_key=key) as (fake, portal):
        client = Client(
            FAKE_KEY,
            base_url=FAKE_URL,
            transport=SyncASGITransport(fake.app, portal),
            clock=VirtualTime(fake.clock),
            headers={"Prefer": "outcome=failed, polls=1"},
        )
        with client, pytest.raises(GenerationFailed) as caught:
            client.run()
        assert caught.value.reason
        assert caught.value.request_id


def test_a_never_ending_job_times_out_on_virtual_time(fake: Fake, make: MakeFakeClient) -> None:
    client = make(headers={"Prefer": "outcome=never"})
    handle = client.submit()
    with pytest.raises(WaitTimeout) as caught:
        client.wait(handle, timeout=120.0)
    assert caught.value.request_id == handle.request_id
    assert len(fake.journal("poll")) == 19  # at 0, 7, ... 119 and the deadline


def test_unknown_statuses_from_the_fake_are_reported(make: MakeFakeClient) -> None:
    client = make(headers={"Prefer": "status=WARMING_UP, polls=2"})
    seen: list[str] = []
    result = client.run(on_update=lambda p: seen.append(p.status.status) if p.status else None)
    assert "WARMING_UP" in seen
    assert len(result.videos) == 4


def test_expired_results_are_not_found(fake: Fake, make: MakeFakeClient) -> None:
    client = make()
    handle = client.submit()
    fake.clock.advance(3601)
    with pytest.raises(NotFound) as caught:
        client.status(handle)
    assert caught.value.request_id == handle.request_id


def test_a_wrong_key_is_unauthorized_and_says_where_it_came_from(
    make: MakeFakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEGMIND_API_KEY", "wrong-key-123")
    client = make(api_key=None)
    with pytest.raises(Unauthorized) as caught:
        client.submit()
    assert "x-api-key header" in str(caught.value)
    assert "SEGMIND_API_KEY" in str(caught.value)
    assert "wrong-key-123" not in str(caught.value)


def test_no_credits_is_406(fake: Fake, make: MakeFakeClient) -> None:
    fake.set_credits("key-1", 1.0)
    client = make()
    with pytest.raises(InsufficientCredits):
        client.submit()
    assert client.credits() == Credits(1.0, 0.0)


def test_a_502_on_submit_is_not_resent(fake: Fake, make: MakeFakeClient) -> None:
    fake.script("submit", {"code": 502})
    with pytest.raises(BadGateway):
        make().submit()
    assert len(fake.journal("submit")) == 1


def test_a_reset_after_the_job_started_is_not_resent(fake: Fake, make: MakeFakeClient) -> None:
    fake.script("submit", {"fault": "reset", "after": True})
    with pytest.raises(TransportError) as caught:
        make().submit()
    assert not isinstance(caught.value, ConnectError)
    assert len(fake.journal("submit")) == 1


def test_a_429_on_submit_is_retried_after_retry_after(fake: Fake, make: MakeFakeClient) -> None:
    fake.script("submit", {"code": 429, "headers": {"Retry-After": "30"}})
    start = fake.clock.now()
    make().submit()
    assert [e["status"] for e in fake.journal("submit")] == [429, 200]
    assert fake.clock.now() - start == 30.0


def test_polls_ride_out_faults_and_5xx(fake: Fake, make: MakeFakeClient) -> None:
    client = make(headers={"Prefer": "polls=1"})
    handle = client.submit()
    fake.script("poll", {"code": 502}, {"fault": "reset"}, {"fault": "garbage"}, {"code": 500})
    result = client.wait(handle)
    assert len(result.videos) == 4
    assert [e["status"] for e in fake.journal("poll")][:1] == [502]


def test_the_free_plan_rate_limit_is_waited_out_on_virtual_time() -> None:
    with running_fake(plan="free") as (fake, portal):
        client = Client(
            FAKE_KEY,
            base_url=FAKE_URL,
            transport=SyncASGITransport(fake.app, portal),
            clock=VirtualTime(fake.clock),
            rng=TopRNG(),
        )
        with client:
            for _ in range(6):
                client.submit()
        statuses = [e["status"] for e in fake.journal("submit")]
        assert statuses[:5] == [200] * 5
        assert statuses[5] == 429
        assert statuses[-1] == 200
        assert statuses.count(200) == 6
        assert fake.clock.now() > fake.journal("submit")[5]["at"]


def test_a_rate_limit_beyond_the_retry_budget_is_raised(fake: Fake, make: MakeFakeClient) -> None:
    fake.script("submit", *[{"code": 429, "headers": {"Retry-After": "1"}}] * 3)
    client = make(retry=RetryPolicy(max_attempts=3))
    with pytest.raises(RateLimited) as caught:
        client.submit()
    assert caught.value.retry_after == 1.0
    assert len(fake.journal("submit")) == 3


@pytest.mark.anyio
async def test_the_async_client_runs_the_same_flow(tmp_path: Path) -> None:
    with running_fake() as (fake, _portal):
        async with AsyncClient(
            FAKE_KEY,
            base_url=FAKE_URL,
            transport=FaultingASGITransport(app=fake.app),
            clock=AsyncVirtualTime(fake.clock),
            rng=TopRNG(),
        ) as client:
            seen: list[str] = []

            async def on_update(progress: Progress) -> None:
                if progress.status:
                    seen.append(progress.status.status)

            result = await client.run({"Scene_1": "A diver in a kelp forest"}, on_update=on_update)
            saved = await client.download(result, tmp_path)
            credits = await client.credits()
        submitted = fake.journal("submit")[0]["body"]
    assert submitted["Scene_1"] == "A diver in a kelp forest"
    assert seen[-1] == "COMPLETED"
    assert sorted(saved) == ["scene_1", "scene_2", "scene_3", "scene_4"]
    assert credits.credits == pytest.approx(1000 - 3.9674)
