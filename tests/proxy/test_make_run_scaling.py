"""`make run`'s embedded fake is time-scaled: the company budget scales with it, and the
fake is started with a plan equal to that budget, so a demo can never draw a 429 (issue
10, item 16). The end-to-end check is tests/e2e/test_upstream_budget_processes.py."""

from __future__ import annotations

from proxy.cli.serve import _scaled_for, _with_plan
from proxy.core.config import ProxySettings


def test_the_budget_scales_with_the_fake_and_the_fake_gets_it_as_its_plan() -> None:
    settings = ProxySettings(upstream_requests_per_minute=50)
    args = ["--time-scale", "0.01"]
    scaled = _scaled_for(args, settings)
    assert scaled["upstream_requests_per_minute"] == 5000
    assert _with_plan(args, scaled, settings) == [*args, "--plan", "5000"]


def test_a_plan_given_to_the_fake_is_kept_and_caps_the_budget() -> None:
    settings = ProxySettings(upstream_requests_per_minute=50)
    args = ["--time-scale", "0.01", "--plan", "20"]
    scaled = _scaled_for(args, settings)
    assert scaled["upstream_requests_per_minute"] == 20
    assert _with_plan(args, scaled, settings) == args


def test_a_named_plan_caps_the_budget_too() -> None:
    settings = ProxySettings(upstream_requests_per_minute=50)
    scaled = _scaled_for(["--time-scale", "0.01", "--plan", "pro"], settings)
    assert scaled["upstream_requests_per_minute"] == 50
