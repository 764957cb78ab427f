"""The gateway's Prometheus metrics, in a registry each `Metrics` object owns.

Every gateway app gets its own `CollectorRegistry`, never prometheus_client's global one, so
several apps can live in one process (tests) without "Duplicated timeseries" errors.

Labels never carry keys: `team` is the team's *name* (or "-" before authentication), and
`route`, `result` and `kind` come from small fixed sets checked here, so label cardinality
stays bounded and no caller can smuggle a key or a path into a label by accident. Callers
must pass team names, never team keys: the label is used verbatim.

Who may read them is the edge's business (`proxy/edge/probes.py`).
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import suppress
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from proxy.rules.alerts import PERIODS, BudgetUse

__all__ = [
    "CACHE_RESULTS",
    "HINT_RESULTS",
    "NO_TEAM",
    "REQUEST_BUCKETS",
    "ROUTES",
    "UPSTREAM_KINDS",
    "Metrics",
]

PREFIX = "segmind_gateway"
ROUTES = ("submit", "poll", "credits", "admin", "other")
CACHE_RESULTS = ("HIT", "JOIN", "MISS")
UPSTREAM_KINDS = ("submit", "poll", "credits")
HINT_RESULTS = ("received", "matched", "ignored")
NO_TEAM = "-"  # the team label of a request that was not (yet) authenticated
# From a cache hit answered in a millisecond to an upstream call that takes seconds.
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _one_of(what: str, value: str, valid: tuple[str, ...]) -> str:
    value = str(value)  # a StrEnum member becomes its plain value
    if value not in valid:
        raise ValueError(f"unknown {what} {value!r}: expected one of {', '.join(valid)}")
    return value


def _team(team: str | None) -> str:
    return NO_TEAM if team is None or team == "" else str(team)


class Metrics:
    """The gateway's counters, gauge and histogram, all in `self.registry`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._requests = Counter(
            f"{PREFIX}_requests",
            "Requests answered by the gateway, by route, HTTP status and team name.",
            ["route", "status", "team"],
            registry=self.registry,
        )
        self._cache = Counter(
            f"{PREFIX}_cache",
            "Submits by cache outcome (HIT: finished generation, JOIN: one in flight, MISS: paid).",
            ["result", "team"],
            registry=self.registry,
        )
        self._upstream = Counter(
            f"{PREFIX}_upstream_calls",
            "Calls to Segmind, by kind and HTTP status or error class name.",
            ["kind", "status"],
            registry=self.registry,
        )
        self._spent = Counter(
            f"{PREFIX}_dollars_spent",
            "Dollars charged upstream for generations, by team name.",
            ["team"],
            registry=self.registry,
        )
        self._saved = Counter(
            f"{PREFIX}_dollars_saved",
            "Dollars not spent thanks to cache hits and joins, by team name.",
            ["team"],
            registry=self.registry,
        )
        self._hints = Counter(
            f"{PREFIX}_upstream_hints",
            "Notifications from Segmind: received; matched (a followed run polled early); "
            "ignored (naming no run that still had its early poll).",
            ["result"],
            registry=self.registry,
        )
        self._in_flight = Gauge(
            f"{PREFIX}_generations_in_flight",
            "Paid generations submitted upstream and not yet finished.",
            registry=self.registry,
        )
        self._budget_spent = Gauge(
            f"{PREFIX}_budget_spent_dollars",
            "Dollars a team has spent in the current UTC day or month (its budget's period).",
            ["team", "period"],
            registry=self.registry,
        )
        self._budget_used = Gauge(
            f"{PREFIX}_budget_used_ratio",
            "A team's spend over its daily or monthly budget (1.0: exhausted); only where set.",
            ["team", "period"],
            registry=self.registry,
        )
        self._output_copies = Counter(
            f"{PREFIX}_output_copies",
            "Completed runs whose outputs were copied (kept) or not (failed).",
            ["result"],
            registry=self.registry,
        )
        self._output_copy_seconds = Histogram(
            f"{PREFIX}_output_copy_seconds",
            "Time one run's outputs took to copy into the output store, by result.",
            ["result"],
            buckets=(0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0),
            registry=self.registry,
        )
        self._output_bytes = Gauge(
            f"{PREFIX}_output_bytes_stored",
            "Bytes of the outputs the gateway keeps (as its store last counted them).",
            registry=self.registry,
        )
        self._output_objects = Gauge(
            f"{PREFIX}_output_objects_stored",
            "Output files the gateway keeps (identical bytes counted once).",
            registry=self.registry,
        )
        self._credits = Gauge(
            f"{PREFIX}_upstream_credits",
            "The company's Segmind balance (credits and free credits): the last reading "
            "less the runs sent since.",
            registry=self.registry,
        )
        self._credits_hours = Gauge(
            f"{PREFIX}_upstream_credits_hours_left",
            "Hours the Segmind balance lasts at the last hour's spend (+Inf: no spend).",
            registry=self.registry,
        )
        self._request_children: dict[tuple[str, int | str, str | None], tuple[Any, Any]] = {}
        self._request_seconds = Histogram(
            f"{PREFIX}_request_seconds",
            "Time the gateway took to answer a request, by route.",
            ["route"],
            buckets=REQUEST_BUCKETS,
            registry=self.registry,
        )

    def observe_request(
        self, route: str, status: int | str, team: str | None, seconds: float
    ) -> None:
        """Count one answered request and its duration; `team` is a name, None if unknown."""
        # The hot path: labelled children are looked up once per label set, then reused.
        key = (route, status, team)
        children = self._request_children.get(key)
        if children is None:
            checked = _one_of("route", route, ROUTES)
            children = (
                self._requests.labels(route=checked, status=str(status), team=_team(team)),
                self._request_seconds.labels(route=checked),
            )
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def cache(self, result: str, team: str | None) -> None:
        result = _one_of("cache result", result, CACHE_RESULTS)
        self._cache.labels(result=result, team=_team(team)).inc()

    def upstream(self, kind: str, status: int | str) -> None:
        """Count one upstream call; `status` is the HTTP code or an error class name."""
        kind = _one_of("upstream kind", kind, UPSTREAM_KINDS)
        self._upstream.labels(kind=kind, status=str(status)).inc()

    def hint(self, result: str, count: int = 1) -> None:
        self._hints.labels(result=_one_of("hint result", result, HINT_RESULTS)).inc(count)

    def spent(self, team: str | None, dollars: float) -> None:
        self._spent.labels(team=_team(team)).inc(dollars)

    def saved(self, team: str | None, dollars: float) -> None:
        self._saved.labels(team=_team(team)).inc(dollars)

    def set_budgets(self, uses: Iterable[BudgetUse]) -> None:
        """Each team's spend now, read from the store at each scrape: the store is shared
        by every replica, so this process's own admissions alone would under-count."""
        for use in uses:
            period = _one_of("budget period", use.period, PERIODS)
            self._budget_spent.labels(team=_team(use.team), period=period).set(use.spent)
            fraction = use.fraction
            if fraction is not None:
                self._budget_used.labels(team=_team(use.team), period=period).set(fraction)
            else:  # a budget removed since the last scrape: no ratio to show any more
                with suppress(KeyError):
                    self._budget_used.remove(_team(use.team), period)

    def set_balance(self, credits: float, hours_left: float | None) -> None:
        self._credits.set(credits)
        self._credits_hours.set(float("inf") if hours_left is None else hours_left)

    def set_in_flight(self, n: int) -> None:
        self._in_flight.set(n)

    def upstream_calls(self) -> list[tuple[str, str, float]]:
        """(kind, status, count) of this process's upstream calls so far, sorted."""
        found = []
        for metric in self.registry.collect():
            if metric.name.endswith("_upstream_calls"):
                found += [
                    (s.labels["kind"], s.labels["status"], s.value)
                    for s in metric.samples
                    if s.name.endswith("_total")
                ]
        return sorted(found)

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition of this registry, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def output_copy(self, kept: bool, seconds: float) -> None:
        result = "kept" if kept else "failed"
        self._output_copies.labels(result).inc()
        self._output_copy_seconds.labels(result).observe(seconds)

    def set_outputs_stored(self, objects: int, total_bytes: int) -> None:
        self._output_objects.set(objects)
        self._output_bytes.set(total_bytes)
