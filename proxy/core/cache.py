"""The canonical key of a generation: what makes two requests "identical".

Two bodies are identical when, after validation, defaults filled in and key order
ignored, they ask one workflow for the same inputs: `{}` and the body that spells out
every default share one key. The workflow id is part of the key, and so is the scope:
by default a team's key, so one team can never learn, by timing or by a cache hit, what
another team asked for.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import workflows
from client import InvalidInput as ClientInvalidInput
from client import validate_inputs
from proxy.core.errors import BadInput

__all__ = ["canonical_inputs", "generation_key", "scoped_key"]


def canonical_inputs(workflow_id: str, body: Any) -> dict[str, Any]:
    """Validated inputs with defaults filled in; raises `BadInput` (400) before any cost."""
    if not isinstance(body, Mapping):
        kind = "an array" if isinstance(body, list) else type(body).__name__
        raise BadInput(
            f"the request body must be a JSON object of workflow inputs, got {kind}; "
            'send e.g. {"Scene_1": "..."} or {} for all defaults'
        )
    workflow = workflows.get(workflow_id)
    if workflow is not None:
        # The client's own validation against the workflow's registry entry, the one it
        # applies before it sends: a body the SDK would refuse is refused here alike, and
        # no other spelling of a name is accepted.
        try:
            return validate_inputs(body, workflow)
        except ClientInvalidInput as exc:
            raise BadInput(exc.message) from None
    # A workflow an operator serves without registering it: its schema is not known here,
    # so only key order and JSON spelling are normalised.
    return dict(body)


def generation_key(workflow_id: str, inputs: Mapping[str, Any]) -> str:
    """SHA-256 of the workflow id and the canonical inputs."""
    blob = json.dumps(
        [workflow_id, inputs], sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def scoped_key(key: str, team_id: str, shared: bool) -> str:
    """The key as stored: per team unless the operator opted into sharing across teams."""
    return f"shared:{key}" if shared else f"team:{team_id}:{key}"
