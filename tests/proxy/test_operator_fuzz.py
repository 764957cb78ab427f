"""Odd input on the operators' surfaces never makes a 5xx: the admin API, the console's
forms and pages, the usage reports and the upstream events endpoint, fuzzed with
Hypothesis against one real gateway process (and the fake behind it).

The workflow API has its own schema-driven fuzz (`tests/contract/test_openapi.py`);
these surfaces are fuzzed here from what each one reads: path parameters, JSON bodies,
form fields and query strings of any text (NUL, brackets, far-off dates, huge numbers),
plus the named cases that were 500s (a `to=` day with no room before it, an
`X-Webhook-Url` with a broken IPv6 host, a huge `seconds`). Derandomized with a fixed
seed and a small budget, so it takes a few seconds and finds the same things every run.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from tests.stack import ADMIN_KEY, Stack, running_stack

SECRET = "fuzz-events-secret-0123456789"
WORKFLOW = "/workflows/68628fe34727e611dfa219b4-v4"
UI = "/admin/ui"
FUZZ = settings(
    max_examples=60,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure prints its input
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class Operator:
    """One gateway, an admin key, a logged-in console session and a team key."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.http = httpx.Client(base_url=stack.gateway.url, timeout=30)
        origin = {"origin": stack.gateway.url, "sec-fetch-site": "same-origin"}
        self.same_origin = origin
        login = self.http.post(f"{UI}/login", data={"admin_key": ADMIN_KEY}, headers=origin)
        assert login.status_code == 303, login.text
        found = re.search(r'name="csrf" value="([0-9a-f]{64})"', self.http.get(f"{UI}/teams").text)
        assert found is not None
        self.csrf = found[1]

    def check(self, answer: httpx.Response, json_errors: bool = True) -> None:
        request = answer.request
        where = f"{request.method} {request.url} -> {answer.status_code}: {answer.text[:300]}"
        assert answer.status_code < 500, where
        if json_errors and answer.status_code >= 400:
            assert isinstance(answer.json().get("error"), str), where


@pytest.fixture(scope="module")
def operator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    db: Path = tmp_path_factory.mktemp("fuzz") / "gateway.sqlite"
    env = {"PROXY_UPSTREAM_EVENTS_SECRET": SECRET}
    with running_stack(db, "studio", env=env) as stack:
        made = Operator(stack)
        yield made
        made.http.close()


def segment(text: str) -> str:
    return quote(text, safe="")


ANY_TEXT = st.text(max_size=24)
DAYS = st.one_of(
    st.dates().map(lambda d: d.isoformat()),
    st.from_regex(r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}\Z"),
    ANY_TEXT,
)
NUMBERS = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([10**400, -(10**400), 1e308, 5e-324]),
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, ANY_TEXT)
FIELDS = st.sampled_from([
    "name", "limits", "webhook_url", "seconds", "since", "team", "daily_budget",
    "monthly_budget", "submits_per_minute", "max_concurrent", "polls_per_minute",
])  # fmt: skip
JSON = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.one_of(FIELDS, ANY_TEXT), inner, max_size=4)
    ),
    max_leaves=8,
)
BODIES = st.one_of(
    st.dictionaries(FIELDS, JSON, max_size=4).map(lambda d: ("json", d)),
    JSON.map(lambda d: ("json", d)),
    st.binary(max_size=64).map(lambda b: ("raw", b)),
)
ADMIN_ROUTES = [
    ("GET", "/admin/teams"),
    ("POST", "/admin/teams"),
    ("POST", "/admin/teams/{p}/keys"),
    ("POST", "/admin/teams/{p}/revoke"),
    ("PATCH", "/admin/teams/{p}/limits"),
    ("POST", "/admin/teams/{p}/limits"),
    ("PATCH", "/admin/teams/{p}"),
    ("POST", "/admin/teams/{p}/webhook-secret"),
    ("DELETE", "/admin/keys/{p}"),
    ("GET", "/admin/requests/{p}/webhooks"),
    ("POST", "/admin/webhooks/{p}/resend"),
    ("POST", "/admin/webhooks/recover"),
    ("POST", "/admin/clock/advance"),
    ("GET", "/admin/instances"),
]
USAGE_QUERY = st.dictionaries(
    st.sampled_from(["from", "to", "team", "format", "form"]),
    st.one_of(DAYS, st.sampled_from(["json", "csv", "studio", ""])),
    max_size=4,
)


def _send(http: httpx.Client, method: str, url: str, body: tuple[str, Any], **kw: Any) -> Any:
    kind, value = body
    if kind == "json":
        return http.request(method, url, json=value, **kw)
    return http.request(method, url, content=value, **kw)


@FUZZ
@seed(20_261_207)
@given(route=st.sampled_from(ADMIN_ROUTES), param=ANY_TEXT, body=BODIES, query=USAGE_QUERY)
def test_the_admin_api_never_answers_5xx(
    operator: Operator,
    route: tuple[str, str],
    param: str,
    body: tuple[str, Any],
    query: dict[str, str],
) -> None:
    method, template = route
    url = template.replace("{p}", segment(param) or "x")
    headers = {"x-admin-key": ADMIN_KEY}
    operator.check(_send(operator.http, method, url, body, headers=headers))
    operator.check(operator.http.get("/admin/usage", params=query, headers=headers))


CONSOLE_ACTIONS = ["teams/create", "teams/key", "teams/limits", "keys/revoke",
                   "webhooks/resend", "webhooks/recover"]  # fmt: skip
CONSOLE_PAGES = ["", "/teams", "/runs", "/webhooks", "/upstream", "/replicas", "/login"]
FORM_FIELDS = st.sampled_from(
    ["name", "team", "prefix", "webhook_id", "since", "daily_budget", "monthly_budget",
     "submits_per_minute", "max_concurrent", "polls_per_minute", "webhook_url"]
)  # fmt: skip
FORM_VALUES = st.one_of(ANY_TEXT, NUMBERS.map(str), DAYS)


@FUZZ
@seed(20_261_208)
@given(
    action=st.sampled_from(CONSOLE_ACTIONS),
    form=st.dictionaries(FORM_FIELDS, FORM_VALUES, max_size=5),
    page=st.sampled_from(CONSOLE_PAGES),
    query=st.dictionaries(st.one_of(FORM_FIELDS, ANY_TEXT), FORM_VALUES, max_size=3),
)
def test_the_console_never_answers_5xx(
    operator: Operator, action: str, form: dict[str, str], page: str, query: dict[str, str]
) -> None:
    posted = operator.http.post(
        f"{UI}/{action}", data={**form, "csrf": operator.csrf}, headers=operator.same_origin
    )
    operator.check(posted, json_errors=False)
    operator.check(operator.http.get(f"{UI}{page}", params=query), json_errors=False)


@FUZZ
@seed(20_261_209)
@given(
    query=USAGE_QUERY,
    body=BODIES,
    webhook=st.one_of(ANY_TEXT, st.from_regex(r"\Ahttps?://\[[^\]/]{0,12}\]?[/]?\Z")),
)
def test_usage_events_and_webhook_urls_never_answer_5xx(
    operator: Operator, query: dict[str, str], body: tuple[str, Any], webhook: str
) -> None:
    team = {"x-api-key": operator.stack.team_key}
    operator.check(operator.http.get("/v1/usage", params=query, headers=team))
    operator.check(_send(operator.http, "POST", f"/upstream/events/{SECRET}", body))
    # A broken URL is refused from its text; nothing reaches DNS or the upstream.
    if webhook.isprintable() and webhook.isascii():
        answer = operator.http.post(
            WORKFLOW, json={"Scene_1": 7}, headers={**team, "x-webhook-url": webhook}
        )
        operator.check(answer)


@pytest.mark.parametrize(
    ("method", "path", "headers", "says"),
    [
        ("GET", "/v1/usage?to=0001-01-01", "team", "to=0001-01-01"),
        ("GET", "/admin/usage?to=0001-01-05", "admin", "to=0001-01-05"),
        ("POST", WORKFLOW, "http://[::1", "X-Webhook-Url is not a valid URL"),
        ("POST", WORKFLOW, "http://[x]/", "X-Webhook-Url is not a valid URL"),
    ],
)
def test_the_inputs_that_were_500s_are_clear_400s(
    operator: Operator, method: str, path: str, headers: str, says: str
) -> None:
    sent = {"x-api-key": operator.stack.team_key}
    if headers == "admin":
        sent = {"x-admin-key": ADMIN_KEY}
    elif headers.startswith("http"):
        sent["x-webhook-url"] = headers
    answer = operator.http.request(method, path, headers=sent, json={"Scene_1": "A knight"})
    assert answer.status_code == 400, answer.text
    assert says in answer.json()["error"]


def test_a_huge_clock_advance_is_a_400(operator: Operator) -> None:
    for seconds in (10**400, 1e300):
        answer = operator.http.post(
            "/admin/clock/advance", json={"seconds": seconds}, headers={"x-admin-key": ADMIN_KEY}
        )
        assert answer.status_code == 400, answer.text
        assert "year 9000" in answer.json()["error"]
