"""Each server's own `/openapi.json`, held to what the running server actually answers.

Schemathesis loads the document over HTTP from a real uvicorn process (the fake alone, and
a gateway in front of a fake), generates valid and invalid requests from it, and checks
every answer: no 5xx, a documented status code, content type, headers and body. Then it
follows the document's link from a submit to its poll, moving the virtual clocks between
steps, so every poll state (QUEUED to COMPLETED or FAILED) is checked too. The `Prefer`
header that forces the fake's 5xx is described in prose only, so it is never generated.

Bounded and reproducible: derandomized Hypothesis with a fixed seed, a few dozen requests
per operation, no shrinking, and virtual clocks, so nothing here waits on a job.

Schemathesis is driven through its Hypothesis strategies rather than its pytest loader:
`schemathesis.pytest.from_fixture` (the way to load a schema from a running server) sets
`Node._nodeid`, which pytest 9 no longer has.
"""

from __future__ import annotations

import ast
import inspect
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import Case, GenerationMode, Response
from schemathesis.checks import CheckFunction, not_a_server_error
from schemathesis.schemas import BaseSchema
from schemathesis.specs.openapi import checks as openapi_checks
from starlette.routing import Route

import fakeserver.accounts
import fakeserver.api
import fakeserver.errors
import proxy.core.cache
import proxy.core.errors
import proxy.db.sqlite
import proxy.edge.openapi
import proxy.edge.responses
import proxy.edge.routes
import proxy.services.gateway
import proxy.services.upstream
from fakeserver import create_app as create_fake
from fakeserver.openapi import DOCUMENT as FAKE_DOCUMENT
from fakeserver.openapi import FORCEABLE_CODES
from proxy.app import create_app
from proxy.core.config import ProxySettings, TeamLimits
from proxy.edge.openapi import DOCUMENT as GATEWAY_DOCUMENT
from tests.servers import ServerProcess, start_server
from tests.stack import ADMIN_KEY, BothClocks, Stack, running_stack

FAKE_KEY = "test-openapi-fake-key-3b9e1c"
BROKE_KEY = "test-openapi-broke-key-6d2a8f"  # label key-2: its credits are set to 0
RESTRICTED_KEY = "test-openapi-restricted-key-1c7e5b"  # may run no workflow (403)
WORKFLOW = fakeserver.CHARACTER_VIDEO_ID
SEED = 20_260_101
MAX_EXAMPLES = 40  # generated requests per operation and generation mode
SCENARIOS, STEPS = 10, 10  # submit-then-poll walks, and calls per walk
# Webhook URLs the gateway refuses from their text alone (loopback, private, scheme,
# credentials): a generated host name would make it resolve random names over real DNS.
# The fuzz presents wrong admin keys and metrics tokens from 127.0.0.1, which the gateway
# then refuses for a minute (10 wrong keys per client); the tests' own admin calls come
# from another loopback address.
OPERATOR_ADDRESS = "127.0.0.2"
REFUSED_WEBHOOKS = (
    "http://127.0.0.1:9/hook",
    "https://10.1.2.3/hook",
    "ftp://192.0.2.7/hook",
    "http://user:secret@192.0.2.7/hook",
)
CHECKS: list[CheckFunction] = [
    not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_headers_conformance,
    openapi_checks.response_schema_conformance,
    openapi_checks.negative_data_rejection,  # invalid input is refused with a 4xx
    openapi_checks.ignored_auth,  # an operation that declares a key does demand one
]
# What the document promises of an answer, for the refusals provoked on purpose (5xx too).
CONFORMANCE: list[CheckFunction] = [
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_headers_conformance,
    openapi_checks.response_schema_conformance,
]
PUBLIC_API = (
    ("/workflows/{workflow_id}", "post"),
    ("/workflows/request/{request_id}", "get"),
    ("/v1/get-user-credits", "get"),
)

ApiCase = Case[Any]
Prepare = Callable[[ApiCase], None]


def _config(key: str, parameters: dict[str, Any] | None = None) -> schemathesis.Config:
    return schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "dictionaries": {
                "workflows": {"values": [WORKFLOW]},
                "webhooks": {"values": list(REFUSED_WEBHOOKS)},
            },
            "parameters": {
                # A generated workflow id is unknown (404); the served one reaches the inputs.
                "path.workflow_id": {"dictionary": "workflows", "probability": 0.7},
                **(parameters or {}),
            },
            "auth": {"openapi": {"ApiKeyHeader": {"api_key": key}}},
            "request-timeout": 10,
        }
    )


def _settings(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples,
        stateful_step_count=STEPS,
        deadline=None,
        derandomize=True,  # the same requests on every run, so a failure reproduces
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],  # no shrinking: report the first failure
    )


def _operations(document: dict[str, Any]) -> list[Any]:
    """(method, path, mode) of every documented operation: positive everywhere, negative
    where there is something to get wrong (the key, a body, parameters); the open
    endpoints take nothing that could be invalid."""
    cases = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            modes = [GenerationMode.POSITIVE]
            if operation.get("security", document["security"]):
                modes.append(GenerationMode.NEGATIVE)
            for mode in modes:
                label = f"{method.upper()} {path} {mode.value}"
                cases.append(pytest.param(method.upper(), path, mode, id=label))
    return cases


def _fuzz(
    schema: BaseSchema, method: str, path: str, mode: GenerationMode, prepare: Prepare
) -> None:
    """Generated requests to one operation, each answer checked against the document."""
    sent: list[int] = []

    @_settings(MAX_EXAMPLES)
    @given(case=schema[path][method].as_strategy(generation_mode=mode))
    def run(case: ApiCase) -> None:
        prepare(case)
        response = case.call()
        sent.append(response.status_code)
        case.validate_response(response, checks=CHECKS)

    run()
    assert sent, f"no request was generated for {method} {path}"


def _walk(schema: BaseSchema, prepare: Prepare, advance: Callable[[float], None]) -> set[str]:
    """Submit, then poll through the document's link with the submit's request_id, moving
    the clocks after each call; returns the poll states seen."""
    states: set[str] = set()

    class Walk(schema.as_state_machine()):  # type: ignore[misc]
        def before_call(self, case: ApiCase) -> None:
            prepare(case)

        def after_call(self, response: Response, case: ApiCase) -> None:
            polled = case.operation.path == "/workflows/request/{request_id}"
            if polled and response.status_code == 200:
                states.add(response.json()["status"])
            # A short step after a submit (the poll finds it QUEUED), a long one after a
            # poll, so a walk passes through every state of a run of about 11 minutes.
            advance(400.0 if polled else 10.0)

        def validate_response(
            self,
            response: Response,
            case: ApiCase,
            additional_checks: list[CheckFunction] | None = None,
            **kwargs: Any,
        ) -> None:
            case.validate_response(response, checks=CHECKS, transport_kwargs=kwargs or None)

    Walk.run(settings=_settings(SCENARIOS))
    return states


def _keep(case: ApiCase) -> None:
    return None


def _expect(
    schema: BaseSchema,
    path: str,
    method: str,
    status: int,
    headers: dict[str, str] | None = None,
    body: dict[str, Any] | None = None,
) -> None:
    """One hand-made request that must be answered `status`, exactly as documented."""
    names = {"workflow_id": WORKFLOW, "request_id": "0" * 32}
    operation = schema[path][method]
    path_parameters = {k: v for k, v in names.items() if f"{{{k}}}" in path}
    if body is None:  # no body at all, which is not the same as a JSON null
        case = operation.Case(path_parameters=path_parameters, headers=headers)
    else:
        case = operation.Case(path_parameters=path_parameters, headers=headers, body=body)
    response = case.call()
    assert response.status_code == status, response.text
    case.validate_response(response, checks=CONFORMANCE)


# -- the fake ---------------------------------------------------------------------------

# Unlimited rate: a burst of generated requests must not turn every answer into 429. Half
# the runs fail, so the walks see FAILED as well as COMPLETED; seeded, so always the same.
FLAKY_UPSTREAM = ("--plan", "unlimited", "--failure-rate", "0.5", "--seed", "7")


@pytest.fixture(scope="module")
def fake() -> Iterator[ServerProcess]:
    server = start_server(
        "fakeserver", "--api-key", FAKE_KEY, "--api-key", BROKE_KEY,
        "--restricted-key", RESTRICTED_KEY, "--clock", "virtual", *FLAKY_UPSTREAM,
        "--credits", "1000000",
    )  # fmt: skip
    yield server
    server.stop()


@pytest.fixture(scope="module")
def fake_schema(fake: ServerProcess) -> BaseSchema:
    return schemathesis.openapi.from_url(f"{fake.url}/openapi.json", config=_config(FAKE_KEY))


@pytest.mark.parametrize(("method", "path", "mode"), _operations(FAKE_DOCUMENT))
def test_the_fake_answers_as_its_document_says(
    fake_schema: BaseSchema, method: str, path: str, mode: GenerationMode
) -> None:
    _fuzz(fake_schema, method, path, mode, _keep)


def test_a_run_on_the_fake_polls_as_its_document_says(
    fake: ServerProcess, fake_schema: BaseSchema
) -> None:
    with httpx.Client(base_url=fake.url) as http:

        def advance(seconds: float) -> None:
            http.post("/__admin/clock/advance", json={"seconds": seconds}).raise_for_status()

        states = _walk(fake_schema, _keep, advance)
    assert {"QUEUED", "PROCESSING", "COMPLETED", "FAILED"} <= states


def test_the_fakes_refusals_answer_as_documented(
    fake: ServerProcess, fake_schema: BaseSchema
) -> None:
    spent = httpx.post(f"{fake.url}/__admin/credits", json={"key": "key-2", "credits": 0})
    spent.raise_for_status()
    submit = ("/workflows/{workflow_id}", "POST")
    _expect(fake_schema, *submit, 403, headers={"x-api-key": RESTRICTED_KEY})
    _expect(fake_schema, *submit, 406, headers={"x-api-key": BROKE_KEY})
    for path, method in PUBLIC_API:
        for code in FORCEABLE_CODES:
            _expect(fake_schema, path, method.upper(), code, headers={"Prefer": f"code={code}"})


# -- the gateway ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    db = tmp_path_factory.mktemp("openapi") / "gateway.sqlite"
    with running_stack(db, "openapi", *FLAKY_UPSTREAM) as built:
        yield built


@pytest.fixture(scope="module")
def gateway_schema(stack: Stack) -> BaseSchema:
    config = _config(
        stack.team_key, {"header.X-Webhook-Url": {"dictionary": "webhooks", "probability": 1.0}}
    )
    return schemathesis.openapi.from_url(f"{stack.gateway.url}/openapi.json", config=config)


def _refuse_webhooks(case: ApiCase) -> None:
    """Negative generation may still invent a webhook URL: swap in a refused one, so the
    gateway never resolves a generated host name nor delivers to one."""
    webhook = case.headers.get("X-Webhook-Url") if case.headers else None
    if case.headers and webhook is not None and webhook not in REFUSED_WEBHOOKS:
        case.headers["X-Webhook-Url"] = REFUSED_WEBHOOKS[len(webhook) % len(REFUSED_WEBHOOKS)]


@pytest.mark.parametrize(("method", "path", "mode"), _operations(GATEWAY_DOCUMENT))
def test_the_gateway_answers_as_its_document_says(
    gateway_schema: BaseSchema, method: str, path: str, mode: GenerationMode
) -> None:
    _fuzz(gateway_schema, method, path, mode, _refuse_webhooks)


def _new_paid_run(case: ApiCase) -> None:
    """Walks start a new paid run on every submit (no webhook, no cache): more runs end
    than if they joined one another, so both COMPLETED and FAILED get polled."""
    if case.operation.method.upper() == "POST":
        headers = case.headers if case.headers is not None else {}
        headers.pop("X-Webhook-Url", None)
        headers["Cache-Control"] = "no-cache"
        case.headers = headers


def test_a_run_through_the_gateway_polls_as_its_document_says(
    stack: Stack, gateway_schema: BaseSchema
) -> None:
    # The gateway answers once its poll loops caught up; the clocks are moved from an
    # address of their own, as the fuzz above presented wrong keys from 127.0.0.1.
    clocks = BothClocks(stack, local_address=OPERATOR_ADDRESS)
    try:
        states = _walk(gateway_schema, _new_paid_run, clocks.sleep)
    finally:
        clocks.close()
    assert {"QUEUED", "COMPLETED", "FAILED"} <= states


def _team(stack: Stack, name: str, limits: dict[str, int | None]) -> str:
    with httpx.Client(transport=httpx.HTTPTransport(local_address=OPERATOR_ADDRESS)) as http:
        made = http.post(
            f"{stack.gateway.url}/admin/teams",
            json={"name": name, "limits": limits},
            headers={"x-admin-key": ADMIN_KEY},
        )
    assert made.status_code == 201, made.text
    key: str = made.json()["api_key"]
    return key


def test_the_gateways_refusals_answer_as_documented(
    stack: Stack, gateway_schema: BaseSchema
) -> None:
    submit = ("/workflows/{workflow_id}", "POST")
    poll = ("/workflows/request/{request_id}", "GET")
    broke = _team(stack, "broke", {"daily_budget": 0})
    _expect(gateway_schema, *submit, 406, headers={"x-api-key": broke})
    throttled = _team(stack, "throttled", {"submits_per_minute": 0, "polls_per_minute": 0})
    _expect(gateway_schema, *submit, 429, headers={"x-api-key": throttled})
    _expect(gateway_schema, *poll, 429, headers={"x-api-key": throttled})
    free = {"x-api-key": _team(stack, "unlimited", dict.fromkeys(TeamLimits.model_fields))}
    _expect(gateway_schema, *submit, 413, free, body={"Scene_1": "x" * 70_000})
    again = {**free, "Idempotency-Key": "openapi-contract-1"}
    _expect(gateway_schema, *submit, 200, again, body={"Scene_1": "a first body"})
    _expect(gateway_schema, *submit, 422, again, body={"Scene_1": "another body"})
    # Segmind failing a submit, scripted on the fake upstream (never 429 here: the gateway
    # would retry that after a pause, on a clock that stands still).
    for upstream, answered in ((500, 502), (401, 502), (406, 503), (504, 504)):
        scripted = httpx.post(
            f"{stack.fake.url}/__admin/script",
            json={"route": "submit", "responses": [{"code": upstream}]},
        )
        scripted.raise_for_status()
        body = {"Scene_1": f"upstream answers {upstream}"}
        _expect(gateway_schema, *submit, answered, free, body=body)


# -- 405 --------------------------------------------------------------------------------


@pytest.mark.parametrize("server", ["fake", "gateway"])
def test_a_method_a_path_does_not_take_is_refused_with_allow(
    server: str, fake: ServerProcess, stack: Stack
) -> None:
    url, document = (
        (fake.url, FAKE_DOCUMENT) if server == "fake" else (stack.gateway.url, GATEWAY_DOCUMENT)
    )
    for path, item in document["paths"].items():
        concrete = path.format(
            workflow_id=WORKFLOW,
            request_id="0" * 32,
            digest="0",
            name="x",
            secret="s" * 16,
            team="t",
        )
        answer = httpx.request("DELETE", f"{url}{concrete}")
        assert answer.status_code == 405, path
        assert "error" in answer.json()
        allowed = {m.strip().lower() for m in answer.headers["allow"].split(",")}
        assert set(item) <= allowed, path


# -- the documents themselves -----------------------------------------------------------


def _served(routes: list[Any]) -> set[tuple[str, str]]:
    """(path, method) of every route an app serves, the admin surfaces excepted."""
    served = set()
    for route in routes:
        if not isinstance(route, Route) or route.path.startswith(("/admin", "/__admin")):
            continue
        for method in route.methods or ():
            if method != "HEAD":  # Starlette adds HEAD to every GET route by itself
                served.add((route.path, method.lower()))
    return served


def _check_document(document: dict[str, Any], routes: list[Any]) -> None:
    assert document["openapi"].startswith("3.0.")
    schemathesis.openapi.from_dict(document).validate()  # raises on an invalid document
    documented = {(path, method) for path, item in document["paths"].items() for method in item}
    assert documented == _served(routes)
    for path, item in document["paths"].items():
        for method, operation in item.items():
            for code, answer in operation["responses"].items():
                if int(code) >= 400:  # errors are JSON, always
                    assert list(answer["content"]) == ["application/json"], (path, method, code)


def test_the_fake_document_is_openapi_and_lists_every_public_route() -> None:
    _check_document(FAKE_DOCUMENT, create_fake().routes)


def test_the_gateway_document_is_openapi_and_lists_every_public_route(tmp_path: Path) -> None:
    settings = ProxySettings(
        db=str(tmp_path / "routes.sqlite"), upstream_key="test-upstream-key-routes-only"
    )
    app = create_app(settings)
    try:
        _check_document(GATEWAY_DOCUMENT, app.routes)
    finally:
        app.state.gateway.store.close()


def _names_status_code(node: ast.keyword | ast.Assign) -> bool:
    if isinstance(node, ast.keyword):
        return node.arg == "status_code"
    return [getattr(target, "id", "") for target in node.targets] == ["status_code"]


def _raised_codes(*modules: types.ModuleType) -> set[int]:
    """Status codes written into these modules' error answers: `ApiError(404, ...)`,
    `status_code=406` arguments and `status_code = 502` class attributes."""
    codes: set[int] = set()
    for module in modules:
        for node in ast.walk(ast.parse(inspect.getsource(module))):
            value: ast.expr | None = None
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "ApiError":
                value = node.args[0] if node.args else None
            elif isinstance(node, ast.keyword | ast.Assign) and _names_status_code(node):
                value = node.value
            if isinstance(value, ast.Constant) and isinstance(value.value, int):
                codes.add(value.value)
    return codes


def _codes(document: dict[str, Any], path: str, method: str) -> set[int]:
    return {int(code) for code in document["paths"][path][method]["responses"]}


def test_the_fake_documents_every_code_it_can_answer() -> None:
    raised = _raised_codes(fakeserver.api, fakeserver.accounts, fakeserver.errors)
    assert {401, 404, 429} <= raised, "the scan no longer reads the fake's error answers"
    submit = _codes(FAKE_DOCUMENT, "/workflows/{workflow_id}", "post")
    assert raised <= submit
    assert {200, 400, 401, 403, 404, 406, 429} <= submit
    assert set(FORCEABLE_CODES) == set(fakeserver.errors.ERROR_CODES)
    for path, method in PUBLIC_API:
        # Every code `Prefer: code=N` can force, on each operation it can be forced on.
        assert set(FORCEABLE_CODES) <= _codes(FAKE_DOCUMENT, path, method), path


# Codes the scan finds that no documented operation answers: the admin API's (created,
# admin API disabled, team exists) and GatewayError's default, which every subclass sets.
NOT_ON_THE_PUBLIC_API = {201, 403, 409, 500}


def test_the_gateway_documents_every_code_it_can_answer() -> None:
    raised = _raised_codes(
        proxy.edge.routes,
        proxy.edge.responses,
        proxy.core.cache,
        proxy.core.errors,
        proxy.services.gateway,
        proxy.db.sqlite,
        proxy.services.upstream,
    )
    assert {401, 404, 429} <= raised, "the scan no longer reads the gateway's error answers"
    documented = {
        code for path, method in PUBLIC_API for code in _codes(GATEWAY_DOCUMENT, path, method)
    }
    assert raised - NOT_ON_THE_PUBLIC_API <= documented
    submit = _codes(GATEWAY_DOCUMENT, "/workflows/{workflow_id}", "post")
    assert {200, 400, 401, 404, 406, 413, 422, 429, 502, 503, 504} <= submit
    poll = _codes(GATEWAY_DOCUMENT, "/workflows/request/{request_id}", "get")
    assert {200, 401, 404, 429, 503} <= poll
    # The document's bound on Idempotency-Key is the one the gateway enforces.
    [header] = [
        p
        for p in GATEWAY_DOCUMENT["paths"]["/workflows/{workflow_id}"]["post"]["parameters"]
        if p["name"] == "Idempotency-Key"
    ]
    assert header["schema"]["maxLength"] == proxy.edge.routes.MAX_IDEMPOTENCY_KEY


def test_both_servers_serve_their_document_without_a_key(fake: ServerProcess, stack: Stack) -> None:
    for url, document in ((fake.url, FAKE_DOCUMENT), (stack.gateway.url, GATEWAY_DOCUMENT)):
        answer = httpx.get(f"{url}/openapi.json")
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "application/json"
        assert answer.json() == document
