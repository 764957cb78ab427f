"""Which client a request is, in a real gateway process: the connection's peer, unless the
peer is one of `forwarded_allow_ips` (the proxy in front), whose X-Forwarded-For then
names the client. uvicorn's own default believed X-Forwarded-For from 127.0.0.1, so a
local client rotating the header got 12 wrong logins and no 429; and with the header not
believed at all, every operator behind a proxy shared one bucket."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.stack import ADMIN_KEY, running_stack

WRONG = {"x-admin-key": "not-the-admin-key-0000"}
RIGHT = {"x-admin-key": ADMIN_KEY}


def login(http: httpx.Client, key: str, **headers: str) -> int:
    origin = {"origin": str(http.base_url).rstrip("/"), "sec-fetch-site": "same-origin"}
    answer = http.post("/admin/ui/login", data={"admin_key": key}, headers={**origin, **headers})
    return answer.status_code


def test_by_default_a_forwarded_header_names_no_one(tmp_path: Path) -> None:
    with (
        running_stack(tmp_path / "gateway.sqlite") as stack,
        httpx.Client(base_url=stack.gateway.url) as http,
    ):
        statuses = [
            login(http, "guess-guess-guess", **{"x-forwarded-for": f"203.0.113.{n}"})
            for n in range(12)
        ]
        assert statuses == [401] * 10 + [429] * 2, statuses
        rotated = http.get("/admin/teams", headers={**RIGHT, "x-forwarded-for": "198.51.100.1"})
        assert rotated.status_code == 429, rotated.text


def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_count(tmp_path: Path) -> None:
    env = {"PROXY_FORWARDED_ALLOW_IPS": '["127.0.0.1"]'}
    with (
        running_stack(tmp_path / "gateway.sqlite", env=env) as stack,
        httpx.Client(base_url=stack.gateway.url) as http,
    ):
        guesser = {"x-forwarded-for": "203.0.113.66"}
        statuses = [http.get("/admin/teams", headers={**WRONG, **guesser}).status_code
                    for _ in range(12)]  # fmt: skip
        assert statuses == [401] * 10 + [429] * 2, statuses
        assert login(http, ADMIN_KEY, **guesser) == 429
        # Another operator behind the same proxy is not locked out.
        operator = {"x-forwarded-for": "198.51.100.20"}
        assert http.get("/admin/teams", headers={**RIGHT, **operator}).status_code == 200
        assert login(http, ADMIN_KEY, **operator) == 303
