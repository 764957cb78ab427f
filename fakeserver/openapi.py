"""The fake's OpenAPI 3.0 document, served at `GET /openapi.json`.

It describes Segmind's public workflow API as this fake serves it: submit, poll, credits,
the output videos and the health check, with every status code and body the fake can
answer. The admin API under /__admin is a test control surface, not Segmind's, and is left
out. The document is a plain dict built once per catalog from the workflow catalog and the
error table, so the inputs, defaults and codes it lists cannot drift from what is enforced.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .catalog import CHARACTER_VIDEO, InputKind, Workflow
from .errors import DEFAULT_MESSAGES, ERROR_CODES
from .jobs import JobState
from .prefer import FAULT_KINDS
from .state import FakeState

__all__ = ["DOCUMENT", "FORCEABLE_CODES", "build_document", "openapi"]

OPENAPI_VERSION = "3.0.3"
# Any documented error code can be forced with `Prefer: code=N` on these operations.
FORCEABLE_CODES = ERROR_CODES
REQUEST_ID_PATTERN = "^[0-9a-f]{32}$"
JSON = "application/json"
ALLOW_HEADER = {
    "description": "The methods the path does take.",
    "required": True,
    "schema": {"type": "string"},
}

PREFER_TEXT = f"""\
**Forcing behaviour (`Prefer` request header, RFC 7240).** Submit, poll and credits accept
an optional `Prefer` header that makes the fake misbehave on purpose. It is deliberately not
listed as a parameter, so that generators leave it alone. Tokens, comma or semicolon
separated:

- `code=N`: answer status N with `{{"error": "..."}}` instead of serving the request
  (N is one of {", ".join(map(str, ERROR_CODES))}; a forced 429 carries `Retry-After: 1`).
- `fault=KIND`: break the connection (KIND is one of {", ".join(FAULT_KINDS)};
  `malformed` answers 200 with a truncated JSON body).
- `delay=MS`, `trickle=MS`: answer late, or spread the body over MS milliseconds.
- `after`: serve the request first (a job is created and charged), then replace the answer.
- On submit only: `outcome=completed|failed|never`, `duration=SECONDS`, `polls=N`
  (advance one state every N polls) and `status=NAME` (the non-terminal status shown
  instead of PROCESSING).

A known token with a bad value answers 400; tokens the fake does not know are ignored.
The 500, 502 and 504 answers below only ever come from `Prefer` or from seeded chaos; the
fake never fails on its own. Answers scripted through `POST /__admin/script` are whatever
the script says, and are outside this document.
"""

DESCRIPTION = f"""\
An offline fake of Segmind's "Consistent Character Video Generation" workflow API.
Submit a job, poll its `poll_url` until it is COMPLETED or FAILED, read the credits.
Time runs on the fake's clock (real or virtual), so runs of about 11 minutes can be
stepped through in milliseconds.

Authentication: the account's key in `x-api-key`, or `Authorization: Bearer <key>`.
Errors are JSON `{{"error": "<sentence>"}}` with Segmind's status codes.

Not described here: the test control surface under `/__admin` (journal, clock, credits,
scripted faults, chaos); see docs/fake.md.

{PREFER_TEXT}"""


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str, **extra: Any) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}, **extra}


def _error(code: int, description: str | None = None, schema: str = "Error") -> dict[str, Any]:
    answer = _json(_ref(schema), description or DEFAULT_MESSAGES[code])
    if code == 429:
        answer["headers"] = {"Retry-After": {"$ref": "#/components/headers/Retry-After"}}
    return answer


def _forced(code: int) -> dict[str, Any]:
    return _error(code, f"{DEFAULT_MESSAGES[code]}. Only when forced (`Prefer`, chaos).")


def _faultable(responses: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The operation's own answers, plus every code `Prefer: code=N` can force on it."""
    merged = {str(code): _forced(code) for code in FORCEABLE_CODES}
    merged.update(responses)
    return dict(sorted(merged.items()))


def _properties(workflow: Workflow) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    for spec in workflow.inputs:
        if spec.kind is InputKind.URI:
            properties[spec.name] = {
                "type": "string",
                "maxLength": spec.max_length,
                "default": spec.default,
                "description": spec.description,
            }
        else:
            properties[spec.name] = {
                "type": "string",
                "minLength": 1,
                "maxLength": spec.max_length,
                "default": spec.default,
                "description": spec.description,
            }
    return properties


INPUTS_TEXT = (
    "The workflow inputs; each is optional and defaults as shown, so `{}` runs the "
    "defaults. An empty body means `{}`. Unknown names are refused with 400 (the fake "
    "started with `--unknown-inputs ignore` ignores them instead)."
)


def _input_schema(served: Sequence[Workflow]) -> dict[str, Any]:
    if len(served) > 1:  # the path's workflow id says which of these the body is
        return {
            "description": INPUTS_TEXT,
            "anyOf": [_ref(_schema_name(workflow)) for workflow in served],
        }
    return {
        "type": "object",
        "description": INPUTS_TEXT,
        "properties": _properties(served[0]),
        "additionalProperties": False,
        "example": _example(served[0]),
    }


def _example(workflow: Workflow) -> dict[str, str]:
    """A body that changes one prompt (`Scene_1` for the character video)."""
    prompts = [spec.name for spec in workflow.inputs if spec.kind is InputKind.TEXT]
    return {prompts[0]: "A knight on a cliff at dawn"} if prompts else {}


def _schema_name(workflow: Workflow) -> str:
    return f"WorkflowInputs.{workflow.id}"


def _workflow_schemas(served: Sequence[Workflow]) -> dict[str, Any]:
    if len(served) == 1:
        return {}
    return {
        _schema_name(w): {
            "title": w.title,
            "x-workflow-id": w.id,
            "type": "object",
            "properties": _properties(w),
            "additionalProperties": False,
        }
        for w in served
    }


def _poll_schema() -> dict[str, Any]:
    terminal = [JobState.COMPLETED.value, JobState.FAILED.value]
    text = {"type": "string"}
    return {
        "type": "object",
        "required": ["status"],
        "properties": {
            "status": text,
            "output": text,
            "error_message": text,
            "error": text,
        },
        "additionalProperties": False,
        "anyOf": [
            {
                "title": "Queued",
                "properties": {"status": {"type": "string", "enum": [JobState.QUEUED.value]}},
                "maxProperties": 1,
            },
            {
                "title": "Running",
                "description": "PROCESSING, or the name asked for with `Prefer: status=NAME`.",
                "required": ["output"],
                "properties": {
                    "status": {"type": "string", "not": {"enum": [*terminal, "QUEUED"]}},
                    "output": {"type": "string", "maxLength": 0},
                },
                "maxProperties": 2,
            },
            {
                "title": "Completed",
                "description": (
                    "`output` is a JSON document serialised as a string: a list of "
                    '`{"keyname": ..., "value": {"data": <URL>, "type": "video"}}`, one per scene.'
                ),
                "required": ["output"],
                "properties": {"status": {"type": "string", "enum": [JobState.COMPLETED.value]}},
                "maxProperties": 2,
            },
            {
                "title": "Failed",
                "description": "The reason is in `error_message`, `error` or both (a setting).",
                "properties": {"status": {"type": "string", "enum": [JobState.FAILED.value]}},
                "not": {"required": ["output"]},
                "minProperties": 2,
            },
        ],
    }


def _schemas(served: Sequence[Workflow]) -> dict[str, Any]:
    return {
        "WorkflowInputs": _input_schema(served),
        **_workflow_schemas(served),
        "Queued": {
            "type": "object",
            "required": ["status", "request_id", "poll_url", "message"],
            "properties": {
                "status": {"type": "string", "enum": [JobState.QUEUED.value]},
                "request_id": {"type": "string", "pattern": REQUEST_ID_PATTERN},
                "poll_url": {"type": "string", "description": "GET it to poll the job."},
                "message": {"type": "string"},
            },
            "additionalProperties": False,
        },
        "PollAnswer": _poll_schema(),
        "Credits": {
            "type": "object",
            "required": ["credits", "free-credits"],
            "properties": {"credits": {"type": "number"}, "free-credits": {"type": "number"}},
            "additionalProperties": False,
        },
        "Health": {
            "type": "object",
            "required": ["status"],
            "properties": {"status": {"type": "string", "enum": ["ok"]}},
            "additionalProperties": False,
        },
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {"error": {"type": "string", "minLength": 1}},
            "additionalProperties": False,
        },
        "InsufficientCredits": {
            "type": "object",
            "required": ["error"],
            "description": "A real shortfall also names the balance and the price of a run.",
            "properties": {
                "error": {"type": "string", "minLength": 1},
                "credits": {"type": "number"},
                "price": {"type": "number"},
            },
            "additionalProperties": False,
        },
    }


def _submit(served: Sequence[Workflow]) -> dict[str, Any]:
    ids = ", ".join(f"`{workflow.id}`" for workflow in served)
    return {
        "operationId": "submitWorkflow",
        "summary": "Queue one run of a workflow (costs one run's price in credits)",
        "description": (
            "Checks, in order: key (401), rate limit (429), workflow (404), access (403), "
            "body and inputs (400), credits (406). A refused request creates no job and "
            "costs nothing."
        ),
        "parameters": [
            {
                "name": "workflow_id",
                "in": "path",
                "required": True,
                "schema": {"type": "string", "minLength": 1},
                "example": served[0].id,
                "description": f"The workflow; this fake serves {ids}.",
            }
        ],
        "requestBody": {
            "required": False,
            "content": {JSON: {"schema": _ref("WorkflowInputs")}},
        },
        "responses": _faultable(
            {
                "200": _json(
                    _ref("Queued"),
                    "Queued: poll `poll_url` until the job is COMPLETED or FAILED.",
                    links={
                        "GetRequestStatus": {
                            "operationId": "getRequestStatus",
                            "parameters": {"request_id": "$response.body#/request_id"},
                        }
                    },
                ),
                "400": _error(400, "The body is not a JSON object of known, valid inputs."),
                "401": _error(401),
                "403": _error(403),
                "404": _error(404, "No such workflow."),
                "405": {
                    **_error(405, "The workflow id contains '/', so the path names another route."),
                    "headers": {"Allow": ALLOW_HEADER},
                },
                "406": _error(406, schema="InsufficientCredits"),
                "429": _error(429),
            }
        ),
    }


def _poll() -> dict[str, Any]:
    return {
        "operationId": "getRequestStatus",
        "summary": "The state of a submitted job",
        "description": (
            "QUEUED, then PROCESSING, then COMPLETED or FAILED. Results are kept for one hour "
            "after submission; later, and for another account's id, the answer is 404."
        ),
        "parameters": [
            {
                "name": "request_id",
                "in": "path",
                "required": True,
                "schema": {"type": "string", "minLength": 1},
                "description": "The `request_id` of the submit's answer (32 hex characters).",
            }
        ],
        "responses": _faultable(
            {
                "200": _json(_ref("PollAnswer"), "The job's current state."),
                "401": _error(401),
                "404": _error(404, "No such request for this key, or it has expired."),
                "429": _error(429),
            }
        ),
    }


def _credits() -> dict[str, Any]:
    return {
        "operationId": "getUserCredits",
        "summary": "The account's credit balance",
        "responses": _faultable(
            {
                "200": _json(_ref("Credits"), "The balance."),
                "401": _error(401),
                "429": _error(429),
            }
        ),
    }


def _asset() -> dict[str, Any]:
    return {
        "operationId": "getOutputVideo",
        "summary": "An output video, as named in a COMPLETED job's output",
        "security": [],
        "parameters": [
            {
                "name": "digest",
                "in": "path",
                "required": True,
                "schema": {"type": "string"},
                "description": "24 hex characters naming the job's inputs.",
            },
            {
                "name": "name",
                "in": "path",
                "required": True,
                "schema": {"type": "string"},
                "description": "`scene_1.mp4` to `scene_4.mp4`.",
            },
        ],
        "responses": {
            "200": {
                "description": "The video.",
                "content": {"video/mp4": {"schema": {"type": "string", "format": "binary"}}},
            },
            "404": _error(404, "No such asset."),
        },
    }


def _unauthenticated(operation_id: str, summary: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "operationId": operation_id,
        "summary": summary,
        "security": [],
        "responses": {"200": _json(schema, summary)},
    }


def build_document(served: Sequence[Workflow] = (CHARACTER_VIDEO,)) -> dict[str, Any]:
    """The document for a fake serving these workflows (at least one)."""
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Segmind workflow API (offline fake)",
            "version": "1.0.0",
            "description": DESCRIPTION,
        },
        "security": [{"ApiKeyHeader": []}, {"BearerAuth": []}],
        "paths": {
            "/workflows/{workflow_id}": {"post": _submit(served)},
            "/workflows/request/{request_id}": {"get": _poll()},
            "/v1/get-user-credits": {"get": _credits()},
            "/assets/{digest}/{name}": {"get": _asset()},
            "/healthz": {"get": _unauthenticated("health", "The fake is up", _ref("Health"))},
            "/openapi.json": {
                "get": _unauthenticated("openapi", "This document", {"type": "object"})
            },
        },
        "components": {
            "securitySchemes": {
                "ApiKeyHeader": {"type": "apiKey", "in": "header", "name": "x-api-key"},
                "BearerAuth": {"type": "http", "scheme": "bearer"},
            },
            "headers": {
                "Retry-After": {
                    "description": "Whole seconds to wait before trying again.",
                    "required": True,
                    "schema": {"type": "string", "pattern": "^[0-9]+$"},
                }
            },
            "schemas": _schemas(served),
        },
    }


DOCUMENT: dict[str, Any] = build_document()


@lru_cache(maxsize=8)
def _document_for(catalog: tuple[Workflow, ...]) -> dict[str, Any]:
    return DOCUMENT if catalog == (CHARACTER_VIDEO,) else build_document(catalog)


async def openapi(request: Request) -> Response:
    state: FakeState = request.app.state.fake
    return JSONResponse(_document_for(tuple(state.catalog.values())))
