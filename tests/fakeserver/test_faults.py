"""Every error on demand: Prefer tokens, scripted answers and seeded chaos (in-process)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from fakeserver import SimulatedNetworkFault
from fakeserver.errors import ERROR_CODES
from tests.fakeserver.conftest import Fake


@pytest.mark.parametrize("code", ERROR_CODES)
def test_prefer_code_answers_that_code_with_a_segmind_error_and_no_job(
    fake: Fake, code: int
) -> None:
    answer = fake.submit(Prefer=f"code={code}")
    assert answer.status_code == code
    assert set(answer.json()) == {"error"}
    assert answer.json()["error"]
    assert fake.state.jobs == {}
    assert fake.journal("submit")[-1]["fault"] == f"code={code}"


@pytest.mark.parametrize("code", ERROR_CODES)
def test_prefer_code_works_on_polls_too(fake: Fake, code: int) -> None:
    request_id = fake.submit().json()["request_id"]
    assert fake.poll(request_id, Prefer=f"code={code}").status_code == code
    assert fake.poll(request_id).status_code == 200


def test_forced_429_carries_retry_after(fake: Fake) -> None:
    assert fake.submit(Prefer="code=429").headers["retry-after"] == "1"


def test_bad_prefer_values_are_400_listing_the_valid_ones(fake: Fake) -> None:
    answer = fake.submit(Prefer="code=418")
    assert answer.status_code == 400
    assert "400, 401, 403, 404, 406, 429, 500, 502, 503, 504" in answer.json()["error"]
    assert "reset, empty" in fake.submit(Prefer="fault=explode").json()["error"]
    assert "completed, failed, never" in fake.submit(Prefer="outcome=maybe").json()["error"]
    assert fake.submit(Prefer="polls=0").status_code == 400
    assert fake.state.jobs == {}


def test_foreign_prefer_tokens_are_ignored(fake: Fake) -> None:
    assert fake.submit(Prefer="respond-async, return=minimal").status_code == 200


def test_after_serves_the_request_then_replaces_the_answer(fake: Fake) -> None:
    answer = fake.submit(Prefer="code=502; after")
    assert answer.status_code == 502
    assert len(fake.state.jobs) == 1  # the job exists and was charged: do not resubmit
    assert fake.http.get("/v1/get-user-credits").json()["credits"] < 1000


def test_scripted_answers_are_served_in_order_then_normal_service(fake: Fake) -> None:
    queued = fake.http.post(
        "/__admin/script",
        json={
            "route": "submit",
            "responses": [
                {"code": 502, "times": 2},
                {"code": 406, "message": "custom words"},
                {"status": 200, "body": {"status": "QUEUED", "request_id": "scripted"}},
            ],
        },
    )
    assert queued.json() == {"queued": 4, "pending": {"submit": 4}}
    codes = [fake.submit() for _ in range(5)]
    assert [a.status_code for a in codes] == [502, 502, 406, 200, 200]
    assert codes[2].json() == {"error": "custom words"}
    assert codes[3].json()["request_id"] == "scripted"
    assert len(fake.state.jobs) == 1
    assert fake.http.get("/__admin/script").json() == {"pending": {}}


def test_scripts_for_one_route_leave_the_others_alone(fake: Fake) -> None:
    fake.http.post("/__admin/script", json={"route": "poll", "responses": [{"code": 500}]})
    request_id = fake.submit().json()["request_id"]
    assert fake.poll(request_id).status_code == 500
    assert fake.poll(request_id).status_code == 200


def test_a_scripted_route_any_applies_to_the_next_api_request(fake: Fake) -> None:
    fake.http.post("/__admin/script", json={"route": "any", "responses": [{"code": 504}]})
    assert fake.http.get("/v1/get-user-credits").status_code == 504


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"route": "nowhere", "responses": [{"code": 500}]}, "route must be one of"),
        ({"route": "poll", "responses": []}, "script needs"),
        ({"route": "poll", "responses": [{"code": 99}]}, "HTTP status code"),
        ({"route": "poll", "responses": [{"fault": "fire"}]}, "fault must be one of"),
        ({"route": "poll", "responses": [{"colour": "red"}]}, "unknown fields"),
        ({"route": "poll", "responses": [{"code": 500, "times": 0}]}, "times must be"),
    ],
)
def test_bad_scripts_are_400_with_a_clear_error(
    fake: Fake, body: dict[str, object], message: str
) -> None:
    answer = fake.http.post("/__admin/script", json=body)
    assert answer.status_code == 400
    assert message in answer.json()["error"]


def test_chaos_is_seeded_and_reproducible(make_fake: Callable[..., Fake]) -> None:
    def codes() -> list[int]:
        fake = make_fake(chaos_error_rate=0.3, seed=11, plan="unlimited")
        return [fake.http.get("/v1/get-user-credits").status_code for _ in range(60)]

    first = codes()
    assert first == codes()
    # Every server error the gateway handles, 503 (an outage's answer) included.
    assert set(first) - {200} == {500, 502, 503, 504}
    assert 5 < sum(c != 200 for c in first) < 35


def test_chaos_can_be_changed_at_run_time(fake: Fake) -> None:
    assert fake.http.post("/__admin/chaos", json={"error_rate": 1.0}).status_code == 200
    assert fake.http.get("/v1/get-user-credits").status_code in (500, 502, 503, 504)
    bad = fake.http.post("/__admin/chaos", json={"error_rate": 2})
    assert bad.status_code == 400
    assert "between 0 and 1" in bad.json()["error"]
    fake.http.post("/__admin/chaos", json={})
    assert fake.http.get("/v1/get-user-credits").status_code == 200


def test_chaos_never_touches_admin_or_assets(make_fake: Callable[..., Fake]) -> None:
    fake = make_fake(chaos_error_rate=1.0)
    assert fake.http.get("/__admin/counts").status_code == 200


def test_malformed_json_fault_works_in_process(fake: Fake) -> None:
    answer = fake.submit(Prefer="fault=malformed")
    assert answer.status_code == 200
    with pytest.raises(ValueError, match="Unterminated string"):
        answer.json()


@pytest.mark.parametrize("fault", ["reset", "empty", "garbage"])
def test_socket_faults_in_process_raise_a_clear_error(fake: Fake, fault: str) -> None:
    with pytest.raises(SimulatedNetworkFault, match="run the fake under uvicorn"):
        fake.submit(Prefer=f"fault={fault}")


def test_a_small_delay_delays_the_answer(fake: Fake) -> None:
    answer = fake.submit(Prefer="delay=1")
    assert answer.status_code == 200
    assert fake.journal("submit")[-1]["fault"] == "delay"
