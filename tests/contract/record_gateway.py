"""The gateway's flows for `cassettes/`: what a team sees from the gateway, recorded.

`python -m tests.contract.record` records these after Segmind's own flows, through a real
gateway process (`python -m proxy`, virtual clock, SQLite store in a temporary folder) in
front of a real fake process, with a webhook receiver on loopback. Each flow gets a team of
its own (made over the admin API, with the limits the flow needs), so no flow sees another's
cache. Cassettes say `https://gateway.example` for the gateway, `https://api.segmind.com`
for the upstream's video URLs, `<TEAM_KEY>` for the team's key.

The webhook flow's cassette ends with the delivery the receiver got, as an interaction
(`POST https://hooks.example/segmind`). The recorded message is normalised like the rest
(ids, timestamps), so its original signature no longer fits; it is signed again with
`client.cassettes.CASSETTE_WEBHOOK_SECRET`, a published secret that signs nothing real, so a
team can check its receiver's verification against a real message
(`client.cassettes.recorded_webhook`).
"""

from __future__ import annotations

import contextlib
import json
import random
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from client import (
    CHARACTER_VIDEO_WORKFLOW_ID,
    Client,
    InsufficientCredits,
    RateLimited,
    RetryPolicy,
)
from client.cassettes import (
    CASSETTE_WEBHOOK_SECRET,
    GATEWAY_BASE,
    HOOK_URL,
    TEAM_KEY_PLACEHOLDER,
)
from proxy.core.webhooks import message_id, sign
from tests.contract.record import (
    _FIXED_TIMESTAMP,
    CANONICAL_BASE,
    SEED,
    Flow,
    Session,
    Surface,
    Target,
    _submit,
)
from tests.receiver import Receiver, eventually
from tests.stack import ADMIN_KEY, UPSTREAM_KEY, BothClocks, Stack, running_stack

__all__ = ["GATEWAY_FLOWS", "GatewaySession", "gateway_target"]

POLL_EVERY = 60.0  # a poll a minute keeps a recorded ~11-minute job to a dozen answers
OTHER_INPUTS = {"Scene_1": "A lighthouse keeper climbing the stairs at dusk"}
FIXED_UNIX = 946684800  # _FIXED_TIMESTAMP as Unix seconds
REQUEST_HEADERS = ("authorization", "cache-control", "content-type", "x-api-key", "x-webhook-url")
RESPONSE_HEADERS = (
    "content-type", "idempotent-replayed", "ratelimit", "ratelimit-policy", "retry-after",
    "x-cache-status",
)  # fmt: skip
WEBHOOK_HEADERS = ("content-type", "user-agent", "webhook-id", "webhook-signature")
NORMALISED = (
    f"gateway -> {GATEWAY_BASE}; upstream URLs -> {CANONICAL_BASE}; webhook receiver -> "
    f"{HOOK_URL}; request ids -> 000...001, 000...002; team key -> {TEAM_KEY_PLACEHOLDER}; "
    f"headers cut to {', '.join(RESPONSE_HEADERS)} (answers) and {', '.join(REQUEST_HEADERS)} "
    f"(requests); timestamps -> {_FIXED_TIMESTAMP}; consecutive identical answers to one "
    "request collapsed (replayed, the last answer repeats)"
)


def _hit(session: Session) -> object:
    with session.client() as client:
        client.run({}, poll_interval=POLL_EVERY)
        # The same inputs again, once the first run is done: answered from the cache.
        return client.run({}, poll_interval=POLL_EVERY)


def _join(session: Session) -> object:
    with session.client() as client:
        first = client.submit({})
        second = client.submit({})  # identical, while the first runs: joins it
        client.wait(first, poll_interval=POLL_EVERY)
        return client.wait(second, poll_interval=POLL_EVERY)


def _quota(session: Session) -> object:
    with session.client(retry=RetryPolicy(max_attempts=1)) as client:
        client.submit({})
        return client.submit(OTHER_INPUTS)  # the second in a minute; the limit is one


def _webhook(session: Session) -> object:
    with session.client() as client:
        job = client.submit({}, webhook_url=session.webhook_url)
        # Past the end of the run: the gateway sees COMPLETED and sends the message. (A
        # receiver does not need to poll; this one poll shows both say the same thing.)
        session.advance(2000)
        return client.wait(job, poll_interval=POLL_EVERY)


GATEWAY_FLOWS: tuple[Flow, ...] = (
    Flow(
        "gateway_hit",
        "through the gateway: a run (MISS, polled to COMPLETED), then the same inputs again: "
        "X-Cache-Status: HIT, the first poll answers COMPLETED, no second charge",
        _hit,
        None,
        how="two identical runs from one team, one after the other",
    ),
    Flow(
        "gateway_join",
        "through the gateway: two identical submits while the first is running; the second "
        "answers X-Cache-Status: JOIN and both end COMPLETED on one paid run",
        _join,
        None,
        how="two identical submits from one team before the run ends",
    ),
    Flow(
        "gateway_quota_429",
        "through the gateway: a team limited to one submit a minute submits twice; the "
        "second answers 429 with Retry-After and the RateLimit fields",
        _quota,
        RateLimited,
        how="a team with submits_per_minute = 1; the client does not retry",
        inputs=OTHER_INPUTS,
        limits={"submits_per_minute": 1},
    ),
    Flow(
        "gateway_budget_406",
        "through the gateway: a team whose daily budget cannot pay for one run (~$3.97) "
        "submits; 406 names the budget",
        _submit(),
        InsufficientCredits,
        how="a team with daily_budget = 1.0",
        limits={"daily_budget": 1.0},
    ),
    Flow(
        "gateway_webhook",
        "through the gateway: a submit with X-Webhook-Url; when the run ends the gateway "
        "POSTs a signed job.completed message (the last interaction), then a poll agrees",
        _webhook,
        None,
        how="a team's receiver on loopback; the message re-signed with CASSETTE_WEBHOOK_SECRET "
        "after normalisation",
    ),
)


class GatewaySession:
    """Records through a running gateway: a team per flow, both clocks moved together."""

    def __init__(self, stack: Stack, receiver: Receiver, secrets: list[str]) -> None:
        self.stack = stack
        self.receiver = receiver
        self.secrets = secrets
        self.base_url = stack.gateway.url
        self.webhook_url = receiver.url
        self.clock = BothClocks(stack)
        self.key = ""

    def reset(self, flow: Flow) -> None:
        made = httpx.post(
            f"{self.base_url}/admin/teams",
            json={"name": f"rec-{flow.name}", "limits": dict(flow.limits)},
            headers={"x-admin-key": ADMIN_KEY},
        )
        made.raise_for_status()
        self.key = made.json()["api_key"]
        self.secrets.extend([self.key, made.json()["webhook_secret"]])
        self.receiver.received.clear()

    def client(
        self,
        *,
        key: str | None = None,
        prefer: str | None = None,
        workflow_id: str | None = None,
        retry: RetryPolicy | None = None,
    ) -> Client:
        if prefer:
            raise RuntimeError("the gateway does not pass Prefer on; force answers upstream")
        return Client(
            key or self.key,
            base_url=self.base_url,
            workflow_id=workflow_id or CHARACTER_VIDEO_WORKFLOW_ID,
            clock=self.clock,
            rng=random.Random(SEED),
            retry=retry,
        )

    def advance(self, seconds: float) -> None:
        self.clock.sleep(seconds)

    def set_credits(self, credits: float) -> None:
        raise RuntimeError("a gateway flow sets team limits (Flow.limits), not credits")

    def close(self) -> None:
        self.clock.close()


@contextlib.contextmanager
def gateway_target() -> Iterator[Target]:
    with (
        tempfile.TemporaryDirectory(prefix="record-gateway-") as tmp,
        running_stack(Path(tmp) / "gateway.sqlite", "recorder", "--seed", str(SEED)) as stack,
    ):
        receiver = Receiver()
        receiver.start()
        secrets = [UPSTREAM_KEY, ADMIN_KEY, stack.team_key]
        session = GatewaySession(stack, receiver, secrets)
        try:
            yield Target(
                session,
                secrets,
                "the gateway (python -m proxy --clock virtual, SQLite store) in front of the "
                f"fake Segmind (python -m fakeserver --clock virtual --seed {SEED}), both under "
                "uvicorn on loopback",
                Surface(
                    {
                        receiver.url: HOOK_URL,
                        stack.gateway.url: GATEWAY_BASE,
                        stack.fake.url: CANONICAL_BASE,
                    },
                    key_placeholder=TEAM_KEY_PLACEHOLDER,
                    request_headers=REQUEST_HEADERS,
                    response_headers=RESPONSE_HEADERS,
                    normalised=NORMALISED,
                ),
                finish=lambda flow, cassette, text: _add_delivery(receiver, flow, cassette, text),
            )
        finally:
            session.close()
            receiver.stop()


def _add_delivery(
    receiver: Receiver, flow: Flow, cassette: dict[str, Any], text: Callable[[str], str]
) -> None:
    """The webhook flow's delivery, as the last interaction, normalised and re-signed."""
    if flow.name != "gateway_webhook":
        return
    eventually(lambda: receiver.received, 15, "the webhook reaches the receiver")
    [received] = receiver.received
    body = text(received.body.decode())
    document = json.loads(body)
    msg_id = message_id(document["data"]["request_id"], document["type"])
    signed = sign([CASSETTE_WEBHOOK_SECRET], msg_id, FIXED_UNIX, body.encode())
    headers = {
        name: [signed.get(name) or received.headers[name]]
        for name in sorted((*WEBHOOK_HEADERS, "webhook-timestamp"))
    }
    cassette["interactions"].append(
        {
            "request": {"body": body, "headers": headers, "method": "POST", "uri": HOOK_URL},
            "response": {
                "body": {"string": ""},
                "headers": {},
                "status": {"code": 200, "message": "OK"},
            },
        }
    )
    cassette["metadata"] = {
        "webhook": f"the last interaction is the message the gateway sent to {HOOK_URL}, "
        "signed with client.cassettes.CASSETTE_WEBHOOK_SECRET at webhook-timestamp "
        f"{FIXED_UNIX}; read it with client.cassettes.recorded_webhook"
    }
