"""Bad input is refused with a 400 that names the problem, before anything costs (issue 10,
items 8 and 11): deep JSON, lone surrogates, blank scenes and misspelt input names.

Through the real gateway in-process (tests/proxy/harness.py): each refusal is checked to
have made no upstream call and to have left the team's budget where it was.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.core.errors import BadInput
from proxy.edge.bodies import MAX_JSON_DEPTH, json_depth, lone_surrogate_at, parse_body
from tests.proxy.harness import WORKFLOW, Harness

pytestmark = pytest.mark.anyio

# Scenes that are blank though not empty: each would have been a paid run of nothing.
BLANK_SCENES = {
    "NUL": "\x00",
    "NULs and spaces": "\x00 \x00\t\x00",
    "control characters": "\x01\x07\x1b\x7f",
    "zero-width space": "\u200b\u200b\u200b",
    "zero-width joiners and BOM": "\u200c\u200d\ufeff\u2060",
    "bidi marks": "\u200e\u200f\u202a\u202c",
    "no-break and ideographic spaces": "\u00a0\u3000\u2007",
    "line and paragraph separators": "\u2028\u2029",
    "soft hyphen": "\u00ad",
    "Hangul filler": "\u3164\u3164",
    "Braille blank": "\u2800",
    "variation selectors": "\ufe0f\ufe0e",
    "private use": "\ue000\uf8ff",
    "unassigned": "\U000e0fff",
}

DEEP = {
    "1,000 nested arrays": b"[" * 1000 + b"]" * 1000,
    "1,000 nested objects": b'{"a":' * 1000 + b"1" + b"}" * 1000,
    "1,000 levels inside a scene": b'{"Scene_1":' + b"[" * 1000 + b"]" * 1000 + b"}",
    "unclosed, 30,000 deep": b"[" * 30_000,
    f"{MAX_JSON_DEPTH + 1} levels": b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1),
}

SURROGATES = {
    "in a scene": b'{"Scene_1": "\\ud800"}',
    "a low half alone": b'{"Scene_2": "a knight \\udfff"}',
    "in an input name": b'{"\\ud800": "x"}',
    "in the image URL": b'{"Character_Image": "https://example.com/\\udbff.jpg"}',
    "deep in an array": b'{"Scene_1": ["ok", ["\\ud800"]]}',
    "the pair reversed": b'{"Scene_1": "\\udc00\\ud800"}',
}


async def refused(h: Harness, key: str, body: bytes) -> str:
    """POST `body`; assert a 400 JSON error, no upstream call, nothing spent; the error."""
    before = await h.credits(key)
    answer = await h.http.post(
        WORKFLOW, content=body, headers={"x-api-key": key, "content-type": "application/json"}
    )
    assert answer.status_code == 400, answer.text
    assert answer.headers["content-type"] == "application/json"
    message: str = answer.json()["error"]
    assert h.upstream_calls("submit") == []
    assert await h.credits(key) == before
    return message


@pytest.mark.parametrize("body", DEEP.values(), ids=DEEP.keys())
async def test_deeply_nested_json_is_a_400_not_a_500(harness: Harness, body: bytes) -> None:
    key = harness.team("deep")
    message = await refused(harness, key, body)
    assert f"more than {MAX_JSON_DEPTH} levels deep" in message


@pytest.mark.parametrize("body", SURROGATES.values(), ids=SURROGATES.keys())
async def test_a_lone_surrogate_is_a_400_not_a_500(harness: Harness, body: bytes) -> None:
    key = harness.team("surrogates")
    assert "lone surrogate" in await refused(harness, key, body)


@pytest.mark.parametrize("scene", BLANK_SCENES.values(), ids=BLANK_SCENES.keys())
async def test_a_blank_scene_is_refused_before_it_costs(harness: Harness, scene: str) -> None:
    key = harness.team("blank")
    body = json.dumps({"Scene_1": "A knight", "Scene_3": scene}).encode()
    message = await refused(harness, key, body)
    assert "Scene_3 is blank" in message


@pytest.mark.parametrize(
    ("name", "meant"),
    [
        ("scene_1", "Scene_1"),
        ("character_image", "Character_Image"),
        ("SCENE_4", "Scene_4"),
        ("Scene1", "Scene_1"),
        ("Scene-2", "Scene_2"),
        ("Charcter_Image", "Character_Image"),
    ],
)
async def test_a_misspelt_name_is_refused_with_the_right_one(
    harness: Harness, name: str, meant: str
) -> None:
    key = harness.team("typos")
    value = "https://example.com/face.jpg" if "mage" in meant else "A knight on a bridge"
    message = await refused(harness, key, json.dumps({name: value}).encode())
    assert f"{name} is not an input of this workflow (did you mean {meant}?)" in message


async def test_an_unknown_name_without_a_near_miss_lists_the_inputs(harness: Harness) -> None:
    key = harness.team("unknown")
    message = await refused(harness, key, b'{"Scene_5": "x", "prompt": "y"}')
    assert "did you mean" not in message
    assert "Scene_5 is not an input" in message
    assert "prompt is not an input" in message
    assert "the inputs are Character_Image, Scene_1, Scene_2, Scene_3, Scene_4" in message


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b'{"Scene_1": NaN}', "NaN"),
        (b'{"Scene_1": Infinity}', "Infinity"),
        (b'{"Scene_1": "caf\xe9"}', "not UTF-8"),
        ('{"Scene_1": "x"}'.encode("utf-16"), "not UTF-8"),
    ],
)
async def test_what_json_does_not_allow_is_a_400(
    harness: Harness, body: bytes, problem: str
) -> None:
    key = harness.team("not-json")
    assert problem in await refused(harness, key, body)


async def test_good_bodies_still_pass(harness: Harness) -> None:
    key = harness.team("good")
    bodies: list[Any] = [
        {},
        {"Scene_1": "A knight \U0001f600 with a \\ud800 written out", "Scene_2": "[[[{{{"},
        {"Scene_3": "  text with spaces around  ", "Scene_4": "Tab\tand\nnewline inside"},
        {"Scene_1": "Zero\u200bwidth inside visible text"},
    ]
    for number, body in enumerate(bodies):
        raw = json.dumps(body, ensure_ascii=number % 2 == 0).encode()
        answer = await harness.http.post(WORKFLOW, content=raw, headers={"x-api-key": key})
        assert answer.status_code == 200, answer.text
    # A BOM before the JSON is tolerated, and a valid surrogate pair is one character.
    pair = '\ufeff{"Scene_2": "\\ud83d\\ude00 smiling"}'.encode()
    answer = await harness.http.post(WORKFLOW, content=pair, headers={"x-api-key": key})
    assert answer.status_code == 200, answer.text
    assert harness.upstream_calls("submit")[-1]["body"]["Scene_2"] == "\U0001f600 smiling"


# -- the body reader itself -----------------------------------------------------------


@given(st.integers(min_value=0, max_value=200), st.text(alphabet='[]{}"\\ab', max_size=40))
def test_brackets_inside_strings_do_not_count(depth: int, text: str) -> None:
    body = "[" * depth + json.dumps(text) + "]" * depth
    assert json_depth(body, 10_000) == depth


def test_the_depth_scan_stops_once_past_the_limit() -> None:
    # 5 million brackets would take the decoder (and the scan, were it to go on) a while.
    assert json_depth("[" * 5_000_000, MAX_JSON_DEPTH) == MAX_JSON_DEPTH + 1


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
        max_leaves=10,
    )
)
def test_any_json_within_the_depth_reads_back_as_itself(value: Any) -> None:
    raw = json.dumps(value).encode()
    if json_depth(raw.decode(), MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        with pytest.raises(BadInput):
            parse_body(raw)
    else:
        assert parse_body(raw) == value


@given(st.integers(min_value=0xD800, max_value=0xDFFF).map(chr), st.text(max_size=5))
def test_every_lone_surrogate_is_found(half: str, around: str) -> None:
    text = around + half + around
    raw = json.dumps({"Scene_1": ["fine", {"inner": text}]}).encode()  # ensure_ascii escapes
    with pytest.raises(BadInput, match="lone surrogate"):
        parse_body(raw)


def test_a_surrogate_pair_is_no_lone_surrogate() -> None:
    assert lone_surrogate_at(parse_body(b'{"Scene_1": "\\ud83d\\ude00"}')) is None
