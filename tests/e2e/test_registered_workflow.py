"""A second workflow, declared once in the registry (`tests/workflows_extra.py`), runs
through the fake, the gateway and the client with nothing else changed: both servers are
real uvicorn processes that import the module at start (the fake by `--workflow-module`,
the gateway by `PROXY_WORKFLOW_MODULES`), on virtual clocks.
"""

from __future__ import annotations

import contextlib
import importlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import workflows
from client import Client, InvalidInput
from tests.stack import UPSTREAM_KEY, BothClocks, Stack, running_stack

MODULE = "tests.workflows_extra"


@pytest.fixture(scope="module")
def tiny() -> Iterator[workflows.Workflow]:
    """The test-only workflow, registered in this process too (for the client) while the
    module's tests run, and forgotten afterwards. Its module is imported here, not when
    this file is collected: importing it registers it, and every other test would see it."""
    entry: workflows.Workflow = importlib.import_module(MODULE).TINY
    yield workflows.register(entry)
    workflows.unregister(entry.id)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, tiny: workflows.Workflow) -> Iterator[Stack]:
    db = tmp_path_factory.mktemp("registered") / "gateway.sqlite"
    modules = {"PROXY_WORKFLOW_MODULES": json.dumps([MODULE])}
    with running_stack(db, "tiny", "--workflow-module", MODULE, env=modules) as built:
        yield built


def _submit(stack: Stack, workflow: workflows.Workflow, body: Any) -> httpx.Response:
    return httpx.post(
        f"{stack.gateway.url}/workflows/{workflow.id}",
        json=body,
        headers={"x-api-key": stack.team_key},
    )


def test_the_fake_serves_it_validates_it_and_charges_its_price(
    stack: Stack, tiny: workflows.Workflow
) -> None:
    submit = f"/workflows/{tiny.id}"
    fake = httpx.Client(base_url=stack.fake.url, headers={"x-api-key": UPSTREAM_KEY})
    with fake:
        before = fake.get("/v1/get-user-credits").json()["credits"]
        refused = fake.post(submit, json={"Prompt": "x" * 41})
        assert refused.status_code == 400
        assert "Prompt is 41 characters long; the limit is 40" in refused.json()["error"]
        queued = fake.post(submit, json={"Prompt": "a cat"})
        assert queued.status_code == 200, queued.text
        fake.post("/__admin/clock/advance", json={"seconds": 3600 * 0.9}).raise_for_status()
        done = fake.get(f"/workflows/request/{queued.json()['request_id']}").json()
        after = fake.get("/v1/get-user-credits").json()["credits"]
        document = fake.get("/openapi.json").json()
    assert done["status"] == "COMPLETED"
    assert [o["keyname"] for o in json.loads(done["output"])] == ["Clip"]
    assert round(before - after, 4) == tiny.price  # its own price, not the character video's
    schema = document["components"]["schemas"][f"WorkflowInputs.{tiny.id}"]
    assert schema["properties"]["Prompt"]["maxLength"] == 40


def test_the_gateway_refuses_bad_inputs_before_the_upstream(
    stack: Stack, tiny: workflows.Workflow
) -> None:
    submits = len(stack.journal("submit"))
    cases = {
        "did you mean Prompt?": {"prompt": "a cat"},
        "Prompt must be at most 40 characters, got 41": {"Prompt": "x" * 41},
        "Prompt is blank": {"Prompt": " \u200b "},
        "Photo must be an http:// or https:// URL": {"Photo": "ftp://example.com/a.png"},
        "Photo must be a string, got a number": {"Photo": 7},
    }
    for expected, body in cases.items():
        answer = _submit(stack, tiny, body)
        assert answer.status_code == 400, body
        assert expected in answer.json()["error"], answer.json()
    assert len(stack.journal("submit")) == submits  # nothing reached the paid upstream


def test_the_client_runs_it_and_the_gateway_caches_it(
    stack: Stack, tiny: workflows.Workflow, tmp_path: Path
) -> None:
    submits = len(stack.journal("submit"))
    url = stack.gateway.url
    with (
        contextlib.closing(BothClocks(stack)) as clocks,
        Client(stack.team_key, base_url=url, workflow_id=tiny.id, clock=clocks) as client,
    ):
        with pytest.raises(InvalidInput, match="did you mean Prompt"):
            client.submit({"prompt": "a cat"})  # refused here, before anything is sent
        result = client.run({"Prompt": "a dog on a skateboard"})
        saved = client.download(result, tmp_path)
    assert [o.keyname for o in result.outputs] == ["Clip"]
    assert list(result.videos) == [1]
    assert [path.read_bytes()[4:8] for path in saved.values()] == [b"ftyp"]  # one video
    assert len(stack.journal("submit")) == submits + 1
    # The same request spelled otherwise (defaults written out, keys reordered): one run.
    spelled_out = {"Photo": tiny.defaults["Photo"], "Prompt": "a dog on a skateboard"}
    again = _submit(stack, tiny, spelled_out)
    assert again.status_code == 200, again.text
    assert again.headers["x-cache-status"] == "HIT"
    other = _submit(stack, tiny, {"Prompt": "a dog on a bicycle"})
    assert other.headers["x-cache-status"] == "MISS"
    assert len(stack.journal("submit")) == submits + 2


def test_the_gateway_documents_it(stack: Stack, tiny: workflows.Workflow) -> None:
    document = httpx.get(f"{stack.gateway.url}/openapi.json").json()
    schemas = document["components"]["schemas"]
    inputs = schemas[f"WorkflowInputs.{tiny.id}"]
    assert inputs["title"] == tiny.title
    assert inputs["properties"]["Photo"]["default"] == tiny.defaults["Photo"]
    assert inputs["properties"]["Prompt"] == {
        "type": "string",
        "minLength": 1,
        "maxLength": 40,
        "description": "What happens; not blank.",
        "default": "a slow zoom",
    }
    refs = [ref["$ref"].rpartition("/")[2] for ref in schemas["WorkflowInputs"]["anyOf"]]
    assert refs == [f"WorkflowInputs.{w.id}" for w in (workflows.CHARACTER_VIDEO, tiny)]
