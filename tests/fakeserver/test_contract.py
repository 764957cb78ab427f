"""The Segmind contract: bodies, states and codes, exactly as SEGMIND_API.md describes."""

from __future__ import annotations

import json
import re

import pytest

from fakeserver import CHARACTER_VIDEO
from tests.fakeserver.conftest import BASE, OTHER_KEY, Fake

DEFAULTS = {spec.name: spec.default for spec in CHARACTER_VIDEO.inputs}


def test_submit_answers_queued_with_a_followable_poll_url(fake: Fake) -> None:
    answer = fake.submit()
    assert answer.status_code == 200
    body = answer.json()
    assert set(body) == {"status", "request_id", "poll_url", "message"}
    assert body["status"] == "QUEUED"
    assert re.fullmatch(r"[0-9a-f]{32}", body["request_id"])
    assert body["poll_url"] == f"{BASE}/workflows/request/{body['request_id']}"
    assert fake.http.get(body["poll_url"]).status_code == 200


def test_a_job_goes_queued_processing_completed_on_the_clock(fake: Fake) -> None:
    request_id = fake.submit().json()["request_id"]
    plan = fake.state.jobs[request_id].plan
    assert fake.poll(request_id).json() == {"status": "QUEUED"}
    fake.clock.advance(plan.queued_for)
    assert fake.poll(request_id).json() == {"status": "PROCESSING", "output": ""}
    fake.clock.advance(plan.duration - plan.queued_for - 0.001)
    assert fake.poll(request_id).json()["status"] == "PROCESSING"
    fake.clock.advance(0.001)
    done = fake.poll(request_id).json()
    assert set(done) == {"status", "output"}
    assert done["status"] == "COMPLETED"
    outputs = json.loads(done["output"])
    assert [o["keyname"] for o in outputs] == list(CHARACTER_VIDEO.output_keys)
    assert all(o["value"]["type"] == "video" for o in outputs)
    assert [o["value"]["data"].rsplit("/", 1)[1] for o in outputs] == [
        f"scene_{n}.mp4" for n in (1, 2, 3, 4)
    ]


def test_output_videos_are_real_mp4_files_served_by_the_fake(fake: Fake) -> None:
    request_id = fake.submit(Prefer="duration=0").json()["request_id"]
    outputs = json.loads(fake.poll(request_id).json()["output"])
    sizes = set()
    for output in outputs:
        video = fake.http.get(output["value"]["data"])
        assert video.status_code == 200
        assert video.headers["content-type"] == "video/mp4"
        assert video.content[4:8] == b"ftyp"  # the MP4 file-type box
        sizes.add(len(video.content))
    assert len(sizes) == 4  # four different scenes, not one file four times


def test_empty_body_and_spelled_out_defaults_give_the_same_outputs(fake: Fake) -> None:
    def outputs(body: object, **headers: str) -> list[str]:
        request_id = fake.submit(body, Prefer="duration=0", **headers).json()["request_id"]
        return [o["value"]["data"] for o in json.loads(fake.poll(request_id).json()["output"])]

    reordered = dict(reversed(list(DEFAULTS.items())))
    assert outputs({}) == outputs(DEFAULTS) == outputs(reordered)
    assert outputs({"Scene_2": "A different scene"}) != outputs({})
    empty_body = fake.http.post(
        "/workflows/68628fe34727e611dfa219b4-v4", content=b"", headers={"Prefer": "duration=0"}
    )
    assert empty_body.status_code == 200


@pytest.mark.parametrize("failure_key", ["error_message", "error", "both"])
def test_failed_job_reports_its_reason_under_the_configured_key(
    make_fake: object, failure_key: str
) -> None:
    fake = make_fake(failure_key=failure_key)  # type: ignore[operator]
    request_id = fake.submit(Prefer="outcome=failed, duration=5").json()["request_id"]
    fake.clock.advance(5)
    body = fake.poll(request_id).json()
    assert body["status"] == "FAILED"
    keys = {"error_message", "error"} if failure_key == "both" else {failure_key}
    assert set(body) == {"status", *keys}
    assert all(body[k].startswith("Workflow execution failed") for k in keys)


def test_results_expire_an_hour_after_submission(fake: Fake) -> None:
    request_id = fake.submit(Prefer="duration=10").json()["request_id"]
    fake.clock.advance(3599.9)
    assert fake.poll(request_id).json()["status"] == "COMPLETED"
    fake.clock.advance(0.1)
    gone = fake.poll(request_id)
    assert gone.status_code == 404
    assert "expired" in gone.json()["error"]


def test_unknown_request_id_and_another_keys_job_are_both_404(fake: Fake) -> None:
    request_id = fake.submit().json()["request_id"]
    assert fake.poll("0" * 32).status_code == 404
    theirs = fake.poll(request_id, **{"x-api-key": OTHER_KEY})
    assert theirs.status_code == 404
    assert theirs.json() == fake.poll("f" * 32).json() | {"error": theirs.json()["error"]}
    assert request_id in theirs.json()["error"]


def test_unknown_workflow_is_404_and_costs_nothing(fake: Fake) -> None:
    before = fake.http.get("/v1/get-user-credits").json()
    answer = fake.http.post("/workflows/not-a-workflow", json={})
    assert answer.status_code == 404
    assert "not-a-workflow" in answer.json()["error"]
    assert fake.http.get("/v1/get-user-credits").json() == before
    assert fake.state.jobs == {}


def test_bearer_and_x_api_key_are_both_accepted(fake: Fake) -> None:
    bearer = fake.http.post(
        "/workflows/68628fe34727e611dfa219b4-v4",
        json={},
        headers={"x-api-key": "", "Authorization": f"Bearer {OTHER_KEY}"},
    )
    assert bearer.status_code == 200
    assert fake.journal("submit")[-1]["key"] == "key-2"


def test_credits_answer_the_balance_and_a_run_costs_the_price(fake: Fake) -> None:
    assert fake.http.get("/v1/get-user-credits").json() == {"credits": 1000.0, "free-credits": 0.0}
    fake.submit()
    assert fake.http.get("/v1/get-user-credits").json()["credits"] == pytest.approx(996.0326)


def test_output_key_names_are_configurable(make_fake: object) -> None:
    names = ["video_a", "video_b", "video_c", "video_d"]
    fake = make_fake(output_keys=names)  # type: ignore[operator]
    request_id = fake.submit(Prefer="duration=0").json()["request_id"]
    assert [o["keyname"] for o in json.loads(fake.poll(request_id).json()["output"])] == names


def test_unknown_paths_and_methods_answer_json_errors(fake: Fake) -> None:
    missing = fake.http.get("/nope")
    assert missing.status_code == 404
    assert "error" in missing.json()
    wrong_method = fake.http.get("/workflows/68628fe34727e611dfa219b4-v4")
    assert wrong_method.status_code == 405
    assert "GET" in wrong_method.json()["error"]
