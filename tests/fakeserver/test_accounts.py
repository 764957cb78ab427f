"""Keys, workflow access, credits and rate limits."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from fakeserver.accounts import Accounts
from tests.fakeserver.conftest import KEY, SUBMIT, Fake


def test_missing_key_is_401_and_says_how_to_send_one(fake: Fake) -> None:
    answer = fake.http.post(SUBMIT, json={}, headers={"x-api-key": ""})
    assert answer.status_code == 401
    assert "x-api-key" in answer.json()["error"]
    assert "Bearer" in answer.json()["error"]


def test_unknown_key_is_401_and_the_key_is_not_echoed(fake: Fake) -> None:
    answer = fake.http.post(SUBMIT, json={}, headers={"x-api-key": "test-key-wrong"})
    assert answer.status_code == 401
    assert "test-key-wrong" not in answer.text
    assert fake.journal("submit")[-1]["key"] == "unknown"


def test_restricted_key_is_403_on_submit_but_may_read_credits(
    make_fake: Callable[..., Fake],
) -> None:
    fake = make_fake(restricted_keys=["test-key-restricted"])
    headers = {"x-api-key": "test-key-restricted"}
    answer = fake.http.post(SUBMIT, json={}, headers=headers)
    assert answer.status_code == 403
    assert "no access" in answer.json()["error"]
    assert fake.http.get("/v1/get-user-credits", headers=headers).status_code == 200
    assert fake.state.jobs == {}


def test_too_few_credits_is_406_with_balance_and_price_and_no_job(
    make_fake: Callable[..., Fake],
) -> None:
    fake = make_fake(credits=5.0)
    assert fake.submit().status_code == 200
    answer = fake.submit()
    assert answer.status_code == 406
    assert answer.json()["error"] == (
        "Insufficient credits: balance 1.03, a run costs 3.9674; add credits to this account"
    )
    assert len(fake.state.jobs) == 1
    assert fake.http.get("/v1/get-user-credits").json()["credits"] == pytest.approx(1.0326)


def test_invalid_input_costs_nothing(fake: Fake) -> None:
    assert fake.submit({"Scene_1": 3}).status_code == 400
    assert fake.http.get("/v1/get-user-credits").json()["credits"] == 1000.0
    assert fake.state.jobs == {}


def test_free_plan_allows_five_requests_a_minute_counting_polls(
    make_fake: Callable[..., Fake],
) -> None:
    fake = make_fake(plan="free")
    request_id = fake.submit().json()["request_id"]
    for _ in range(3):
        assert fake.poll(request_id).status_code == 200
    fake.clock.advance(10)
    assert fake.http.get("/v1/get-user-credits").status_code == 200
    limited = fake.poll(request_id)
    assert limited.status_code == 429
    # The oldest request (t=0) leaves the window at t=60; we are at t=10.
    assert limited.headers["retry-after"] == "50"
    assert "5 requests per minute" in limited.json()["error"]
    fake.clock.advance(49)
    assert fake.poll(request_id).status_code == 429
    fake.clock.advance(1)
    assert fake.poll(request_id).status_code == 200


def test_rate_limits_are_per_key(make_fake: Callable[..., Fake]) -> None:
    fake = make_fake(plan="2")
    for _ in range(2):
        assert fake.http.get("/v1/get-user-credits").status_code == 200
    assert fake.http.get("/v1/get-user-credits").status_code == 429
    other = {"x-api-key": "test-key-beta"}
    assert fake.http.get("/v1/get-user-credits", headers=other).status_code == 200


def test_pro_plan_is_the_default_at_fifty_a_minute(fake: Fake) -> None:
    statuses = [fake.http.get("/v1/get-user-credits").status_code for _ in range(51)]
    assert statuses.count(200) == 50
    assert statuses[-1] == 429


def test_unlimited_plan_never_answers_429(make_fake: Callable[..., Fake]) -> None:
    fake = make_fake(plan="unlimited")
    assert {fake.http.get("/v1/get-user-credits").status_code for _ in range(120)} == {200}


def test_bad_plan_name_is_refused_with_the_valid_ones() -> None:
    from pydantic import ValidationError

    from fakeserver import FakeSettings

    with pytest.raises(ValidationError, match="free, pro, unlimited"):
        FakeSettings(plan="gold", api_keys=[KEY])


def test_open_to_any_key_makes_one_account_per_key_on_first_use() -> None:
    accounts = Accounts(open_to_any_key=(7.0, 5))
    first = accounts.find("their-key")
    assert first is not None
    assert (first.label, first.credits, first.rate_limit) == ("key-1", 7, 5)
    assert accounts.find("their-key") is first
    other = accounts.find("another-key")
    assert other is not None
    assert other.label == "key-2"
    assert accounts.find("") is None
    assert Accounts().find("their-key") is None  # closed by default: 401
