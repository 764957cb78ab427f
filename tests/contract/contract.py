"""One contract for Segmind's character-video workflow API, checked on the wire.

The expectations come from `SEGMIND_API.md` (the real API as far as it has been
observed), never from what one implementation happens to answer: the fake, the
cassettes, the gateway and real Segmind are each held to it by the same checks.

A *target* is anything that speaks the API (`Target`). Each check opens a `Session` on it
for a named `Scenario`, the flow it needs, and talks raw HTTP through `Session.http`
(an `httpx.Client` with the target's base URL and key; not our SDK: the contract is
about bodies, codes and headers). What a target cannot do for a scenario (a cassette
that was never recorded, an error real Segmind cannot be made to answer) it refuses
with `pytest.skip`, saying why, so every skip in the report reads as a reason.

Time is the target's: `Session.advance` moves a virtual clock (or, on real Segmind
only, waits); no check ever sleeps by itself.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Callable, Hashable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

import httpx

from tests.contract.record import FAILED_INPUTS, UNKNOWN_WORKFLOW

__all__ = [
    "CHECKS",
    "CREDITS_PATH",
    "DEFAULT_INPUTS",
    "ERROR_CODES",
    "FORCED_CODES",
    "POLL_PATH",
    "RESULT_LIFETIME",
    "SCENARIOS",
    "SUBMIT_PATH",
    "SUCCESS",
    "WORKFLOW_ID",
    "WRONG_KEY",
    "AuthScheme",
    "Scenario",
    "Session",
    "Target",
    "assert_error_answer",
    "assert_poll_answer",
    "assert_submit_answer",
    "json_body",
    "poll_until_terminal",
]

# -- what SEGMIND_API.md says ------------------------------------------------------------

WORKFLOW_ID = "68628fe34727e611dfa219b4-v4"  # step 1
SUBMIT_PATH = f"/workflows/{WORKFLOW_ID}"
POLL_PATH = "/workflows/request/"
CREDITS_PATH = "/v1/get-user-credits"
REQUEST_ID = re.compile(r"[0-9a-f]{32}")  # "Observed ids are 32 lowercase hex characters"
RESULT_LIFETIME = 3600.0  # "Results are kept for about 1 hour after submission"
VIDEOS_PER_RUN = 4  # "it produces one video per scene", four scenes
# Step 1's table: every input and its default. `{}` asks for exactly these.
DEFAULT_INPUTS: Mapping[str, str] = {
    "Character_Image": "https://segmind-inference-inputs.s3.amazonaws.com/"
    "e698f341-23a1-465e-8164-16c577dfb4d0-5f184e74-c558-4b92-8696-722761fb3737.jpg",
    "Scene_1": "Model on lighthouse rocks, hair streaming in gale",
    "Scene_2": "Model emerging from colored smoke, dramatic pose",
    "Scene_3": "Model by waterfall, mist creating natural wind effects",
    "Scene_4": "Model against chain-link fence, rebellious lean",
}

# Step 2: the submit answer. `message` is shown as "..." there: optional text.
SUBMIT_REQUIRED = frozenset({"status", "request_id", "poll_url"})
SUBMIT_OPTIONAL = frozenset({"message"})

# Step 3: the poll answers, state by state, and the order states move in.
QUEUED, PROCESSING, COMPLETED, FAILED = "QUEUED", "PROCESSING", "COMPLETED", "FAILED"
STATE_RANK: Mapping[str, int] = {QUEUED: 0, PROCESSING: 1, COMPLETED: 2, FAILED: 2}
TERMINAL = frozenset({COMPLETED, FAILED})
POLL_KEYS: Mapping[str, frozenset[str]] = {
    QUEUED: frozenset({"status"}),
    PROCESSING: frozenset({"status", "output"}),
    COMPLETED: frozenset({"status", "output"}),
    # `error_message` per the API docs, `error` per the product page's sample: either.
    FAILED: frozenset({"status", "error_message", "error"}),
}
FAILURE_REASON_KEYS = ("error_message", "error")
# What the gateway adds to Segmind's answers, documented in docs/gateway.md: whether a
# COMPLETED run's URLs are its own kept copies, and why not; a held run's place in the
# queue. Clients that know only Segmind's keys ignore them; no other key may appear.
GATEWAY_EXTENSIONS = frozenset({"outputs_kept", "outputs_note", "queue"})
OUTPUT_TYPES = frozenset({"image", "video", "text"})

# Errors: "Standard HTTP codes with a JSON body; the official SDK reads the message from
# the `error` key." Extra keys are allowed (DESIGN.md: `{"error": "...", ...}`), but never
# ones that mean something in a job's answer: a client that reads `status` or `poll_url`
# off any JSON body must not mistake an error for a job.
ERROR_CODES = (400, 401, 403, 404, 406, 429, 500, 502, 504)
ERROR_REQUIRED = frozenset({"error"})
ERROR_FORBIDDEN = frozenset({"status", "request_id", "poll_url", "output"})
# The codes that need forcing (401 and 404 have natural causes, checked on their own).
FORCED_CODES = tuple(code for code in ERROR_CODES if code not in (401, 404))

# A key no target knows; shaped like nothing real, so no secret scan mistakes it.
WRONG_KEY = "contract-wrong-key-5e1f0a9c3b7d"

AuthScheme = Literal["x-api-key", "bearer"]
LiveCost = Literal["free", "paid", "impossible"]


# -- scenarios and the target protocol ---------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """A flow a check needs a target to play.

    `cassette` names the committed cassette that holds it (None: none does, and
    `no_cassette` says why the cassette target cannot play it). `live` is what it costs on
    real Segmind: free, one paid run, or impossible there (`not_live` says why).
    """

    name: str
    cassette: str | None
    live: LiveCost
    no_cassette: str = ""
    not_live: str = ""


class Session(Protocol):
    """One scenario played on one target: raw HTTP plus the target's abilities."""

    @property
    def http(self) -> httpx.Client:
        """base_url and the target's valid key (sent as `x-api-key`)."""

    @property
    def key(self) -> str:
        """The valid key `http` sends."""

    @property
    def poll_interval(self) -> float:
        """Seconds to let pass between polls (any value is fine on a virtual clock)."""

    def client(self, key: str | None, *, scheme: AuthScheme = "x-api-key") -> httpx.Client:
        """Another client on this target sending `key` (None: no key at all)."""

    def submit(self, body: Any, *, fail: bool = False) -> httpx.Response:
        """`POST /workflows/{id}` with `body` as JSON; `fail`: make this run end FAILED."""

    def force(self, code: int) -> httpx.Response:
        """A submit the target is made to answer `code` (or `pytest.skip` with why not)."""

    def advance(self, seconds: float) -> None:
        """Let this much of the target's time pass."""

    def spent(self) -> Hashable:
        """A value that changes whenever anything is charged (or `pytest.skip`)."""


class Target(Protocol):
    name: str

    def session(self, scenario: Scenario) -> AbstractContextManager[Session]:
        """Set the target up for `scenario` (fresh state); `pytest.skip` if it cannot."""


SUCCESS = Scenario("success", "success", "paid")
FAILED_RUN = Scenario(
    "failed", "failed", "impossible", not_live="real Segmind cannot be made to fail a run"
)
EXPIRED = Scenario(
    "expired",
    "expired",
    "impossible",
    not_live="needs a paid run and an hour of real waiting for its result to expire",
)
WRONG_KEY_SUBMIT = Scenario("error_401", "error_401", "free")
UNKNOWN_WORKFLOW_SUBMIT = Scenario("error_404", "error_404", "free")
MISSING_KEY = Scenario(
    "missing_key",
    None,
    "free",
    no_cassette="no cassette records a request without a key (error_401 is a wrong key, "
    "and replay ignores keys, so it cannot tell the two apart)",
)
UNKNOWN_REQUEST = Scenario(
    "unknown_request",
    None,
    "free",
    no_cassette="no cassette polls an id that was never submitted; the 404 answer to a "
    "poll is held by expired.yaml and checked by `result_expires_after_an_hour`",
)
INVALID_INPUT = Scenario(
    "invalid_input",
    None,
    "paid",  # whether real Segmind validates before it charges is not known
    no_cassette="no cassette holds an invalid submit: error_400.yaml is a 400 forced on a "
    "valid submit, checked by `forced_400`",
)
CREDITS = Scenario("credits", "credits", "free")


def forced_scenario(code: int) -> Scenario:
    return Scenario(
        f"error_{code}",
        f"error_{code}",
        "impossible",
        not_live=f"real Segmind cannot be made to answer {code} on demand",
    )


SCENARIOS: tuple[Scenario, ...] = (
    SUCCESS,
    FAILED_RUN,
    EXPIRED,
    WRONG_KEY_SUBMIT,
    UNKNOWN_WORKFLOW_SUBMIT,
    MISSING_KEY,
    UNKNOWN_REQUEST,
    INVALID_INPUT,
    CREDITS,
    *(forced_scenario(code) for code in FORCED_CODES),
)


# -- assertions on answers ---------------------------------------------------------------


def _describe(response: httpx.Response) -> str:
    request = response.request
    return f"{request.method} {request.url.path} -> {response.status_code} {response.text[:300]!r}"


def _assert_absolute_url(url: str, what: object) -> None:
    parts = urlsplit(url)
    assert parts.scheme in ("http", "https"), f"not an http(s) URL: {url!r} ({what})"
    assert parts.netloc, f"no host in {url!r} ({what})"


def json_body(response: httpx.Response) -> Any:
    """The JSON of an answer whose content type says JSON (every answer must)."""
    media_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    assert media_type == "application/json", (
        f"content-type {media_type!r}, not application/json: {_describe(response)}"
    )
    try:
        return response.json()
    except ValueError as exc:
        raise AssertionError(f"the body is not JSON: {_describe(response)}") from exc


def assert_submit_answer(response: httpx.Response) -> dict[str, Any]:
    """200 `{"status": "QUEUED", "request_id", "poll_url", ["message"]}`, the id in the URL
    (`"COMPLETED"` for the gateway's cache HIT)."""
    assert response.status_code == 200, _describe(response)
    body = json_body(response)
    assert isinstance(body, dict), _describe(response)
    keys = set(body)
    assert SUBMIT_REQUIRED <= keys <= SUBMIT_REQUIRED | SUBMIT_OPTIONAL, (
        f"submit answer keys {sorted(keys)}; expected {sorted(SUBMIT_REQUIRED)} "
        f"and optionally {sorted(SUBMIT_OPTIONAL)}"
    )
    # The gateway says COMPLETED for a cache HIT (the result is ready), and only then.
    hit = response.headers.get("x-cache-status") == "HIT"
    assert body["status"] == ("COMPLETED" if hit else QUEUED), body
    assert isinstance(body["request_id"], str), body
    assert REQUEST_ID.fullmatch(body["request_id"]), f"request id {body['request_id']!r}"
    if "message" in body:
        assert isinstance(body["message"], str), body
    poll_url = body["poll_url"]
    assert isinstance(poll_url, str), body
    _assert_absolute_url(poll_url, "poll_url")
    assert urlsplit(poll_url).path.endswith(f"{POLL_PATH}{body['request_id']}"), (
        f"poll_url {poll_url!r} does not end with {POLL_PATH}{body['request_id']}"
    )
    return body


def assert_poll_answer(response: httpx.Response) -> dict[str, Any]:
    """200 with one of the documented poll bodies; returns it."""
    assert response.status_code == 200, _describe(response)
    body = json_body(response)
    assert isinstance(body, dict), _describe(response)
    status = body.get("status")
    assert isinstance(status, str), f"no status: {body}"
    assert status in POLL_KEYS, f"status {status!r} is none of {sorted(POLL_KEYS)}: {body}"
    keys = set(body) - GATEWAY_EXTENSIONS
    assert {"status"} <= keys <= POLL_KEYS[status], (
        f"a {status} answer has keys {sorted(keys)}; documented: {sorted(POLL_KEYS[status])}"
    )
    if status == PROCESSING and "output" in body:
        assert body["output"] == "", f"PROCESSING output {body['output']!r}, documented ''"
    if status == COMPLETED:
        assert_completed_output(body)
    if status == FAILED:
        reasons = [body[k] for k in FAILURE_REASON_KEYS if k in body]
        assert reasons, f"a FAILED answer gives no reason under {FAILURE_REASON_KEYS}: {body}"
        assert all(isinstance(r, str) and r.strip() for r in reasons), body
    return body


def assert_completed_output(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """`output` is a JSON document serialised as a string: a list of
    `{"keyname": str, "value": {"data": URL, "type": "image"|"video"|"text"}}`, here one
    video per scene. The key names are unknown for this workflow, so only their shape and
    distinctness are checked."""
    raw = body.get("output")
    assert isinstance(raw, str), f"COMPLETED output must be a JSON string, got {type(raw)}"
    try:
        outputs = json.loads(raw)
    except ValueError as exc:
        raise AssertionError(f"COMPLETED output is not JSON: {raw[:200]!r}") from exc
    assert isinstance(outputs, list), f"COMPLETED output decodes to {type(outputs).__name__}"
    assert len(outputs) == VIDEOS_PER_RUN, f"{len(outputs)} outputs, one per scene expected"
    names, urls = set(), set()
    for item in outputs:
        assert isinstance(item, dict), item
        assert set(item) == {"keyname", "value"}, item
        assert isinstance(item["keyname"], str), item
        assert item["keyname"], item
        value = item["value"]
        assert isinstance(value, dict), item
        assert set(value) == {"data", "type"}, item
        assert value["type"] in OUTPUT_TYPES, item
        assert value["type"] == "video", f"this workflow makes videos: {item}"
        assert isinstance(value["data"], str), item
        _assert_absolute_url(value["data"], item)
        names.add(item["keyname"])
        urls.add(value["data"])
    assert len(names) == len(urls) == VIDEOS_PER_RUN, "outputs must be four distinct videos"
    return outputs


def assert_error_answer(
    response: httpx.Response, code: int, *, sent_key: str | None = None
) -> dict[str, Any]:
    """`code` with `{"error": "<sentence>", ...}` as JSON; 429 says when to come back."""
    assert response.status_code == code, f"expected {code}: {_describe(response)}"
    body = json_body(response)
    assert isinstance(body, dict), _describe(response)
    assert set(body) >= ERROR_REQUIRED, f"error keys {sorted(body)} lack {sorted(ERROR_REQUIRED)}"
    assert isinstance(body["error"], str), body
    assert body["error"].strip(), f"an empty error message: {body}"
    clashing = ERROR_FORBIDDEN & set(body)
    assert not clashing, f"an error answer carries job keys {sorted(clashing)}: {body}"
    if code == 429:
        retry_after = response.headers.get("retry-after")
        assert retry_after is not None, f"429 without Retry-After: {_describe(response)}"
        assert re.fullmatch(r"\d+", retry_after.strip()), f"Retry-After {retry_after!r}"
    if sent_key:
        # The key a caller sent is never echoed back (logs, proxies and screenshots keep
        # error texts).
        assert sent_key not in response.text, "the error answer echoes the key sent"
    return body


def assert_forward(statuses: Sequence[str]) -> None:
    """States only move forward, QUEUED -> PROCESSING -> COMPLETED | FAILED; a state may
    be missed between two polls, never revisited; a terminal state stays put."""
    ranks = [STATE_RANK[s] for s in statuses]
    assert ranks == sorted(ranks), f"states moved backwards: {statuses}"
    terminal = [s for s in statuses if s in TERMINAL]
    assert len(set(terminal)) <= 1, f"a terminal state changed: {statuses}"


def poll_until_terminal(session: Session, poll_url: str) -> list[dict[str, Any]]:
    """Poll `poll_url` every `poll_interval` of the target's time until a terminal state;
    returns every answer. Fails when none comes within the result lifetime."""
    bodies: list[dict[str, Any]] = []
    waited = 0.0
    while waited <= RESULT_LIFETIME:
        body = assert_poll_answer(session.http.get(poll_url))
        bodies.append(body)
        if body["status"] in TERMINAL:
            return bodies
        session.advance(session.poll_interval)
        waited += session.poll_interval
    statuses = [b["status"] for b in bodies]
    raise AssertionError(f"no terminal state within {RESULT_LIFETIME} s: {statuses}")


def pass_time(session: Session, seconds: float) -> None:
    """Let `seconds` pass in poll-sized steps, as real time would: a target that works in
    the background (the gateway polls upstream) sees every moment, not one jump."""
    steps = math.ceil(seconds / session.poll_interval)
    for _ in range(steps):
        session.advance(seconds / steps)


def _assert_terminal_stays(session: Session, poll_url: str, final: dict[str, Any]) -> None:
    for _ in range(3):
        session.advance(session.poll_interval)
        assert assert_poll_answer(session.http.get(poll_url)) == final, "terminal answer changed"


# -- the checks --------------------------------------------------------------------------


def check_submit_answers_queued(target: Target) -> None:
    """A submit of `{}` answers 200 QUEUED with an id and a poll_url that this target serves."""
    with target.session(SUCCESS) as session:
        queued = assert_submit_answer(session.submit({}))
        # Fetchable here, with this target's key, answering one of the documented states.
        assert_poll_answer(session.http.get(queued["poll_url"]))


def check_a_run_moves_forward_to_completed(target: Target) -> None:
    """QUEUED -> (PROCESSING) -> COMPLETED, never backwards; four videos; stays COMPLETED."""
    with target.session(SUCCESS) as session:
        poll_url = assert_submit_answer(session.submit({}))["poll_url"]
        bodies = poll_until_terminal(session, poll_url)
        statuses = [b["status"] for b in bodies]
        assert_forward(statuses)
        assert statuses[0] in (QUEUED, PROCESSING), statuses
        assert statuses[-1] == COMPLETED, statuses
        _assert_terminal_stays(session, poll_url, bodies[-1])


def check_a_failed_run_reports_its_reason(target: Target) -> None:
    """QUEUED -> (PROCESSING) -> FAILED with a reason under `error_message` or `error`."""
    with target.session(FAILED_RUN) as session:
        poll_url = assert_submit_answer(session.submit(FAILED_INPUTS, fail=True))["poll_url"]
        bodies = poll_until_terminal(session, poll_url)
        statuses = [b["status"] for b in bodies]
        assert_forward(statuses)
        assert statuses[-1] == FAILED, statuses
        _assert_terminal_stays(session, poll_url, bodies[-1])


def check_a_result_expires_after_an_hour(target: Target) -> None:
    """More than the result lifetime after the submit, polling the id answers 404."""
    with target.session(EXPIRED) as session:
        poll_url = assert_submit_answer(session.submit({}))["poll_url"]
        pass_time(session, RESULT_LIFETIME + 1)
        assert_error_answer(session.http.get(poll_url), 404)


def check_a_wrong_key_is_refused(target: Target) -> None:
    """A submit with a key the target does not know: 401, and the key is not echoed."""
    with target.session(WRONG_KEY_SUBMIT) as session:
        answer = session.client(WRONG_KEY).post(SUBMIT_PATH, json={})
        assert_error_answer(answer, 401, sent_key=WRONG_KEY)


def check_a_missing_key_is_refused(target: Target) -> None:
    """A submit and a poll with no key at all: 401 each."""
    with target.session(MISSING_KEY) as session:
        anonymous = session.client(None)
        assert_error_answer(anonymous.post(SUBMIT_PATH, json={}), 401)
        assert_error_answer(anonymous.get(f"{POLL_PATH}{uuid.uuid4().hex}"), 401)


def check_an_unknown_workflow_is_not_found(target: Target) -> None:
    """A submit to a workflow id that does not exist: 404."""
    with target.session(UNKNOWN_WORKFLOW_SUBMIT) as session:
        answer = session.http.post(f"/workflows/{UNKNOWN_WORKFLOW}", json={})
        assert_error_answer(answer, 404)


def check_an_unknown_request_id_is_not_found(target: Target) -> None:
    """A poll of an id that was never submitted: 404."""
    with target.session(UNKNOWN_REQUEST) as session:
        answer = session.http.get(f"{POLL_PATH}{uuid.uuid4().hex}")
        assert_error_answer(answer, 404)


# Bodies SEGMIND_API.md rules out: the body is a JSON object of inputs, each a string,
# Character_Image a URI.
INVALID_BODIES: tuple[tuple[str, bytes], ...] = (
    ("not JSON", b'{"Scene_1": '),
    ("an array", b"[]"),
    ("a number for a scene", b'{"Scene_1": 42}'),
    ("not a URI for the image", b'{"Character_Image": "a photo of me"}'),
)


def check_invalid_input_is_refused_before_any_charge(target: Target) -> None:
    """Each invalid body: 400, and nothing is charged."""
    with target.session(INVALID_INPUT) as session:
        before = session.spent()
        for what, raw in INVALID_BODIES:
            answer = session.http.post(
                SUBMIT_PATH, content=raw, headers={"content-type": "application/json"}
            )
            try:
                assert_error_answer(answer, 400)
            except AssertionError as exc:
                raise AssertionError(f"invalid body ({what}): {exc}") from exc
        assert session.spent() == before, "an invalid submit was charged"


def check_either_auth_header_is_accepted(target: Target) -> None:
    """`x-api-key: K` and `Authorization: Bearer K` both work; credits answer numbers."""
    with target.session(CREDITS) as session:
        for scheme in ("x-api-key", "bearer"):
            answer = session.client(session.key, scheme=scheme).get(CREDITS_PATH)
            assert answer.status_code == 200, f"{scheme}: {_describe(answer)}"
            body = json_body(answer)
            assert isinstance(body, dict), body
            assert {"credits", "free-credits"} <= set(body), body
            for name in ("credits", "free-credits"):
                value = body[name]
                assert isinstance(value, int | float), body
                assert not isinstance(value, bool), body


def check_forced(code: int) -> Callable[[Target], None]:
    def check(target: Target) -> None:
        with target.session(forced_scenario(code)) as session:
            assert_error_answer(session.force(code), code)

    check.__name__ = f"check_forced_{code}"
    check.__doc__ = f"A submit the target is made to refuse with {code}: the error contract."
    return check


CHECKS: Mapping[str, Callable[[Target], None]] = {
    "submit_answers_queued": check_submit_answers_queued,
    "run_moves_forward_to_completed": check_a_run_moves_forward_to_completed,
    "failed_run_reports_its_reason": check_a_failed_run_reports_its_reason,
    "result_expires_after_an_hour": check_a_result_expires_after_an_hour,
    "wrong_key_401": check_a_wrong_key_is_refused,
    "missing_key_401": check_a_missing_key_is_refused,
    "unknown_workflow_404": check_an_unknown_workflow_is_not_found,
    "unknown_request_404": check_an_unknown_request_id_is_not_found,
    "invalid_input_400_uncharged": check_invalid_input_is_refused_before_any_charge,
    "either_auth_header": check_either_auth_header_is_accepted,
    **{f"forced_{code}": check_forced(code) for code in FORCED_CODES},
}
