"""A second, test-only workflow, declared here and nowhere else.

Registering it is all it takes for the client to validate and send it, the gateway to
validate, cache and document it, and the fake to serve it: the servers a test starts import
this module (`--workflow-module tests.workflows_extra`, `PROXY_WORKFLOW_MODULES`).
"""

from __future__ import annotations

from workflows import Input, InputKind, Output, Workflow, register

__all__ = ["TINY"]

TINY = register(
    Workflow(
        id="test-tiny-clip-v1",
        title="Tiny clip (test only)",
        inputs=(
            Input(
                "Photo",
                InputKind.IMAGE,
                "https://example.com/tiny.png",
                200,
                "An http(s) URL of the picture to animate.",
            ),
            Input("Prompt", InputKind.TEXT, "a slow zoom", 40, "What happens; not blank."),
        ),
        outputs=(Output("Clip", "video"),),
        price=0.25,
        run_seconds=60.0,
    )
)
