"""The synchronous client against scripted answers (httpx.MockTransport); nothing sleeps."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from client import (
    STATUS_ERRORS,
    APIError,
    Client,
    ConnectError,
    Credits,
    GenerationFailed,
    InvalidInput,
    JobHandle,
    JobState,
    NotFound,
    Progress,
    RateLimited,
    RetryPolicy,
    TransportError,
    TransportTimeout,
    UnexpectedResponse,
    WaitTimeout,
)
from client._models import DEFAULT_CHARACTER_IMAGE, DEFAULT_SCENES
from tests.client.doubles import (
    API_KEY,
    BASE,
    JOB_ID,
    POLL_URL,
    FakeClock,
    Recorder,
    completed,
    completed_output,
    queued,
    reply,
)

MakeClient = Callable[..., tuple[Client, Recorder]]
WORKFLOW_URL = f"{BASE}/workflows/68628fe34727e611dfa219b4-v4"


def status(name: str, **extra: object) -> httpx.Response:
    return reply(200, {"status": name, "request_id": JOB_ID, **extra})


# -- submit ---------------------------------------------------------------------------


def test_submit_posts_the_defaults_with_auth_and_an_idempotency_key(
    make_client: MakeClient,
) -> None:
    client, recorder = make_client(queued())
    handle = client.submit()
    assert handle == JobHandle(JOB_ID, POLL_URL, "QUEUED", "queued")
    (request,) = recorder.requests
    assert request.method == "POST"
    assert str(request.url) == WORKFLOW_URL
    assert request.headers["x-api-key"] == API_KEY
    assert "authorization" not in request.headers
    assert json.loads(request.content) == {
        "Character_Image": DEFAULT_CHARACTER_IMAGE,
        **{f"Scene_{i}": text for i, text in enumerate(DEFAULT_SCENES, 1)},
    }
    assert len(request.headers["Idempotency-Key"]) == 36
    assert "X-Webhook-Url" not in request.headers


def test_bearer_auth_and_webhook_header(make_client: MakeClient) -> None:
    client, recorder = make_client(queued(), auth="bearer")
    client.submit({"Scene_2": "A fox in the snow"}, webhook_url="https://hooks.test/in")
    (request,) = recorder.requests
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert "x-api-key" not in request.headers
    assert request.headers["X-Webhook-Url"] == "https://hooks.test/in"
    assert json.loads(request.content)["Scene_2"] == "A fox in the snow"


def test_the_key_comes_from_the_environment(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEGMIND_API_KEY", "env-key-1")
    client, recorder = make_client(queued(), api_key=None)
    client.submit()
    assert recorder.requests[0].headers["x-api-key"] == "env-key-1"
    assert "environment variable SEGMIND_API_KEY" in repr(client)


@pytest.mark.parametrize(
    "inputs",
    [
        {"Character_Image": "ftp://example.com/a.jpg"},
        {"Character_Image": "not a url"},
        {"Scene_1": ""},
        {"Scene_3": "   "},
        {"Scene_4": "x" * 1001},
        {"Scene_5": "there is no fifth scene"},
        {"Scene_1": 7},
    ],
)
def test_invalid_inputs_raise_before_any_request(
    make_client: MakeClient, inputs: dict[str, object]
) -> None:
    client, recorder = make_client()
    with pytest.raises(InvalidInput):
        client.submit(inputs)
    assert recorder.requests == []


def test_raw_dicts_go_unvalidated_to_other_workflows(make_client: MakeClient) -> None:
    client, recorder = make_client(queued())
    client.submit({"prompt": "anything", "steps": 4}, workflow_id="other-workflow")
    (request,) = recorder.requests
    assert request.url.path == "/workflows/other-workflow"
    assert json.loads(request.content) == {"prompt": "anything", "steps": 4}


def test_a_relative_or_missing_poll_url_is_resolved(make_client: MakeClient) -> None:
    client, _ = make_client(
        reply(200, {"status": "QUEUED", "request_id": "abc", "poll_url": "/workflows/request/abc"}),
        reply(200, {"status": "QUEUED", "request_id": "def"}),
    )
    assert client.submit().poll_url == f"{BASE}/workflows/request/abc"
    assert client.submit().poll_url == f"{BASE}/workflows/request/def"


# -- submit retry rules: a paid job is never started twice ------------------------------


@pytest.mark.parametrize("code", [500, 502, 504])
def test_submit_is_never_resent_after_a_5xx(make_client: MakeClient, code: int) -> None:
    client, recorder = make_client(reply(code, {"error": "upstream trouble"}), queued())
    with pytest.raises(APIError) as caught:
        client.submit()
    assert type(caught.value) is STATUS_ERRORS[code]
    assert caught.value.status_code == code
    assert recorder.count("POST") == 1


@pytest.mark.parametrize(
    "exc", [httpx.ReadTimeout("slow"), httpx.ReadError("reset"), httpx.RemoteProtocolError("x")]
)
def test_submit_is_never_resent_after_the_request_may_have_left(
    make_client: MakeClient, exc: Exception
) -> None:
    client, recorder = make_client(exc, queued())
    with pytest.raises(TransportError) as caught:
        client.submit()
    assert not isinstance(caught.value, ConnectError)
    assert recorder.count("POST") == 1


def test_submit_is_retried_on_connect_error_with_the_same_idempotency_key(
    make_client: MakeClient, clock: FakeClock
) -> None:
    client, recorder = make_client(
        httpx.ConnectError("refused"), httpx.ConnectTimeout("slow"), queued()
    )
    assert client.submit().request_id == JOB_ID
    assert recorder.count("POST") == 3
    keys = {r.headers["Idempotency-Key"] for r in recorder.requests}
    assert len(keys) == 1
    assert clock.sleeps == [1.0, 2.0]  # top of full jitter: base 1 s, doubling


def test_submit_is_retried_on_429_honouring_retry_after(
    make_client: MakeClient, clock: FakeClock
) -> None:
    client, recorder = make_client(
        reply(429, {"error": "slow down"}, {"Retry-After": "20"}), queued()
    )
    client.submit()
    assert recorder.count("POST") == 2
    assert clock.sleeps == [20.0]


def test_submit_gives_up_after_max_attempts(make_client: MakeClient) -> None:
    client, recorder = make_client(
        *[httpx.ConnectError("refused")] * 3, retry=RetryPolicy(max_attempts=3)
    )
    with pytest.raises(ConnectError):
        client.submit()
    assert recorder.count("POST") == 3


def test_a_retry_after_beyond_the_ceiling_is_raised_not_slept(
    make_client: MakeClient, clock: FakeClock
) -> None:
    client, recorder = make_client(reply(429, {"error": "daily cap"}, {"Retry-After": "86400"}))
    with pytest.raises(RateLimited) as caught:
        client.submit()
    assert caught.value.retry_after == 86400
    assert clock.sleeps == []
    assert recorder.count("POST") == 1


# -- polling --------------------------------------------------------------------------


def test_status_polls_the_given_url_with_the_same_auth_even_on_another_host(
    make_client: MakeClient,
) -> None:
    other = "https://poll.elsewhere.test/jobs/xyz?sig=1"
    client, recorder = make_client(
        reply(200, {"status": "QUEUED", "request_id": "xyz", "poll_url": other}),
        status("PROCESSING", output=""),
        auth="bearer",
    )
    handle = client.submit()
    snapshot = client.status(handle)
    assert str(recorder.requests[1].url) == other
    assert recorder.requests[1].headers["Authorization"] == f"Bearer {API_KEY}"
    assert snapshot.state is JobState.PROCESSING


def test_status_accepts_an_id_or_a_poll_url(make_client: MakeClient) -> None:
    client, recorder = make_client(status("QUEUED"), status("QUEUED"))
    client.status(JOB_ID)
    client.status(POLL_URL)
    assert [str(r.url) for r in recorder.requests] == [POLL_URL, POLL_URL]
    with pytest.raises(InvalidInput):
        client.status("has a space")


@pytest.mark.parametrize("code", [429, 500, 502, 504])
def test_polls_are_retried_on_transient_codes(
    make_client: MakeClient, clock: FakeClock, code: int
) -> None:
    client, recorder = make_client(reply(code, {"error": "hiccup"}), status("QUEUED"))
    assert client.status(JOB_ID).state is JobState.QUEUED
    assert recorder.count("GET") == 2
    assert clock.sleeps == [1.0]


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
        httpx.ReadError("reset"),
        httpx.RemoteProtocolError("eof"),
    ],
)
def test_polls_are_retried_on_network_errors(make_client: MakeClient, exc: Exception) -> None:
    client, recorder = make_client(exc, status("PROCESSING", output=""))
    assert client.status(JOB_ID).state is JobState.PROCESSING
    assert recorder.count("GET") == 2


@pytest.mark.parametrize("body", [b"", b"<<garbage>>", b'{"no": "status"}'])
def test_polls_are_retried_on_unreadable_answers(make_client: MakeClient, body: bytes) -> None:
    client, recorder = make_client(reply(200, body), status("QUEUED"))
    assert client.status(JOB_ID).state is JobState.QUEUED
    assert recorder.count("GET") == 2


def test_poll_retries_give_up_with_the_last_error(make_client: MakeClient) -> None:
    client, recorder = make_client(
        *[httpx.ReadTimeout("slow")] * 4, retry=RetryPolicy(max_attempts=4)
    )
    with pytest.raises(TransportTimeout) as caught:
        client.status(JOB_ID)
    assert caught.value.request_id == JOB_ID
    assert recorder.count("GET") == 4


def test_a_404_poll_is_not_retried(make_client: MakeClient) -> None:
    client, recorder = make_client(reply(404, {"error": "request expired"}))
    with pytest.raises(NotFound):
        client.status(JOB_ID)
    assert recorder.count("GET") == 1


# -- waiting --------------------------------------------------------------------------


def test_wait_polls_every_interval_until_completed(
    make_client: MakeClient, clock: FakeClock
) -> None:
    client, recorder = make_client(
        status("QUEUED"),
        status("PROCESSING", output=""),
        status("PROCESSING", output=""),
        completed(),
    )
    updates: list[Progress] = []
    result = client.wait(JOB_ID, on_update=updates.append)
    assert recorder.count("GET") == 4
    assert clock.sleeps == [7.0, 7.0, 7.0]
    assert result.videos == {i: f"https://cdn.test/out/{i}.mp4" for i in range(1, 5)}
    assert result.video(3) == "https://cdn.test/out/3.mp4"
    assert [u.status.status for u in updates if u.status] == [
        "QUEUED",
        "PROCESSING",
        "PROCESSING",
        "COMPLETED",
    ]
    assert updates[-1].elapsed == 21.0
    assert updates[-1].state_seconds == {"QUEUED": 7.0, "PROCESSING": 14.0, "COMPLETED": 0.0}


@pytest.mark.parametrize("key", ["error_message", "error"])
def test_failed_reads_the_reason_from_either_key(make_client: MakeClient, key: str) -> None:
    client, _ = make_client(status("QUEUED"), status("FAILED", **{key: "GPU on fire"}))
    with pytest.raises(GenerationFailed) as caught:
        client.wait(JOB_ID)
    assert caught.value.reason == "GPU on fire"
    assert caught.value.request_id == JOB_ID
    assert "GPU on fire" in str(caught.value)


def test_failed_without_a_reason_still_fails_cleanly(make_client: MakeClient) -> None:
    client, _ = make_client(status("FAILED"))
    with pytest.raises(GenerationFailed, match="no reason"):
        client.wait(JOB_ID)


@pytest.mark.parametrize("odd", ["STARTING", "IN_QUEUE", "", "processing-ish"])
def test_unknown_statuses_are_reported_and_polling_goes_on(
    make_client: MakeClient, odd: str
) -> None:
    client, _ = make_client(status(odd), status("COMPLETED", output=completed_output()))
    seen: list[str] = []
    result = client.wait(
        JOB_ID, on_update=lambda p: seen.append(p.status.status if p.status else "")
    )
    assert seen == [odd, "COMPLETED"]
    assert len(result.videos) == 4


def test_a_non_string_status_is_reported_not_a_crash(make_client: MakeClient) -> None:
    client, _ = make_client(reply(200, {"status": 3}), completed())
    states: list[JobState] = []
    client.wait(JOB_ID, on_update=lambda p: states.append(p.status.state) if p.status else None)
    assert states == [JobState.OTHER, JobState.COMPLETED]


def test_lower_case_statuses_are_understood(make_client: MakeClient) -> None:
    client, _ = make_client(status("completed", output=completed_output(2)))
    assert client.wait(JOB_ID).videos.keys() == {1, 2}


def test_wait_times_out_on_the_injected_clock(make_client: MakeClient, clock: FakeClock) -> None:
    client, recorder = make_client(*[status("PROCESSING", output="")] * 5)
    with pytest.raises(WaitTimeout) as caught:
        client.wait(JOB_ID, poll_interval=7.0, timeout=20.0)
    assert clock.sleeps == [7.0, 7.0, 6.0]
    assert recorder.count("GET") == 4
    assert caught.value.last_status == "PROCESSING"
    assert caught.value.request_id == JOB_ID


def test_wait_survives_transient_poll_failures_and_reports_them(
    make_client: MakeClient, clock: FakeClock
) -> None:
    client, recorder = make_client(
        status("PROCESSING", output=""),
        reply(502, {"error": "bad gateway"}),
        httpx.ReadError("reset"),
        completed(),
    )
    notes: list[str] = []
    client.wait(JOB_ID, on_update=lambda p: notes.append(p.note) if p.note else None)
    assert recorder.count("GET") == 4
    assert clock.sleeps == [7.0, 1.0, 2.0]
    assert len(notes) == 2
    assert "retry 1" in notes[0]


def test_completed_with_an_unknown_output_shape_is_kept_raw(make_client: MakeClient) -> None:
    client, _ = make_client(status("COMPLETED", output='{"weird": [1, 2, {"x": null}]}'))
    result = client.wait(JOB_ID)
    assert result.videos == {}
    assert result.raw_output == {"weird": [1, 2, {"x": None}]}
    with pytest.raises(KeyError, match="no video for scene 1"):
        result.video(1)


def test_run_submits_then_waits(make_client: MakeClient) -> None:
    client, recorder = make_client(queued(), status("QUEUED"), completed())
    result = client.run({"Scene_1": "A sailor at dawn"})
    assert result.request_id == JOB_ID
    assert [r.method for r in recorder.requests] == ["POST", "GET", "GET"]


# -- credits and downloads ------------------------------------------------------------


def test_credits(make_client: MakeClient) -> None:
    client, recorder = make_client(reply(200, {"credits": 12.5, "free-credits": 0.25}))
    assert client.credits() == Credits(12.5, 0.25)
    assert recorder.requests[0].url.path == "/v1/get-user-credits"
    assert recorder.requests[0].headers["x-api-key"] == API_KEY


def test_credits_without_a_number_is_unexpected(make_client: MakeClient) -> None:
    client, _ = make_client(*[reply(200, {"credits": "lots"})] * 5)
    with pytest.raises(UnexpectedResponse):
        client.credits()


def test_download_streams_each_video_to_scene_files_without_the_key(
    make_client: MakeClient, tmp_path: Path
) -> None:
    def video(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=f"video from {request.url.path}".encode())

    client, recorder = make_client(completed(), *[video] * 4)
    result = client.wait(JOB_ID)
    saved = client.download(result, tmp_path / "out")
    assert sorted(saved) == ["scene_1", "scene_2", "scene_3", "scene_4"]
    assert saved["scene_2"] == tmp_path / "out" / "scene_2.mp4"
    assert saved["scene_2"].read_bytes() == b"video from /out/2.mp4"
    downloads = recorder.requests[1:]
    assert all("x-api-key" not in r.headers for r in downloads)
    assert not list((tmp_path / "out").glob("*.part"))


def test_download_sends_the_key_to_the_api_host_only(
    make_client: MakeClient, tmp_path: Path
) -> None:
    output = json.dumps(
        [{"keyname": "Video_1", "value": {"data": f"{BASE}/assets/a/scene_1.mp4", "type": "video"}}]
    )
    client, recorder = make_client(completed(output=output), reply(200, b"mp4"))
    client.download(client.wait(JOB_ID), tmp_path)
    assert recorder.requests[1].headers["x-api-key"] == API_KEY


def test_a_failed_download_raises_and_leaves_no_partial_file(
    make_client: MakeClient, tmp_path: Path
) -> None:
    client, _ = make_client(completed(output=completed_output(1)), reply(404, {"error": "gone"}))
    with pytest.raises(NotFound, match=r"download scene_1\.mp4"):
        client.download(client.wait(JOB_ID), tmp_path)
    assert list(tmp_path.iterdir()) == []
