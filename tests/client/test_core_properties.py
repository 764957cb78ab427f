"""Property tests of the pure parts: backoff, output decoding, input validation, the core."""

from __future__ import annotations

import json
import random
import string
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from client import CharacterVideoInputs, InvalidInput, RetryPolicy
from client._config import ApiKey, ClientConfig
from client._core import Core, Send, Sleep
from client._errors import ConnectError, error_from_response
from client._models import is_blank
from client._output import decode_output
from client._retry import MAX_RETRY_AFTER, backoff_delay, parse_retry_after
from tests.client.doubles import API_KEY, TopRNG

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=20,
)
policies = st.builds(
    RetryPolicy,
    max_attempts=st.integers(1, 10),
    base_delay=st.floats(0, 10, allow_nan=False),
    max_delay=st.floats(0, 120, allow_nan=False),
)


@given(policies, st.integers(0, 10_000), st.integers(0, 2**32), st.none() | st.floats(0, 1e6))
def test_backoff_stays_within_full_jitter_bounds(
    policy: RetryPolicy, n: int, seed: int, retry_after: float | None
) -> None:
    delay = backoff_delay(policy, n, random.Random(seed), retry_after)
    ceiling = min(policy.max_delay, policy.base_delay * 2.0 ** min(n, 62))
    assert delay >= 0
    if retry_after is None:
        assert delay <= ceiling
    else:
        assert delay >= min(retry_after, MAX_RETRY_AFTER)
        assert delay <= max(ceiling, min(retry_after, MAX_RETRY_AFTER))


@given(policies, st.integers(0, 60))
def test_backoff_ceiling_grows_until_capped(policy: RetryPolicy, n: int) -> None:
    now = backoff_delay(policy, n, TopRNG())
    later = backoff_delay(policy, n + 1, TopRNG())
    assert now <= later <= policy.max_delay


@given(st.text())
def test_retry_after_parsing_never_raises(value: str) -> None:
    parsed = parse_retry_after(value, "Wed, 21 Oct 2015 07:28:00 GMT")
    assert parsed is None or parsed >= 0


@given(json_values)
def test_decoding_arbitrary_json_never_raises(document: Any) -> None:
    for form in (document, json.dumps(document)):
        items, _raw = decode_output(form)
        scenes = [i.scene for i in items if i.scene is not None]
        assert len(scenes) == len(set(scenes))
        assert all(i.url for i in items if i.scene is not None)


@given(st.text())
def test_decoding_arbitrary_text_never_raises(text: str) -> None:
    items, raw = decode_output(text)
    assert isinstance(items, tuple)
    if not items:
        assert raw is not None


def test_scenes_come_from_trailing_digits_else_list_order() -> None:
    def video(name: str, n: int) -> dict[str, Any]:
        return {"keyname": name, "value": {"data": f"https://cdn.test/{n}.mp4", "type": "video"}}

    output = json.dumps(
        [
            video("Final_Video_3", 3),
            {"keyname": "Poster", "value": {"data": "https://cdn.test/p.png", "type": "image"}},
            video("unnumbered", 0),
            video("Clip_1", 1),
            video("also unnumbered", 9),
        ]
    )
    items, _ = decode_output(output)
    by_scene = {i.scene: i.url for i in items if i.scene}
    assert by_scene == {
        3: "https://cdn.test/3.mp4",
        1: "https://cdn.test/1.mp4",
        2: "https://cdn.test/0.mp4",
        4: "https://cdn.test/9.mp4",
    }
    poster = next(i for i in items if i.keyname == "Poster")
    assert poster.scene is None
    assert poster.url == "https://cdn.test/p.png"


def test_other_plausible_output_shapes_are_understood() -> None:
    mapping = json.dumps({"Scene_2": "https://cdn.test/b.mp4", "Scene_1": "https://cdn.test/a.mp4"})
    items, _ = decode_output(mapping)
    assert {i.scene: i.url for i in items} == {
        2: "https://cdn.test/b.mp4",
        1: "https://cdn.test/a.mp4",
    }
    double = json.dumps(json.dumps([{"keyname": "v_1", "value": {"data": "https://c.test/1.mp4"}}]))
    (item,) = decode_output(double)[0]
    assert (item.scene, item.url) == (1, "https://c.test/1.mp4")


scene_text = st.text(min_size=1, max_size=1000).filter(lambda s: not is_blank(s))


@given(scene_text, scene_text)
def test_valid_scenes_round_trip_to_the_payload(first: str, fourth: str) -> None:
    payload = CharacterVideoInputs.parse({"Scene_1": first, "Scene_4": fourth}).to_payload()
    assert payload["Scene_1"] == first
    assert payload["Scene_4"] == fourth
    assert set(payload) == {"Character_Image", "Scene_1", "Scene_2", "Scene_3", "Scene_4"}


@given(
    st.one_of(
        st.text(alphabet=string.whitespace, max_size=5), st.text(min_size=1001, max_size=1100)
    )
)
def test_empty_or_long_scenes_are_rejected(text: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        CharacterVideoInputs.parse({"Scene_2": text})
    assert "Scene_2" in caught.value.problems


# URLs built to be valid, so a parser that rejects every URL fails here; each is then broken
# in one way the workflow cannot fetch, so one that accepts every URL fails below.
_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,14}[a-z0-9])?", fullmatch=True)
_hosts = st.one_of(
    st.lists(_label, min_size=1, max_size=4).map(".".join),
    st.tuples(*[st.integers(0, 255)] * 4).map(lambda p: ".".join(map(str, p))),
)
_path_text = st.text(string.ascii_letters + string.digits + "-._~%!$&'()*+,;=:@/", max_size=40)
valid_urls = st.builds(
    "{}://{}{}/{}{}".format,
    st.sampled_from(["http", "https", "HTTP", "Https"]),
    _hosts,
    st.one_of(st.just(""), st.integers(1, 65535).map(":{}".format)),
    _path_text,
    st.one_of(st.just(""), _path_text.map("?{}".format)),
)


@given(valid_urls)
def test_valid_image_urls_are_accepted_as_given(url: str) -> None:
    assert CharacterVideoInputs.parse({"Character_Image": url}).character_image == url


def _other_scheme(url: str, data: st.DataObject) -> str:
    scheme = data.draw(st.sampled_from(["ftp", "file", "javascript", "data", "ws", "httpx"]))
    return scheme + url[url.index(":") :]


def _no_scheme(url: str, data: st.DataObject) -> str:
    return url[url.index("://") + 3 :]


def _no_host(url: str, data: st.DataObject) -> str:
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{rest[rest.find('/') :]}"


def _a_blank_or_control_character(url: str, data: st.DataObject) -> str:
    at = data.draw(st.integers(0, len(url)))
    bad = data.draw(st.sampled_from([" ", "\t", "\n", "\x00", "\x7f", "\u200b", "\u00a0"]))
    return url[:at] + bad + url[at:]


def _too_long(url: str, data: st.DataObject) -> str:
    return url + "a" * 2049


BREAKAGES = [_other_scheme, _no_scheme, _no_host, _a_blank_or_control_character, _too_long]


@given(valid_urls, st.sampled_from(BREAKAGES), st.data())
def test_broken_image_urls_are_rejected(
    url: str, breakage: Callable[[str, st.DataObject], str], data: st.DataObject
) -> None:
    broken = breakage(url, data)
    with pytest.raises(InvalidInput) as caught:
        CharacterVideoInputs.parse({"Character_Image": broken})
    assert "Character_Image" in caught.value.problems


@given(st.integers(100, 599), st.binary(max_size=200))
def test_any_error_answer_maps_to_an_error_without_the_key(code: int, body: bytes) -> None:
    error = error_from_response(
        code, body + API_KEY.encode(), action="poll", secret=API_KEY, auth_hint="hint"
    )
    assert error.status_code == code
    assert API_KEY not in str(error)
    assert API_KEY not in repr(error.body)


def test_the_core_is_a_generator_a_test_can_drive_by_hand() -> None:
    core = Core(ClientConfig(ApiKey(API_KEY, "test")), TopRNG())
    flow = core.submit({"Scene_1": "A lighthouse"})
    first = next(flow)
    assert isinstance(first, Send)
    assert first.request.method == "POST"
    retry = flow.throw(ConnectError("refused"))
    assert retry == Sleep(1.0)
    again = flow.send(None)
    assert isinstance(again, Send)
    assert again.request is first.request
    answer = httpx.Response(200, json={"request_id": "r1", "poll_url": "https://x.test/r1"})
    with pytest.raises(StopIteration) as stop:
        flow.send(answer)
    assert stop.value.value.request_id == "r1"
