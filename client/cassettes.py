"""Replay our recorded Segmind exchanges (`cassettes/*.yaml`) in your own offline tests.

vcrpy is a test dependency, so it is imported only inside the functions that need it;
importing this module costs nothing. Typical use, with record mode `none` and no network:

    from client import Client
    from client.cassettes import cassette_path, make_vcr

    with make_vcr().use_cassette(cassette_path("success")):
        with Client(api_key="any", base_url="https://api.segmind.com") as c:
            result = c.run({}, poll_interval=0.01)  # the inputs the cassette was recorded with

How a request finds its recorded answer (`vcr_config()` and `configure()`):

- **method and path** must be equal. Scheme, host and port are ignored, so a cassette
  replays whatever base URL the code under test uses; the query string is ignored too.
- **a submit** (`POST .../workflows/{id}`) must also carry the same inputs *after
  canonicalisation* (`canonical_body`): defaults filled in, key order ignored (names are
  the wire names only: a `scene_1` body is refused by every server, so it is compared as
  sent and finds no recording). So `{}` replays a submit recorded with every
  default spelled out, and a submit of other inputs finds nothing: vcrpy raises
  `CannotOverwriteExistingCassetteException` instead of replaying another job's answer.
  Other requests (polls, credits) match on method and path only; a poll's path holds the
  request id as recorded (the cassettes use `000...001`, from the submit's answer).
- **order**: recorded answers to the same request play once each, in recorded order
  (QUEUED, PROCESSING, COMPLETED), and then the *last* one repeats (`REPEAT_LAST` more
  times), so a poll loop ends on the terminal answer and never hangs. vcrpy's own
  `allow_playback_repeats=True` is not used: in vcrpy 9.4 it answers the *first* match
  every time, which replays QUEUED for ever. The repeats are added when a cassette is
  loaded (`ReplayPersister`), never written to the file.

Headers carrying keys (`x-api-key`, `Authorization`) and key-like query parameters are
replaced by placeholders (`filter_headers`), so recording your own cassettes with this
configuration does not write your key either.

The cassettes live in `cassettes/` at the root of this repository (`cassette_dir()`); they
are not installed with the package (`pip install 'segmind-character-gateway[testing]'`
brings vcrpy, PyYAML and pytest, what replaying needs). Other teams vendor the YAML files
they use into their own repository, say `tests/cassettes/`, and name that folder from the
test file: `cassette_path("success", directory="cassettes")` in `tests/test_x.py`. A
relative folder is found from the file whose code calls (`cassette_path`, `make_vcr`,
`recorded_webhook`), so pytest may run from anywhere; for a folder that does not exist
there, the working directory is tried next, as before.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import workflows

from ._errors import InvalidInput
from ._models import validate_inputs

if TYPE_CHECKING:  # vcrpy is a test dependency; never imported at run time from here
    import vcr

__all__ = [
    "AUTH_PLACEHOLDER",
    "BEARER_PLACEHOLDER",
    "CASSETTE_WEBHOOK_SECRET",
    "FILTER_HEADERS",
    "FILTER_QUERY_PARAMETERS",
    "GATEWAY_BASE",
    "HOOK_URL",
    "MATCH_ON",
    "REPEAT_LAST",
    "TEAM_KEY_PLACEHOLDER",
    "RecordedWebhook",
    "ReplayPersister",
    "canonical_body",
    "cassette_dir",
    "cassette_path",
    "compact",
    "configure",
    "interaction_key",
    "is_submit",
    "make_vcr",
    "recorded_webhook",
    "resolve_dir",
    "segmind_body",
    "vcr_config",
]

#: What a recorded `x-api-key` reads; `Authorization` reads `Bearer <SEGMIND_API_KEY>`.
AUTH_PLACEHOLDER = "<SEGMIND_API_KEY>"
BEARER_PLACEHOLDER = f"Bearer {AUTH_PLACEHOLDER}"
#: What the gateway's cassettes (`gateway_*.yaml`) say for the team's key, the gateway's
#: base URL and the team's webhook receiver.
TEAM_KEY_PLACEHOLDER = "<TEAM_KEY>"
GATEWAY_BASE = "https://gateway.example"
HOOK_URL = "https://hooks.example/segmind"
#: The Standard Webhooks secret (base64, no `whsec_` prefix) that signs the recorded
#: delivery in `gateway_webhook.yaml`. Published on purpose: it signs nothing real.
CASSETTE_WEBHOOK_SECRET = base64.b64encode(
    b"cassettes only; published; signs nothing real"
).decode()
FILTER_HEADERS: tuple[tuple[str, str], ...] = (
    ("x-api-key", AUTH_PLACEHOLDER),
    ("authorization", BEARER_PLACEHOLDER),
)
FILTER_QUERY_PARAMETERS: tuple[tuple[str, str], ...] = tuple(
    (name, AUTH_PLACEHOLDER) for name in ("key", "api_key", "apikey", "token", "access_token")
)
#: The name under which `configure` registers `segmind_body` with a `vcr.VCR`.
BODY_MATCHER = "segmind_body"
MATCH_ON: tuple[str, ...] = ("method", "path", BODY_MATCHER)
#: How many more times the last recorded answer to a request is played.
REPEAT_LAST = 100

_SUBMIT_PATH = re.compile(r"/workflows/([^/]+)/?$")
_REPO_ROOT = Path(__file__).resolve().parent.parent


# -- where the cassettes are ------------------------------------------------------------


def cassette_dir() -> Path:
    """`cassettes/` at the root of this repository (a checkout, or an editable install)."""
    return _REPO_ROOT / "cassettes"


_default_dir = cassette_dir  # `make_vcr`'s parameter of the same name shadows it


def resolve_dir(directory: str | Path) -> Path:
    """An absolute folder: `directory` itself if absolute; if relative, the folder of that
    name beside the file whose code called into this module (your test module), so the
    answer does not depend on where pytest was started; failing that (no such folder
    there, or a caller with no file: a REPL), relative to the working directory."""
    path = Path(directory).expanduser()
    if path.is_absolute():
        return path
    caller = _caller_folder()
    if caller is not None and (caller / path).is_dir():
        return (caller / path).resolve()
    return path.absolute()


def _caller_folder() -> Path | None:
    """The folder of the first file up the stack that is not this module."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__") == __name__:
        frame = frame.f_back
    if frame is None:
        return None
    file = frame.f_globals.get("__file__")
    return Path(file).resolve().parent if isinstance(file, str) else None


def cassette_path(name: str, directory: str | Path | None = None) -> Path:
    """The path of one cassette, by flow name (`"success"`, `"error_429"`...) or file name.

    `directory` is the folder of YAML files you vendored; a relative one is found from the
    calling test file (`resolve_dir`). Raises `FileNotFoundError` naming the folder
    searched, e.g. when the package is installed without the repository: vendor the YAML
    files and pass `directory`. The path is absolute: vcrpy would read a relative one
    inside `make_vcr`'s library folder.
    """
    folder = resolve_dir(directory) if directory is not None else cassette_dir()
    path = folder / (name if name.endswith((".yaml", ".yml")) else f"{name}.yaml")
    if not path.is_file():
        known = sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []
        hint = (
            f"known: {', '.join(known)}"
            if known
            else "vendor the YAML files you use and pass their folder as directory= "
            "(a relative folder is found from your test file, then the working directory)"
        )
        raise FileNotFoundError(f"no cassette {path.name!r} in {folder}; {hint}")
    return path


# -- the recorded webhook ---------------------------------------------------------------


@dataclass(frozen=True)
class RecordedWebhook:
    """A delivery the gateway made, as recorded: what your receiver would be sent."""

    url: str
    headers: dict[str, str]
    body: bytes
    #: The moment it was signed for (`webhook-timestamp`), to verify it "now" in a test.
    timestamp: int


def recorded_webhook(
    name: str = "gateway_webhook", directory: str | Path | None = None
) -> RecordedWebhook:
    """The last webhook delivery in a gateway cassette (default `gateway_webhook`).

    Post it to your receiver (for instance with Starlette's `TestClient`) and verify it with
    `client.verify_webhook(body, headers, CASSETTE_WEBHOOK_SECRET, now=...)`, `now` being
    `datetime.fromtimestamp(webhook.timestamp, UTC)`. Needs PyYAML (the `testing` extra).
    """
    import yaml  # type: ignore[import-untyped]

    data = yaml.safe_load(cassette_path(name, directory).read_text())
    for interaction in reversed(data.get("interactions") or []):
        request = interaction["request"]
        headers = {
            k.lower(): v[0] if isinstance(v, list) else v for k, v in request["headers"].items()
        }
        if "webhook-signature" in headers:
            body = request.get("body") or ""
            return RecordedWebhook(
                request["uri"],
                headers,
                body.encode() if isinstance(body, str) else body,
                int(headers["webhook-timestamp"]),
            )
    raise LookupError(f"cassette {name!r} holds no webhook delivery; try 'gateway_webhook'")


# -- matching ---------------------------------------------------------------------------


def is_submit(method: str, path: str) -> bool:
    """`POST .../workflows/{workflow_id}` (a poll is `GET .../workflows/request/{id}`)."""
    return method.upper() == "POST" and _SUBMIT_PATH.search(path) is not None


def canonical_body(path: str, body: bytes | str | None) -> bytes:
    """A submit body in the form two bodies are compared in.

    For a registered workflow (`workflows`): the inputs validated and completed with their
    defaults (`validate_inputs`), then JSON with sorted keys; an empty body counts as
    `{}`. For other workflows, or inputs it refuses: the JSON with sorted keys. A body
    that is not JSON is compared as its bytes, stripped.
    """
    raw = body.encode() if isinstance(body, str) else (body or b"")
    if not raw.strip():
        data: Any = {}
    else:
        try:
            data = json.loads(raw)
        except ValueError:
            return raw.strip()
    found = _SUBMIT_PATH.search(path)
    workflow = workflows.get(unquote(found.group(1))) if found else None
    if workflow is not None and isinstance(data, dict):
        # Inputs it refuses are compared as sent: the server refuses them alike.
        with contextlib.suppress(InvalidInput):
            data = validate_inputs(data, workflow)
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def segmind_body(r1: Any, r2: Any) -> None:
    """vcrpy matcher: submits must carry the same canonical inputs; others always pass.

    vcrpy calls it with the request being made and a recorded one (`vcr.request.Request`),
    and reads an `AssertionError` as "no match", its message shown in vcrpy's report.
    """
    first, second = is_submit(r1.method, r1.path), is_submit(r2.method, r2.path)
    if not (first and second):
        return
    made, recorded = canonical_body(r1.path, r1.body), canonical_body(r2.path, r2.body)
    if made != recorded:
        raise AssertionError(
            "the submit's inputs differ from the recorded ones (after filling in defaults "
            f"and sorting keys):\n  recorded:     {recorded.decode(errors='replace')}\n"
            f"  this request: {made.decode(errors='replace')}"
        )


def interaction_key(method: str, uri_or_path: str, body: bytes | str | None) -> tuple[str, ...]:
    """Requests that `MATCH_ON` treats as the same request share this key."""
    path = _path_of(uri_or_path)
    if is_submit(method, path):
        return (method.upper(), path, canonical_body(path, body).decode(errors="replace"))
    return (method.upper(), path)


def _path_of(uri_or_path: str) -> str:
    if "://" in uri_or_path:
        return urlsplit(uri_or_path).path or "/"
    return uri_or_path.split("?", 1)[0] or "/"


def compact(pairs: Sequence[tuple[Any, Any]], key: Any = None) -> list[tuple[Any, Any]]:
    """Drop each (request, response) pair equal to the previous pair of the same request.

    A recorded poll loop (QUEUED, QUEUED, ..., PROCESSING, ..., COMPLETED) keeps one answer
    per state; replayed, each plays once and the last repeats, so nothing is lost but the
    count. `key(request)` groups requests (default: `interaction_key` of a vcrpy request);
    pairs are compared with `==` on their serialised form when they have `_to_dict`.
    """
    group = key or (lambda r: interaction_key(r.method, r.uri, r.body))
    last: dict[Any, Any] = {}
    kept: list[tuple[Any, Any]] = []
    for request, response in pairs:
        k = group(request)
        shape = (_as_dict(request), response)
        if last.get(k) == shape:
            continue
        last[k] = shape
        kept.append((request, response))
    return kept


def _as_dict(request: Any) -> Any:
    to_dict = getattr(request, "_to_dict", None)
    return to_dict() if callable(to_dict) else request


class ReplayPersister:
    """vcrpy persister: the files on disk, plus `REPEAT_LAST` copies of each request's last
    answer appended on load (so a poll loop ends on the terminal answer, however often it
    polls); on save, duplicates are dropped again (`compact`)."""

    repeat_last = REPEAT_LAST

    @classmethod
    def load_cassette(cls, cassette_path: str | Path, serializer: Any) -> tuple[Any, ...]:
        from vcr.persisters.filesystem import FilesystemPersister

        requests, responses, *rest = FilesystemPersister.load_cassette(
            cassette_path, serializer=serializer
        )
        last: dict[tuple[str, ...], tuple[Any, Any]] = {}
        for request, response in zip(requests, responses, strict=True):
            last[interaction_key(request.method, request.uri, request.body)] = (request, response)
        extra = [pair for pair in last.values() for _ in range(cls.repeat_last)]
        return (
            [*requests, *(r for r, _ in extra)],
            [*responses, *(r for _, r in extra)],
            *rest,
        )

    @staticmethod
    def save_cassette(
        cassette_path: str | Path, cassette_dict: dict[str, Any], serializer: Any
    ) -> None:
        from vcr.persisters.filesystem import FilesystemPersister

        pairs = compact(
            list(zip(cassette_dict["requests"], cassette_dict["responses"], strict=True))
        )
        kept = {
            **cassette_dict,
            "requests": [r for r, _ in pairs],
            "responses": [r for _, r in pairs],
        }
        FilesystemPersister.save_cassette(cassette_path, kept, serializer=serializer)


# -- vcrpy configuration ----------------------------------------------------------------


def vcr_config(**overrides: Any) -> dict[str, Any]:
    """Keyword arguments for `vcr.VCR(...)` or `vcr.VCR().use_cassette(path, ...)` (and the
    `vcr_config` fixture of pytest-recording). They name the `segmind_body` matcher, so the
    `VCR` must have it registered: call `configure(vcr)` on it (`make_vcr` does both)."""
    config: dict[str, Any] = {
        "record_mode": "none",
        "match_on": list(MATCH_ON),
        "filter_headers": list(FILTER_HEADERS),
        "filter_query_parameters": list(FILTER_QUERY_PARAMETERS),
        "decode_compressed_response": True,
    }
    config.update(overrides)
    return config


def configure(instance: vcr.VCR) -> vcr.VCR:
    """Register the `segmind_body` matcher and `ReplayPersister` with a `vcr.VCR`.

    With pytest-recording, from a `conftest.py`:
    `def pytest_recording_configure(config, vcr): client.cassettes.configure(vcr)`.
    """
    instance.register_matcher(BODY_MATCHER, segmind_body)
    instance.register_persister(ReplayPersister)
    return instance


def make_vcr(cassette_dir: str | Path | None = None, **overrides: Any) -> vcr.VCR:
    """A `vcr.VCR` ready to replay our cassettes offline (record mode `none`).

    `cassette_dir` is where relative cassette names are looked up (default: this
    repository's `cassettes/`; a relative folder is found from the calling test file, as
    in `resolve_dir`); `overrides` replace entries of `vcr_config()`, e.g.
    `record_mode="once"` to record your own cassettes with the same matching and filters.
    """
    import vcr

    directory = resolve_dir(cassette_dir) if cassette_dir is not None else _default_dir()
    return configure(vcr.VCR(cassette_library_dir=str(directory), **vcr_config(**overrides)))
