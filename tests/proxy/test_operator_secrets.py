"""The operators' secrets (the admin key, the metrics token) and the upstream key, as the
settings take them, and /metrics, which names every team and its spend, behind them.

An empty secret is not a secret: set but empty (or short) is a start-up error, never an
open door; a gateway team key where the Segmind key belongs is refused with what to do."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from proxy.core.config import ProxySettings
from tests.proxy.conftest import MakeHarness
from tests.proxy.harness import UPSTREAM_KEY

pytestmark = pytest.mark.anyio

ADMIN_KEY = "test-admin-key-operators-71c4"
METRICS_TOKEN = "test-metrics-token-operators-2a9f"


def refusal(**values: str) -> str:
    with pytest.raises(ValidationError) as raised:
        ProxySettings(**{"upstream_key": UPSTREAM_KEY, **values})  # type: ignore[arg-type]
    return str(raised.value)


@pytest.mark.parametrize(
    ("field", "variable"),
    [
        ("admin_key", "PROXY_ADMIN_KEY"),
        ("metrics_token", "PROXY_METRICS_TOKEN"),
        ("upstream_events_secret", "PROXY_UPSTREAM_EVENTS_SECRET"),
    ],
)
@pytest.mark.parametrize("value", ["", "   ", "x" * 15])
def test_an_empty_or_short_operator_secret_is_refused(
    field: str, variable: str, value: str
) -> None:
    message = refusal(**{field: value})
    assert variable in message
    assert "secrets.token_urlsafe" in message


@pytest.mark.parametrize("field", ["admin_key", "metrics_token", "upstream_events_secret"])
def test_a_secret_of_sixteen_characters_is_taken(field: str) -> None:
    settings = ProxySettings(upstream_key=UPSTREAM_KEY, **{field: "y" * 16})  # type: ignore[arg-type]
    assert getattr(settings, field).get_secret_value() == "y" * 16


def test_a_gateway_key_is_not_an_upstream_key() -> None:
    team_key = "sgw_" + "Z" * 43
    message = refusal(upstream_key=team_key)
    assert "gateway team key" in message
    assert "env -u SEGMIND_API_KEY" in message
    assert team_key not in message


def test_an_empty_upstream_key_is_not_a_key() -> None:
    assert "SEGMIND_API_KEY is set but empty" in refusal(upstream_key="  ")


def test_an_unset_secret_matches_nothing_not_even_nothing() -> None:
    from proxy.core.keys import matches_a_secret

    assert not matches_a_secret("", None)
    assert not matches_a_secret("anything", None, None)
    configured = ProxySettings(upstream_key=UPSTREAM_KEY, metrics_token=METRICS_TOKEN)
    assert matches_a_secret(METRICS_TOKEN, None, configured.metrics_token)
    assert not matches_a_secret(METRICS_TOKEN[:-1], None, configured.metrics_token)


async def test_metrics_need_the_metrics_token_or_the_admin_key(make_harness: MakeHarness) -> None:
    h = await make_harness(admin_key=ADMIN_KEY, metrics_token=METRICS_TOKEN)
    key = h.team("metered")
    assert (await h.submit(key, {"Scene_1": "A metered run"})).status_code == 200

    for headers in (
        {},
        {"authorization": "Bearer "},
        {"authorization": f"Bearer {METRICS_TOKEN}x"},
        {"authorization": f"Basic {METRICS_TOKEN}"},
        {"x-api-key": key},  # a team key is not an operator's
    ):
        refused = await h.http.get("/metrics", headers=headers)
        assert refused.status_code == 401, (headers, refused.text)
        assert "PROXY_METRICS_TOKEN" in refused.json()["error"]
        assert refused.headers["www-authenticate"].startswith("Bearer")
        assert b"metered" not in refused.content

    for headers in (
        {"authorization": f"Bearer {METRICS_TOKEN}"},
        {"authorization": f"bearer {ADMIN_KEY}"},
        {"x-admin-key": ADMIN_KEY},
    ):
        scraped = await h.http.get("/metrics", headers=headers)
        assert scraped.status_code == 200, (headers, scraped.text)
        assert 'team="metered"' in scraped.text


async def test_metrics_are_off_with_no_credential_configured(make_harness: MakeHarness) -> None:
    h = await make_harness()
    key = h.team("unmetered")
    assert (await h.submit(key, {"Scene_1": "An unmetered run"})).status_code == 200

    answer = await h.http.get("/metrics", headers={"authorization": "Bearer "})
    assert answer.status_code == 403
    error = answer.json()["error"]
    assert "PROXY_METRICS_TOKEN" in error
    assert "Authorization: Bearer" in error
    assert b"unmetered" not in answer.content
