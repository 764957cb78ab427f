"""Record `cassettes/`: one vcrpy cassette per flow, from the fake Segmind (default) or live.

    python -m tests.contract.record [--out cassettes] [--only NAME ...]
    python -m tests.contract.record --live --i-accept-the-cost      # real Segmind, ~$4

By default it starts the fake (`python -m fakeserver`, a real uvicorn process on a virtual
clock with a fixed seed) and drives our client through each flow in `FLOWS`, the client's
sleeps moving the fake's clock over `/__admin`, so an eleven-minute job records in a
moment. vcrpy records in mode `all` into a fresh folder beside `--out`; only requests to
the API are kept (`/__admin` is dropped by `before_record_request`). Each raw cassette is
then normalised (`normalise`): host and port read `https://api.segmind.com` (request URIs
and the URLs inside bodies), request ids read `000...001`, `000...002`..., keys and
anything key-shaped become placeholders, headers are cut to what a client reads, and
consecutive identical answers to one request are collapsed (a poll loop keeps one answer
per state). Then the gateway's flows (`record_gateway.GATEWAY_FLOWS`: cache HIT, JOIN,
quota 429, budget 406, a webhook delivery) are recorded the same way through a real gateway
in front of the fake. Only when every flow recorded as expected are the files moved into
`--out`; other files there are left alone.

Every cassette says when and against what it was recorded in a top-level `metadata` map,
which vcrpy loads alongside `interactions` and `version` (and older vcrpy ignores).

The same flow drivers replay the cassettes in `tests/contract/test_cassettes.py`, so a
cassette always fits what the client actually sends.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import random
import re
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import yaml  # type: ignore[import-untyped]

from client import (
    CHARACTER_VIDEO_WORKFLOW_ID,
    BadGateway,
    BadRequest,
    Client,
    Credits,
    Forbidden,
    GatewayTimeout,
    GenerationFailed,
    InsufficientCredits,
    JobResult,
    NotFound,
    RateLimited,
    RetryPolicy,
    SegmindError,
    ServerError,
    Unauthorized,
)
from client.cassettes import (
    AUTH_PLACEHOLDER,
    FILTER_HEADERS,
    FILTER_QUERY_PARAMETERS,
    cassette_dir,
    interaction_key,
)
from tests.servers import ServerProcess, start_server

__all__ = [
    "FLOWS",
    "RECORDING_KEYS",
    "Flow",
    "Session",
    "main",
    "normalise",
    "play",
    "record",
]

CANONICAL_BASE = "https://api.segmind.com"
SEED = 7
# The fake's keys while recording. The secret scan looks for each of them in the cassettes.
RECORD_KEY = "rec-key-3f9a1c7e5b2d4a6c"
WRONG_KEY = "rec-wrong-key-7d2b9e4f1a6c"
RESTRICTED_KEY = "rec-restricted-key-c4e8a2f6b0d9"
RECORDING_KEYS = (RECORD_KEY, WRONG_KEY, RESTRICTED_KEY)
FAKE_ARGS = (
    "--api-key", RECORD_KEY, "--restricted-key", RESTRICTED_KEY,
    "--clock", "virtual", "--seed", str(SEED),
)  # fmt: skip
RESULT_LIFETIME = 3600.0  # Segmind keeps results about an hour after submission
UNKNOWN_WORKFLOW = "000000000000000000000000-v1"
FAILED_INPUTS = {"Scene_1": "A paper boat in a storm"}
LIVE_COST_WARNING = (
    "Recording from real Segmind costs money: the success flow runs one real generation "
    "(about $3.97 and about 11 minutes); the error flows are free. Roughly $4 per run."
)

REQUEST_HEADERS = ("accept", "content-type", "x-api-key", "authorization")
RESPONSE_HEADERS = ("content-type", "retry-after")
_POLL_ID = re.compile(r"/workflows/request/([^/?#]+)")
_SIGNED_URL_PARAM = re.compile(
    r"((?:X-Amz-(?:Signature|Credential|Security-Token)|Signature|Key-Pair-Id|sig|token)=)"
    r"[^&\"'\\\s]+",
    re.IGNORECASE,
)
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?")
_FIXED_TIMESTAMP = "2000-01-01T00:00:00Z"
SEGMIND_NORMALISED = (
    f"host -> {CANONICAL_BASE}; request ids -> 000...001, 000...002; keys -> "
    f"{AUTH_PLACEHOLDER}; headers cut to {', '.join(RESPONSE_HEADERS)} (answers) and "
    f"{', '.join(REQUEST_HEADERS)} (requests); timestamps -> {_FIXED_TIMESTAMP}; consecutive "
    "identical answers to one request collapsed (replayed, the last answer repeats)"
)
_HEADER = """\
# A recorded exchange with Segmind's character-video workflow, replayed offline by vcrpy.
# Written by `make cassettes` (python -m tests.contract.record); re-record, do not edit.
# Match and replay with client.cassettes (make_vcr / vcr_config). Hosts, request ids and
# keys are normalised; `metadata` says when and against what it was recorded.
"""


# -- the flows --------------------------------------------------------------------------


class Session(Protocol):
    """What a flow drives: a recording against the fake or Segmind, or a replay."""

    #: Where a flow asks for its webhook to go (gateway flows; any URL in a replay).
    webhook_url: str

    def client(
        self,
        *,
        key: str | None = None,
        prefer: str | None = None,
        workflow_id: str | None = None,
        retry: RetryPolicy | None = None,
    ) -> Client:
        """A client for this session; `key` and `prefer` matter only when recording."""

    def advance(self, seconds: float) -> None:
        """Let this much time pass (the fake's clock; nothing in a replay)."""

    def set_credits(self, credits: float) -> None:
        """Set the recording account's balance (the fake only)."""


@dataclass(frozen=True)
class Flow:
    name: str
    description: str
    drive: Callable[[Session], object]
    expect: type[SegmindError] | None  # None: completes with four videos (or `returns`)
    how: str = ""  # how the fake was brought to answer so
    inputs: Mapping[str, str] = field(default_factory=dict)
    live: bool = False  # can be recorded from real Segmind
    inputs_note: str = "all defaults ({} and the spelled-out defaults match)"
    limits: Mapping[str, float] = field(default_factory=dict)  # gateway flows: team limits
    returns: type | None = None  # what a flow that runs no job answers (expect is None)

    @property
    def expectation(self) -> str:
        if self.expect is not None:
            return self.expect.__name__
        return "JobResult with 4 videos" if self.returns is None else self.returns.__name__


def _run(inputs: Mapping[str, str], prefer: str | None = None) -> Callable[[Session], object]:
    def drive(session: Session) -> object:
        with session.client(prefer=prefer) as client:
            return client.run(dict(inputs))

    return drive


def _submit(
    *,
    key: str | None = None,
    prefer: str | None = None,
    workflow_id: str | None = None,
    credits: float | None = None,
) -> Callable[[Session], object]:
    def drive(session: Session) -> object:
        if credits is not None:
            session.set_credits(credits)
        with session.client(key=key, prefer=prefer, workflow_id=workflow_id) as client:
            return client.submit({})

    return drive


def _credits(session: Session) -> object:
    with session.client() as client:
        return client.credits()


def _expired(session: Session) -> object:
    with session.client() as client:
        job = client.submit({})
        session.advance(RESULT_LIFETIME + 1)
        return client.status(job)


def _forced(code: int, error: type[SegmindError], meaning: str) -> Flow:
    return Flow(
        f"error_{code}",
        f"a submit answered {code} ({meaning})",
        _submit(prefer=f"code={code}"),
        error,
        how=f"`Prefer: code={code}` on the submit (header not kept in the cassette)",
    )


FLOWS: tuple[Flow, ...] = (
    Flow(
        "success",
        "submit with every default input; polls answer QUEUED, PROCESSING, COMPLETED "
        "(four video URLs in `output`, a JSON string)",
        _run({}),
        None,
        how="a normal run, ~674 s of the fake's virtual clock, polled every 7 s",
        live=True,
    ),
    Flow(
        "failed",
        "submit; polls answer QUEUED, PROCESSING, FAILED with `error_message`",
        _run(FAILED_INPUTS, prefer="outcome=failed"),
        GenerationFailed,
        how="`Prefer: outcome=failed` on the submit (header not kept in the cassette)",
        inputs=FAILED_INPUTS,
    ),
    Flow(
        "expired",
        "submit, then more than the 1 h result lifetime later the poll answers 404",
        _expired,
        NotFound,
        how="the fake's virtual clock moved 3601 s between submit and poll",
    ),
    _forced(400, BadRequest, "invalid parameters"),
    Flow(
        "error_401",
        "a submit with a key Segmind does not know answers 401",
        _submit(key=WRONG_KEY),
        Unauthorized,
        how="an unknown key",
        live=True,
    ),
    Flow(
        "error_403",
        "a submit with a key that may not run this workflow answers 403",
        _submit(key=RESTRICTED_KEY),
        Forbidden,
        how="a key the fake accepts but lets run no workflow (`--restricted-key`)",
    ),
    Flow(
        "error_404",
        f"a submit to an unknown workflow ({UNKNOWN_WORKFLOW}, inputs `{{}}`) answers 404",
        _submit(workflow_id=UNKNOWN_WORKFLOW),
        NotFound,
        how="an unknown workflow id in the URL",
        live=True,
        inputs_note="the body `{}` (another workflow: compared as JSON with sorted keys)",
    ),
    Flow(
        "error_406",
        "a submit from an account with too few credits answers 406",
        _submit(credits=1.0),
        InsufficientCredits,
        how="the account's balance set to 1.0 credits (a run costs 3.9674)",
    ),
    Flow(
        "error_429",
        "a submit answered 429 with Retry-After: 1; the client retries, every try gets 429 "
        "(recorded once: the answer repeats on replay)",
        _submit(prefer="code=429"),
        RateLimited,
        how="`Prefer: code=429` on the submit (header not kept in the cassette)",
    ),
    Flow(
        "credits",
        "the account's balance: `GET /v1/get-user-credits` answers credits and free-credits",
        _credits,
        None,
        how="the recording account's balance as the fake keeps it",
        live=True,
        returns=Credits,
        inputs_note="no body (a GET)",
    ),
    _forced(500, ServerError, "server error"),
    _forced(502, BadGateway, "bad gateway"),
    _forced(504, GatewayTimeout, "timeout"),
)
FLOWS_BY_NAME = {flow.name: flow for flow in FLOWS}


def play(flow: Flow, session: Session) -> object:
    """Drive one flow; returns its result or the expected error, or raises AssertionError."""
    try:
        outcome = flow.drive(session)
    except SegmindError as exc:
        if flow.expect is None or not isinstance(exc, flow.expect):
            raise AssertionError(
                f"flow {flow.name}: expected {flow.expectation}, got {exc!r}"
            ) from exc
        return exc
    if flow.expect is not None:
        raise AssertionError(f"flow {flow.name}: expected {flow.expectation}, got {outcome!r}")
    if flow.returns is not None:
        if not isinstance(outcome, flow.returns):
            raise AssertionError(f"flow {flow.name}: expected {flow.expectation}, got {outcome!r}")
        return outcome
    if not isinstance(outcome, JobResult) or sorted(outcome.videos) != [1, 2, 3, 4]:
        raise AssertionError(f"flow {flow.name}: expected four videos, got {outcome!r}")
    return outcome


# -- sessions that record ---------------------------------------------------------------


class AdminClock:
    """The fake's virtual clock, read and moved over HTTP (these calls are not recorded)."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url)

    def now(self) -> float:
        now: float = self.http.get("/__admin/clock").json()["now"]
        return now

    def sleep(self, seconds: float) -> None:
        self.http.post("/__admin/clock/advance", json={"seconds": seconds}).raise_for_status()

    def close(self) -> None:
        self.http.close()


class FakeSession:
    """Records against a fake process; `reset()` before each flow."""

    webhook_url = ""  # Segmind itself sends no webhooks

    def __init__(self, fake: ServerProcess) -> None:
        self.base_url = fake.url
        self.clock = AdminClock(fake.url)

    def reset(self, flow: Flow) -> None:
        self.clock.http.post("/__admin/reset").raise_for_status()

    def client(
        self,
        *,
        key: str | None = None,
        prefer: str | None = None,
        workflow_id: str | None = None,
        retry: RetryPolicy | None = None,
    ) -> Client:
        return Client(
            key or RECORD_KEY,
            base_url=self.base_url,
            workflow_id=workflow_id or CHARACTER_VIDEO_WORKFLOW_ID,
            clock=self.clock,
            rng=random.Random(SEED),
            headers={"Prefer": prefer} if prefer else None,
            retry=retry,
        )

    def advance(self, seconds: float) -> None:
        self.clock.sleep(seconds)

    def set_credits(self, credits: float) -> None:
        self.clock.http.post(
            "/__admin/credits", json={"key": "key-1", "credits": credits}
        ).raise_for_status()

    def close(self) -> None:
        self.clock.close()


class LiveSession:
    """Records against real Segmind with the caller's key, on the real clock."""

    base_url = CANONICAL_BASE
    webhook_url = ""

    def __init__(self, key: str) -> None:
        self.key = key

    def reset(self, flow: Flow) -> None:
        pass

    def client(
        self,
        *,
        key: str | None = None,
        prefer: str | None = None,
        workflow_id: str | None = None,
        retry: RetryPolicy | None = None,
    ) -> Client:
        if prefer:
            raise RuntimeError("real Segmind cannot be asked for an answer with Prefer")
        return Client(
            key or self.key,
            base_url=self.base_url,
            workflow_id=workflow_id or CHARACTER_VIDEO_WORKFLOW_ID,
            retry=retry,
        )

    def advance(self, seconds: float) -> None:
        raise RuntimeError("time cannot be moved on real Segmind")

    def set_credits(self, credits: float) -> None:
        raise RuntimeError("credits cannot be set on real Segmind")

    def close(self) -> None:
        pass


class RecordingSession(Session, Protocol):
    base_url: str

    def reset(self, flow: Flow) -> None:
        """Make the target ready for `flow` (a fresh fake, a fresh team...)."""


@dataclass(frozen=True)
class Surface:
    """What the recorded requests talked to, and how its cassettes are normalised."""

    bases: Mapping[str, str]  # recorded base URL -> the one the cassette says
    key_placeholder: str = AUTH_PLACEHOLDER
    request_headers: tuple[str, ...] = REQUEST_HEADERS
    response_headers: tuple[str, ...] = RESPONSE_HEADERS
    normalised: str = ""  # said in each cassette's metadata


@dataclass
class Target:
    session: RecordingSession
    secrets: Sequence[str]  # may grow while recording (keys made per flow)
    description: str
    surface: Surface
    # Adds to a normalised cassette what the client did not send (a webhook delivery).
    finish: Callable[[Flow, dict[str, Any], Callable[[str], str]], None] | None = None


@contextlib.contextmanager
def _fake_target() -> Iterator[Target]:
    fake = start_server("fakeserver", *FAKE_ARGS)
    session = FakeSession(fake)
    try:
        args = " ".join("KEY" if a in RECORDING_KEYS else a for a in FAKE_ARGS)
        version = _version("segmind-character-gateway")
        yield Target(
            session,
            RECORDING_KEYS,
            description=f"the fake Segmind, fakeserver {version} (python -m fakeserver {args}), "
            "under uvicorn on loopback",
            surface=Surface({fake.url: CANONICAL_BASE}, normalised=SEGMIND_NORMALISED),
        )
    finally:
        session.close()
        fake.stop()


def _recorder() -> Any:
    import vcr

    def only_the_api(request: Any) -> Any:
        path = urlsplit(request.uri).path
        # The fake's and the gateway's admin APIs move clocks and make teams: not the contract.
        return None if path.startswith(("/__admin", "/admin", "/healthz")) else request

    return vcr.VCR(
        record_mode="all",
        before_record_request=only_the_api,
        filter_headers=list(FILTER_HEADERS),
        filter_query_parameters=list(FILTER_QUERY_PARAMETERS),
        decode_compressed_response=True,
    )


def record(
    out: Path,
    *,
    flows: Sequence[Flow] = FLOWS,
    live_key: str | None = None,
    gateway_flows: Sequence[Flow] | None = None,
    log: Callable[[str], object] = print,
) -> list[Path]:
    """Record `flows` (Segmind's answers) and `gateway_flows` (the gateway's, in front of
    the fake; default all of them when recording from the fake, none when live) and move
    the cassettes into `out`; returns the files written."""
    from tests.contract import record_gateway

    if gateway_flows is None:
        gateway_flows = record_gateway.GATEWAY_FLOWS if live_key is None else ()
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".cassettes-", dir=out.parent) as tmp:
        raw_dir, final_dir = Path(tmp) / "raw", Path(tmp) / "final"
        final_dir.mkdir(parents=True)
        if flows:
            with _fake_target() if live_key is None else _live_target(live_key) as target:
                for flow in flows:
                    record_one(flow, target, raw_dir, final_dir, log)
        if gateway_flows:
            with record_gateway.gateway_target() as target:
                for flow in gateway_flows:
                    record_one(flow, target, raw_dir, final_dir, log)
        out.mkdir(exist_ok=True)
        written = []
        for path in sorted(final_dir.iterdir()):
            os.replace(path, out / path.name)
            written.append(out / path.name)
    return written


def record_one(
    flow: Flow, target: Target, raw_dir: Path, final_dir: Path, log: Callable[[str], object]
) -> None:
    target.session.reset(flow)
    raw = raw_dir / f"{flow.name}.yaml"
    with _recorder().use_cassette(str(raw)):
        outcome = play(flow, target.session)
    data = yaml.safe_load(raw.read_text()) if raw.exists() else {"interactions": []}
    cassette, text = normalise_with(data, target.surface, target.secrets)
    if target.finish is not None:
        target.finish(flow, cassette, text)
    cassette["metadata"] = {**_metadata(flow, target, outcome), **cassette.get("metadata", {})}
    (final_dir / raw.name).write_text(dump(cassette))
    log(f"recorded {flow.name}: {len(cassette['interactions'])} interactions")


@contextlib.contextmanager
def _live_target(key: str) -> Iterator[Target]:
    yield Target(
        LiveSession(key),
        (*RECORDING_KEYS, key),
        "real Segmind, https://api.segmind.com",
        Surface({CANONICAL_BASE: CANONICAL_BASE}, normalised=SEGMIND_NORMALISED),
    )


def _metadata(flow: Flow, target: Target, outcome: object) -> dict[str, Any]:
    import vcr

    against = target.description
    meta: dict[str, Any] = {
        "flow": flow.name,
        "description": flow.description,
        "inputs": dict(flow.inputs) or flow.inputs_note,
        "client_outcome": flow.expectation,
        "how": flow.how,
        "target": "segmind" if against.startswith("real") else "fake",
        "surface": "gateway" if flow.name.startswith("gateway_") else "segmind",
        "recorded_against": against,
        "recorded_at": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        "recorded_with": (
            f"client {_version('segmind-character-gateway')}, vcrpy {vcr.__version__}, "
            f"httpx {httpx.__version__}, Python {sys.version.split()[0]}"
        ),
        "normalised": target.surface.normalised,
    }
    if flow.limits:
        meta["team_limits"] = dict(flow.limits)
    return meta


def _version(distribution: str) -> str:
    try:
        return importlib_metadata.version(distribution)
    except importlib_metadata.PackageNotFoundError:
        return "unknown"


# -- normalisation ----------------------------------------------------------------------


def normalise(
    data: Mapping[str, Any], *, recorded_base: str, secrets: Sequence[str]
) -> dict[str, Any]:
    """A raw vcrpy cassette of Segmind's answers made portable, secret-free and compact."""
    return normalise_with(data, Surface({recorded_base: CANONICAL_BASE}), secrets)[0]


def normalise_with(
    data: Mapping[str, Any], surface: Surface, secrets: Sequence[str]
) -> tuple[dict[str, Any], Callable[[str], str]]:
    """A raw vcrpy cassette (as loaded from YAML) made portable, secret-free and compact,
    and the text normaliser used, for what a target adds afterwards (`Target.finish`)."""
    interactions = [dict(i) for i in data.get("interactions", [])]
    ids = _request_ids(interactions)
    bases = {old.rstrip("/"): new for old, new in surface.bases.items()}

    def text(value: str) -> str:
        for old, new in bases.items():
            value = value.replace(old, new)
        for secret in secrets:
            if secret:
                value = value.replace(secret, surface.key_placeholder)
        for old, new in ids.items():
            value = value.replace(old, new)
        value = _SIGNED_URL_PARAM.sub(r"\1<REDACTED>", value)
        return _TIMESTAMP.sub(_FIXED_TIMESTAMP, value)

    def headers(given: Mapping[str, Any], keep: Sequence[str]) -> dict[str, list[str]]:
        kept = _keep_headers(given, keep, surface.key_placeholder)
        return {name: [text(v) for v in values] for name, values in kept.items()}

    cleaned = []
    for interaction in interactions:
        request = dict(interaction["request"])
        response = dict(interaction["response"])
        request["uri"] = text(_scrub_query(request["uri"]))
        request["headers"] = headers(request.get("headers") or {}, surface.request_headers)
        if isinstance(request.get("body"), str):
            request["body"] = text(request["body"])
        response["headers"] = headers(response.get("headers") or {}, surface.response_headers)
        body = dict(response.get("body") or {})
        if isinstance(body.get("string"), str):
            body["string"] = text(body["string"])
        response["body"] = body
        cleaned.append({"request": request, "response": response})
    kept: list[dict[str, Any]] = []
    last: dict[tuple[str, ...], dict[str, Any]] = {}
    for interaction in cleaned:  # consecutive identical answers to one request: keep one
        request = interaction["request"]
        key = interaction_key(request["method"], request["uri"], request.get("body"))
        if last.get(key) == interaction:
            continue
        last[key] = interaction
        kept.append(interaction)
    return {"version": data.get("version", 1), "interactions": kept}, text


def _request_ids(interactions: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """Every request id (from submit answers and poll URLs), first seen first: 000...001."""
    found: list[str] = []
    for interaction in interactions:
        body = (interaction["response"].get("body") or {}).get("string")
        with contextlib.suppress(ValueError, TypeError):
            parsed = json.loads(body) if isinstance(body, str) else None
            if isinstance(parsed, dict) and isinstance(parsed.get("request_id"), str):
                found.append(parsed["request_id"])
        match = _POLL_ID.search(interaction["request"]["uri"])
        if match:
            found.append(match.group(1))
    ordered = [i for n, i in enumerate(found) if i and i not in found[:n]]
    return {old: f"{n:032x}" for n, old in enumerate(ordered, start=1)}


def _scrub_query(uri: str) -> str:
    parts = urlsplit(uri)
    secret_names = {name for name, _ in FILTER_QUERY_PARAMETERS}
    query = urlencode(
        [
            (k, AUTH_PLACEHOLDER if k.lower() in secret_names else v)
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
        ]
    )
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


def _keep_headers(
    headers: Mapping[str, Any], keep: Sequence[str], placeholder: str = AUTH_PLACEHOLDER
) -> dict[str, list[str]]:
    kept: dict[str, list[str]] = {}
    for name, values in headers.items():
        lower = name.lower()
        if lower not in keep:
            continue
        listed = values if isinstance(values, list) else [values]
        if lower == "x-api-key":
            listed = [placeholder for _ in listed]
        elif lower == "authorization":
            listed = [f"Bearer {placeholder}" for _ in listed]
        kept[lower] = [str(v) for v in listed]
    return dict(sorted(kept.items()))


def dump(cassette: Mapping[str, Any]) -> str:
    """The YAML of a cassette: a header comment, then version, metadata, interactions."""
    ordered = {
        "version": cassette.get("version", 1),
        "metadata": cassette.get("metadata", {}),
        "interactions": cassette["interactions"],
    }
    body: str = yaml.safe_dump(ordered, sort_keys=False, allow_unicode=True, width=100)
    return _HEADER + body


# -- command line -----------------------------------------------------------------------


def _gateway_flows_by_name() -> dict[str, Flow]:
    from tests.contract import record_gateway  # it builds on this module

    return {flow.name: flow for flow in record_gateway.GATEWAY_FLOWS}


def _parser() -> argparse.ArgumentParser:
    names = sorted([*FLOWS_BY_NAME, *_gateway_flows_by_name()])
    p = argparse.ArgumentParser(
        prog="python -m tests.contract.record",
        description="Record cassettes/ from the fake Segmind (default) or real Segmind.",
    )
    p.add_argument("--out", type=Path, default=cassette_dir(), help="default: cassettes/")
    p.add_argument(
        "--only", action="append", metavar="FLOW", choices=names,
        help="record only this flow (repeat for more)",
    )  # fmt: skip
    p.add_argument(
        "--live",
        action="store_true",
        help="record from real Segmind with $SEGMIND_API_KEY (costs money; never in CI)",
    )
    p.add_argument(
        "--i-accept-the-cost",
        action="store_true",
        help="confirm that a --live recording may cost about $4",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    flows = [FLOWS_BY_NAME[n] for n in args.only or FLOWS_BY_NAME if n in FLOWS_BY_NAME]
    gateway = _gateway_flows_by_name()
    # None: the default (all of the gateway's, from the fake); --only picks among them too.
    gateway_flows = [gateway[n] for n in args.only if n in gateway] if args.only else None
    live_key = None
    if not args.live and os.environ.get("SEGMIND_API_KEY", "").strip():
        # A key in the environment never spends money by itself: say what it would take.
        print(
            f"SEGMIND_API_KEY is set, but recording from the fake. {LIVE_COST_WARNING} "
            "To record from real Segmind, add --live --i-accept-the-cost.",
            file=sys.stderr,
        )
    if args.live:
        print(LIVE_COST_WARNING, file=sys.stderr)
        if os.environ.get("CI"):
            print("refusing: --live never runs in CI", file=sys.stderr)
            return 2
        live_key = os.environ.get("SEGMIND_API_KEY", "").strip()
        if not live_key:
            print("refusing: --live needs SEGMIND_API_KEY set", file=sys.stderr)
            return 2
        if not args.i_accept_the_cost:
            print("refusing: add --i-accept-the-cost to record from real Segmind", file=sys.stderr)
            return 2
        skipped = [f.name for f in flows if not f.live]
        flows = [f for f in flows if f.live]
        gateway_flows = []  # the gateway's flows are recorded in front of the fake only
        if skipped:
            print(
                f"real Segmind cannot be made to answer these; kept from the fake: "
                f"{', '.join(skipped)}",
                file=sys.stderr,
            )
    written = record(args.out, flows=flows, live_key=live_key, gateway_flows=gateway_flows)
    print(f"{len(written)} cassettes in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
