"""The workflows the fake serves: every entry of the workflow registry (`workflows`), with
the fake's own validation of each kind of input.

The registry says what each workflow takes (names, kinds, defaults, limits) and gives
(output key names, typical price and duration). How an input of a kind is checked is the
fake's own reading of Segmind's rules (see SEGMIND_API.md); it shares no code with the
client on purpose, so a bug cannot hide on both sides.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import unicodedata
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

import workflows

from .errors import InvalidInput

__all__ = [
    "CHARACTER_VIDEO",
    "CHARACTER_VIDEO_ID",
    "InputKind",
    "InputSpec",
    "UnknownInputPolicy",
    "Workflow",
    "default_catalog",
]


# Code points that draw nothing. By general category: controls, format characters (zero-width
# space, joiners, bidi marks, BOM), space and line/paragraph separators, private-use and
# unassigned code points, surrogates. By code point: default-ignorables that Unicode files as
# marks or letters (U+034F, Hangul fillers, Khmer inherent vowels, Mongolian variation
# selectors, variation selectors 1-256) and the Braille pattern blank. A scene made of only
# these (and whitespace) asks the model for nothing, and would still be charged.
_NOTHING_CATEGORIES = ("Cc", "Cf", "Cn", "Co", "Cs", "Zl", "Zp", "Zs")
_NOTHING_RANGES = (
    (0x034F, 0x034F),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180D),
    (0x180F, 0x180F),
    (0x2800, 0x2800),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFFA0, 0xFFA0),
    (0xE0100, 0xE01EF),
)


def _draws_nothing(char: str) -> bool:
    if char.isspace() or unicodedata.category(char) in _NOTHING_CATEGORIES:
        return True
    point = ord(char)
    return any(low <= point <= high for low, high in _NOTHING_RANGES)


def _fold(name: str) -> str:
    return "".join(c for c in name.lower() if c.isalnum())


class InputKind(StrEnum):
    URI = "uri"
    TEXT = "text"


# How the fake checks each kind the registry knows.
_KINDS = {workflows.InputKind.IMAGE: InputKind.URI, workflows.InputKind.TEXT: InputKind.TEXT}


class UnknownInputPolicy(StrEnum):
    """What to do with an input name the workflow does not have."""

    REJECT = "reject"  # 400: a typo like "scene_1" would otherwise silently cost a run
    IGNORE = "ignore"

    @classmethod
    def parse(cls, value: str) -> UnknownInputPolicy:
        try:
            return cls(value)
        except ValueError:
            valid = ", ".join(repr(p.value) for p in cls)
            raise ValueError(f"unknown-inputs must be one of {valid}; got {value!r}") from None


@dataclass(frozen=True)
class InputSpec:
    name: str
    kind: InputKind
    default: str
    max_length: int
    description: str = ""

    def check(self, value: Any) -> str:
        if not isinstance(value, str):
            raise InvalidInput(
                f"{self.name} must be a string, got {_json_type(value)}; omit it to use the default"
            )
        if self.kind is InputKind.URI:
            return _check_url(self.name, value, self.max_length)
        if all(map(_draws_nothing, value)):
            raise InvalidInput(
                f"{self.name} must not be empty or blank (only whitespace, control or "
                "invisible characters); omit it to use the default"
            )
        if len(value) > self.max_length:
            raise InvalidInput(
                f"{self.name} is {len(value)} characters long; the limit is {self.max_length}"
            )
        return value


@dataclass(frozen=True)
class Workflow:
    id: str
    title: str
    inputs: tuple[InputSpec, ...]
    output_keys: tuple[str, ...]
    output_type: str = "video"
    #: Each output's type, when they differ (else every output is `output_type`).
    output_types: tuple[str, ...] = ()
    #: The registry's typical price and duration: what the fake's settings are scaled by.
    price: float = workflows.CHARACTER_VIDEO.price
    run_seconds: float = workflows.CHARACTER_VIDEO.run_seconds
    _names: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_names", frozenset(i.name for i in self.inputs))

    def canonical_inputs(self, body: Any, policy: UnknownInputPolicy) -> dict[str, str]:
        """Validate a request body and fill in defaults; raises `InvalidInput`."""
        if not isinstance(body, dict):
            raise InvalidInput(
                f"the request body must be a JSON object of workflow inputs, got {_json_type(body)}"
            )
        unknown = sorted(set(body) - self._names)
        if unknown and policy is UnknownInputPolicy.REJECT:
            valid = ", ".join(sorted(self._names))
            hints = [f"did you mean {guess}?" for guess in map(self.near_miss, unknown) if guess]
            raise InvalidInput(
                f"unknown input {', '.join(map(repr, unknown))} for workflow {self.id}; "
                + "".join(f"{hint} " for hint in dict.fromkeys(hints))
                + f"valid inputs are {valid} (names are case-sensitive)"
            )
        return {
            spec.name: spec.check(body[spec.name]) if spec.name in body else spec.default
            for spec in self.inputs
        }

    def output_type_of(self, index: int) -> str:
        return self.output_types[index] if index < len(self.output_types) else self.output_type

    def near_miss(self, name: str) -> str | None:
        """The input an unknown name probably meant: equal but for case and separators
        ("scene_1", "SCENE-1"), or a typo of one with the same number ("Scnee_2")."""
        folded = {_fold(known): known for known in self._names}
        if _fold(name) in folded:
            return folded[_fold(name)]
        number = [c for c in _fold(name) if c.isdigit()]
        candidates = [f for f in folded if [c for c in f if c.isdigit()] == number]
        found = difflib.get_close_matches(_fold(name), candidates, n=1, cutoff=0.75)
        return folded[found[0]] if found else None

    def digest(self, inputs: dict[str, str]) -> str:
        """A stable name for one canonical input set: same inputs, same output URLs."""
        blob = json.dumps([self.id, inputs], sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _check_url(name: str, value: str, max_length: int) -> str:
    if len(value) > max_length:
        raise InvalidInput(f"{name} is {len(value)} characters long; the limit is {max_length}")
    if any(c.isspace() or unicodedata.category(c) in ("Cc", "Cf") for c in value):
        raise InvalidInput(
            f"{name} must be an http(s) URL without spaces or control characters; "
            f"got {value[:80]!r}"
        )
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:
        host = None
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not host:
        raise InvalidInput(
            f"{name} must be an http(s) URL of the character's photo, "
            f"like https://example.com/face.jpg; got {value[:80]!r}"
        )
    return value


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def from_registry(entry: workflows.Workflow) -> Workflow:
    """The fake's workflow for a registry entry."""
    return Workflow(
        id=entry.id,
        title=entry.title,
        inputs=tuple(
            InputSpec(i.name, _KINDS[i.kind], i.default, i.max_length, i.description)
            for i in entry.inputs
        ),
        output_keys=tuple(o.keyname for o in entry.outputs),
        output_type=entry.outputs[0].type,
        output_types=tuple(o.type for o in entry.outputs),
        price=entry.price,
        run_seconds=entry.run_seconds,
    )


CHARACTER_VIDEO = from_registry(workflows.CHARACTER_VIDEO)
CHARACTER_VIDEO_ID = CHARACTER_VIDEO.id


def default_catalog(output_keys: tuple[str, ...] | None = None) -> dict[str, Workflow]:
    """Every registered workflow, optionally with other output key names for the character
    video's four scenes (the real ones are unknown)."""
    catalog = {entry.id: from_registry(entry) for entry in workflows.registered()}
    if output_keys is not None:
        workflow = CHARACTER_VIDEO
        if len(output_keys) != len(workflow.output_keys):
            raise ValueError(
                f"output keys: expected {len(workflow.output_keys)} names (one per scene), "
                f"got {len(output_keys)}"
            )
        catalog[workflow.id] = replace(workflow, output_keys=output_keys)
    return catalog
