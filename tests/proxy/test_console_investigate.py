"""The console as a tool to investigate with (`proxy/console/investigate.py`): the search
finds a request, a run (by its id or Segmind's) and a team; a request's page shows its
team, cache outcome, cost, run and every webhook attempt with the receiver's answer; a
run's page lists the requests it answered; each links to the other; what a receiver or
Segmind wrote is shown as text."""

from __future__ import annotations

import html
import re
import uuid

import pytest

from proxy.console import runs as runs_page
from proxy.core.clock import VirtualClock
from proxy.core.config import PRICE
from proxy.core.webhooks import host_of
from proxy.db import OutboxMessage
from tests.proxy.harness import Harness
from tests.proxy.test_console import ADMIN_KEY, HOSTILE, UI, MakeHarness, log_in

pytestmark = pytest.mark.anyio


@pytest.fixture
async def console(make_harness: MakeHarness) -> Harness:
    return await make_harness(admin_key=ADMIN_KEY, wall_clock=VirtualClock(1_000_000.0))


async def test_search_a_request_then_follow_it_to_its_run_and_its_webhook(
    console: Harness,
) -> None:
    key = console.team("studio")
    first = (await console.submit(key, {"Scene_1": "a harbour"})).json()["request_id"]
    joined = (await console.submit(key, {"Scene_1": "a harbour"})).json()["request_id"]
    await console.advance_until_done(key, first)
    run = await console.gateway.store.request_view(first)
    assert run is not None
    generation = run.generation
    # A webhook message of the request, one failed attempt whose answer a receiver chose.
    url = "https://hooks.example.com/studio"
    message = OutboxMessage(
        "msg_" + uuid.uuid4().hex, first, run.request.team_id, url, "job.completed", b"{}",
        "pending", 0, console.clock.now() + 300, console.clock.now(), None,
    )  # fmt: skip
    store = console.gateway.store
    await store.backend.write(lambda tx: tx.insert_message(message, host_of(url)))
    await store.record_attempt(
        message.id, console.clock.now(), status_code=500, latency_ms=42.0,
        response=f"receiver down {HOSTILE}", error="HTTP 500", state="pending",
        next_attempt_at=console.clock.now() + 300,
    )  # fmt: skip
    await log_in(console)

    found = await console.http.get(f"{UI}/search", params={"q": f"  {first} "})
    assert found.status_code == 303
    assert found.headers["location"] == f"{UI}/requests/{first}"
    page = (await console.http.get(found.headers["location"])).text
    assert "studio" in page
    assert '<span class="tag MISS">MISS</span>' in page
    assert f"${PRICE:,.2f}" in page  # what the team paid
    assert f'href="{UI}/runs/{generation.id}"' in page  # on to its run
    assert 'data-test="webhook-' in page
    assert "receiver down" in page
    assert "<td>500</td>" in page
    assert "42 ms" in page
    assert "<script>" not in page
    assert "&lt;script&gt;" in page
    assert re.search(r"<li>Scene_1_Video: <a href=\"https?://[^\"]+\"", page)  # the outputs

    run_page = (await console.http.get(f"{UI}/runs/{generation.id}")).text
    assert f'href="{UI}/requests/{first}"' in run_page  # back to each request it answered
    assert f'href="{UI}/requests/{joined}"' in run_page
    assert "Requests it answered (2)" in run_page
    assert '<span class="tag JOIN">JOIN</span>' in run_page
    assert "COMPLETED" in run_page
    upstream_polls = re.search(r"<dt>Upstream polls</dt><dd>(\d+)</dd>", run_page)
    assert upstream_polls is not None
    assert int(upstream_polls[1]) >= 1

    # Segmind's own id finds the run; a team name, its requests; the lists link here.
    assert generation.upstream_id is not None
    by_upstream = await console.http.get(f"{UI}/search", params={"q": generation.upstream_id})
    assert by_upstream.headers["location"] == f"{UI}/runs/{generation.id}"
    by_team = await console.http.get(f"{UI}/search", params={"q": "studio"})
    assert by_team.headers["location"] == f"{UI}/runs?team=studio"
    listed = (await console.http.get(f"{UI}/runs")).text
    assert f'href="{UI}/requests/{first}"' in listed


async def test_what_matches_nothing_says_what_search_takes(console: Harness) -> None:
    await log_in(console)
    missing = await console.http.get(f"{UI}/search", params={"q": HOSTILE})
    assert missing.status_code == 404
    assert "Search takes a request id" in missing.text
    assert "<script>" not in missing.text
    assert (await console.http.get(f"{UI}/requests/{'f' * 32}")).status_code == 404
    assert (await console.http.get(f"{UI}/runs/{'f' * 32}")).status_code == 404
    plain = await console.http.get(f"{UI}/search")
    assert plain.status_code == 200
    assert 'data-test="search"' in plain.text


async def test_every_page_has_the_search_box_a_favicon_and_local_times(console: Harness) -> None:
    key = console.team("studio")
    await console.submit(key, {"Scene_1": "a harbour"})
    await log_in(console)
    runs = (await console.http.get(f"{UI}/runs")).text
    assert 'data-test="nav-search"' in runs
    assert f'rel="icon" href="{UI}/static/favicon.svg"' in runs
    assert re.search(r'<time datetime="[\dT:-]+Z" title="[\d :-]+ UTC" data-local>', runs)
    icon = await console.http.get(f"{UI}/static/favicon.svg")
    assert icon.status_code == 200
    assert icon.headers["content-type"].startswith("image/svg+xml")


async def test_an_empty_webhooks_page_says_what_to_do(console: Harness) -> None:
    await log_in(console)
    page = (await console.http.get(f"{UI}/webhooks")).text
    assert "No webhook endpoint yet" in page
    assert "X-Webhook-Url" in page
    assert "No webhook message yet" in page
    # The Recover button is explained as what it is: there only beside failed messages.
    assert "button appears beside a team whose messages failed" in page
    assert 'data-test="recover-' not in page


async def test_the_requests_list_pages_back_in_time(
    console: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runs_page, "RECENT", 2)
    key = console.team("studio")
    ids = []
    for n in range(3):
        ids.append((await console.submit(key, {"Scene_1": f"take {n}"})).json()["request_id"])
        await console.advance(1)  # each its own moment
    await log_in(console)
    first = (await console.http.get(f"{UI}/runs", params={"team": "studio"})).text
    assert [i for i in ids if f"/requests/{i}" in first] == ids[1:]  # the newest two
    older = re.search(r'<a href="([^"]+)" data-test="older">', first)
    assert older is not None
    second = (await console.http.get(html.unescape(older[1]))).text
    assert [i for i in ids if f"/requests/{i}" in second] == ids[:1]
    assert 'data-test="newest"' in second
    assert 'data-test="older"' not in second  # the last page
    empty = (await console.http.get(f"{UI}/runs", params={"before": "1"})).text
    assert "Newest" in empty
