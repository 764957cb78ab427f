"""The console as an operator uses it: Debian's chromium, driven by Playwright, against a
real gateway and the fake (uvicorn processes on virtual clocks, `tests/stack.py`) and a
real webhook receiver (`tests/receiver.py`). Log in, watch a team's spend bar move after
a run, create a team and read its key once, revoke a key and see it refused, resend a
webhook, investigate a request (search its id, read its page and its webhook attempts,
follow it to its run and on to the request that joined it, and read it 360 px wide), log
out and find nothing behind the back button.

With CONSOLE_SCREENSHOTS=DIR set, the pages are saved there as PNGs on the way (the
README's are made so). Outside CI the test skips when chromium or Playwright is missing;
with CI set it fails instead.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.receiver import Receiver, eventually
from tests.stack import ADMIN_KEY, WORKFLOW, BothClocks, Stack, running_stack

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

SHOTS = os.environ.get("CONSOLE_SCREENSHOTS")
RUN_SECONDS = 1800.0  # past any run of the fake (median ~674 s, log-sd 0.2)
STEP = 30.0
SCENES = [{"Scene_1": f"A lighthouse keeper at dawn, take {n}"} for n in range(1, 6)]


def _chromium() -> str:
    """Debian's chromium, never a browser Playwright downloads; skip (fail in CI) without."""
    missing = []
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright package (pip install -e '.[test]')")
    path = shutil.which("chromium")
    if path is None:
        missing.append("chromium (apt-get install chromium)")
    if missing:
        reason = "the console's browser test needs " + " and ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI is set: the browser test must run, not skip)")
        pytest.skip(reason)
    assert path is not None
    return path


@pytest.fixture
def browser() -> Iterator[Browser]:
    executable = _chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=executable, headless=True)
        yield launched
        launched.close()


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with running_stack(tmp_path / "gateway.sqlite", "studio") as built:
        yield built


def shot(page: Page, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"console-{name}.png"), full_page=True)


def spent_today(page: Page, team: str) -> float:
    bar = page.locator(f'tr[data-team="{team}"] td.spend-today svg.bar')
    return float(bar.get_attribute("data-used") or "nan")


def test_an_operator_runs_the_gateway_from_the_console(
    browser: Browser, stack: Stack, receiver: Receiver
) -> None:
    base = f"{stack.gateway.url}/admin/ui"
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()

    # Not logged in: every page leads to the login form.
    page.goto(f"{base}/runs")
    assert page.url == f"{base}/login"
    page.fill('input[name="admin_key"]', ADMIN_KEY)
    page.click('[data-test="login"]')
    page.wait_for_url(f"{base}/teams")
    assert ADMIN_KEY not in page.content()
    before = spent_today(page, "studio")

    # Paid runs, one with a webhook and one more request joining it; then a run in flight.
    team = {"x-api-key": stack.team_key}
    submit = f"{stack.gateway.url}/workflows/{WORKFLOW}"
    first = httpx.post(submit, json=SCENES[0], headers={**team, "x-webhook-url": receiver.url})
    assert first.status_code == 200, first.text
    joined = httpx.post(submit, json=SCENES[0], headers=team)
    assert joined.headers["x-cache-status"] == "JOIN"
    for scene in SCENES[1:]:
        assert httpx.post(submit, json=scene, headers=team).headers["x-cache-status"] == "MISS"
    page.goto(f"{base}/runs")
    assert page.locator(f"text=In flight ({len(SCENES)})").count() == 1
    clocks = BothClocks(stack)
    try:
        poll = f"{stack.gateway.url}/workflows/request/{first.json()['request_id']}"
        delivered = False
        for _ in range(int(RUN_SECONDS / STEP)):  # polled as the schedule says, not at once
            clocks.sleep(STEP)
            if not delivered and httpx.get(poll, headers=team).json()["status"] == "COMPLETED":
                # Time stands still until it arrives: a delivery under way is never timed out
                # by a clock that jumps past its deadline.
                eventually(lambda: receiver.received, what="the run's webhook arrives")
                delivered = True
        assert delivered
        httpx.post(submit, json={"Scene_1": "A fox in the snow"}, headers=team)
        clocks.sleep(300)
    finally:
        clocks.close()

    page.goto(f"{base}/teams")
    after = spent_today(page, "studio")
    assert after > before, (before, after)
    assert "1 JOIN" in page.locator('tr[data-team="studio"] td.saved').inner_text()
    page.goto(f"{base}/runs")
    assert page.locator("text=In flight (1)").count() == 1
    assert page.locator("tr.MISS").count() == len(SCENES) + 1
    assert page.locator("tr.JOIN").count() == 1
    shot(page, "runs")

    # A new team: its key on the answer, once; a reload shows the plain page.
    page.goto(f"{base}/teams")
    page.fill('form.create input[name="name"]', "newsroom")
    page.fill('form.create input[name="daily_budget"]', "20")
    page.click('[data-test="create-team"]')
    key = page.locator('[data-test="api key"]').inner_text().strip()
    assert re.fullmatch(r"sgw_[A-Za-z0-9_-]{43}", key), key
    # The address bar no longer holds the POST (console.js runs once the page has loaded).
    page.wait_for_url(f"{base}/teams")
    credits = f"{stack.gateway.url}/v1/get-user-credits"
    assert httpx.get(credits, headers={"x-api-key": key}).status_code == 200
    page.reload()
    assert key not in page.content()
    assert page.locator('tr[data-team="newsroom"]').count() == 1
    shot(page, "teams")  # (after the reload: no key in a picture)

    # Revoked from the console: the very next request with it is refused.
    page.click(f'[data-test="revoke-{key[:12]}"]')
    assert page.locator(".notice.ok").inner_text().startswith("Revoked 1 key")
    assert httpx.get(credits, headers={"x-api-key": key}).status_code == 401

    # Resend the delivered webhook: the receiver gets it again, under the same id.
    page.goto(f"{base}/webhooks")
    webhook_id = receiver.received[0].id
    shot(page, "webhooks")
    page.click(f'[data-test="resend-{webhook_id}"]')
    assert "queued to be sent again" in page.locator(".notice.ok").inner_text()
    eventually(lambda: len(receiver.received) == 2, what="the resent webhook arrives")
    assert receiver.received[1].id == webhook_id

    # "Team studio says its video never arrived": search the request id it was given, read
    # its page, follow it to its run, and back to the other request that run answered.
    request_id, joined_id = first.json()["request_id"], joined.json()["request_id"]
    page.fill('[data-test="nav-search"]', request_id)
    page.press('[data-test="nav-search"]', "Enter")
    page.wait_for_url(f"{base}/requests/{request_id}")
    facts = page.locator("dl.facts").inner_text()
    assert "studio" in facts
    assert "MISS" in facts
    assert "COMPLETED" in facts
    hook = page.locator(f'[data-test="webhook-{webhook_id}"]')
    assert hook.locator("h3").inner_text().endswith("job.completed, delivered")
    answers = hook.locator("tbody tr").all_inner_texts()
    assert len(answers) == 2, answers  # the delivery and the resend, each answered 2xx
    assert all("\t20" in row for row in answers), answers
    assert page.locator("section", has_text="Outputs").locator("a").count() == 4
    shot(page, "request")
    page.click('[data-test="run-link"]')
    page.wait_for_url(re.compile(rf"{re.escape(base)}/runs/[0-9a-f]+$"))
    assert page.locator("h2", has_text="Requests it answered (2)").count() == 1
    assert "COMPLETED" in page.locator("dl.facts").inner_text()
    shot(page, "run")
    page.click(f'a[href="/admin/ui/requests/{joined_id}"]')
    page.wait_for_url(f"{base}/requests/{joined_id}")
    assert "JOIN" in page.locator("dl.facts").inner_text()
    assert "No webhook for this request" in page.content()
    # On a phone (360 px wide): the page fits, nothing to scroll sideways.
    narrow = context.new_page()
    narrow.set_viewport_size({"width": 360, "height": 740})
    narrow.goto(f"{base}/requests/{request_id}")
    assert narrow.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    narrow.close()

    for name in ("replicas", "upstream"):
        page.goto(f"{base}/{name}")
        assert page.locator("h1").inner_text() == name.capitalize()
        shot(page, name)
    # Polls per run, as counted in the store: every completed run took at least one poll.
    counted = re.search(r"([\d.]+) polls a run over the last (\d+) completed runs",
                        page.content())  # fmt: skip
    assert counted is not None
    assert (float(counted[1]) >= 1.0, int(counted[2])) == (True, len(SCENES))

    # Log out: the cookie is gone, and the back button shows no page of the console.
    page.click('[data-test="logout"]')
    page.wait_for_url(f"{base}/login")
    assert not [c for c in context.cookies() if c["name"] == "gateway_console"]
    back = page.go_back()  # the upstream page's address: asked again, it sends to login
    assert back is not None  # fetched from the gateway, not shown from a cache
    assert back.request.redirected_from is not None
    assert back.request.redirected_from.url == f"{base}/upstream"
    page.wait_for_url(f"{base}/login", timeout=10_000)
    assert page.locator("h1").inner_text() == "Log in"
    context.close()
