"""Test your code offline with our cassettes: the examples to copy.

The first replays `cassettes/success.yaml`, a whole recorded job (submit, QUEUED,
PROCESSING, COMPLETED), in record mode `none`: nothing goes to the network, and a request
the cassette does not hold raises `CannotOverwriteExistingCassetteException` instead.
The second tests a webhook receiver with the message the gateway actually sent
(`cassettes/gateway_webhook.yaml`), signed with the cassettes' published secret.
Needs vcrpy (`pip install vcrpy`), starlette for the receiver, and this repository's
`client` package.
"""

import datetime as dt
from collections.abc import Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from client import Client, InvalidWebhook, verify_webhook
from client.cassettes import CASSETTE_WEBHOOK_SECRET, cassette_path, make_vcr, recorded_webhook


def test_a_whole_job_replays_offline() -> None:
    # Vendored the YAML files? cassette_path("success", directory="tests/cassettes").
    with (
        make_vcr().use_cassette(cassette_path("success")),
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


def test_my_receiver_accepts_the_recorded_delivery_and_refuses_a_forgery() -> None:
    hook = recorded_webhook()  # the gateway's job.completed message, as it was sent
    signed_at = dt.datetime.fromtimestamp(hook.timestamp, dt.UTC)
    app = make_receiver(CASSETTE_WEBHOOK_SECRET, now=lambda: signed_at)
    with TestClient(app) as http:
        accepted = http.post("/hooks/segmind", content=hook.body, headers=hook.headers)
        forged = http.post(
            "/hooks/segmind", content=hook.body.replace(b"scene_1", b"evil_1"), headers=hook.headers
        )
    assert accepted.json() == {"videos": 4}
    assert forged.status_code == 400
    assert app.state.done == [f"{1:032x}"]
