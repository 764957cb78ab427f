"""Team names come from a documented safe set: ASCII letters, digits, '-', '_' and '.',
starting with a letter or digit, and no two differing only in case. `d\u0435sign` (with a
Cyrillic e, U+0435) was accepted beside `design`, and a team named `..` could only be managed
with curl's `--path-as-is`. A team named before the rule keeps its name and is managed
as before (by its exact name): nothing is renamed behind an operator's back."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from urllib.parse import quote

import httpx
import pytest

from proxy.core.config import TeamLimits
from proxy.db import Team
from proxy.services.accounts import team_name_problem
from tests.proxy.harness import GATEWAY_URL, Harness

pytestmark = pytest.mark.anyio

MakeHarness = Callable[..., Awaitable[Harness]]
ADMIN_KEY = "test-admin-key-names-0123"
ADMIN = {"X-Admin-Key": ADMIN_KEY}


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("d\u0435sign", "CYRILLIC SMALL LETTER IE"),
        ("..", "start with a letter or digit"),
        ("a b", "SPACE"),
        ("x\u200by", "ZERO WIDTH SPACE"),
        ("x" * 65, "1 to 64"),
    ],
)
async def test_a_name_outside_the_safe_set_is_refused_saying_why(
    make_harness: MakeHarness, name: str, says: str
) -> None:
    harness = await make_harness(admin_key=ADMIN_KEY)
    answer = await harness.http.post("/admin/teams", json={"name": name}, headers=ADMIN)
    assert answer.status_code == 400, answer.text
    assert says in answer.json()["error"]
    assert "ASCII letters, digits" in answer.json()["error"]
    assert await harness.gateway.store.teams() == []


async def test_a_name_differing_only_in_case_is_refused(make_harness: MakeHarness) -> None:
    harness = await make_harness(admin_key=ADMIN_KEY)
    first = await harness.http.post("/admin/teams", json={"name": "design"}, headers=ADMIN)
    assert first.status_code == 201, first.text
    again = await harness.http.post("/admin/teams", json={"name": "Design"}, headers=ADMIN)
    assert again.status_code == 400, again.text
    assert "differing only in case" in again.json()["error"]
    assert [t.name for t in await harness.gateway.store.teams()] == ["design"]


@pytest.mark.parametrize("name", ["d\u0435sign", "..", "two words"])
async def test_a_team_named_before_the_rule_is_still_managed(
    make_harness: MakeHarness, name: str
) -> None:
    harness = await make_harness(admin_key=ADMIN_KEY)
    # As a store written before the rule holds it.
    await harness.gateway.store.create_team(
        Team(uuid.uuid4().hex, name, harness.clock.now(), TeamLimits(), "whsec_old")
    )
    assert team_name_problem(name) is not None
    # Percent-encoded whole, dots too (`%2E%2E`): no client takes that for a path step.
    at = "/admin/teams/" + quote(name, safe="").replace(".", "%2E")

    def url(tail: str) -> httpx.URL:
        return httpx.URL(GATEWAY_URL).copy_with(raw_path=(at + tail).encode())

    limits = await harness.http.patch(url("/limits"), json={"daily_budget": 7}, headers=ADMIN)
    assert limits.status_code == 200, limits.text
    made = await harness.http.post(url("/keys"), headers=ADMIN)
    assert made.status_code == 201, made.text
    key = made.json()["api_key"]
    assert (await harness.http.get("/v1/get-user-credits", headers={"x-api-key": key})).is_success
    revoked = await harness.http.post(url("/revoke"), headers=ADMIN)
    assert revoked.status_code == 200, revoked.text
    [team] = await harness.gateway.store.teams()
    assert (team.name, team.limits.daily_budget) == (name, 7)
