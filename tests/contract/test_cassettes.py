"""The committed cassettes: they replay offline through our client, match requests the way
`client.cassettes` documents, hold no secret, and still say what the fake says.

Replays run with record mode `none` and sockets blocked: an unrecorded request raises
vcrpy's `CannotOverwriteExistingCassetteException`, and any attempt to open a connection
fails the test. Time is a virtual clock; nothing sleeps.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import re
import shutil
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml  # type: ignore[import-untyped]
from vcr.errors import CannotOverwriteExistingCassetteException

from client import (
    CHARACTER_VIDEO_WORKFLOW_ID,
    CharacterVideoInputs,
    Client,
    GenerationFailed,
    InvalidWebhook,
    JobResult,
    JobState,
    NotFound,
    RateLimited,
    RetryPolicy,
    SegmindError,
    WaitTimeout,
    verify_webhook,
)
from client.cassettes import (
    AUTH_PLACEHOLDER,
    CASSETTE_WEBHOOK_SECRET,
    GATEWAY_BASE,
    HOOK_URL,
    REPEAT_LAST,
    TEAM_KEY_PLACEHOLDER,
    ReplayPersister,
    canonical_body,
    cassette_dir,
    cassette_path,
    make_vcr,
    recorded_webhook,
    segmind_body,
)
from proxy.core.webhooks import message_id
from tests.contract import record
from tests.contract.record import FAILED_INPUTS, FLOWS, RECORDING_KEYS, Flow, play
from tests.contract.record_gateway import GATEWAY_FLOWS
from tests.stack import ADMIN_KEY, UPSTREAM_KEY

CASSETTES = cassette_dir()
SUBMIT_PATH = f"/workflows/{CHARACTER_VIDEO_WORKFLOW_ID}"
FIRST_ID = f"{1:032x}"


class ReplayClock:
    """Virtual time for the client: sleeping moves it, nothing waits."""

    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


class ReplaySession:
    """Drives the recorder's flows against a cassette: any key, any base URL, no Prefer."""

    webhook_url = HOOK_URL

    def __init__(self, base_url: str = "https://api.segmind.com") -> None:
        self.base_url = base_url
        self.clock = ReplayClock()

    def client(
        self,
        *,
        key: str | None = None,
        prefer: str | None = None,
        workflow_id: str | None = None,
        retry: RetryPolicy | None = None,
    ) -> Client:
        return Client(
            "any-key",
            base_url=self.base_url,
            workflow_id=workflow_id or CHARACTER_VIDEO_WORKFLOW_ID,
            clock=self.clock,
            rng=random.Random(0),
            retry=retry,
        )

    def advance(self, seconds: float) -> None:
        self.clock.sleep(seconds)

    def set_credits(self, credits: float) -> None:
        pass


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> Any:
        raise AssertionError(f"an offline test tried to use the network: {args!r}")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


def recorded_count(path: Path) -> int:
    return len(load(path)["interactions"])


def cassette_files() -> list[Path]:
    return sorted(CASSETTES.glob("*.yaml"))


# -- every flow replays -----------------------------------------------------------------


ALL_FLOWS = (*FLOWS, *GATEWAY_FLOWS)
GATEWAY_BY_NAME = {flow.name: flow for flow in GATEWAY_FLOWS}


def test_every_flow_has_its_committed_cassette() -> None:
    assert {p.stem for p in cassette_files()} == {f.name for f in ALL_FLOWS}
    for flow in ALL_FLOWS:
        meta = load(cassette_path(flow.name))["metadata"]
        assert meta["flow"] == flow.name
        assert meta["client_outcome"] == flow.expectation
        assert meta["recorded_at"]
        assert meta["recorded_against"]


@pytest.mark.usefixtures("no_network")
@pytest.mark.parametrize("flow", ALL_FLOWS, ids=lambda f: f.name)
def test_each_cassette_replays_its_flow_through_the_client(flow: Flow) -> None:
    path = cassette_path(flow.name)
    with make_vcr().use_cassette(str(path)) as cassette:
        outcome = play(flow, ReplaySession())
    # Every answer the client was given is used; a webhook delivery is what the gateway
    # sent, not an answer to the client.
    sent_by_client = [
        i for i, x in enumerate(load(path)["interactions"]) if x["request"]["uri"] != HOOK_URL
    ]
    assert all(cassette.play_counts[i] > 0 for i in sent_by_client), "a recorded answer unused"
    if flow.returns is not None:
        assert isinstance(outcome, flow.returns)
    elif flow.expect is None:
        assert isinstance(outcome, JobResult)
        assert outcome.request_id in (FIRST_ID, f"{2:032x}")
        assert all(
            url.startswith("https://api.segmind.com/assets/") for url in outcome.videos.values()
        )
    else:
        assert isinstance(outcome, flow.expect)
        assert isinstance(outcome, SegmindError)
        assert outcome.message


@pytest.mark.usefixtures("no_network")
def test_the_failed_and_rate_limited_answers_carry_their_details() -> None:
    with make_vcr().use_cassette(str(cassette_path("failed"))):
        failed = play(record.FLOWS_BY_NAME["failed"], ReplaySession())
    assert isinstance(failed, GenerationFailed)
    assert "Workflow execution failed" in failed.message
    with make_vcr().use_cassette(str(cassette_path("error_429"))) as cassette:
        limited = play(record.FLOWS_BY_NAME["error_429"], ReplaySession())
    assert isinstance(limited, RateLimited)
    assert limited.retry_after == 1
    assert cassette.play_count == 5  # one recorded 429, repeated for each of the client's retries


@pytest.mark.usefixtures("no_network")
@pytest.mark.parametrize("base_url", ["https://api.segmind.com", "http://127.0.0.1:9", "http://gw"])
def test_a_cassette_replays_against_any_base_url(base_url: str) -> None:
    with make_vcr().use_cassette(str(cassette_path("success"))):
        outcome = play(record.FLOWS_BY_NAME["success"], ReplaySession(base_url))
    assert isinstance(outcome, JobResult)
    assert len(outcome.videos) == 4


# -- poll loops -------------------------------------------------------------------------


@pytest.mark.usefixtures("no_network")
def test_a_poll_loop_replays_in_order_then_repeats_the_terminal_answer() -> None:
    session = ReplaySession()
    with make_vcr().use_cassette(str(cassette_path("success"))), session.client() as client:
        job = client.submit({})
        states = [client.status(job).state for _ in range(3 + REPEAT_LAST)]
    assert states[:3] == [JobState.QUEUED, JobState.PROCESSING, JobState.COMPLETED]
    assert set(states[3:]) == {JobState.COMPLETED}


@pytest.mark.usefixtures("no_network")
def test_an_expired_id_keeps_answering_404() -> None:
    session = ReplaySession()
    with make_vcr().use_cassette(str(cassette_path("expired"))), session.client() as client:
        job = client.submit({})
        for _ in range(3):
            with pytest.raises(NotFound):
                client.status(job)


@pytest.mark.usefixtures("no_network")
def test_vcrpys_allow_playback_repeats_would_replay_the_first_poll_for_ever() -> None:
    """Why `client.cassettes` does not use it: in vcrpy 9.4, with repeats allowed, every
    request gets the *first* matching answer, so a poll loop sees QUEUED until it gives up."""
    session = ReplaySession()
    path = str(cassette_path("success"))
    with (
        make_vcr().use_cassette(path, allow_playback_repeats=True),
        session.client() as client,
        pytest.raises(WaitTimeout) as caught,
    ):
        client.run({}, timeout=600)
    assert caught.value.last_status == "QUEUED"


# -- matching ---------------------------------------------------------------------------


@pytest.mark.usefixtures("no_network")
def test_other_inputs_do_not_replay_a_recorded_submit() -> None:
    session = ReplaySession()
    with (
        make_vcr().use_cassette(str(cassette_path("success"))),
        session.client() as client,
        pytest.raises(CannotOverwriteExistingCassetteException, match="inputs differ"),
    ):
        client.submit({"Scene_1": "A knight on a misty bridge"})
    with make_vcr().use_cassette(str(cassette_path("failed"))), session.client() as client:
        with pytest.raises(CannotOverwriteExistingCassetteException):
            client.submit({})  # recorded with FAILED_INPUTS
        assert client.submit(FAILED_INPUTS).request_id == FIRST_ID


@pytest.mark.usefixtures("no_network")
@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{}",
        json.dumps({"Scene_4": "Model against chain-link fence, rebellious lean"}).encode(),
        json.dumps(dict(reversed(CharacterVideoInputs().to_payload().items()))).encode(),
    ],
    ids=["empty", "{}", "one default", "reversed order"],
)
def test_the_defaults_match_however_they_are_spelled(body: bytes) -> None:
    with make_vcr().use_cassette(str(cassette_path("success"))):
        answer = httpx.post(
            f"http://anywhere.test{SUBMIT_PATH}",
            content=body,
            headers={"content-type": "application/json", "x-api-key": "whatever"},
        )
    assert answer.status_code == 200
    assert answer.json()["request_id"] == FIRST_ID


@pytest.mark.usefixtures("no_network")
def test_two_submits_in_one_cassette_each_get_their_own_answer(tmp_path: Path) -> None:
    success, failed = load(cassette_path("success")), load(cassette_path("failed"))
    # The failed job's id becomes 000...002, so both jobs live in one cassette.
    failed_text = yaml.safe_dump(failed["interactions"]).replace(FIRST_ID, f"{2:032x}")
    both = {"version": 1, "interactions": yaml.safe_load(failed_text) + success["interactions"]}
    (tmp_path / "both.yaml").write_text(yaml.safe_dump(both))
    with make_vcr(cassette_dir=tmp_path).use_cassette("both.yaml"):
        done = play(record.FLOWS_BY_NAME["success"], ReplaySession())
        lost = play(record.FLOWS_BY_NAME["failed"], ReplaySession())
    assert isinstance(done, JobResult)
    assert done.request_id == FIRST_ID
    assert isinstance(lost, GenerationFailed)
    assert lost.request_id == f"{2:032x}"


def test_canonical_bodies() -> None:
    spelled = json.dumps(CharacterVideoInputs().to_payload()).encode()
    assert canonical_body(SUBMIT_PATH, b"{}") == canonical_body(SUBMIT_PATH, spelled)
    assert canonical_body(SUBMIT_PATH, None) == canonical_body(SUBMIT_PATH, "{ }")
    assert canonical_body(SUBMIT_PATH, b"{}") != canonical_body(SUBMIT_PATH, b'{"Scene_1": "x"}')
    # Inputs the model refuses, other workflows and non-JSON are compared as sent.
    assert canonical_body(SUBMIT_PATH, b'{"Scene_1": ""}') == b'{"Scene_1":""}'
    other = "/workflows/abc-v1"
    assert canonical_body(other, b'{"b": 1, "a": 2}') == b'{"a":2,"b":1}'
    assert canonical_body(other, b"{}") == b"{}"
    assert canonical_body(other, b" not json ") == b"not json"


def test_the_body_matcher_only_looks_at_submits() -> None:
    from vcr.request import Request

    poll = f"https://api.segmind.com/workflows/request/{FIRST_ID}"
    segmind_body(Request("GET", poll, b"a", {}), Request("GET", poll, b"b", {}))
    submit = f"https://api.segmind.com{SUBMIT_PATH}"
    segmind_body(Request("POST", submit, b"{}", {}), Request("POST", submit, b"", {}))
    with pytest.raises(AssertionError, match="recorded"):
        segmind_body(
            Request("POST", submit, b'{"Scene_1": "x"}', {}), Request("POST", submit, b"", {})
        )


# -- the gateway's cassettes -------------------------------------------------------------


def answers(name: str) -> list[tuple[str, int, dict[str, list[str]], Any]]:
    """(method path, status, headers, parsed body) of each recorded answer."""
    out = []
    for interaction in load(cassette_path(name))["interactions"]:
        request, response = interaction["request"], interaction["response"]
        text = response["body"]["string"]
        out.append(
            (
                f"{request['method']} {httpx.URL(request['uri']).path}",
                response["status"]["code"],
                response["headers"],
                json.loads(text) if text else None,
            )
        )
    return out


def test_the_hit_cassette_answers_a_repeat_from_the_cache() -> None:
    submits = [a for a in answers("gateway_hit") if a[0] == f"POST {SUBMIT_PATH}"]
    assert [s[2]["x-cache-status"] for s in submits] == [["MISS"], ["HIT"]]
    hit_id = submits[1][3]["request_id"]
    polls = [a for a in answers("gateway_hit") if a[0].endswith(hit_id)]
    assert [p[3]["status"] for p in polls] == ["COMPLETED"]  # done at its first poll


def test_the_join_cassette_runs_two_requests_on_one_generation() -> None:
    recorded = answers("gateway_join")
    submits = [a for a in recorded if a[0].startswith("POST")]
    assert [s[2]["x-cache-status"] for s in submits] == [["MISS"], ["JOIN"]]
    first, second = (s[3]["request_id"] for s in submits)
    assert first != second  # two requests, each with its own id
    endings = {a[0].rsplit("/", 1)[1]: a[3] for a in recorded if a[0].startswith("GET")}
    assert endings[first]["output"] == endings[second]["output"]


@pytest.mark.usefixtures("no_network")
def test_the_quota_cassette_says_when_to_come_back() -> None:
    [(_, ok, _, _), (_, code, headers, body)] = answers("gateway_quota_429")
    assert (ok, code) == (200, 429)
    assert headers["retry-after"] == [str(body["retry_after"])]
    assert body["limit"] == "submits_per_minute"
    assert headers["ratelimit-policy"] == ['"submits";q=1;w=60']
    with make_vcr().use_cassette(str(cassette_path("gateway_quota_429"))):
        limited = play(GATEWAY_BY_NAME["gateway_quota_429"], ReplaySession())
    assert isinstance(limited, RateLimited)
    assert limited.retry_after == body["retry_after"]


def test_the_budget_cassette_names_the_budget() -> None:
    [(_, code, _, body)] = answers("gateway_budget_406")
    assert code == 406
    assert "budget" in body["error"]


def test_the_recorded_webhook_verifies_with_the_published_secret() -> None:
    hook = recorded_webhook()
    assert hook.url == HOOK_URL
    at = dt.datetime.fromtimestamp(hook.timestamp, dt.UTC)
    event = verify_webhook(hook.body, hook.headers, CASSETTE_WEBHOOK_SECRET, now=at)
    assert event.type == "job.completed"
    assert sorted(event.result.videos) == [1, 2, 3, 4]
    assert event.webhook_id == message_id(event.result.request_id, "job.completed")
    with pytest.raises(InvalidWebhook):
        verify_webhook(hook.body.replace(b"COMPLETED", b"FAILED"), hook.headers,
                       CASSETTE_WEBHOOK_SECRET, now=at)  # fmt: skip
    with pytest.raises(LookupError, match="gateway_webhook"):
        recorded_webhook("success")


# -- what is on disk --------------------------------------------------------------------

KEY_SHAPED = [
    re.compile(r"SG_[0-9a-f]{16}"),
    re.compile(r"sk-[A-Za-z0-9]{20,}"),
    re.compile(r"whsec_"),
    re.compile(r"sgw_[A-Za-z0-9_-]{8,}"),
    re.compile(r"Bearer (?!<SEGMIND_API_KEY>|<TEAM_KEY>)\S+"),
    re.compile(r"X-Amz-(?:Signature|Credential|Security-Token)=(?!<REDACTED>)", re.I),
    re.compile(r"127\.0\.0\.1|localhost"),  # a local host or port left in: not normalised
]


SEGMIND_ANSWER_HEADERS = {"content-type", "retry-after"}
GATEWAY_ANSWER_HEADERS = SEGMIND_ANSWER_HEADERS | {
    "idempotent-replayed", "ratelimit", "ratelimit-policy", "x-cache-status",
}  # fmt: skip
STACK_SECRETS = (UPSTREAM_KEY, ADMIN_KEY)  # what the gateway recording ran with


@pytest.mark.parametrize("path", cassette_files(), ids=lambda p: p.name)
def test_no_cassette_holds_a_secret(path: Path) -> None:
    text = path.read_text()
    for key in (*RECORDING_KEYS, *STACK_SECRETS):
        assert key not in text, f"{path.name} holds a recording key"
    for pattern in KEY_SHAPED:
        assert not pattern.search(text), f"{path.name} matches {pattern.pattern}"
    gateway = path.stem.startswith("gateway_")
    placeholder = TEAM_KEY_PLACEHOLDER if gateway else AUTH_PLACEHOLDER
    for interaction in load(path)["interactions"]:
        request = interaction["request"]
        for name, values in request["headers"].items():
            if name.lower() in ("x-api-key", "authorization"):
                assert set(values) <= {placeholder, f"Bearer {placeholder}"}, path.name
        assert {n.lower() for n in interaction["response"]["headers"]} <= (
            GATEWAY_ANSWER_HEADERS if gateway else SEGMIND_ANSWER_HEADERS
        )
        bases = (f"{GATEWAY_BASE}/", HOOK_URL) if gateway else ("https://api.segmind.com/",)
        assert request["uri"].startswith(bases), request["uri"]


def test_the_metadata_survives_loading_by_vcrpy() -> None:
    path = cassette_path("success")
    with make_vcr().use_cassette(str(path)) as cassette:
        assert len(cassette) == recorded_count(path) + 2 * REPEAT_LAST  # submit, poll: repeated
        if hasattr(cassette, "get_metadata"):  # vcrpy 9.4+; older versions ignore the key
            assert cassette.get_metadata("flow", None) == "success"


def test_repeats_are_added_on_load_and_never_written(tmp_path: Path) -> None:
    import vcr.serializers.yamlserializer as serializer

    path = cassette_path("success")
    requests, responses, *_ = ReplayPersister.load_cassette(path, serializer)
    assert len(requests) == recorded_count(path) + 2 * REPEAT_LAST  # the submit and the poll
    ReplayPersister.save_cassette(
        tmp_path / "again.yaml", {"requests": requests, "responses": responses}, serializer
    )
    assert load(tmp_path / "again.yaml")["interactions"] == load(path)["interactions"]


def test_cassette_path_names_what_it_knows(tmp_path: Path) -> None:
    assert cassette_path("success.yaml") == cassette_path("success") == CASSETTES / "success.yaml"
    with pytest.raises(FileNotFoundError, match=r"known: .*success"):
        cassette_path("no-such-flow")
    with pytest.raises(FileNotFoundError, match="vendor"):
        cassette_path("success", directory=tmp_path)


def test_vendored_cassettes_replay_from_a_folder_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As docs/cassettes.md tells another team: copy the YAML into its own tests/cassettes and
    # name that folder relative to where pytest runs.
    vendored = tmp_path / "tests" / "cassettes"
    vendored.mkdir(parents=True)
    for name in ("success.yaml", "gateway_webhook.yaml"):
        shutil.copy(CASSETTES / name, vendored / name)
    monkeypatch.chdir(tmp_path)
    with (
        make_vcr().use_cassette(cassette_path("success", directory="tests/cassettes")),
        Client(api_key="any", base_url="https://api.segmind.com") as client,
    ):
        assert sorted(client.run({}, poll_interval=0.01).videos) == [1, 2, 3, 4]
    hook = recorded_webhook(directory="tests/cassettes")
    assert hook.url == HOOK_URL


# -- the recorder -----------------------------------------------------------------------


def signature(data: dict[str, Any]) -> list[tuple[Any, ...]]:
    """What must not change between recordings: method, path, status, the canonical request
    body and the answer's shape (with every `status` field's value, so the state order)."""
    out = []
    for interaction in data["interactions"]:
        request, response = interaction["request"], interaction["response"]
        path = httpx.URL(request["uri"]).path
        out.append(
            (
                request["method"],
                path,
                canonical_body(path, request.get("body")) if request["method"] == "POST" else b"",
                response["status"]["code"],
                shape(response["body"]["string"]),
            )
        )
    return out


def shape(value: Any) -> Any:
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            return "str"
        return shape(parsed) if isinstance(parsed, dict | list) else "str"
    if isinstance(value, dict):
        return {k: v if k == "status" else shape(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [shape(v) for v in value]
    return type(value).__name__


def test_re_recording_against_the_fake_gives_the_committed_interactions(tmp_path: Path) -> None:
    written = record.record(tmp_path / "cassettes", log=lambda _line: None)
    assert sorted(p.name for p in written) == sorted(f"{f.name}.yaml" for f in ALL_FLOWS)
    for fresh in written:
        committed = load(CASSETTES / fresh.name)
        if committed["metadata"]["target"] != "fake":
            continue  # recorded from real Segmind: not comparable with the fake
        assert signature(load(fresh)) == signature(committed), (
            f"cassettes/{fresh.name} is stale: re-record with `make cassettes`"
        )


def test_normalise_scrubs_and_compacts() -> None:
    key = RECORDING_KEYS[0]
    poll: dict[str, Any] = {
        "request": {
            "method": "GET",
            "uri": "http://127.0.0.1:4321/workflows/request/abc123?api_key=" + key,
            "body": "",
            "headers": {"x-api-key": [key], "user-agent": ["x"], "Host": ["127.0.0.1:4321"]},
        },
        "response": {
            "status": {"code": 200, "message": "OK"},
            "headers": {"date": ["Mon"], "server": ["uvicorn"], "content-type": ["a/json"]},
            "body": {"string": '{"status": "QUEUED", "echo": "' + key + '"}'},
        },
    }
    done = {
        **poll,
        "response": {
            **poll["response"],
            "body": {
                "string": '{"status": "COMPLETED", "at": "2025-01-02T03:04:05Z", "output": '
                '"http://127.0.0.1:4321/a.mp4?X-Amz-Signature=deadbeef&x=1"}'
            },
        },
    }
    out = record.normalise(
        {"interactions": [poll, poll, poll, done, done]},
        recorded_base="http://127.0.0.1:4321",
        secrets=[key],
    )
    text = json.dumps(out)
    assert len(out["interactions"]) == 2
    assert key not in text
    assert "127.0.0.1" not in text
    assert "deadbeef" not in text
    first = out["interactions"][0]["request"]
    assert first["uri"] == (
        f"https://api.segmind.com/workflows/request/{FIRST_ID}?api_key=%3CSEGMIND_API_KEY%3E"
    )
    assert first["headers"] == {"x-api-key": [AUTH_PLACEHOLDER]}
    assert out["interactions"][0]["response"]["headers"] == {"content-type": ["a/json"]}
    assert "2000-01-01T00:00:00Z" in text


@pytest.fixture
def live_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr(record, "record", _must_not_record)
    return monkeypatch


def _must_not_record(*args: object, **kwargs: object) -> list[Path]:
    raise AssertionError("the recorder must refuse before recording anything")


def test_live_recording_says_what_it_costs_and_needs_the_flag(
    live_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    live_env.setenv("SEGMIND_API_KEY", "SG_not-a-real-key-0123")
    assert record.main(["--live"]) == 2
    err = capsys.readouterr().err
    assert "costs money" in err
    assert "$4" in err
    assert "--i-accept-the-cost" in err


def test_live_recording_needs_a_key_and_never_runs_in_ci(
    live_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert record.main(["--live", "--i-accept-the-cost"]) == 2
    assert "SEGMIND_API_KEY" in capsys.readouterr().err
    live_env.setenv("SEGMIND_API_KEY", "SG_not-a-real-key-0123")
    live_env.setenv("CI", "true")
    assert record.main(["--live", "--i-accept-the-cost"]) == 2
    assert "never runs in CI" in capsys.readouterr().err


def test_a_key_in_the_environment_alone_records_from_the_fake_and_says_how_to_go_live(
    live_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    live_env.setenv("SEGMIND_API_KEY", "SG_not-a-real-key-0123")
    seen: dict[str, object] = {}

    def fake_only(out: Path, **kwargs: object) -> list[Path]:
        seen.update(kwargs)
        return []

    live_env.setattr(record, "record", fake_only)
    assert record.main(["--out", str(tmp_path)]) == 0
    assert seen["live_key"] is None
    err = capsys.readouterr().err
    assert "recording from the fake" in err
    assert "costs money" in err
    assert "--live --i-accept-the-cost" in err


@pytest.mark.parametrize(
    ("only", "segmind", "gateway"),
    [
        (["credits"], ["credits"], []),
        (["gateway_hit"], [], ["gateway_hit"]),
        (["success", "gateway_join"], ["success"], ["gateway_join"]),
        ([], [f.name for f in FLOWS], None),  # None: all of the gateway's, the default
    ],
)
def test_only_records_the_flows_it_names_segminds_and_the_gateways(
    live_env: pytest.MonkeyPatch,
    tmp_path: Path,
    only: list[str],
    segmind: list[str],
    gateway: list[str] | None,
) -> None:
    live_env.delenv("SEGMIND_API_KEY", raising=False)
    seen: dict[str, Any] = {}

    def noted(out: Path, **kwargs: Any) -> list[Path]:
        seen.update(kwargs)
        return []

    live_env.setattr(record, "record", noted)
    argv = [arg for name in only for arg in ("--only", name)]
    assert record.main(["--out", str(tmp_path), *argv]) == 0
    assert [f.name for f in seen["flows"]] == segmind
    chosen = seen["gateway_flows"]
    assert (None if chosen is None else [f.name for f in chosen]) == gateway
