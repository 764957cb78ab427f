"""One validation: for any body, the client, the gateway and the fake reach the same verdict.

The client holds the validation the client and the gateway use (`client._models.
validate_inputs`, behind `proxy.edge.bodies.parse_body` and
`proxy.core.cache.canonical_inputs`); the
fake keeps its own, as the upstream's stand-in that shares no code with either. This holds
the two to one answer for hypothesis-generated bodies: accepted by both, with the same
canonical inputs, or refused by both (the fake with a 400, before any job or charge). So a
body the gateway admits, and pays for, is one the upstream takes; and a typo never pays.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from client import CHARACTER_VIDEO_WORKFLOW_ID, CharacterVideoInputs, InvalidInput
from client._models import MAX_SCENE_LENGTH, MAX_URL_LENGTH
from fakeserver import FakeSettings, VirtualClock, create_app
from fakeserver.state import FakeState
from proxy.core.cache import canonical_inputs
from proxy.core.errors import BadInput
from proxy.edge.bodies import parse_body

KEY = "test-key-one-validation"
SUBMIT = f"/workflows/{CHARACTER_VIDEO_WORKFLOW_ID}"
WIRE = ["Character_Image", "Scene_1", "Scene_2", "Scene_3", "Scene_4"]


@pytest.fixture(scope="module")
def fake() -> Iterator[tuple[TestClient, FakeState]]:
    app = create_app(
        FakeSettings(api_keys=[KEY], public_url="http://fake.test", seed=3, plan="unlimited"),
        clock=VirtualClock(),
    )
    with TestClient(app, base_url="http://fake.test", headers={"x-api-key": KEY}) as http:
        yield http, app.state.fake


def gateway_verdict(raw: bytes) -> dict[str, Any] | None:
    """The canonical inputs the gateway admits for `raw`, or None when it answers 400."""
    try:
        return canonical_inputs(CHARACTER_VIDEO_WORKFLOW_ID, parse_body(raw))
    except BadInput as exc:
        if exc.status_code != 400:
            raise
        return None


def fake_verdict(fake: tuple[TestClient, FakeState], raw: bytes) -> dict[str, Any] | None:
    http, state = fake
    state.jobs.clear()
    answer = http.post(SUBMIT, content=raw, headers={"content-type": "application/json"})
    assert answer.status_code in (200, 400), answer.text
    if answer.status_code == 400:
        assert answer.json()["error"]
        assert state.jobs == {}
        return None
    inputs: dict[str, Any] = state.jobs[answer.json()["request_id"]].inputs
    return inputs


# -- what bodies are made of -----------------------------------------------------------

# Characters a blank-looking scene is made of: whitespace, controls, format characters,
# separators, private use, unassigned, and the default-ignorable marks and letters.
invisible = st.characters(categories=["Cc", "Cf", "Zs", "Zl", "Zp", "Co", "Cn"]) | st.sampled_from(
    ["\u034f", "\u115f", "\u3164", "\u2800", "\ufe0f", "\U000e0100", "\ufeff", " ", "\n"]
)
visible = st.characters(categories=["L", "N", "P", "S", "M"])
lone_halves = st.integers(min_value=0xD800, max_value=0xDFFF).map(chr)

good_scenes = st.text(visible, min_size=1, max_size=30)
scenes = st.one_of(
    good_scenes,
    good_scenes,
    good_scenes,
    st.text(max_size=30),
    st.text(alphabet=invisible, max_size=8),
    st.builds(lambda a, b, c: a + b + c, st.text(invisible, max_size=3), visible,
              st.text(invisible, max_size=3)),
    st.builds(lambda n, c: c * n, st.integers(MAX_SCENE_LENGTH - 2, MAX_SCENE_LENGTH + 2),
              visible | invisible),
    st.builds(lambda a, h: a + h, st.text(max_size=4), lone_halves),
)  # fmt: skip
hosts = st.sampled_from(["example.com", "cdn.example.org:8443", "[::1]", "xn--bcher-kva.ch", ""])
good_urls = st.builds(
    lambda host, path: f"https://{host}/{path}.jpg",
    hosts.filter(bool),
    st.text(visible, max_size=8),
)
urls = st.one_of(
    good_urls,
    good_urls,
    st.builds(
        lambda scheme, host, path: f"{scheme}://{host}/{path}",
        st.sampled_from(["http", "https", "HTTPS", "ftp", "file", "data", ""]),
        hosts,
        st.text(max_size=12),
    ),
    st.builds(lambda n: "https://example.com/" + "a" * n,
              st.integers(MAX_URL_LENGTH - 22, MAX_URL_LENGTH - 18)),
    st.sampled_from(["http://[::1", "https://exa mple.com/a.jpg", "https://a.b/\x00.jpg",
                     "https://a.b/\u200b.jpg", "https://@/x", "http:///x.jpg", "//a.b/c.jpg"]),
    st.text(max_size=20),
)  # fmt: skip
not_strings = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.lists(st.text(max_size=3), max_size=2)
    | st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)
)
wire_names = st.sampled_from(WIRE)
names = st.one_of(
    wire_names,
    wire_names,
    wire_names,
    wire_names,
    st.sampled_from(WIRE).map(str.lower),
    st.sampled_from(WIRE).map(str.upper),
    st.sampled_from(WIRE).map(lambda n: n.replace("_", "")),
    st.text(max_size=10),
)


# Bodies with only the workflow's names, and values that are mostly good or borderline.
named_bodies = st.fixed_dictionaries(
    {},
    optional={name: urls if name == "Character_Image" else scenes for name in WIRE},
)


@st.composite
def any_bodies(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 9)) == 0:  # now and then not an object at all
        return draw(not_strings | st.text(max_size=5))
    body: dict[str, Any] = {}
    for name in draw(st.lists(names, max_size=4)):
        if name == "Character_Image" or "image" in name.lower():
            body[name] = draw(urls | urls | not_strings)
        else:
            body[name] = draw(scenes | scenes | not_strings)
    return body


def bodies() -> st.SearchStrategy[Any]:
    return named_bodies | any_bodies()


def encoded(body: Any, ascii_only: bool) -> bytes:
    # Lone surrogates sent raw (not \u-escaped) are bytes that are not UTF-8.
    return json.dumps(body, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


# -- the properties ----------------------------------------------------------------------


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=bodies(), ascii_only=st.booleans())
def test_the_gateway_and_the_fake_agree_on_every_body(
    fake: tuple[TestClient, FakeState], body: Any, ascii_only: bool
) -> None:
    raw = encoded(body, ascii_only)
    ours, theirs = gateway_verdict(raw), fake_verdict(fake, raw)
    event("accepted" if theirs is not None else "refused")
    assert ours == theirs, f"gateway {ours!r} but fake {theirs!r} for {raw[:300]!r}"


@settings(max_examples=300, deadline=None)
@given(body=bodies().filter(lambda body: isinstance(body, dict)))
def test_the_client_refuses_exactly_what_the_gateway_refuses(body: dict[str, Any]) -> None:
    """The SDK checks a mapping before it sends; it takes what the gateway takes."""
    raw = json.dumps(body).encode()
    try:
        ours: dict[str, str] | None = CharacterVideoInputs.parse(body).to_payload()
    except InvalidInput:
        ours = None
    assert ours == gateway_verdict(raw)


def test_the_defaults_are_one_canonical_body_everywhere(
    fake: tuple[TestClient, FakeState],
) -> None:
    defaults = CharacterVideoInputs().to_payload()
    assert gateway_verdict(b"{}") == fake_verdict(fake, b"{}") == defaults
    assert list(defaults) == WIRE


@pytest.mark.parametrize("raw", [b"\r", b" ", b"\n\t "])
def test_whitespace_alone_is_no_body_but_no_json_either(
    fake: tuple[TestClient, FakeState], raw: bytes
) -> None:
    # An empty body is the defaults; whitespace alone is no JSON document (schemathesis
    # found the fake taking `\r` for `{}`): both refuse it, before any job or charge.
    assert gateway_verdict(b"") == fake_verdict(fake, b"") == CharacterVideoInputs().to_payload()
    assert gateway_verdict(raw) is None
    assert fake_verdict(fake, raw) is None
