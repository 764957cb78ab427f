"""Usage reports end to end: a real gateway and fake (uvicorn processes, virtual clocks)
run a day of requests (MISS, JOIN, HIT, a failed refunded run, a failed charged one), and
the report, as JSON, CSV and from the command line, adds up to `/metrics` and to the
store's own rows. A team key reads its own team's report only."""

from __future__ import annotations

import csv
import datetime as dt
import io
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from proxy.core.config import PRICE
from proxy.rules import USAGE_FIELDS
from tests.stack import ADMIN_KEY, UPSTREAM_KEY, WORKFLOW, BothClocks, Stack, running_stack

ADMIN = {"x-admin-key": ADMIN_KEY}


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with running_stack(tmp_path / "gateway.sqlite", "video") as built:
        yield built


def _submit(stack: Stack, scene: str) -> httpx.Response:
    return httpx.post(
        f"{stack.gateway.url}/workflows/{WORKFLOW}",
        json={"Scene_1": scene},
        headers={"x-api-key": stack.team_key},
    )


def _script(stack: Stack, route: str, *responses: dict[str, Any]) -> None:
    httpx.post(
        f"{stack.fake.url}/__admin/script", json={"route": route, "responses": list(responses)}
    ).raise_for_status()


def _metrics(stack: Stack) -> dict[tuple[str, str], float]:
    body = httpx.get(f"{stack.gateway.url}/metrics", headers=ADMIN).text
    found = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.labels.get("team") == "video":
                found[sample.name, sample.labels.get("result", "")] = sample.value
    return found


def _day(now: float) -> str:
    return dt.datetime.fromtimestamp(now, dt.UTC).date().isoformat()


def test_a_days_usage_adds_up_to_the_metrics_and_the_store(stack: Stack) -> None:
    clocks = BothClocks(stack)
    first = _day(clocks.now())
    assert _submit(stack, "a lighthouse").headers["x-cache-status"] == "MISS"
    assert _submit(stack, "a lighthouse").headers["x-cache-status"] == "JOIN"
    clocks.sleep(1900)  # the run completes
    assert _submit(stack, "a lighthouse").headers["x-cache-status"] == "HIT"
    _script(stack, "submit", {"code": 400, "message": "no such scene"})
    refused = _submit(stack, "a refused scene")  # a MISS the upstream refuses: refunded
    assert refused.status_code == 400, refused.text
    assert _submit(stack, "a failing scene").headers["x-cache-status"] == "MISS"
    _script(stack, "poll", {"status": 200, "body": {"status": "FAILED", "error": "boom"}})
    clocks.sleep(1900)  # ...and this one fails upstream: charged (failed_runs = charge)
    last = _day(clocks.now())
    clocks.close()

    answer = httpx.get(
        f"{stack.gateway.url}/admin/usage", params={"from": first, "to": last}, headers=ADMIN
    )
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert report["columns"] == list(USAGE_FIELDS)
    totals = report["totals"]
    assert {k: totals[k] for k in ("hit", "join", "miss", "failed", "refunded", "runs_paid")} == {
        "hit": 1, "join": 1, "miss": 3, "failed": 2, "refunded": 1, "runs_paid": 2,
    }  # fmt: skip
    assert (totals["spent"], totals["saved"]) == (round(2 * PRICE, 4), round(2 * PRICE, 4))

    # /metrics counts each admission as it happens: the same requests and dollars (its
    # dollars_spent is what admission charged, before the refund).
    metrics = _metrics(stack)
    for result in ("HIT", "JOIN", "MISS"):
        assert metrics["segmind_gateway_cache_total", result] == totals[result.lower()]
    assert metrics["segmind_gateway_dollars_saved_total", ""] == pytest.approx(totals["saved"])
    spent_gross = metrics["segmind_gateway_dollars_spent_total", ""]
    assert spent_gross - totals["refunded"] * PRICE == pytest.approx(totals["spent"])

    # The store's own rows: requests by outcome, and the budget's spend per day.
    db = sqlite3.connect(stack.db)
    try:
        by_status = dict(db.execute("SELECT cache_status, COUNT(*) FROM requests GROUP BY 1"))
        spend = db.execute(
            "SELECT SUM(amount) FROM spend WHERE period >= ? AND period <= ?", (first, last)
        ).fetchone()[0]
    finally:
        db.close()
    assert by_status == {"HIT": 1, "JOIN": 1, "MISS": 3}
    assert spend == pytest.approx(totals["spent"])

    # The CSV: a header row in USAGE_FIELDS order, then the same rows; the command line
    # prints the same CSV from the store file.
    as_csv = httpx.get(
        f"{stack.gateway.url}/admin/usage",
        params={"from": first, "to": last, "format": "csv"},
        headers=ADMIN,
    )
    assert as_csv.headers["content-type"].startswith("text/csv")
    header, *lines = list(csv.reader(io.StringIO(as_csv.text)))
    assert tuple(header) == USAGE_FIELDS
    assert [dict(zip(header, line, strict=True)) for line in lines] == [
        {k: str(v) for k, v in row.items()} for row in report["rows"]
    ]
    assert sum(float(line[header.index("spent")]) for line in lines) == pytest.approx(
        totals["spent"]
    )
    cli = subprocess.run(
        [sys.executable, "-m", "proxy", "admin", "usage", "--since", first, "--until", last,
         "--csv", "--db", str(stack.db)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert cli.stdout.split("\n", 1)[1] == as_csv.text  # after the line naming the store

    # The team reads the same rows with its own key.
    own = httpx.get(
        f"{stack.gateway.url}/v1/usage",
        params={"from": first, "to": last},
        headers={"x-api-key": stack.team_key},
    )
    assert own.status_code == 200, own.text
    assert own.json()["rows"] == report["rows"]
    for text in (answer.text, as_csv.text, own.text, cli.stdout, cli.stderr):
        assert UPSTREAM_KEY not in text
        assert stack.team_key not in text


def test_a_team_key_reads_its_own_usage_only(stack: Stack) -> None:
    made = httpx.post(f"{stack.gateway.url}/admin/teams", json={"name": "other"}, headers=ADMIN)
    other_key = made.json()["api_key"]
    assert _submit(stack, "a video of video's").headers["x-cache-status"] == "MISS"
    url = f"{stack.gateway.url}/v1/usage"

    mine = httpx.get(url, headers={"x-api-key": stack.team_key}).json()
    assert [row["team"] for row in mine["rows"]] == ["video"]
    assert httpx.get(url, headers={"x-api-key": other_key}).json()["rows"] == []
    named = httpx.get(url, params={"team": "video"}, headers={"x-api-key": other_key})
    assert named.status_code == 403
    assert "own team's usage only" in named.json()["error"]
    assert "video" not in named.text.replace("'other'", "")  # nothing of video's either
    for form in ("json", "csv"):
        peek = httpx.get(url, params={"team": "video", "format": form},
                         headers={"x-api-key": other_key})  # fmt: skip
        assert peek.status_code == 403
    assert (
        httpx.get(url, params={"team": "other"}, headers={"x-api-key": other_key}).json()["rows"]
        == []
    )
    # Neither key is an admin key, and the admin key is no team key.
    for key in (stack.team_key, other_key):
        refused = httpx.get(f"{stack.gateway.url}/admin/usage", headers={"x-admin-key": key})
        assert refused.status_code == 401
        assert "video" not in refused.text
    assert httpx.get(url, headers={"x-api-key": ADMIN_KEY}).status_code == 401
    assert httpx.get(url).status_code == 401


def test_a_teams_usage_reads_count_against_its_poll_rate(stack: Stack) -> None:
    # A report is a read of the store like a poll: a team reading in a loop is refused
    # (429 with Retry-After) before its reads load the store for every team.
    limits = {"polls_per_minute": 2}
    httpx.post(f"{stack.gateway.url}/admin/teams/video/limits", json=limits, headers=ADMIN)
    url, key = f"{stack.gateway.url}/v1/usage", {"x-api-key": stack.team_key}
    answers = [httpx.get(url, headers=key) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[0].headers["ratelimit-policy"] == '"polls";q=2;w=60'
    assert int(answers[2].headers["retry-after"]) >= 1
    assert "poll rate limit" in answers[2].json()["error"]


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"from": "2026-13-01"}, "from must be a day written YYYY-MM-DD"),
        ({"to": "yesterday"}, "to must be a day written YYYY-MM-DD"),
        ({"from": "2026-11-25", "to": "2026-11-24"}, "before it starts"),
        ({"from": "2025-01-01", "to": "2026-01-02"}, "at most 366 days"),
        ({"format": "xml"}, "format must be one of json, csv"),
        ({"form": "2026-11-25"}, "unknown parameters ['form']"),
        ({"team": "nobody"}, "no team named 'nobody'"),
    ],
)
def test_a_bad_report_request_is_a_clear_4xx(
    stack: Stack, params: dict[str, str], words: str
) -> None:
    answer = httpx.get(f"{stack.gateway.url}/admin/usage", params=params, headers=ADMIN)
    assert answer.status_code == (404 if "team" in params else 400), answer.text
    assert words in answer.json()["error"]
    if "team" not in params:
        mine = httpx.get(
            f"{stack.gateway.url}/v1/usage", params=params, headers={"x-api-key": stack.team_key}
        )
        assert mine.status_code == 400
        assert words in mine.json()["error"]
