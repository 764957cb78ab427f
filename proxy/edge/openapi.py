"""The gateway's OpenAPI 3.0 document, served without auth at `GET /openapi.json`.

It describes the Segmind-compatible surface the gateway serves (submit, poll, credits) with
the gateway's own extras: the request headers `X-Webhook-Url`, `Idempotency-Key` and
`Cache-Control`, the answer headers `X-Cache-Status`, `RateLimit`, `RateLimit-Policy`,
`Retry-After` and `X-Request-Id`, and every status code the gateway answers; plus
/healthz, /readyz and /metrics. The operators' API under /admin is left out: it is guarded
by the admin key and is not part of the drop-in contract.

The document is a plain dict built once per set of served workflows; their inputs, defaults
and limits come from the workflow registry (`workflows`), the one the validation reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

import workflows
from proxy.core.config import TeamLimits
from proxy.db import CacheStatus
from proxy.edge.routes import MAX_IDEMPOTENCY_KEY
from proxy.rules import USAGE_FIELDS
from workflows import CHARACTER_VIDEO, InputKind, Workflow

__all__ = ["DOCUMENT", "build_document", "document_for", "openapi"]

OPENAPI_VERSION = "3.0.3"
JSON = "application/json"
REQUEST_ID_PATTERN = "^[0-9a-f]{32}$"


DESCRIPTION = """\
A drop-in gateway in front of Segmind's "Consistent Character Video Generation" workflow:
change the base URL and the key, nothing else. It speaks Segmind's own API (submit, then
poll `poll_url`), with a team key instead of the company's Segmind key, per-team quotas and
budgets, one shared paid run for identical requests (cached and joined in flight) and an
optional signed webhook when the job ends.

Authentication: the team's gateway key (`sgw_...`) in `x-api-key` or
`Authorization: Bearer <key>`. Errors are JSON `{"error": "<sentence>", ...}`.

Extras ride on headers, so they never collide with workflow input names. In:
`X-Webhook-Url`, `Idempotency-Key`, `Cache-Control: no-cache`; an `X-Request-Id` sent in
(printable, up to 64 characters) is echoed back, otherwise one is made. Out:
`X-Cache-Status` (HIT, JOIN or MISS), the IETF `RateLimit-Policy` and `RateLimit` fields on
every answer to a team that has the limit, `Retry-After` on refusals, `X-Request-Id` on
every answer.

Not described here: the operators' API under `/admin` (teams, keys, limits, webhooks),
guarded by the admin key; see docs/gateway.md in the repository.
"""


def _ref(name: str, kind: str = "schemas") -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def _answer(
    description: str,
    schema: dict[str, Any],
    *headers: str,
    retry_after: bool | None = None,
    media_type: str = JSON,
) -> dict[str, Any]:
    """An answer with `X-Request-Id` (on every answer) and the named component headers;
    `retry_after`: None leaves Retry-After out, True requires it, False allows it."""
    documented = {name: _ref(name, "headers") for name in ("X-Request-Id", *headers)}
    if retry_after is not None:
        documented["Retry-After"] = _ref(
            "Retry-After" if retry_after else "Retry-After-Optional", "headers"
        )
    return {
        "description": description,
        "headers": documented,
        "content": {media_type: {"schema": schema}},
    }


def _error(
    description: str, schema: str = "Error", retry_after: bool | None = None
) -> dict[str, Any]:
    # A known team's errors carry its RateLimit fields too (never required: limits are optional).
    return _answer(
        description, _ref(schema), "RateLimit", "RateLimit-Policy", retry_after=retry_after
    )


UNAUTHENTICATED = "No team key, or one that is unknown or revoked."
STORE_DOWN = "The gateway's store is unavailable: nothing was admitted or charged."


def _input_property(spec: workflows.Input) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if spec.kind is InputKind.TEXT:
        schema["minLength"] = 1  # and not blank, which a schema cannot say: the description does
    return {**schema, "maxLength": spec.max_length, "description": spec.description}


def _inputs_of(workflow: Workflow) -> dict[str, Any]:
    """One workflow's body: its inputs, each optional with its default."""
    return {
        "type": "object",
        "properties": {
            spec.name: {**_input_property(spec), "default": spec.default}
            for spec in workflow.inputs
        },
        "additionalProperties": False,
    }


def _input_schema(served: Sequence[Workflow]) -> dict[str, Any]:
    ids = ", ".join(f"`{workflow.id}`" for workflow in served)
    described = {
        "description": (
            "The workflow inputs, each optional with the default shown: `{}` (or an empty "
            "body) runs the defaults, and shares one generation with the body that spells "
            "them out. Names are case-sensitive: any other name (`scene_1` too) is refused "
            "with 400, which suggests the right one. Workflows other than "
            f"{ids} that an operator configures take any object."
        )
    }
    if len(served) == 1:
        return {
            "type": "object",
            **described,
            **{k: v for k, v in _inputs_of(served[0]).items() if k != "type"},
            "example": served[0].example,
        }
    # Several: the body of each is one of these; which one is the path's workflow id.
    return {
        **described,
        "anyOf": [_ref(workflow.schema_name) for workflow in served],
    }


def _workflow_schemas(served: Sequence[Workflow]) -> dict[str, Any]:
    if len(served) == 1:
        return {}
    return {
        w.schema_name: {"title": w.title, "x-workflow-id": w.id, **_inputs_of(w)} for w in served
    }


def _poll_schema() -> dict[str, Any]:
    text = {"type": "string"}
    return {
        "type": "object",
        "required": ["status"],
        "properties": {
            "status": text,
            "output": text,
            "error_message": text,
            "error": text,
            "queue": _ref("QueuePlace"),
        },
        "additionalProperties": False,
        "anyOf": [
            {
                "title": "Queued",
                "description": (
                    "Admitted, submitting or queued upstream. `queue` (the gateway's only "
                    "extra field) while the run is held for a slot of the company's upstream "
                    "budget."
                ),
                "properties": {"status": {"type": "string", "enum": ["QUEUED"]}},
                "maxProperties": 2,
            },
            {
                "title": "Running",
                "description": "PROCESSING, or any other non-terminal status Segmind reports.",
                "required": ["output"],
                "properties": {
                    "status": {
                        "type": "string",
                        "not": {"enum": ["QUEUED", "COMPLETED", "FAILED"]},
                    },
                    "output": {"type": "string", "maxLength": 0},
                },
                "maxProperties": 2,
            },
            {
                "title": "Completed",
                "description": (
                    "`output` is Segmind's JSON document serialised as a string: a list of "
                    '`{"keyname": ..., "value": {"data": <URL>, "type": "video"}}`.'
                ),
                "required": ["output"],
                "properties": {"status": {"type": "string", "enum": ["COMPLETED"]}},
                "maxProperties": 2,
            },
            {
                "title": "Failed",
                "description": "The reason, under both keys Segmind's clients read.",
                "required": ["error_message", "error"],
                "properties": {"status": {"type": "string", "enum": ["FAILED"]}},
                "maxProperties": 3,
            },
        ],
    }


def _schemas(served: Sequence[Workflow]) -> dict[str, Any]:
    limits = sorted(TeamLimits.model_fields)
    return {
        "WorkflowInputs": _input_schema(served),
        **_workflow_schemas(served),
        "Queued": {
            "type": "object",
            "required": ["status", "request_id", "poll_url", "message"],
            "properties": {
                "status": {
                    "type": "string",
                    "enum": ["QUEUED", "COMPLETED"],
                    "description": "COMPLETED for a cache HIT (the result is ready to poll).",
                },
                "request_id": {"type": "string", "pattern": REQUEST_ID_PATTERN},
                "poll_url": {"type": "string", "description": "The gateway's URL to poll."},
                "message": {"type": "string"},
                "queue": _ref("QueuePlace"),
            },
            "additionalProperties": False,
        },
        "QueuePlace": {
            "type": "object",
            "description": (
                "Where a run held for a slot of the company's upstream budget stands in the "
                "fair queue across teams. The estimate assumes no more urgent run arrives "
                "and polls take no slot: a guide, not a promise."
            ),
            "required": ["position", "estimated_send_at", "estimated_send_in"],
            "properties": {
                "position": {"type": "integer", "minimum": 1, "description": "1: sent next."},
                "estimated_send_at": {
                    "type": "number",
                    "description": "Unix time the run should be sent to Segmind.",
                },
                "estimated_send_in": {"type": "number", "minimum": 0, "description": "Seconds."},
            },
            "additionalProperties": False,
        },
        "PollAnswer": _poll_schema(),
        "Credits": {
            "type": "object",
            "description": "What the team can still spend: the lesser of its day and month left.",
            "required": ["credits", "free-credits"],
            "properties": {"credits": {"type": "number"}, "free-credits": {"type": "number"}},
            "additionalProperties": False,
        },
        "Usage": _usage_schema(),
        "Status": {
            "type": "object",
            "required": ["status"],
            "properties": {
                "status": {"type": "string"},
                "polling": {"type": "integer", "description": "Generations being polled."},
                "store": {"type": "string"},
            },
            "additionalProperties": False,
        },
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {"error": {"type": "string", "minLength": 1}},
            "additionalProperties": False,
        },
        "LimitError": {
            "type": "object",
            "required": ["error", "limit", "retry_after"],
            "properties": {
                "error": {"type": "string", "minLength": 1},
                "limit": {"type": "string", "enum": limits},
                "retry_after": {"type": "integer", "minimum": 1},
            },
            "additionalProperties": False,
        },
        "KeyLimitError": {
            "type": "object",
            "required": ["error", "limit", "retry_after"],
            "properties": {
                "error": {"type": "string", "minLength": 1},
                "limit": {"type": "string", "enum": ["failed_admin_keys_per_minute"]},
                "retry_after": {"type": "integer", "minimum": 1},
            },
            "additionalProperties": False,
        },
    }


def _components_headers() -> dict[str, Any]:
    def header(description: str, required: bool = False, **schema: Any) -> dict[str, Any]:
        return {
            "description": description,
            "required": required,
            "schema": {"type": "string", **schema},
        }

    return {
        "X-Request-Id": header("This request's id, also in the gateway's logs.", True),
        "X-Cache-Status": header(
            "HIT: a finished result, no cost. JOIN: an identical run in progress, no cost. "
            "MISS: a new paid run.",
            True,
            enum=[s.value for s in CacheStatus],
        ),
        "RateLimit-Policy": header('The team\'s limit, e.g. `"submits";q=10;w=60`.'),
        "RateLimit": header('What is left of it, e.g. `"submits";r=9;t=6`.'),
        "Retry-After": header("Whole seconds to wait.", True, pattern="^[0-9]+$"),
        "Retry-After-Optional": header("Whole seconds to wait.", pattern="^[0-9]+$"),
        "Allow": header("The methods the path does take.", True),
        "Idempotent-Replayed": header(
            "`true` when the answer replays an earlier request with this Idempotency-Key.",
            enum=["true"],
        ),
        "X-Queue-Position": header(
            "On a run held for a slot of the company's upstream budget: its place in the "
            "fair queue across teams (1: sent next).",
            pattern="^[1-9][0-9]*$",
        ),
        "X-Queue-Send-After": header(
            "With X-Queue-Position: whole seconds until the run should be sent (an estimate).",
            pattern="^[0-9]+$",
        ),
    }


def _header_param(name: str, description: str, **schema: Any) -> dict[str, Any]:
    return {
        "name": name,
        "in": "header",
        "required": False,
        "description": description,
        "schema": {"type": "string", **schema},
    }


def _submit(served: Sequence[Workflow]) -> dict[str, Any]:
    return {
        "operationId": "submitWorkflow",
        "summary": "Ask for one run: answered from cache (HIT), joined (JOIN) or started (MISS)",
        "description": (
            "Checks, in order: team key (401), headers (400), body size (413), workflow (404), "
            "inputs (400), webhook URL (400), Idempotency-Key replay (422 on a different "
            "body), submit rate (429), then for a new paid run the team's concurrency (429) "
            "and budgets (406). Bad input never reaches Segmind and never costs anything."
        ),
        "parameters": [
            {
                "name": "workflow_id",
                "in": "path",
                "required": True,
                "schema": {"type": "string", "minLength": 1},
                "example": served[0].id,
                "description": _workflow_id_description(served),
            },
            _header_param(
                "X-Webhook-Url",
                "An http(s) URL, without credentials, on a public address: a signed POST "
                "(Standard Webhooks) arrives there when the run ends. Private, loopback and "
                "unresolvable hosts are refused with 400 before any cost.",
            ),
            _header_param(
                "Idempotency-Key",
                "Repeat a submit safely: the same key with the same body answers the first "
                "request again (`Idempotent-Replayed: true`); with another body, 422.",
                minLength=1,
                maxLength=MAX_IDEMPOTENCY_KEY,
            ),
            _header_param(
                "Priority",
                "RFC 9218: `u=N`, an urgency from 0 (most urgent) to 7, default 3, orders "
                "the team's own runs held for an upstream slot; it never takes another "
                "team's share. Other parameters (`i`) are ignored; a bad `u` is a 400.",
                pattern="^.*$",
            ),
            _header_param(
                "Cache-Control",
                "`no-cache` (or `no-store`) starts a new paid run instead of reusing a "
                "finished or running one. Other directives are ignored.",
            ),
        ],
        "requestBody": {"required": False, "content": {JSON: {"schema": _ref("WorkflowInputs")}}},
        "responses": {
            "200": {
                **_answer(
                    "Queued: poll `poll_url`, or wait for the webhook.",
                    _ref("Queued"),
                    "X-Cache-Status",
                    "RateLimit",
                    "RateLimit-Policy",
                    "Idempotent-Replayed",
                    "X-Queue-Position",
                    "X-Queue-Send-After",
                ),
                "links": {
                    "GetRequestStatus": {
                        "operationId": "getRequestStatus",
                        "parameters": {"request_id": "$response.body#/request_id"},
                    }
                },
            },
            "400": _error(
                "The body, an input, a header or the webhook URL is invalid; or Segmind "
                "refused the inputs. Nothing was charged."
            ),
            "401": _answer(UNAUTHENTICATED, _ref("Error")),
            "404": _error("The gateway does not serve this workflow."),
            "405": _answer(
                "The workflow id contains '/', so the path names another route.",
                _ref("Error"),
                "Allow",
            ),
            "406": _error("A daily or monthly budget is spent.", "LimitError", True),
            "413": _error("The body is larger than the gateway takes (64 KiB by default)."),
            "422": _error("This Idempotency-Key was already used with a different body."),
            "429": _error(
                "The team's submit rate or concurrency limit is reached.",
                "LimitError",
                True,
            ),
            "502": _error(
                "Segmind failed the submit or refused the gateway's own key; nothing was charged.",
                "Error",
                False,
            ),
            "503": _error(
                "Segmind's company-wide rate limit or credits are exhausted, or the store is "
                "unavailable; nothing was charged.",
                "Error",
                True,
            ),
            "504": _error(
                "Segmind did not answer the submit in time; nothing was charged.",
                "Error",
                True,
            ),
        },
    }


def _poll() -> dict[str, Any]:
    return {
        "operationId": "getRequestStatus",
        "summary": "The state of a request, answered from the gateway's store",
        "description": (
            "Never one upstream call per poll: the gateway polls Segmind once per generation "
            "on its own schedule. Another team's request id, and a finished run more than an "
            "hour after its submission, answer 404."
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
        "responses": {
            "200": _answer(
                "The state of the request's generation.",
                _ref("PollAnswer"),
                "X-Cache-Status",
                "RateLimit",
                "RateLimit-Policy",
            ),
            "401": _answer(UNAUTHENTICATED, _ref("Error")),
            "404": _error(
                "No such request for this team, or its finished result has expired (results "
                "are kept an hour after submission, as on Segmind)."
            ),
            "429": _error("The team's poll rate limit is reached.", "LimitError", True),
            "503": _error(STORE_DOWN, "Error", True),
        },
    }


def _credits() -> dict[str, Any]:
    return {
        "operationId": "getUserCredits",
        "summary": "What the team can still spend, in Segmind's credits shape",
        "responses": {
            "200": _answer(
                "The team's remaining budget (1e9 when it has none).",
                _ref("Credits"),
                "RateLimit",
                "RateLimit-Policy",
            ),
            "401": _answer(UNAUTHENTICATED, _ref("Error")),
            "503": _error(STORE_DOWN, "Error", True),
        },
    }


def _usage_schema() -> dict[str, Any]:
    counts = ("runs_paid", "hit", "join", "miss", "failed", "refunded")
    figures = {
        **{name: {"type": "integer", "minimum": 0} for name in counts},
        "spent": {"type": "number", "minimum": 0},
        "saved": {"type": "number", "minimum": 0},
    }
    row = {
        "type": "object",
        "required": list(USAGE_FIELDS),
        "properties": {
            "day": {"type": "string", "format": "date"},
            "team": {"type": "string"},
            **figures,
        },
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "description": "Per team per UTC day: requests by outcome, runs, dollars.",
        "required": ["from", "to", "team", "columns", "rows", "totals"],
        "properties": {
            "from": {"type": "string", "format": "date"},
            "to": {"type": "string", "format": "date"},
            "team": {"type": "string", "nullable": True},
            "columns": {"type": "array", "items": {"type": "string"}},
            "rows": {"type": "array", "items": row},
            "totals": {
                "type": "object",
                "required": list(figures),
                "properties": figures,
                "additionalProperties": False,
            },
        },
        "additionalProperties": False,
    }


def _day_parameter(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": {"type": "string", "pattern": "^([0-9]{4}-[0-9]{2}-[0-9]{2})?$"},
    }


def _team_usage() -> dict[str, Any]:
    return {
        "operationId": "getUsage",
        "summary": "The team's own usage per UTC day (at most 366 days), as JSON or CSV",
        "parameters": [
            _day_parameter("from", "The first day, YYYY-MM-DD (default: 29 days before `to`)."),
            _day_parameter("to", "The last day, YYYY-MM-DD (default: today, UTC)."),
            {
                "name": "team",
                "in": "query",
                "required": False,
                "description": "Only the key's own team may be named (403 otherwise).",
                "schema": {"type": "string"},
            },
            {
                "name": "format",
                "in": "query",
                "required": False,
                "schema": {"type": "string", "enum": ["json", "csv"], "default": "json"},
            },
        ],
        "responses": {
            "200": {
                "description": "The report; CSV has a header row, columns in a fixed order.",
                "headers": {"X-Request-Id": _ref("X-Request-Id", "headers")},
                "content": {
                    JSON: {"schema": _ref("Usage")},
                    "text/csv": {"schema": {"type": "string"}},
                },
            },
            "400": _answer(
                "Days not YYYY-MM-DD, out of order or too many; a bad format or "
                "an unknown parameter.",
                _ref("Error"),
            ),
            "401": _answer(UNAUTHENTICATED, _ref("Error")),
            "403": _answer("`team` names another team.", _ref("Error")),
            "503": _error(STORE_DOWN, "Error", True),
        },
    }


def _upstream_events() -> dict[str, Any]:
    return {
        "operationId": "upstreamEvents",
        "summary": "Segmind's account webhook: a hint that a followed run may have ended",
        "description": "Any JSON body; a request id the gateway follows, anywhere in it, "
        "gets its run polled at the company budget's next slot (once per run). Nothing in "
        "the body is taken as a status. Off (404) unless upstream_events_secret is set.",
        "security": [],
        "parameters": [
            {"name": "secret", "in": "path", "required": True, "schema": {"type": "string"}}
        ],
        "requestBody": {"required": False, "content": {JSON: {"schema": {}}}},
        "responses": {
            "204": {
                "description": "Taken (the same whatever the body names).",
                "headers": {"X-Request-Id": _ref("X-Request-Id", "headers")},
            },
            "400": _answer("The body is not JSON.", _ref("Error")),
            "404": _answer("A wrong secret, or the endpoint is off.", _ref("Error")),
            "413": _answer("The body is over 64 KiB.", _ref("Error")),
        },
    }


def _kept_output() -> dict[str, Any]:
    """A kept output at the signed URL an answer or a webhook handed out (no header needed:
    a `<video src>` or a plain `curl -O`); HEAD answers the same without the body."""
    text = {"type": "string"}
    return {
        "operationId": "getKeptOutput",
        "summary": "A video the gateway keeps, at the signed URL it handed out",
        "security": [],
        "parameters": [
            {
                "name": "team",
                "in": "path",
                "required": True,
                "schema": text,
                "description": "As in the URL handed out (opaque).",
            },
            {
                "name": "name",
                "in": "path",
                "required": True,
                "schema": text,
                "description": "The file's SHA-256 and extension, as in the URL handed out.",
            },
            {
                "name": "expires",
                "in": "query",
                "required": True,
                "schema": {"type": "integer"},
                "description": "Unix time the signature stops working.",
            },
            {
                "name": "signature",
                "in": "query",
                "required": True,
                "schema": text,
                "description": "HMAC over the file, the team and `expires`.",
            },
            {
                "name": "Range",
                "in": "header",
                "required": False,
                "schema": text,
                "description": "One range, `bytes=START-END`: answered 206.",
            },
        ],
        "responses": {
            "200": _answer(
                "The file.", {"type": "string", "format": "binary"}, media_type="video/mp4"
            ),
            "206": _answer(
                "The range asked for.",
                {"type": "string", "format": "binary"},
                media_type="video/mp4",
            ),
            "304": {"description": "Unchanged since the `If-None-Match` ETag."},
            "307": {"description": "S3 outputs with `outputs_serve = redirect`: a presigned URL."},
            "403": _answer("The signature is wrong or has expired.", _ref("Error")),
            "404": _answer(
                "No such output (deleted by retention), or none are kept.", _ref("Error")
            ),
            "416": _answer("The range is outside the file.", _ref("Error")),
            "503": _answer(
                "The store or the output store is unavailable: retry.",
                _ref("Error"),
                retry_after=False,
            ),
        },
    }


def _public(operation_id: str, summary: str, responses: dict[str, Any]) -> dict[str, Any]:
    return {"operationId": operation_id, "summary": summary, "security": [], "responses": responses}


def _workflow_id_description(served: Sequence[Workflow]) -> str:
    if len(served) == 1:
        return "A workflow the gateway serves (by default only this one)."
    listed = "; ".join(f"`{w.id}` ({w.title})" for w in served)
    return f"A workflow the gateway serves: {listed}."


def build_document(served: Sequence[Workflow] = (CHARACTER_VIDEO,)) -> dict[str, Any]:
    """The document for a gateway serving these registered workflows (at least one)."""
    status = _ref("Status")
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Segmind character-video gateway",
            "version": "1.0.0",
            "description": DESCRIPTION,
        },
        "security": [{"ApiKeyHeader": []}, {"BearerAuth": []}],
        "paths": {
            "/workflows/{workflow_id}": {"post": _submit(served)},
            "/workflows/request/{request_id}": {"get": _poll()},
            "/v1/get-user-credits": {"get": _credits()},
            "/v1/usage": {"get": _team_usage()},
            "/v1/outputs/{team}/{name}": {"get": _kept_output()},
            "/healthz": {
                "get": _public("health", "The process is up", {"200": _answer("Up.", status)})
            },
            "/readyz": {
                "get": _public(
                    "ready",
                    "The gateway can reach its store",
                    {
                        "200": _answer("Ready.", status),
                        "503": _answer("The store is unreachable.", status),
                    },
                )
            },
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "summary": "Prometheus metrics (labels never carry a key), for operators",
                    # Team names and spend: the metrics token or the admin key, never a team's.
                    "security": [{"MetricsToken": []}, {"AdminKey": []}],
                    "responses": {
                        "200": _answer(
                            "Prometheus text exposition.",
                            {"type": "string"},
                            media_type="text/plain",
                        ),
                        "401": _answer(
                            "No metrics token or admin key, or a wrong one.", _ref("Error")
                        ),
                        "403": _answer(
                            "Off: the gateway has neither a metrics token nor an admin key.",
                            _ref("Error"),
                        ),
                        "429": _answer(
                            "Ten wrong keys a minute from this client (any way the admin key "
                            "is presented): wait Retry-After.",
                            _ref("KeyLimitError"),
                            retry_after=True,
                        ),
                    },
                }
            },
            "/upstream/events/{secret}": {"post": _upstream_events()},
            "/openapi.json": {
                "get": _public(
                    "openapi",
                    "This document",
                    {"200": _answer("This document.", {"type": "object"})},
                )
            },
        },
        "components": {
            "securitySchemes": {
                "ApiKeyHeader": {"type": "apiKey", "in": "header", "name": "x-api-key"},
                "BearerAuth": {"type": "http", "scheme": "bearer"},
                "MetricsToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "PROXY_METRICS_TOKEN (or the admin key) as a bearer token",
                },
                "AdminKey": {"type": "apiKey", "in": "header", "name": "x-admin-key"},
            },
            "headers": _components_headers(),
            "schemas": _schemas(served),
        },
    }


DOCUMENT: dict[str, Any] = build_document()


@lru_cache(maxsize=8)
def document_for(workflow_ids: tuple[str, ...]) -> dict[str, Any]:
    """The document for a gateway serving these ids: the registered ones are described
    (the character video's when none is)."""
    served = [w for w in map(workflows.get, workflow_ids) if w is not None]
    return build_document(served) if served else DOCUMENT


async def openapi(request: Request) -> Response:
    served = tuple(request.app.state.gateway.settings.workflows)
    return JSONResponse(document_for(served))
