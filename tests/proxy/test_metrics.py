from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

import proxy.services.metrics
from proxy.edge.probes import metrics_response
from proxy.services.metrics import (
    CACHE_RESULTS,
    NO_TEAM,
    REQUEST_BUCKETS,
    ROUTES,
    UPSTREAM_KINDS,
    Metrics,
)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(metrics: Metrics) -> Samples:
    """Every sample of the rendered text, keyed by name and labels."""
    body, _ = metrics.render()
    found: Samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            found[sample.name, frozenset(sample.labels.items())] = sample.value
    return found


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return samples(metrics).get((name, frozenset(labels.items())))


class CacheStatus(StrEnum):  # the shape of the store's own enum
    HIT = "HIT"


def test_exports_are_defined() -> None:
    assert sorted(proxy.services.metrics.__all__) == sorted(set(proxy.services.metrics.__all__))
    for name in proxy.services.metrics.__all__:
        assert hasattr(proxy.services.metrics, name)


def test_requests_are_counted_by_route_status_and_team() -> None:
    metrics = Metrics()
    metrics.observe_request("submit", 200, "team-a", 0.02)
    metrics.observe_request("submit", 200, "team-a", 0.03)
    metrics.observe_request("poll", "404", "team-b", 0.001)
    metrics.observe_request("other", 401, None, 0.001)

    name = "segmind_gateway_requests_total"
    assert value(metrics, name, route="submit", status="200", team="team-a") == 2.0
    assert value(metrics, name, route="poll", status="404", team="team-b") == 1.0
    assert value(metrics, name, route="other", status="401", team=NO_TEAM) == 1.0
    assert value(metrics, name, route="submit", status="200", team="team-b") is None


def test_cache_outcomes_are_counted_per_team() -> None:
    metrics = Metrics()
    for result in CACHE_RESULTS:
        metrics.cache(result, "team-a")
    metrics.cache(CacheStatus.HIT, "team-a")

    name = "segmind_gateway_cache_total"
    assert value(metrics, name, result="HIT", team="team-a") == 2.0
    assert value(metrics, name, result="JOIN", team="team-a") == 1.0
    assert value(metrics, name, result="MISS", team="team-a") == 1.0


def test_upstream_calls_are_counted_by_status_or_error_class() -> None:
    metrics = Metrics()
    metrics.upstream("submit", 200)
    metrics.upstream("poll", 200)
    metrics.upstream("poll", 200)
    metrics.upstream("credits", "ConnectError")

    name = "segmind_gateway_upstream_calls_total"
    assert value(metrics, name, kind="submit", status="200") == 1.0
    assert value(metrics, name, kind="poll", status="200") == 2.0
    assert value(metrics, name, kind="credits", status="ConnectError") == 1.0


def test_dollars_spent_and_saved_add_up_per_team() -> None:
    metrics = Metrics()
    metrics.spent("team-a", 3.97)
    metrics.spent("team-a", 3.97)
    metrics.saved("team-a", 3.97)
    metrics.saved("team-b", 0.5)

    assert value(metrics, "segmind_gateway_dollars_spent_total", team="team-a") == pytest.approx(
        7.94
    )
    assert value(metrics, "segmind_gateway_dollars_saved_total", team="team-a") == 3.97
    assert value(metrics, "segmind_gateway_dollars_saved_total", team="team-b") == 0.5
    with pytest.raises(ValueError, match="non-negative"):
        metrics.spent("team-a", -1.0)


def test_in_flight_gauge_is_set_not_added() -> None:
    metrics = Metrics()
    assert value(metrics, "segmind_gateway_generations_in_flight") == 0.0
    metrics.set_in_flight(3)
    metrics.set_in_flight(1)
    assert value(metrics, "segmind_gateway_generations_in_flight") == 1.0


def test_request_seconds_histogram_buckets_by_route() -> None:
    metrics = Metrics()
    metrics.observe_request("poll", 200, "team-a", 0.002)
    metrics.observe_request("poll", 200, "team-a", 0.3)
    metrics.observe_request("submit", 502, "team-a", 20.0)

    name = "segmind_gateway_request_seconds"
    found = samples(metrics)
    poll_buckets = {
        dict(labels)["le"]: count
        for (sample, labels), count in found.items()
        if sample == f"{name}_bucket" and ("route", "poll") in labels
    }
    assert [float(le) for le in poll_buckets] == [*REQUEST_BUCKETS, float("inf")]
    assert poll_buckets["0.001"] == 0.0
    assert poll_buckets["0.0025"] == 1.0
    assert poll_buckets["0.25"] == 1.0
    assert poll_buckets["0.5"] == 2.0
    assert poll_buckets["+Inf"] == 2.0
    assert value(metrics, f"{name}_count", route="poll") == 2.0
    assert value(metrics, f"{name}_sum", route="poll") == pytest.approx(0.302)
    assert value(metrics, f"{name}_bucket", route="submit", le="10.0") == 0.0
    assert value(metrics, f"{name}_bucket", route="submit", le="+Inf") == 1.0


def test_two_instances_are_independent_and_stay_out_of_the_global_registry() -> None:
    first, second = Metrics(), Metrics()
    first.observe_request("submit", 200, "team-a", 0.01)
    first.set_in_flight(5)

    name = "segmind_gateway_requests_total"
    assert value(first, name, route="submit", status="200", team="team-a") == 1.0
    assert value(second, name, route="submit", status="200", team="team-a") is None
    assert value(second, "segmind_gateway_generations_in_flight") == 0.0
    assert REGISTRY.get_sample_value("segmind_gateway_generations_in_flight") is None


@pytest.mark.parametrize(
    ("call", "valid"),
    [
        (lambda m: m.observe_request("/workflows/x", 200, "a", 0.1), ROUTES),
        (lambda m: m.cache("hit", "a"), CACHE_RESULTS),
        (lambda m: m.upstream("admin", 200), UPSTREAM_KINDS),
    ],
    ids=["route", "cache-result", "upstream-kind"],
)
def test_labels_outside_their_fixed_set_are_refused(
    call: Callable[[Metrics], None], valid: tuple[str, ...]
) -> None:
    metrics = Metrics()
    with pytest.raises(ValueError, match="expected one of") as caught:
        call(metrics)
    for name in valid:
        assert name in str(caught.value)
    body, _ = metrics.render()
    assert b"/workflows/x" not in body


def test_team_label_is_used_verbatim() -> None:
    # The label is whatever the caller passes: callers pass team *names*, never keys.
    team = 'Team "Ünïcode" / a\\b'
    metrics = Metrics()
    metrics.cache("MISS", team)
    assert value(metrics, "segmind_gateway_cache_total", result="MISS", team=team) == 1.0
    metrics.cache("MISS", "")
    assert value(metrics, "segmind_gateway_cache_total", result="MISS", team=NO_TEAM) == 1.0


def test_metrics_response_serves_the_rendered_text() -> None:
    metrics = Metrics()
    metrics.upstream("submit", 200)
    response = metrics_response(metrics)
    body, content_type = metrics.render()
    assert response.status_code == 200
    assert response.headers["content-type"] == content_type
    assert content_type.startswith("text/plain")
    assert response.body == body
    assert b'segmind_gateway_upstream_calls_total{kind="submit",status="200"} 1.0' in body
