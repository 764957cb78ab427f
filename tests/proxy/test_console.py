"""The console's guards and pages over HTTP, in process (`tests/proxy/harness.py`): who
gets in (a live session only: never a team key), what a POST needs (its session's CSRF
token, same origin), how a session ends (logout, a new admin key, eight hours), the
headers of every answer, and escaping of everything a team or a receiver chose."""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from proxy.app import create_app
from proxy.core.clock import VirtualClock
from proxy.core.config import PRICE, TeamLimits
from proxy.core.webhooks import host_of
from proxy.db import OutboxMessage, Team
from tests.proxy.harness import GATEWAY_URL, UPSTREAM_KEY, Harness

pytestmark = pytest.mark.anyio

MakeHarness = Callable[..., Awaitable[Harness]]
ADMIN_KEY = "test-admin-key-console-7c1e9a"
UI = "/admin/ui"
PAGES = ("teams", "runs", "webhooks", "upstream", "replicas")
SAME_ORIGIN = {"origin": GATEWAY_URL, "sec-fetch-site": "same-origin"}
HOSTILE = '"><script>alert(1)</script><img src=x onerror=alert(2)>'


@pytest.fixture
async def console(make_harness: MakeHarness) -> Harness:
    return await make_harness(admin_key=ADMIN_KEY, wall_clock=VirtualClock(1_000_000.0))


async def log_in(h: Harness, http: httpx.AsyncClient | None = None) -> httpx.AsyncClient:
    http = http or h.http
    answer = await http.post(f"{UI}/login", data={"admin_key": ADMIN_KEY}, headers=SAME_ORIGIN)
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == f"{UI}/teams"
    return http


async def csrf_of(h: Harness) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]{64})"', (await h.http.get(f"{UI}/teams")).text)
    assert found is not None
    return found[1]


async def post(h: Harness, action: str, form: dict[str, str], **headers: str) -> httpx.Response:
    return await h.http.post(f"{UI}/{action}", data=form, headers={**SAME_ORIGIN, **headers})


async def test_only_a_session_opens_a_page_never_a_team_key_or_a_header(console: Harness) -> None:
    team_key = console.team("studio")
    strangers: list[dict[str, str]] = [
        {}, {"x-api-key": team_key}, {"authorization": f"Bearer {team_key}"},
        {"x-admin-key": ADMIN_KEY}, {"authorization": f"Bearer {ADMIN_KEY}"},
        {"cookie": f"gateway_console={team_key}"},
    ]  # fmt: skip
    for headers in strangers:
        for name in PAGES:
            answer = await console.http.get(f"{UI}/{name}", headers=headers)
            assert answer.status_code == 303, (name, headers)
            assert answer.headers["location"] == f"{UI}/login"
            assert "studio" not in answer.text
    # A team key is no admin key either.
    refused = await console.http.post(f"{UI}/login", data={"admin_key": team_key},
                                      headers=SAME_ORIGIN)  # fmt: skip
    assert refused.status_code == 401
    assert "set-cookie" not in refused.headers
    assert team_key not in refused.text


async def test_the_session_cookie_is_http_only_strict_and_scoped_and_keys_stay_out(
    console: Harness,
) -> None:
    made = console.new_team("studio")
    answer = await console.http.post(f"{UI}/login", data={"admin_key": ADMIN_KEY},
                                     headers=SAME_ORIGIN)  # fmt: skip
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Path=/admin/ui" in cookie
    assert "Max-Age=28800" in cookie
    assert "Secure" not in cookie
    assert ADMIN_KEY not in cookie
    assert ADMIN_KEY not in answer.headers["location"]
    for name in PAGES:
        page = await console.http.get(f"{UI}/{name}")
        assert page.status_code == 200, name
        for secret in (ADMIN_KEY, UPSTREAM_KEY, made.key, made.webhook_secret or "-"):
            assert secret not in page.text, name
    assert made.key[:12] in (await console.http.get(f"{UI}/teams")).text
    # Behind a TLS proxy, the cookie is Secure.
    tls = httpx.AsyncClient(transport=console.http._transport, base_url=GATEWAY_URL)
    async with tls:
        secure = await tls.post(f"{UI}/login", data={"admin_key": ADMIN_KEY},
                                headers={**SAME_ORIGIN, "x-forwarded-proto": "https"})  # fmt: skip
    assert "Secure" in secure.headers["set-cookie"]


async def test_login_attempts_are_throttled_per_address(console: Harness) -> None:
    for _ in range(10):
        wrong = await console.http.post(f"{UI}/login", data={"admin_key": "guess-guess-guess"},
                                        headers=SAME_ORIGIN)  # fmt: skip
        assert wrong.status_code == 401
    throttled = await console.http.post(f"{UI}/login", data={"admin_key": ADMIN_KEY},
                                        headers=SAME_ORIGIN)  # fmt: skip
    assert throttled.status_code == 429
    assert "set-cookie" not in throttled.headers
    assert "Too many wrong keys" in throttled.text


async def test_every_answer_carries_the_security_headers(console: Harness) -> None:
    answers = [
        await console.http.get(f"{UI}/login"),
        await console.http.get(f"{UI}/teams"),  # a redirect to the login form
        await console.http.post(f"{UI}/login", data={"admin_key": "x"}, headers=SAME_ORIGIN),
        await console.http.post(f"{UI}/login", data={"admin_key": "x"}),  # no origin: refused
    ]
    await log_in(console)
    answers += [await console.http.get(f"{UI}/{name}") for name in PAGES]
    answers += [await console.http.get(f"{UI}/static/{n}") for n in ("console.css", "console.js")]
    for answer in answers:
        policy = answer.headers["content-security-policy"]
        assert "unsafe-inline" not in policy
        assert "frame-ancestors 'none'" in policy
        assert "default-src 'none'" in policy
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["cache-control"] == "no-store"
        assert answer.headers["x-content-type-options"] == "nosniff"
    for answer in answers[4:9]:
        # Nothing inline that the policy would have to allow.
        assert not re.search(r"<script(?![^>]*\bsrc=)", answer.text)
        assert " style=" not in answer.text
        assert "<style" not in answer.text
        assert not re.search(r"\son[a-z]+=", answer.text)


async def test_a_post_needs_the_session_token_and_the_same_origin(console: Harness) -> None:
    key = console.team("studio")
    await log_in(console)
    token = await csrf_of(console)
    form = {"prefix": key[:12]}
    assert (await post(console, "keys/revoke", form)).status_code == 403  # no token
    assert (await post(console, "keys/revoke", {**form, "csrf": "0" * 64})).status_code == 403
    evil = {"origin": "http://evil.test", "sec-fetch-site": "cross-site"}
    assert (await post(console, "keys/revoke", {**form, "csrf": token}, **evil)).status_code == 403
    cross = {"sec-fetch-site": "same-site"}
    assert (await post(console, "keys/revoke", {**form, "csrf": token}, **cross)).status_code == 403
    assert (await console.http.get(f"{UI}/keys/revoke", params=form)).status_code == 405
    assert (await console.credits(key)) > 0  # still a live key

    done = await post(console, "keys/revoke", {**form, "csrf": token})
    assert done.status_code == 200
    assert "Revoked 1 key" in done.text
    assert (await console.http.get("/v1/get-user-credits", headers={"x-api-key": key})
            ).status_code == 401  # fmt: skip


async def test_a_session_ends_at_logout_after_eight_hours_and_with_a_new_admin_key(
    console: Harness,
) -> None:
    await log_in(console)
    old = console.http.cookies["gateway_console"]
    token = await csrf_of(console)
    out = await post(console, "logout", {"csrf": token})
    assert out.status_code == 303
    assert 'gateway_console=""' in out.headers["set-cookie"]
    replayed = await console.http.get(f"{UI}/teams", headers={"cookie": f"gateway_console={old}"})
    assert replayed.status_code == 303

    await log_in(console)
    assert (await console.http.get(f"{UI}/teams")).status_code == 200
    wall = console.gateway.heartbeat.wall
    assert isinstance(wall, VirtualClock)
    wall.advance(8 * 3600 + 1)
    assert (await console.http.get(f"{UI}/teams")).status_code == 303

    await log_in(console)
    assert (await console.http.get(f"{UI}/teams")).status_code == 200
    rekeyed = create_app(console.gateway.settings.model_copy(
        update={"admin_key": SecretStr("another-admin-key-5b2e9d")}))  # fmt: skip
    try:
        other = httpx.AsyncClient(transport=httpx.ASGITransport(app=rekeyed),
                                  base_url=GATEWAY_URL, cookies=console.http.cookies)  # fmt: skip
        async with other:
            assert (await other.get(f"{UI}/teams")).status_code == 303
    finally:
        rekeyed.state.gateway.store.close()


async def test_names_urls_and_errors_are_shown_as_text(console: Harness) -> None:
    hostile_team = Team(uuid.uuid4().hex, HOSTILE, 0.0, TeamLimits(), "whsec_x")
    await console.gateway.store.create_team(hostile_team)
    url = f"https://hooks.example.com/{HOSTILE}"
    message = OutboxMessage(
        "msg_" + uuid.uuid4().hex, uuid.uuid4().hex, hostile_team.id, url, "job.completed",
        b"{}", "failed", 3, None, console.clock.now(), f"the receiver said {HOSTILE}",
    )  # fmt: skip
    await console.gateway.store.backend.write(lambda tx: tx.insert_message(message, host_of(url)))
    await log_in(console)
    for name in ("teams", "runs", "webhooks"):
        text = (await console.http.get(f"{UI}/{name}")).text
        assert "<script>" not in text, name
        assert "<img" not in text, name
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text, name
    refused = await post(console, "teams/create", {"name": HOSTILE, "csrf": await csrf_of(console)})
    assert refused.status_code == 400
    assert "<script>" not in refused.text
    assert "&lt;script&gt;" in refused.text


async def test_teams_are_made_changed_and_shown_with_their_spend(console: Harness) -> None:
    await log_in(console)
    token = await csrf_of(console)
    made = await post(console, "teams/create", {"name": "newsroom", "daily_budget": "20",
                                                "monthly_budget": "", "csrf": token})  # fmt: skip
    assert made.status_code == 200
    key = re.search(r'data-test="api key">(sgw_[^<]+)<', made.text)
    assert key is not None
    assert 'data-replace="/admin/ui/teams"' in made.text
    assert key[1] not in (await console.http.get(f"{UI}/teams")).text  # shown once only

    changed = await post(console, "teams/limits", {
        "team": "newsroom", "csrf": token, "daily_budget": "30", "monthly_budget": "",
        "submits_per_minute": "5", "polls_per_minute": "600", "max_concurrent": "2",
        "weight": "2.5",
    })  # fmt: skip
    assert changed.status_code == 200, changed.text
    team = await console.gateway.store.team("newsroom")
    assert (team.limits.daily_budget, team.limits.monthly_budget) == (30.0, None)
    assert team.limits.weight == 2.5  # its share of the upstream slots (the fair queue)
    wrong = await post(console, "teams/limits", {"team": "newsroom", "csrf": token,
                                                 "max_concurrent": "many"})  # fmt: skip
    assert wrong.status_code == 400
    assert "invalid limits" in wrong.text

    # A run and a request joining it: the bar moves, the saving shows, the run is in flight.
    await console.submit(key[1], {"Scene_1": "a"})
    await console.submit(key[1], {"Scene_1": "a"})
    teams = (await console.http.get(f"{UI}/teams")).text
    assert f'data-used="{PRICE:.4f}"' in teams
    assert "0 HIT, 1 JOIN" in teams
    runs = (await console.http.get(f"{UI}/runs", params={"team": "newsroom"})).text
    assert "In flight (1)" in runs
    assert runs.count('class="MISS"') == 1
    assert "No team named" in (await console.http.get(f"{UI}/runs", params={"team": "x"})).text
    upstream = (await console.http.get(f"{UI}/upstream")).text
    assert "<strong>1</strong> of 50" in upstream  # the submit, in the last minute
    assert "No finished runs yet." in upstream  # polls per run: none has finished
    assert "<h2>Kept outputs</h2><p>Off:" in upstream  # the suite's default: outputs none
    replicas = (await console.http.get(f"{UI}/replicas")).text
    assert console.gateway.instance in replicas
    assert "(this one)" in replicas


async def test_buttons_for_keys_and_webhooks_and_what_they_refuse(console: Harness) -> None:
    studio = console.new_team("studio")
    message = OutboxMessage(
        "msg_" + uuid.uuid4().hex, uuid.uuid4().hex, studio.team.id, "https://hooks.example.com/a",
        "job.completed", b"{}", "failed", 8, None, console.clock.now(), "HTTP 500",
    )  # fmt: skip
    await console.gateway.store.backend.write(
        lambda tx: tx.insert_message(message, "hooks.example.com")
    )
    await log_in(console)
    token = await csrf_of(console)
    added = await post(console, "teams/key", {"team": "studio", "csrf": token})
    key = re.search(r'data-test="api key">(sgw_[^<]+)<', added.text)
    assert key is not None
    assert await console.credits(key[1]) > 0
    missing = await post(console, "teams/key", {"team": "nobody", "csrf": token})
    assert missing.status_code == 400
    assert "no team named" in missing.text

    page = (await console.http.get(f"{UI}/webhooks")).text
    assert 'data-test="recover-studio"' in page
    recovered = await post(console, "webhooks/recover", {
        "team": "studio", "since": str(console.clock.now() - 60), "csrf": token,
    })  # fmt: skip
    assert "1 failed message(s) queued again" in recovered.text
    bad_since = await post(console, "webhooks/recover", {"since": "yesterday", "csrf": token})
    assert bad_since.status_code == 400
    assert "ISO 8601" in bad_since.text
    unknown = await post(console, "webhooks/resend", {"webhook_id": "msg_nope", "csrf": token})
    assert unknown.status_code == 400
    assert "no webhook message" in unknown.text
    resent = await post(console, "webhooks/resend", {"webhook_id": message.id, "csrf": token})
    assert "queued to be sent again" in resent.text
    unknown_prefix = await post(console, "keys/revoke", {"prefix": "sgw_nothing", "csrf": token})
    assert unknown_prefix.status_code == 400


async def test_the_console_is_off_without_an_admin_key(make_harness: MakeHarness) -> None:
    h = await make_harness()
    for answer in (await h.http.get(f"{UI}/teams"), await h.http.get(f"{UI}/login"),
                   await h.http.post(f"{UI}/login", data={"admin_key": "x"})):  # fmt: skip
        assert answer.status_code == 403
        assert "PROXY_ADMIN_KEY" in answer.text


async def test_the_home_the_login_form_and_the_static_files(console: Harness) -> None:
    assert (await console.http.get(f"{UI}/static/other.js")).status_code == 404
    css = await console.http.get(f"{UI}/static/console.css")
    assert css.headers["content-type"].startswith("text/css")
    await log_in(console)
    assert (await console.http.get(UI)).headers["location"] == f"{UI}/teams"
    assert (await console.http.get(f"{UI}/login")).headers["location"] == f"{UI}/teams"
    not_a_form = await console.http.post(f"{UI}/logout", json={"csrf": await csrf_of(console)},
                                         headers=SAME_ORIGIN)  # fmt: skip
    assert not_a_form.status_code == 403


async def test_ended_sessions_are_forgotten_and_live_ones_are_capped(
    console: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    from proxy.console import session

    monkeypatch.setattr(session, "MAX_SESSIONS", 2)
    sessions = session.Sessions(console.gateway.store, SecretStr(ADMIN_KEY),
                                console.gateway.heartbeat.wall)  # fmt: skip
    wall = console.gateway.heartbeat.wall
    assert isinstance(wall, VirtualClock)
    first = await sessions.open()
    wall.advance(session.SESSION_SECONDS + 1)
    second = await sessions.open()
    wall.advance(1)
    third = await sessions.open()
    assert not await sessions.valid(first)
    wall.advance(1)
    fourth = await sessions.open()  # the cap: the oldest live one ends
    assert [await sessions.valid(s) for s in (second, third, fourth)] == [False, True, True]
    rows = await console.gateway.store.kv_named(session.KV_PREFIX)
    assert len(rows) == 2
    assert all(s not in value for _, value in rows for s in (third, fourth))
    assert not await sessions.valid("x" * 101)


async def test_forecasts_follow_the_poll_schedule_and_the_learnt_model(console: Harness) -> None:
    from proxy.console.forecast import expected_finish, scheduled_polls, seen_at
    from proxy.core.schedule import DurationModel

    poller = console.gateway  # the harness polls every 7 s (the fixed schedule)
    assert [scheduled_polls(poller, d) for d in (1.0, 7.0, 20.0)] == [1, 1, 3]
    assert seen_at(poller, 7.0, 20.0) == 21.0
    assert seen_at(poller, 30.0, 20.0) == 30.0  # a poll already due after the end sees it
    model = DurationModel(prior_median=600.0)
    assert expected_finish(model, 0.0) == pytest.approx(600.0)
    assert 900.0 < expected_finish(model, 900.0) < 1100.0  # later, and by little
    assert expected_finish(model, 1e6) >= 1e6


async def test_the_upstream_page_says_what_outputs_are_kept(
    make_harness: MakeHarness, tmp_path: Path
) -> None:
    console = await make_harness(
        admin_key=ADMIN_KEY, wall_clock=VirtualClock(1_000_000.0), outputs=str(tmp_path / "kept")
    )
    await log_in(console)
    upstream = (await console.http.get(f"{UI}/upstream")).text
    assert f"In <code>{tmp_path / 'kept'}</code>: <strong>0</strong> files, 0.0 MB" in upstream
    assert "0 completed runs without copies" in upstream
