"""Properties of the canonical cache key (`proxy.core.cache`): what makes two requests identical.

Both ways: bodies that ask for the same run (defaults left out or spelled out, any key
order) give one key; any real difference (a scene, the image, the workflow) gives another.
The stored key is per team unless shared on purpose.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from client import CHARACTER_VIDEO_WORKFLOW_ID
from client._models import DEFAULT_CHARACTER_IMAGE, DEFAULT_SCENES, MAX_SCENE_LENGTH, is_blank
from proxy.core.cache import canonical_inputs, generation_key, scoped_key
from proxy.core.errors import BadInput

WF = CHARACTER_VIDEO_WORKFLOW_ID
OTHER_WF = "some-other-workflow-v1"

# (wire name, Python name, default) of each input of the character-video workflow.
FIELDS: tuple[tuple[str, str, str], ...] = (
    ("Character_Image", "character_image", DEFAULT_CHARACTER_IMAGE),
    ("Scene_1", "scene_1", DEFAULT_SCENES[0]),
    ("Scene_2", "scene_2", DEFAULT_SCENES[1]),
    ("Scene_3", "scene_3", DEFAULT_SCENES[2]),
    ("Scene_4", "scene_4", DEFAULT_SCENES[3]),
)
WIRE = tuple(f[0] for f in FIELDS)
DEFAULTS = {f[0]: f[2] for f in FIELDS}


def key_of(body: Any, workflow_id: str = WF) -> str:
    return generation_key(workflow_id, canonical_inputs(workflow_id, body))


scene_texts = st.text(min_size=1, max_size=80).filter(lambda s: not is_blank(s))
names = st.from_regex(r"[a-z][a-z0-9-]{0,12}", fullmatch=True)
image_urls = st.builds(
    lambda scheme, host, path: f"{scheme}://{host}.example.com/{path}.jpg",
    st.sampled_from(["http", "https"]),
    names,
    names,
)


def value_for(name: str) -> st.SearchStrategy[str]:
    return image_urls if name == "Character_Image" else scene_texts


# A body with any subset of the inputs set, wire spelling.
bodies = st.fixed_dictionaries({}, optional={name: value_for(name) for name in WIRE})


@st.composite
def respelled(draw: st.DrawFn, body: dict[str, Any]) -> dict[str, Any]:
    """The same body in any order (wire names only: another spelling is refused, see
    tests/proxy/test_inputs.py)."""
    items = list(body.items())
    return dict(draw(st.permutations(items)))


def effective(body: dict[str, Any]) -> dict[str, Any]:
    """What a body asks for: every input, defaults filled in."""
    return {**DEFAULTS, **body}


# -- equivalent bodies give equal keys ------------------------------------------------------


def test_empty_body_and_all_defaults_spelled_out_share_a_key() -> None:
    assert key_of({}) == key_of(dict(DEFAULTS))
    assert canonical_inputs(WF, {}) == DEFAULTS


@given(st.data(), st.sets(st.sampled_from(WIRE)))
def test_any_subset_of_defaults_in_any_order_is_the_empty_body(
    data: st.DataObject, spelled: set[str]
) -> None:
    body = data.draw(respelled({name: DEFAULTS[name] for name in spelled}))
    assert key_of(body) == key_of({})


@given(st.data(), bodies)
def test_order_and_explicit_defaults_never_change_the_key(
    data: st.DataObject, body: dict[str, Any]
) -> None:
    key = key_of(body)
    assert key_of(data.draw(respelled(body))) == key
    assert key_of(data.draw(respelled(effective(body)))) == key
    # Spelling out any of the defaults the body left out changes nothing either.
    missing = [name for name in WIRE if name not in body]
    extra = data.draw(st.sets(st.sampled_from(missing))) if missing else set()
    assert key_of(data.draw(respelled({**body, **{n: DEFAULTS[n] for n in extra}}))) == key


@given(bodies)
def test_canonical_inputs_spell_out_every_input(body: dict[str, Any]) -> None:
    assert canonical_inputs(WF, body) == effective(body)


# -- any real difference gives a different key ---------------------------------------------


@given(st.data(), bodies, st.sampled_from(WIRE))
def test_changing_any_one_input_changes_the_key(
    data: st.DataObject, body: dict[str, Any], name: str
) -> None:
    current = effective(body)[name]
    new = data.draw(value_for(name).filter(lambda v: v != current))
    assert key_of({**body, name: new}) != key_of(body)


@given(bodies, bodies)
def test_keys_are_equal_exactly_when_the_runs_are(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert (key_of(a) == key_of(b)) == (effective(a) == effective(b))


@given(bodies, st.sampled_from([OTHER_WF, WF + "-v5", "68628fe34727e611dfa219b4-v3"]))
def test_the_workflow_id_is_part_of_the_key(body: dict[str, Any], other: str) -> None:
    inputs = canonical_inputs(WF, body)
    assert generation_key(other, inputs) != generation_key(WF, inputs)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
json_objects = st.dictionaries(st.text(max_size=8), json_values, max_size=5)


@given(st.data(), json_objects)
def test_other_workflows_ignore_key_order(data: st.DataObject, body: dict[str, Any]) -> None:
    shuffled = dict(data.draw(st.permutations(list(body.items()))))
    assert key_of(shuffled, OTHER_WF) == key_of(body, OTHER_WF)


@given(json_objects, json_objects)
def test_other_workflows_tell_apart_any_different_json(
    a: dict[str, Any], b: dict[str, Any]
) -> None:
    # As JSON, not as Python: 1, 1.0 and true are different inputs to a workflow.
    same = json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    assert (key_of(a, OTHER_WF) == key_of(b, OTHER_WF)) == same


# -- the stored key: per team, or shared on purpose -----------------------------------------

team_ids = st.uuids().map(lambda u: u.hex)


@given(bodies, team_ids, team_ids)
def test_the_team_scope_keeps_teams_apart_and_the_shared_scope_does_not(
    body: dict[str, Any], team_a: str, team_b: str
) -> None:
    key = key_of(body)
    assert (scoped_key(key, team_a, False) == scoped_key(key, team_b, False)) == (team_a == team_b)
    assert scoped_key(key, team_a, True) == scoped_key(key, team_b, True)
    assert scoped_key(key, team_a, True) != scoped_key(key, team_a, False)


@given(bodies, bodies, team_ids, st.booleans())
def test_scoping_keeps_different_runs_apart(
    a: dict[str, Any], b: dict[str, Any], team: str, shared: bool
) -> None:
    ka, kb = key_of(a), key_of(b)
    assert (scoped_key(ka, team, shared) == scoped_key(kb, team, shared)) == (ka == kb)


# -- invalid inputs raise BadInput, a 400 ---------------------------------------------------


@given(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.lists(json_values, max_size=3)
)
def test_a_body_that_is_not_an_object_is_bad_input(body: Any) -> None:
    with pytest.raises(BadInput) as caught:
        canonical_inputs(WF, body)
    assert caught.value.status_code == 400
    assert "JSON object" in caught.value.message


wrong_types = (
    st.none() | st.booleans() | st.integers() | st.floats() | st.lists(st.text(), max_size=2)
)
bad_scenes = (
    st.sampled_from(["", " ", "\n\t  "])
    | st.text(min_size=MAX_SCENE_LENGTH + 1, max_size=MAX_SCENE_LENGTH + 5).filter(
        lambda s: bool(s.strip())
    )
    | wrong_types
)
bad_images = (
    st.sampled_from(
        [
            "",
            "not a url",
            "ftp://example.com/me.jpg",
            "file:///etc/passwd",
            "https://",
            "https://exa mple.com/me.jpg",
            "example.com/me.jpg",
            "data:image/png;base64,AAAA",
            "https://example.com/" + "a" * 2100,
        ]
    )
    | wrong_types
)


@given(bodies, st.sampled_from(WIRE[1:]), bad_scenes)
def test_a_bad_scene_is_bad_input(body: dict[str, Any], name: str, bad: Any) -> None:
    with pytest.raises(BadInput) as caught:
        canonical_inputs(WF, {**body, name: bad})
    assert caught.value.status_code == 400
    assert name in caught.value.message


@given(bodies, bad_images)
def test_a_bad_character_image_is_bad_input(body: dict[str, Any], bad: Any) -> None:
    with pytest.raises(BadInput) as caught:
        canonical_inputs(WF, {**body, "Character_Image": bad})
    assert caught.value.status_code == 400
    assert "Character_Image" in caught.value.message


@given(
    bodies,
    st.text(min_size=1, max_size=20).filter(lambda s: s not in WIRE),
)
def test_an_unknown_input_is_bad_input(body: dict[str, Any], name: str) -> None:
    with pytest.raises(BadInput) as caught:
        canonical_inputs(WF, {**body, name: "x"})
    assert caught.value.status_code == 400


def test_an_input_given_in_both_spellings_is_bad_input() -> None:
    # Which of the two would win is not the caller's to guess: refuse.
    with pytest.raises(BadInput):
        canonical_inputs(WF, {"Scene_1": "a knight", "scene_1": "a dragon"})
