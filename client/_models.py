"""The workflow's inputs, and what the client hands back: job handles, statuses, results.

Inputs are validated here, before any request is built: a bad input never reaches the paid
API. Everything else is a frozen value object built from the server's answers.
"""

from __future__ import annotations

import difflib
import json
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from workflows import CHARACTER_VIDEO, InputKind, Workflow

from ._errors import InvalidInput
from ._output import OutputItem, decode_output

__all__ = [
    "DEFAULT_CHARACTER_IMAGE",
    "DEFAULT_INPUTS",
    "DEFAULT_SCENES",
    "INPUT_NAMES",
    "MAX_SCENE_LENGTH",
    "CharacterVideoInputs",
    "Credits",
    "JobHandle",
    "JobResult",
    "JobState",
    "JobStatus",
    "Progress",
    "check_image",
    "check_scene",
    "is_blank",
    "suggest_input",
    "validate_inputs",
]

_IMAGE = CHARACTER_VIDEO.inputs[0]
_SCENES = CHARACTER_VIDEO.inputs[1:]
DEFAULT_CHARACTER_IMAGE = _IMAGE.default
DEFAULT_SCENES = tuple(scene.default for scene in _SCENES)
MAX_SCENE_LENGTH = _SCENES[0].max_length
MAX_URL_LENGTH = _IMAGE.max_length

#: The wire names of the character-video inputs, in the workflow's order, with their Python
#: names. A body (a mapping) must use the wire names: a typo or another spelling is refused,
#: never guessed at, so it can never start a paid run the caller did not mean.
INPUT_NAMES: dict[str, str] = {name: name.lower() for name in CHARACTER_VIDEO.input_names}
DEFAULT_INPUTS: dict[str, str] = CHARACTER_VIDEO.defaults

# What a scene is blank of: control (Cc), format (Cf: zero-width space, BOM, bidi marks),
# separator (Zs, Zl, Zp), private-use (Co) and unassigned (Cn) characters, and lone
# surrogates; plus the default-ignorable code points that are classed as marks or letters
# (the combining grapheme joiner, Hangul fillers, variation selectors) and the Braille
# blank. A scene of only these shows the model nothing, yet would cost a full run.
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp", "Co", "Cn", "Cs"})
_INVISIBLE = frozenset(
    map(
        chr,
        (
            0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x180B, 0x180C, 0x180D, 0x180F,
            0x2800, 0x3164, 0xFFA0, *range(0xFE00, 0xFE10), *range(0xE0100, 0xE01F0),
        ),
    )
)  # fmt: skip
_SURROGATE = re.compile("[\ud800-\udfff]")


def is_blank(text: str) -> bool:
    """True when `text` holds nothing visible (see `_INVISIBLE_CATEGORIES`)."""
    return all(
        c.isspace() or c in _INVISIBLE or unicodedata.category(c) in _INVISIBLE_CATEGORIES
        for c in text
    )


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a string, got {_json_type(value)}; leave it out for the default")
    if _SURROGATE.search(value):
        raise ValueError(
            "holds a lone surrogate (half of a \\ud800-\\udfff pair); send valid Unicode text"
        )
    return value


def check_scene(value: Any, max_length: int = MAX_SCENE_LENGTH) -> str:
    """A scene prompt (a `TEXT` input) as given, or `ValueError` saying what is wrong."""
    text = _text(value)
    if is_blank(text):
        raise ValueError(
            "is blank (only whitespace, control or invisible characters); describe the scene, "
            "or leave it out to use the default"
        )
    if len(text) > max_length:
        raise ValueError(f"must be at most {max_length} characters, got {len(text)}")
    return text


def check_image(value: Any, max_length: int = MAX_URL_LENGTH) -> str:
    """A photo's URL (an `IMAGE` input) as given, or `ValueError` saying what is wrong."""
    text = _text(value)
    if len(text) > max_length:
        raise ValueError(f"must be at most {max_length} characters, got {len(text)}")
    if any(c.isspace() or unicodedata.category(c) in ("Cc", "Cf") for c in text):
        raise ValueError("must be an http(s) URL without spaces or control characters")
    try:
        parts = urlsplit(text)
        host = parts.hostname
    except ValueError:
        host = None
    if not host or parts.scheme not in ("http", "https"):
        raise ValueError(
            f"must be an http:// or https:// URL of the photo, like "
            f"https://example.com/face.jpg; got {text[:80]!r}"
        )
    return text


#: The client's check of each kind of input; the fake keeps its own (fakeserver.catalog).
_CHECKS: dict[InputKind, Callable[[Any, int], str]] = {
    InputKind.IMAGE: check_image,
    InputKind.TEXT: check_scene,
}


def _folded(name: str) -> str:
    return "".join(c for c in name.casefold() if c.isalnum())


def suggest_input(name: str, names: Iterable[str] = INPUT_NAMES) -> str | None:
    """The input a misspelt name most likely meant: the same letters and digits in another
    case or separator (`scene_1`, `Scene1`, `character-image`), or a close misspelling with
    the same digits (`Charcter_Image`; but not `Scene_5` for `Scene_1`)."""
    folded = _folded(name)
    by_fold = {_folded(known): known for known in names}
    if folded in by_fold:
        return by_fold[folded]
    digits = "".join(c for c in folded if c.isdigit())
    same_digits = [f for f in by_fold if "".join(c for c in f if c.isdigit()) == digits]
    close = difflib.get_close_matches(folded, same_digits, n=1, cutoff=0.75)
    return by_fold[close[0]] if close else None


def _unknown(name: str, names: Iterable[str] = INPUT_NAMES) -> str:
    guess = suggest_input(name, names)
    return "is not an input of this workflow" + (f" (did you mean {guess}?)" if guess else "")


def _refusal(
    problems: Mapping[str, str], names: Sequence[str] = tuple(INPUT_NAMES)
) -> InvalidInput:
    detail = "; ".join(f"{name} {msg}" for name, msg in problems.items())
    if any(name not in names for name in problems):
        detail += f"; the inputs are {', '.join(names)} (names are case-sensitive)"
    return InvalidInput(f"invalid workflow inputs, nothing was sent: {detail}", problems=problems)


def validate_inputs(
    data: Mapping[str, Any] | None, workflow: Workflow = CHARACTER_VIDEO
) -> dict[str, str]:
    """The one validation of a body for a registered workflow (by default the character
    video), used by the client before it sends and by the gateway before it admits: wire
    names only, every input checked, defaults filled in. Returns the canonical inputs, in
    the workflow's order, or raises `InvalidInput` listing every problem.
    """
    body = dict(data or {})
    names = workflow.input_names
    problems = {str(name): _unknown(str(name), names) for name in body if name not in names}
    canonical: dict[str, str] = {}
    for spec in workflow.inputs:
        if spec.name not in body:
            canonical[spec.name] = spec.default
            continue
        try:
            canonical[spec.name] = _CHECKS[spec.kind](body[spec.name], spec.max_length)
        except ValueError as exc:
            problems[spec.name] = str(exc)
    if problems:
        raise _refusal(problems, names)
    return canonical


class CharacterVideoInputs(BaseModel):
    """The five inputs of the character-video workflow, each with the product page's default.

    Python names are snake case and are what the constructor takes; the wire names
    (`Character_Image`, `Scene_1`...) are what a body (a mapping given to `parse`, or to
    `submit`) must use. Both are checked by the same rules (`validate_inputs`).

    >>> CharacterVideoInputs(scene_2="A chef in a busy kitchen").to_payload()["Scene_2"]
    'A chef in a busy kitchen'
    """

    model_config = ConfigDict(
        frozen=True, extra="forbid", validate_by_name=True, validate_by_alias=True
    )

    character_image: str = Field(default=DEFAULT_CHARACTER_IMAGE, alias="Character_Image")
    scene_1: str = Field(default=DEFAULT_SCENES[0], alias="Scene_1")
    scene_2: str = Field(default=DEFAULT_SCENES[1], alias="Scene_2")
    scene_3: str = Field(default=DEFAULT_SCENES[2], alias="Scene_3")
    scene_4: str = Field(default=DEFAULT_SCENES[3], alias="Scene_4")

    @field_validator("character_image", mode="before")
    @classmethod
    def _http_uri(cls, value: Any) -> str:
        return check_image(value)

    @field_validator("scene_1", "scene_2", "scene_3", "scene_4", mode="before")
    @classmethod
    def _scene_text(cls, value: Any) -> str:
        return check_scene(value)

    @classmethod
    def parse(
        cls, data: CharacterVideoInputs | Mapping[str, Any] | None = None
    ) -> CharacterVideoInputs:
        """Validated inputs from a model, a body with wire names (`Scene_1`...) or None."""
        if isinstance(data, CharacterVideoInputs):
            return data
        if data is not None and not isinstance(data, Mapping):
            raise InvalidInput(f"inputs must be a mapping of input names, got {_json_type(data)}")
        return cls.model_validate(validate_inputs(data), by_alias=True, by_name=False)

    @classmethod
    def build(cls, **kwargs: Any) -> CharacterVideoInputs:
        """Like the constructor (Python names), but raises `InvalidInput`, not pydantic's."""
        try:
            return cls.model_validate(kwargs, by_alias=False, by_name=True)
        except ValidationError as exc:
            raise invalid_input(exc) from None

    def to_payload(self) -> dict[str, str]:
        """The JSON body, every input spelled out with its wire name."""
        return self.model_dump(by_alias=True)

    @property
    def scenes(self) -> tuple[str, str, str, str]:
        return (self.scene_1, self.scene_2, self.scene_3, self.scene_4)


def invalid_input(exc: ValidationError) -> InvalidInput:
    problems: dict[str, str] = {}
    for error in exc.errors():
        name = ".".join(str(p) for p in error["loc"]) or "inputs"
        if error["type"] == "extra_forbidden":
            problems[name] = _unknown(name)
        else:
            problems[name] = str(error["msg"]).removeprefix("Value error, ")
    return _refusal(problems)


def raw_payload(data: Mapping[str, Any]) -> dict[str, Any]:
    """A raw input mapping for another workflow, checked to be JSON."""
    payload = {str(k): v for k, v in data.items()}
    try:
        # Encoded as it will be sent: a lone surrogate passes `dumps` but not UTF-8.
        json.dumps(payload, allow_nan=False, ensure_ascii=False).encode("utf-8")
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidInput(
            f"workflow inputs must be JSON-serialisable, nothing was sent: {exc}"
        ) from None
    return payload


class JobState(StrEnum):
    """A job's state. Statuses the client does not know map to OTHER and are not terminal."""

    QUEUED = "QUEUED"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    OTHER = "OTHER"

    @classmethod
    def parse(cls, status: Any) -> JobState:
        if isinstance(status, str):
            name = status.strip().upper()
            if name in cls.__members__ and name != "OTHER":
                return cls[name]
        return cls.OTHER

    @property
    def terminal(self) -> bool:
        return self in (JobState.COMPLETED, JobState.FAILED)


@dataclass(frozen=True)
class JobHandle:
    """A submitted job: its id and the URL to poll (followed as given, whatever its host)."""

    request_id: str
    poll_url: str
    status: str = "QUEUED"
    message: str | None = None


@dataclass(frozen=True)
class JobStatus:
    """One poll's answer."""

    request_id: str
    state: JobState
    status: str
    output: Any = None
    error: str | None = None
    body: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_body(cls, request_id: str, body: Mapping[str, Any]) -> JobStatus:
        raw = body.get("status")
        status = raw if isinstance(raw, str) else json.dumps(raw)
        return cls(
            request_id=str(body.get("request_id") or request_id),
            state=JobState.parse(raw),
            status=status,
            output=body.get("output"),
            error=failure_reason(body),
            body=dict(body),
        )


def failure_reason(body: Mapping[str, Any]) -> str | None:
    """The FAILED reason: `error_message` (API docs) or `error` (the product page's sample)."""
    for key in ("error_message", "error", "message", "detail"):
        value = body.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
        if isinstance(value, dict | list) and value:
            return json.dumps(value)
    return None


@dataclass(frozen=True)
class JobResult:
    """A COMPLETED job with its output decoded; the raw output is kept whatever its shape."""

    request_id: str
    outputs: tuple[OutputItem, ...]
    raw_output: Any
    status: str = "COMPLETED"
    cost: float | None = None
    cache_status: str | None = None
    error: str | None = None

    @classmethod
    def from_output(
        cls,
        request_id: str,
        output: Any,
        *,
        status: str = "COMPLETED",
        cost: float | None = None,
        cache_status: str | None = None,
        error: str | None = None,
    ) -> JobResult:
        outputs, raw = decode_output(output)
        return cls(request_id, outputs, raw, status, cost, cache_status, error)

    @property
    def state(self) -> JobState:
        return JobState.parse(self.status)

    @property
    def videos(self) -> dict[int, str]:
        """Video URL by scene number, in scene order."""
        found = {o.scene: o.url for o in self.outputs if o.scene is not None and o.url}
        return dict(sorted(found.items()))

    def video(self, scene: int) -> str:
        """The URL of scene `scene`'s video (numbered from 1)."""
        videos = self.videos
        if scene not in videos:
            have = ", ".join(map(str, videos)) or "none"
            raise KeyError(f"no video for scene {scene} in job {self.request_id} (scenes: {have})")
        return videos[scene]


@dataclass(frozen=True)
class Credits:
    """The account's balance, as `GET /v1/get-user-credits` reports it."""

    credits: float
    free_credits: float

    @property
    def total(self) -> float:
        return self.credits + self.free_credits


@dataclass(frozen=True)
class Progress:
    """What `wait` reports to `on_update` after every poll and before every retry."""

    status: JobStatus | None
    elapsed: float
    polls: int
    state_seconds: Mapping[str, float]
    note: str | None = None
