"""Test your code offline with our cassettes: the example test file to copy.

This file is what another team's `tests/test_segmind_offline.py` looks like; docs/cassettes.md's
guide holds the same two tests. The YAML files it uses are vendored into `cassettes/`
beside it (here a link to this repository's `cassettes/`), named from this file, so
`pytest` finds them from any working directory. It runs clean under `python -m pytest
-W error` with nothing but `pip install 'segmind-character-gateway[testing]'`
(`tests/contract/test_outside_team.py` does exactly that, in a fresh venv outside the
repository).

The first test replays `success.yaml`, a whole recorded job (submit, QUEUED, PROCESSING,
COMPLETED), in record mode `none`: nothing goes to the network, and a request the cassette
does not hold raises `CannotOverwriteExistingCassetteException` instead. The second tests
a webhook receiver with the message the gateway actually sent (`gateway_webhook.yaml`),
signed with the cassettes' published secret, through httpx's in-process ASGI transport.
"""

import asyncio
import datetime as dt
from collections.abc import Callable

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from client import Client, InvalidWebhook, verify_webhook
from client.cassettes import CASSETTE_WEBHOOK_SECRET, cassette_path, make_vcr, recorded_webhook

# The YAML files this module uses, vendored into cassettes/ beside it. A relative folder is
# found from this file, wherever pytest runs.
CASSETTES = "cassettes"


def test_a_whole_job_replays_offline() -> None:
    with (
        make_vcr().use_cassette(cassette_path("success", directory=CASSETTES)),
        Client(api_key="any", base_url="https://api.segmind.com") as client,
    ):
        # A submit replays only with the inputs it was recorded with (here: all defaults;
        # `{}` and the spelled-out defaults match alike). Replayed answers come at once,
        # so poll without the real 7 s pause.
        result = client.run({}, poll_interval=0.01)

    assert sorted(result.videos) == [1, 2, 3, 4]
    assert all(url.endswith(".mp4") for url in result.videos.values())


# -- a webhook receiver, tested with the gateway's recorded delivery ------------------


def make_receiver(secret: str, now: Callable[[], dt.datetime]) -> Starlette:
    """Your receiver, with its secret and its clock passed in so a test can set both."""
    done: list[str] = []

    async def hook(request: Request) -> Response:
        try:
            event = verify_webhook(await request.body(), request.headers, secret, now=now())
        except InvalidWebhook as exc:
            return JSONResponse({"error": exc.message}, status_code=400)
        done.append(event.result.request_id)
        return JSONResponse({"videos": len(event.result.videos)})

    app = Starlette(routes=[Route("/hooks/segmind", hook, methods=["POST"])])
    app.state.done = done
    return app


async def deliver(app: Starlette, body: bytes, headers: dict[str, str]) -> httpx.Response:
    """POST to the receiver in-process, as the gateway would over the network."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://receiver") as http:
        return await http.post("/hooks/segmind", content=body, headers=headers)


def test_my_receiver_accepts_the_recorded_delivery_and_refuses_a_forgery() -> None:
    hook = recorded_webhook(directory=CASSETTES)  # the gateway's job.completed, as sent
    signed_at = dt.datetime.fromtimestamp(hook.timestamp, dt.UTC)
    app = make_receiver(CASSETTE_WEBHOOK_SECRET, now=lambda: signed_at)
    forged_body = hook.body.replace(b"scene_1", b"evil_1")

    accepted = asyncio.run(deliver(app, hook.body, hook.headers))
    forged = asyncio.run(deliver(app, forged_body, hook.headers))

    assert accepted.json() == {"videos": 4}
    assert forged.status_code == 400
    assert app.state.done == [f"{1:032x}"]
