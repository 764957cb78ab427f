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
per state). Only when every flow recorded as expected are the files moved into `--out`;
other files there (e.g. gateway cassettes) are left alone.

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
    Forbidden,
    GatewayTimeout,
    GenerationFailed,
    InsufficientCredits,
    JobResult,
    NotFound,
    RateLimited,
    SegmindError,
    ServerError,
    Unauthorized,
)
from client.cassettes import (
    AUTH_PLACEHOLDER,
    BEARER_PLACEHOLDER,
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
_HEADER = """\
# A recorded exchange with Segmind's character-video workflow, replayed offline by vcrpy.
# Written by `make cassettes` (python -m tests.contract.record); re-record, do not edit.
# Match and replay with client.cassettes (make_vcr / vcr_config). Hosts, request ids and
# keys are normalised; `metadata` says when and against what it was recorded.
"""


# -- the flows --------------------------------------------------------------------------


class Session(Protocol):
    """What a flow drives: a recording against the fake or Segmind, or a replay."""

    def client(
        self,
        *,
        key: str | None = None,
        prefer: str | None = None,
        workflow_id: str | None = None,
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
    expect: type[SegmindError] | None  # None: completes with four videos
    how: str = ""  # how the fake was brought to answer so
    inputs: Mapping[str, str] = field(default_factory=dict)
    live: bool = False  # can be recorded from real Segmind
    inputs_note: str = "all defaults ({} and the spelled-out defaults match)"

    @property
    def expectation(self) -> str:
        return "JobResult with 4 videos" if self.expect is None else self.expect.__name__


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

    def __init__(self, fake: ServerProcess) -> None:
        self.base_url = fake.url
        self.clock = AdminClock(fake.url)

    def reset(self) -> None:
        self.clock.http.post("/__admin/reset").raise_for_status()

    def client(
        self,
        *,
        key: str | None = None,
        prefer: str | None = None,
        workflow_id: str | None = None,
    ) -> Client:
        return Client(
            key or RECORD_KEY,
            base_url=self.base_url,
            workflow_id=workflow_id or CHARACTER_VIDEO_WORKFLOW_ID,
            clock=self.clock,
            rng=random.Random(SEED),
            headers={"Prefer": prefer} if prefer else None,
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

    def __init__(self, key: str) -> None:
        self.key = key

    def reset(self) -> None:
        pass

    def client(
        self,
        *,
        key: str | None = None,
        prefer: str | None = None,
        workflow_id: str | None = None,
    ) -> Client:
        if prefer:
            raise RuntimeError("real Segmind cannot be asked for an answer with Prefer")
        return Client(
            key or self.key,
            base_url=self.base_url,
            workflow_id=workflow_id or CHARACTER_VIDEO_WORKFLOW_ID,
        )

    def advance(self, seconds: float) -> None:
        raise RuntimeError("time cannot be moved on real Segmind")

    def set_credits(self, credits: float) -> None:
        raise RuntimeError("credits cannot be set on real Segmind")

    def close(self) -> None:
        pass


@dataclass
class Target:
    session: FakeSession | LiveSession
    secrets: tuple[str, ...]
    description: str


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
            f"the fake Segmind, fakeserver {version} (python -m fakeserver {args}), "
            "under uvicorn on loopback",
        )
    finally:
        session.close()
        fake.stop()


def _recorder() -> Any:
    import vcr

    def only_the_api(request: Any) -> Any:
        path = urlsplit(request.uri).path
        return None if path.startswith(("/__admin", "/healthz")) else request

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
    log: Callable[[str], object] = print,
) -> list[Path]:
    """Record `flows` and move the cassettes into `out`; returns the files written."""
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".cassettes-", dir=out.parent) as tmp:
        raw_dir, final_dir = Path(tmp) / "raw", Path(tmp) / "final"
        final_dir.mkdir(parents=True)
        target_cm = _fake_target() if live_key is None else _live_target(live_key)
        with target_cm as target:
            recorder = _recorder()
            for flow in flows:
                target.session.reset()
                raw = raw_dir / f"{flow.name}.yaml"
                with recorder.use_cassette(str(raw)):
                    outcome = play(flow, target.session)
                data = yaml.safe_load(raw.read_text())
                cassette = normalise(
                    data,
                    recorded_base=target.session.base_url,
                    secrets=target.secrets,
                )
                cassette["metadata"] = _metadata(flow, target.description, outcome)
                (final_dir / raw.name).write_text(dump(cassette))
                log(f"recorded {flow.name}: {len(cassette['interactions'])} interactions")
        out.mkdir(exist_ok=True)
        written = []
        for path in sorted(final_dir.iterdir()):
            os.replace(path, out / path.name)
            written.append(out / path.name)
    return written


@contextlib.contextmanager
def _live_target(key: str) -> Iterator[Target]:
    yield Target(LiveSession(key), (*RECORDING_KEYS, key), "real Segmind, https://api.segmind.com")


def _metadata(flow: Flow, against: str, outcome: object) -> dict[str, Any]:
    import vcr

    return {
        "flow": flow.name,
        "description": flow.description,
        "inputs": dict(flow.inputs) or flow.inputs_note,
        "client_outcome": flow.expectation,
        "how": flow.how,
        "target": "segmind" if against.startswith("real") else "fake",
        "recorded_against": against,
        "recorded_at": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        "recorded_with": (
            f"client {_version('segmind-character-gateway')}, vcrpy {vcr.__version__}, "
            f"httpx {httpx.__version__}, Python {sys.version.split()[0]}"
        ),
        "normalised": (
            f"host -> {CANONICAL_BASE}; request ids -> 000...001, 000...002; keys -> "
            f"{AUTH_PLACEHOLDER}; headers cut to {', '.join(RESPONSE_HEADERS)} (answers) and "
            f"{', '.join(REQUEST_HEADERS)} (requests); consecutive identical answers to one "
            "request collapsed (replayed, the last answer repeats)"
        ),
    }


def _version(distribution: str) -> str:
    try:
        return importlib_metadata.version(distribution)
    except importlib_metadata.PackageNotFoundError:
        return "unknown"


# -- normalisation ----------------------------------------------------------------------


def normalise(
    data: Mapping[str, Any], *, recorded_base: str, secrets: Sequence[str]
) -> dict[str, Any]:
    """A raw vcrpy cassette (as loaded from YAML) made portable, secret-free and compact."""
    interactions = [dict(i) for i in data.get("interactions", [])]
    ids = _request_ids(interactions)
    base = recorded_base.rstrip("/")

    def text(value: str) -> str:
        value = value.replace(base, CANONICAL_BASE)
        for secret in secrets:
            if secret:
                value = value.replace(secret, AUTH_PLACEHOLDER)
        for old, new in ids.items():
            value = value.replace(old, new)
        value = _SIGNED_URL_PARAM.sub(r"\1<REDACTED>", value)
        return _TIMESTAMP.sub(_FIXED_TIMESTAMP, value)

    cleaned = []
    for interaction in interactions:
        request = dict(interaction["request"])
        response = dict(interaction["response"])
        request["uri"] = text(_canonical_uri(request["uri"]))
        request["headers"] = _keep_headers(request.get("headers") or {}, REQUEST_HEADERS)
        if isinstance(request.get("body"), str):
            request["body"] = text(request["body"])
        response["headers"] = _keep_headers(response.get("headers") or {}, RESPONSE_HEADERS)
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
    return {"version": data.get("version", 1), "interactions": kept}


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


def _canonical_uri(uri: str) -> str:
    parts = urlsplit(uri)
    base = urlsplit(CANONICAL_BASE)
    secret_names = {name for name, _ in FILTER_QUERY_PARAMETERS}
    query = urlencode(
        [
            (k, AUTH_PLACEHOLDER if k.lower() in secret_names else v)
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
        ]
    )
    return urlunsplit((base.scheme, base.netloc, parts.path, query, ""))


def _keep_headers(headers: Mapping[str, Any], keep: Sequence[str]) -> dict[str, list[str]]:
    kept: dict[str, list[str]] = {}
    for name, values in headers.items():
        lower = name.lower()
        if lower not in keep:
            continue
        listed = values if isinstance(values, list) else [values]
        if lower == "x-api-key":
            listed = [AUTH_PLACEHOLDER for _ in listed]
        elif lower == "authorization":
            listed = [BEARER_PLACEHOLDER for _ in listed]
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


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tests.contract.record",
        description="Record cassettes/ from the fake Segmind (default) or real Segmind.",
    )
    p.add_argument("--out", type=Path, default=cassette_dir(), help="default: cassettes/")
    p.add_argument(
        "--only", action="append", metavar="FLOW", choices=sorted(FLOWS_BY_NAME),
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
    flows = [FLOWS_BY_NAME[n] for n in args.only] if args.only else list(FLOWS)
    live_key = None
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
        if skipped:
            print(
                f"real Segmind cannot be made to answer these; kept from the fake: "
                f"{', '.join(skipped)}",
                file=sys.stderr,
            )
    written = record(args.out, flows=flows, live_key=live_key)
    print(f"{len(written)} cassettes in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
