"""What orchestration and monitoring ask: `/healthz` (the process answers), `/readyz` (it
can reach its store) and `/metrics` (Prometheus text).

Team names and spend are the operators' business, so `GET /metrics` needs a credential:
the metrics token (`PROXY_METRICS_TOKEN`, sent by Prometheus as a bearer token) or the
admin key. With neither configured it answers 403 and says how to configure one.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from proxy.core.config import MIN_SECRET_LENGTH, MINT_COMMAND, ProxySettings
from proxy.core.errors import GatewayError, Unauthenticated
from proxy.core.keys import matches_a_secret
from proxy.edge.auth import key_attempts, operator_credential
from proxy.edge.routes import gateway_of
from proxy.services.metrics import Metrics

__all__ = ["ROUTES", "authorize_scrape", "metrics_response"]


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    gateway = gateway_of(request)
    why = await gateway.store.unready()
    if why is not None:
        # Whether the store cannot be reached or cannot be written (a full disk), no
        # submit could be admitted here: the load balancer should send it elsewhere.
        return JSONResponse(
            {"status": "unavailable", "store": "cannot admit a submit", "reason": why},
            503,
            headers={"Retry-After": "1"},
        )
    return JSONResponse({"status": "ready", "polling": gateway.runs_followed})


async def metrics(request: Request) -> Response:
    gateway = gateway_of(request)
    # Before any read of the store; a wrong key counts as one against the admin key.
    attempts, client = key_attempts(request)
    now = gateway.wall_clock.now()
    attempts.check(client, now)
    try:
        authorize_scrape(gateway.settings, request.headers)
    except Unauthenticated:
        if operator_credential(request.headers):  # a guess; no key at all guesses nothing
            attempts.failed(client, now)
        raise
    await gateway.refresh_budget_gauges()
    return metrics_response(gateway.metrics)


def metrics_response(metrics: Metrics) -> Response:
    """The answer to `GET /metrics`: the registry's text exposition."""
    body, content_type = metrics.render()
    return Response(body, headers={"content-type": content_type})


def authorize_scrape(settings: ProxySettings, headers: Headers) -> None:
    """Refuse (403/401) a scrape without the metrics token or the admin key."""
    if settings.metrics_token is None and settings.admin_key is None:
        raise GatewayError(
            "/metrics is off: it names every team and its spend, so it needs a credential. "
            f"Start the gateway with PROXY_METRICS_TOKEN set to a secret of "
            f"{MIN_SECRET_LENGTH}+ characters (make one with {MINT_COMMAND}) and scrape with "
            "Authorization: Bearer <token> (Prometheus: authorization.credentials)",
            status_code=403,
        )
    if not matches_a_secret(operator_credential(headers), settings.metrics_token,
                            settings.admin_key):  # fmt: skip
        raise Unauthenticated(
            "/metrics needs Authorization: Bearer <metrics token> (PROXY_METRICS_TOKEN), or "
            "the admin key",
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )


ROUTES = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
]
