"""The workflow's inputs, and what the client hands back: job handles, statuses, results.

Inputs are validated here, before any request is built: a bad input never reaches the paid
API. Everything else is a frozen value object built from the server's answers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ._errors import InvalidInput
from ._output import OutputItem, decode_output

__all__ = [
    "DEFAULT_CHARACTER_IMAGE",
    "DEFAULT_SCENES",
    "MAX_SCENE_LENGTH",
    "CharacterVideoInputs",
    "Credits",
    "JobHandle",
    "JobResult",
    "JobState",
    "JobStatus",
    "Progress",
]

DEFAULT_CHARACTER_IMAGE = (
    "https://segmind-inference-inputs.s3.amazonaws.com/"
    "e698f341-23a1-465e-8164-16c577dfb4d0-5f184e74-c558-4b92-8696-722761fb3737.jpg"
)
DEFAULT_SCENES = (
    "Model on lighthouse rocks, hair streaming in gale",
    "Model emerging from colored smoke, dramatic pose",
    "Model by waterfall, mist creating natural wind effects",
    "Model against chain-link fence, rebellious lean",
)
MAX_SCENE_LENGTH = 1000
MAX_URL_LENGTH = 2048


class CharacterVideoInputs(BaseModel):
    """The five inputs of the character-video workflow, each with the product page's default.

    Python names are snake case; the wire names (`Character_Image`, `Scene_1`...) are
    aliases, and both spellings are accepted.

    >>> CharacterVideoInputs(scene_2="A chef in a busy kitchen").to_payload()["Scene_2"]
    'A chef in a busy kitchen'
    """

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    character_image: str = Field(default=DEFAULT_CHARACTER_IMAGE, alias="Character_Image")
    scene_1: str = Field(default=DEFAULT_SCENES[0], alias="Scene_1")
    scene_2: str = Field(default=DEFAULT_SCENES[1], alias="Scene_2")
    scene_3: str = Field(default=DEFAULT_SCENES[2], alias="Scene_3")
    scene_4: str = Field(default=DEFAULT_SCENES[3], alias="Scene_4")

    @field_validator("character_image")
    @classmethod
    def _http_uri(cls, value: str) -> str:
        if len(value) > MAX_URL_LENGTH:
            raise ValueError(f"must be at most {MAX_URL_LENGTH} characters")
        if any(c.isspace() for c in value):
            raise ValueError("must be an http(s) URL without spaces")
        parts = urlsplit(value)
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise ValueError(f"must be an http:// or https:// URL of the photo, got {value!r}")
        return value

    @field_validator("scene_1", "scene_2", "scene_3", "scene_4")
    @classmethod
    def _scene_text(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty (leave it out to use the default)")
        if len(value) > MAX_SCENE_LENGTH:
            raise ValueError(f"must be at most {MAX_SCENE_LENGTH} characters, got {len(value)}")
        return value

    @classmethod
    def parse(
        cls, data: CharacterVideoInputs | Mapping[str, Any] | None = None
    ) -> CharacterVideoInputs:
        """Validated inputs from a model, a mapping (either spelling of names) or None."""
        if isinstance(data, CharacterVideoInputs):
            return data
        try:
            return cls.model_validate(dict(data or {}))
        except ValidationError as exc:
            raise invalid_input(exc) from None

    @classmethod
    def build(cls, **kwargs: Any) -> CharacterVideoInputs:
        """Like the constructor, but raises `InvalidInput` instead of pydantic's error."""
        return cls.parse(kwargs)

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
            known = ", ".join(f.alias or n for n, f in CharacterVideoInputs.model_fields.items())
            problems[name] = f"is not an input of this workflow (inputs: {known})"
        else:
            problems[name] = str(error["msg"]).removeprefix("Value error, ")
    detail = "; ".join(f"{name} {msg}" for name, msg in problems.items())
    return InvalidInput(f"invalid workflow inputs, nothing was sent: {detail}", problems=problems)


def raw_payload(data: Mapping[str, Any]) -> dict[str, Any]:
    """A raw input mapping for another workflow, checked to be JSON."""
    payload = {str(k): v for k, v in data.items()}
    try:
        json.dumps(payload, allow_nan=False)
    except (TypeError, ValueError) as exc:
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
