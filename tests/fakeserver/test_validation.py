"""Input validation: a clear 400 for every bad body, and never a 5xx for any JSON."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fakeserver import CHARACTER_VIDEO
from tests.fakeserver.conftest import SUBMIT, Fake


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'"text"', "must be a JSON object"),
        (b"null", "must be a JSON object"),
        (b'{"Scene_1": 42}', "Scene_1 must be a string, got a number"),
        (b'{"Scene_2": null}', "Scene_2 must be a string, got null"),
        (b'{"Scene_3": ""}', "Scene_3 must not be empty"),
        (b'{"Scene_4": "   "}', "Scene_4 must not be empty"),
        (json.dumps({"Scene_1": "x" * 1001}).encode(), "1001 characters long; the limit is 1000"),
        (b'{"Character_Image": "ftp://host/a.jpg"}', "must be an http(s) URL"),
        (b'{"Character_Image": "not a url"}', "must be an http(s) URL"),
        (b'{"Character_Image": "https://"}', "must be an http(s) URL"),
        (b'{"Character_Image": ["https://a/b.jpg"]}', "must be a string, got an array"),
        (b'{"scene_1": "lower-case name"}', "unknown input 'scene_1'"),
    ],
)
def test_bad_bodies_are_400_with_a_clear_error(fake: Fake, body: bytes, message: str) -> None:
    answer = fake.http.post(SUBMIT, content=body, headers={"content-type": "application/json"})
    assert answer.status_code == 400
    assert message in answer.json()["error"]
    assert fake.state.jobs == {}


def test_a_scene_at_the_limit_is_accepted(fake: Fake) -> None:
    assert fake.submit({"Scene_1": "x" * 1000}).status_code == 200


def test_unknown_inputs_can_be_ignored_instead(make_fake: Callable[..., Fake]) -> None:
    fake = make_fake(unknown_inputs="ignore")
    answer = fake.submit({"scene_1": "typo", "Scene_2": "kept"})
    assert answer.status_code == 200
    job = fake.state.jobs[answer.json()["request_id"]]
    assert "scene_1" not in job.inputs
    assert job.inputs["Scene_2"] == "kept"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
input_names = st.sampled_from([s.name for s in CHARACTER_VIDEO.inputs]) | st.text(max_size=12)
bodies = json_values | st.dictionaries(input_names, json_values | st.text(), max_size=6)


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies)
def test_any_json_gives_200_or_4xx_never_5xx(fake: Fake, body: Any) -> None:
    fake.state.accounts.reset()  # keep the rate window and credits out of the way
    answer = fake.http.post(SUBMIT, content=json.dumps(body).encode())
    assert answer.status_code in (200, 400), answer.text
    if answer.status_code == 400:
        assert answer.json()["error"]
    else:
        assert answer.json()["status"] == "QUEUED"


@settings(max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=64))
def test_any_bytes_give_200_or_400(fake: Fake, raw: bytes) -> None:
    fake.state.accounts.reset()
    answer = fake.http.post(SUBMIT, content=raw)
    assert answer.status_code in (200, 400), answer.text
