"""The workflow registry: one declaration per workflow, read by the client, the gateway and
the fake. The test-only workflow of `tests/workflows_extra.py` runs end to end in
tests/e2e/test_registered_workflow.py; these are the in-process checks."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import schemathesis
from pydantic import ValidationError

import fakeserver.openapi
import proxy.edge.openapi
import workflows
from client import CHARACTER_VIDEO_WORKFLOW_ID, CharacterVideoInputs, InvalidInput, validate_inputs
from fakeserver import FakeSettings
from fakeserver.catalog import default_catalog
from proxy.core.cache import canonical_inputs, generation_key
from proxy.core.config import ProxySettings
from proxy.core.errors import BadInput
from proxy.services.gateway import _image_of

UPSTREAM_KEY = "test-upstream-key-registry-4c1f"
EXTRA = "tests.workflows_extra"


def _tiny() -> workflows.Workflow:
    """The test-only workflow; importing its module registers it, so it is imported here,
    inside a test, never when this file is collected (every other test would see it)."""
    entry: workflows.Workflow = importlib.import_module(EXTRA).TINY
    return entry


@pytest.fixture
def tiny() -> Iterator[workflows.Workflow]:
    """Registered for one test (again, if an earlier test forgot it), then forgotten."""
    entry = workflows.register(_tiny())
    yield entry
    workflows.unregister(entry.id)


def test_the_character_video_is_the_entry_the_client_model_holds() -> None:
    entry = workflows.get(CHARACTER_VIDEO_WORKFLOW_ID)
    assert entry is workflows.CHARACTER_VIDEO
    assert CharacterVideoInputs().to_payload() == entry.defaults
    assert workflows.registered()[0] is entry


def test_an_entry_registers_once_and_another_under_its_id_is_refused(
    tiny: workflows.Workflow,
) -> None:
    assert workflows.register(tiny) is tiny  # a module imported twice: harmless
    with pytest.raises(ValueError, match="already registered with another definition"):
        workflows.register(replace(tiny, price=1.0))
    assert workflows.get(tiny.id) is tiny


@pytest.mark.parametrize(
    ("changes", "complaint"),
    [
        ({"id": "a/b"}, "without '/'"),
        ({"outputs": ()}, "at least one output"),
        ({"inputs": workflows.CHARACTER_VIDEO.inputs[:1] * 2}, "input names repeat"),
    ],
)
def test_a_malformed_entry_is_refused_when_declared(
    changes: dict[str, object], complaint: str
) -> None:
    with pytest.raises(ValueError, match=complaint):
        replace(workflows.CHARACTER_VIDEO, **changes)  # type: ignore[arg-type]


def test_a_module_that_cannot_be_imported_is_a_settings_error_of_both_servers(
    tmp_path: Path,
) -> None:
    missing = ["tests.no_such_workflow_module"]
    with pytest.raises(ValidationError, match="could not be imported"):
        ProxySettings(db=str(tmp_path / "g.sqlite"), workflow_modules=missing)
    with pytest.raises(ValidationError, match="could not be imported"):
        FakeSettings(workflow_modules=missing)


def test_a_registered_module_is_served_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Imported afresh, as in a server starting: the import is what registers it.
    monkeypatch.delitem(sys.modules, EXTRA, raising=False)
    assert workflows.registered() == (workflows.CHARACTER_VIDEO,)
    try:
        settings = ProxySettings(
            db=str(tmp_path / "g.sqlite"),
            upstream_key=UPSTREAM_KEY,
            workflow_modules=[EXTRA],
        )
        tiny_id = sys.modules[EXTRA].TINY.id
        assert settings.workflows == [CHARACTER_VIDEO_WORKFLOW_ID, tiny_id]
        fake = FakeSettings(workflow_modules=[EXTRA])  # imported already: no second entry
        assert fake.workflow_modules == [EXTRA]
        assert list(default_catalog()) == [CHARACTER_VIDEO_WORKFLOW_ID, tiny_id]
    finally:
        workflows.unregister(sys.modules[EXTRA].TINY.id)


def test_client_and_gateway_give_one_canonical_form(tiny: workflows.Workflow) -> None:
    assert validate_inputs({}, tiny) == tiny.defaults
    spelled = {"Prompt": tiny.defaults["Prompt"], "Photo": tiny.defaults["Photo"]}
    assert list(validate_inputs(spelled, tiny)) == ["Photo", "Prompt"]
    key = generation_key(tiny.id, canonical_inputs(tiny.id, {}))
    assert generation_key(tiny.id, canonical_inputs(tiny.id, spelled)) == key
    character = CHARACTER_VIDEO_WORKFLOW_ID
    assert generation_key(character, canonical_inputs(character, {})) != key
    with pytest.raises(InvalidInput, match="the inputs are Photo, Prompt"):
        validate_inputs({"Scene_1": "a knight"}, tiny)
    with pytest.raises(BadInput, match="Prompt must be at most 40 characters"):
        canonical_inputs(tiny.id, {"Prompt": "x" * 41})


def test_the_preflight_checks_each_workflows_image_input(tiny: workflows.Workflow) -> None:
    mine = "https://example.com/me.png"
    assert _image_of(tiny.id, {**tiny.defaults, "Photo": mine}) == mine
    character = workflows.CHARACTER_VIDEO.defaults
    assert _image_of(CHARACTER_VIDEO_WORKFLOW_ID, {**character, "Character_Image": mine}) == mine
    # A workflow's own default image (its sample, on Segmind's storage) is never fetched.
    assert _image_of(tiny.id, tiny.defaults) is None
    assert _image_of(CHARACTER_VIDEO_WORKFLOW_ID, character) is None
    # A workflow served but not registered: its inputs are not known, nothing is fetched.
    assert _image_of("unregistered-v1", {"Character_Image": "https://example.com/a.jpg"}) is None


def test_one_workflow_keeps_the_documents_and_two_are_valid_openapi(
    tiny: workflows.Workflow,
) -> None:
    assert (
        proxy.edge.openapi.document_for((CHARACTER_VIDEO_WORKFLOW_ID,))
        == proxy.edge.openapi.DOCUMENT
    )
    assert proxy.edge.openapi.document_for(("unregistered-v1",)) == proxy.edge.openapi.DOCUMENT
    both = (workflows.CHARACTER_VIDEO, tiny)
    fake_catalog = tuple(default_catalog().values())
    for document in (
        proxy.edge.openapi.document_for(tuple(w.id for w in both)),
        fakeserver.openapi.build_document(fake_catalog),
    ):
        schemathesis.openapi.from_dict(document).validate()
        schemas = document["components"]["schemas"]
        assert [r["$ref"] for r in schemas["WorkflowInputs"]["anyOf"]] == [
            f"#/components/schemas/WorkflowInputs.{w.id}" for w in both
        ]
        assert list(schemas[f"WorkflowInputs.{tiny.id}"]["properties"]) == ["Photo", "Prompt"]
    # A gateway serving only the other one describes it alone, with an example of its own.
    alone = proxy.edge.openapi.document_for((tiny.id,))["components"]["schemas"]["WorkflowInputs"]
    assert list(alone["properties"]) == ["Photo", "Prompt"]
    assert list(alone["example"]) == ["Prompt"]
