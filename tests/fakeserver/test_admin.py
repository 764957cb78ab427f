"""The admin surface: journal, counts, clock, credits, reset and its guard."""

from __future__ import annotations

from collections.abc import Callable

from tests.fakeserver.conftest import KEY, OTHER_KEY, Fake


def test_journal_records_requests_by_key_label_never_the_key(fake: Fake) -> None:
    request_id = fake.submit({"Scene_1": "a cat"}).json()["request_id"]
    fake.poll(request_id, **{"x-api-key": OTHER_KEY})
    entries = fake.journal()
    assert [(e["route"], e["key"], e["status"]) for e in entries] == [
        ("submit", "key-1", 200),
        ("poll", "key-2", 404),
    ]
    assert entries[0]["body"] == {"Scene_1": "a cat"}
    assert entries[0]["method"] == "POST"
    everything = "".join(
        fake.http.get(path).text
        for path in ("/__admin/journal", "/__admin/counts", "/__admin/accounts")
    )
    assert KEY not in everything
    assert OTHER_KEY not in everything


def test_journal_filters_by_route_and_sequence(fake: Fake) -> None:
    fake.submit()
    fake.http.get("/v1/get-user-credits")
    fake.submit()
    submits = fake.journal("submit")
    assert len(submits) == 2
    later = fake.http.get("/__admin/journal", params={"since": submits[0]["seq"]}).json()
    assert [e["route"] for e in later["entries"]] == ["credits", "submit"]


def test_counts_per_route(fake: Fake) -> None:
    request_id = fake.submit().json()["request_id"]
    fake.poll(request_id)
    fake.poll(request_id)
    assert fake.http.get("/__admin/counts").json() == {"submit": 1, "poll": 2}


def test_clock_advance_moves_jobs(fake: Fake) -> None:
    request_id = fake.submit(Prefer="duration=100").json()["request_id"]
    start = fake.http.get("/__admin/clock").json()["now"]
    moved = fake.http.post("/__admin/clock/advance", json={"seconds": 100}).json()
    assert moved["now"] == start + 100
    assert fake.poll(request_id).json()["status"] == "COMPLETED"
    assert fake.http.post("/__admin/clock/advance", json={"seconds": -1}).status_code == 400


def test_set_credits_by_label(fake: Fake) -> None:
    assert fake.http.post("/__admin/credits", json={"key": "key-1", "credits": 1}).json() == {
        "key": "key-1",
        "credits": 1.0,
    }
    assert fake.submit().status_code == 406
    unknown = fake.http.post("/__admin/credits", json={"key": "key-9", "credits": 1})
    assert unknown.status_code == 400
    assert "key-1, key-2" in unknown.json()["error"]


def test_reset_forgets_jobs_journal_and_restores_credits(fake: Fake) -> None:
    request_id = fake.submit().json()["request_id"]
    fake.http.post("/__admin/script", json={"route": "poll", "responses": [{"code": 500}]})
    fake.http.post("/__admin/reset")
    assert fake.journal() == []
    assert fake.poll(request_id).status_code == 404
    assert fake.http.get("/v1/get-user-credits").json()["credits"] == 1000.0


def test_job_inspection_shows_plan_and_state(fake: Fake) -> None:
    request_id = fake.submit(Prefer="outcome=failed").json()["request_id"]
    job = fake.http.get(f"/__admin/jobs/{request_id}").json()
    assert job["state"] == "QUEUED"
    assert job["plan"]["outcome"] == "failed"
    assert job["key"] == "key-1"


def test_admin_token_guards_every_admin_endpoint(make_fake: Callable[..., Fake]) -> None:
    fake = make_fake(admin_token="test-admin-token")
    for path in ("/__admin/journal", "/__admin/counts", "/__admin/clock"):
        refused = fake.http.get(path)
        assert refused.status_code == 401
        assert "X-Admin-Token" in refused.json()["error"]
        assert fake.http.get(path, headers={"x-admin-token": "test-admin-token"}).is_success
    assert fake.http.post("/__admin/reset").status_code == 401
