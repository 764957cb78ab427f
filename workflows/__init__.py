"""The registry of Segmind workflows: what each one takes and gives, declared once.

An entry (`Workflow`) holds what the product page says of a workflow: its id, its inputs
(name, kind, default, limit, description), its outputs (key name and type), and what a run
typically costs and lasts. The client validates a body against it, the gateway validates,
keys its cache and writes its OpenAPI document from it, and the fake serves it.

This package is data and a lookup, nothing else: it imports nothing of the project, so the
client, the gateway and the fake can all read it while the fake still shares no code with
the client. Each side keeps its own check for each input kind (`InputKind`), on purpose: a
misreading of a rule cannot hide on both sides. A workflow whose inputs are of the kinds
below is added by registering it, and by nothing else:

>>> from workflows import Input, InputKind, Output, Workflow, register
>>> register(Workflow(id="my-workflow-v1", title="My workflow", price=0.5, run_seconds=40.0,
...     inputs=(Input("Prompt", InputKind.TEXT, "a cat", 500, "What to draw."),),
...     outputs=(Output("Video", "video"),)))  # doctest: +SKIP

`python -m proxy serve --workflow-module my.module` (and `python -m fakeserver
--workflow-module ...`) import such a module at start, so a running server serves it too.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "CHARACTER_VIDEO",
    "Input",
    "InputKind",
    "Output",
    "Workflow",
    "get",
    "load_modules",
    "register",
    "registered",
    "unregister",
]


class InputKind(StrEnum):
    """What an input holds; each kind has one check in the client and one in the fake."""

    #: An http(s) URL of an image, without spaces or control characters; the gateway's
    #: image preflight fetches the first such input of a run before paying for it.
    IMAGE = "image"
    #: A prompt: a string that must not be blank (only whitespace or invisible characters).
    TEXT = "text"


@dataclass(frozen=True)
class Input:
    """One input: its wire name (case-sensitive), kind, default, longest value, and the
    sentence the OpenAPI documents show for it. Every input is optional: left out, it
    takes its default."""

    name: str
    kind: InputKind
    default: str
    max_length: int
    description: str


@dataclass(frozen=True)
class Output:
    """One output node of a COMPLETED run: its `keyname` and its `value.type`."""

    keyname: str
    type: str = "video"


@dataclass(frozen=True)
class Workflow:
    """A workflow as Segmind serves it.

    The canonical form of a body, which the gateway's cache key is the hash of, is every
    input in declaration order, each as validated or else its default: so `{}` and the body
    that spells out the defaults are one request. `price` (USD) and `run_seconds` (submit
    to COMPLETED) are the product page's typical figures: the fake charges and times its
    runs from them; the client's estimates use them.
    """

    id: str
    title: str
    inputs: tuple[Input, ...]
    outputs: tuple[Output, ...]
    price: float
    run_seconds: float

    def __post_init__(self) -> None:
        names = [i.name for i in self.inputs]
        if not self.id or "/" in self.id:
            raise ValueError(f"a workflow id must be non-empty and without '/': {self.id!r}")
        if len(set(names)) != len(names):
            raise ValueError(f"workflow {self.id}: input names repeat: {names}")
        if not self.outputs:
            raise ValueError(f"workflow {self.id}: declare at least one output")

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(i.name for i in self.inputs)

    @property
    def defaults(self) -> dict[str, str]:
        return {i.name: i.default for i in self.inputs}

    @property
    def schema_name(self) -> str:
        """Its body's schema in an OpenAPI document serving several workflows."""
        return f"WorkflowInputs.{self.id}"

    @property
    def example(self) -> dict[str, str]:
        """An example body for documents: one prompt changed (`Scene_1` for the character
        video), the rest left to the defaults."""
        prompts = [i.name for i in self.inputs if i.kind is InputKind.TEXT]
        return {prompts[0]: "A knight on a cliff at dawn"} if prompts else {}

    @property
    def image_input(self) -> str | None:
        """The name of the first `IMAGE` input, the one the gateway's preflight checks."""
        return next((i.name for i in self.inputs if i.kind is InputKind.IMAGE), None)


_REGISTRY: dict[str, Workflow] = {}


def register(workflow: Workflow) -> Workflow:
    """Add `workflow`; registering the very same entry again does nothing, another entry
    under a taken id is a `ValueError` (two readings of one workflow would be a bug)."""
    known = _REGISTRY.get(workflow.id)
    if known is not None and known != workflow:
        raise ValueError(f"workflow {workflow.id} is already registered with another definition")
    _REGISTRY[workflow.id] = workflow
    return workflow


def unregister(workflow_id: str) -> None:
    """Forget a workflow (tests that register one for a while)."""
    _REGISTRY.pop(workflow_id, None)


def get(workflow_id: str) -> Workflow | None:
    return _REGISTRY.get(workflow_id)


def registered() -> tuple[Workflow, ...]:
    """Every registered workflow, in the order registered (the character video first)."""
    return tuple(_REGISTRY.values())


def load_modules(modules: Iterable[str]) -> None:
    """Import each named module, which registers its workflows as it is imported; a
    module that cannot be imported is a `ValueError` saying which and why."""
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:  # any failure of a named module is a settings error
            raise ValueError(
                f"workflow module {name!r} could not be imported ({type(exc).__name__}: "
                f"{exc}); name an importable module that calls workflows.register(...)"
            ) from None


CHARACTER_VIDEO_IMAGE = (
    "https://segmind-inference-inputs.s3.amazonaws.com/"
    "e698f341-23a1-465e-8164-16c577dfb4d0-5f184e74-c558-4b92-8696-722761fb3737.jpg"
)
_SCENE = (
    "A scene prompt; must not be blank: one of only whitespace, control or invisible "
    "characters is refused with 400."
)


def _scene(number: int, default: str) -> Input:
    # The real limit is undocumented: this one no sensible prompt reaches (docs/fake.md,
    # "Validation"); the client, the gateway and the fake all refuse past it.
    return Input(f"Scene_{number}", InputKind.TEXT, default, 1000, _SCENE)


#: Segmind's "Consistent Character Video Generation" (SEGMIND_API.md): one photo and four
#: scene prompts in, four videos out, about 11 minutes and $3.97 a run.
CHARACTER_VIDEO = register(
    Workflow(
        id="68628fe34727e611dfa219b4-v4",
        title="Consistent Character Video Generation",
        inputs=(
            Input(
                "Character_Image",
                InputKind.IMAGE,
                CHARACTER_VIDEO_IMAGE,
                2048,
                "An http(s) URL of the photo, without spaces or control characters.",
            ),
            _scene(1, "Model on lighthouse rocks, hair streaming in gale"),
            _scene(2, "Model emerging from colored smoke, dramatic pose"),
            _scene(3, "Model by waterfall, mist creating natural wind effects"),
            _scene(4, "Model against chain-link fence, rebellious lean"),
        ),
        outputs=tuple(Output(f"Scene_{n}_Video") for n in range(1, 5)),
        price=3.9674,
        run_seconds=673.9,
    )
)
