"""The pytest plugin (entry point `pytest11`, name `segmind`): fixtures for code that calls
Segmind, from `pip install 'segmind-character-gateway[testing]'`.

- `segmind_fake`: `mock_segmind()` active for the test; the `SegmindMock` handle.
- `segmind_server`: the fake as a process on a free loopback port (`FakeServer`).
- `segmind_gateway`: the gateway as a process in front of `segmind_server`, with a team key
  (`Gateway`).

Options, for all three: `@pytest.mark.segmind(plan="free", credits=5, failure_rate=0.5,
time_scale=0.01, ...)` (any `FakeSettings` field), or `indirect` parametrization with a
dict of the same; `advance_on_sleep=True` applies to `segmind_fake`, `team_limits={...}`
to `segmind_gateway`.

Loaded into every pytest run of an environment that has the package, so it must change
nothing until a fixture is asked for: at import it registers the marker and imports nothing
but pytest; each fixture imports what it needs when it runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from fakeserver.testing import SegmindMock
    from fakeserver.testing.gateway import Gateway
    from fakeserver.testing.server import FakeServer

__all__ = ["segmind_fake", "segmind_gateway", "segmind_server"]

MARKER = "segmind"
FAKE_ONLY = ("advance_on_sleep",)
GATEWAY_ONLY = ("team_limits",)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(**options): options of the segmind_fake/segmind_server/segmind_gateway "
        "fixtures: any FakeSettings field (plan, credits, failure_rate, time_scale, seed, "
        "api_keys...), advance_on_sleep (segmind_fake), team_limits (segmind_gateway)",
    )


def _options(request: pytest.FixtureRequest, drop: tuple[str, ...]) -> dict[str, Any]:
    """The test's `segmind` marker, then an `indirect` parameter, minus `drop`."""
    options: dict[str, Any] = {}
    for marker in reversed(list(request.node.iter_markers(MARKER))):  # closest wins
        if marker.args:
            pytest.fail(f"@pytest.mark.{MARKER} takes keyword options only", pytrace=False)
        options.update(marker.kwargs)
    param = getattr(request, "param", None)
    if param is not None:
        if not isinstance(param, dict):
            pytest.fail(f"{request.fixturename}: an indirect parameter must be a dict of "
                        f"options; got {param!r}", pytrace=False)  # fmt: skip
        options.update(param)
    return {k: v for k, v in options.items() if k not in drop}


def _testing() -> None:
    """Fail clearly, not with an ImportError deep in a fixture, without the extra."""
    try:
        import responses  # noqa: F401
        import respx  # noqa: F401
    except ImportError as exc:
        pytest.fail(
            f"the segmind fixtures need the testing extra ({exc.name} is missing): "
            "pip install 'segmind-character-gateway[testing]'",
            pytrace=False,
        )


def _bad_options(fixture: str, exc: Exception) -> None:
    pytest.fail(f"{fixture}: bad @pytest.mark.{MARKER} options: {exc}", pytrace=False)


@pytest.fixture
def segmind_fake(request: pytest.FixtureRequest) -> Iterator[SegmindMock]:
    """Segmind's hosts answered in-process for this test (`mock_segmind()`); its handle."""
    _testing()
    from fakeserver.testing import mock_segmind

    try:
        mock = mock_segmind(**_options(request, GATEWAY_ONLY))
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        _bad_options("segmind_fake", exc)
        raise
    with mock as handle:
        yield handle


@pytest.fixture
def segmind_server(request: pytest.FixtureRequest) -> Iterator[FakeServer]:
    """The fake as a process on a free loopback port, virtual clock, any key accepted."""
    _testing()
    from fakeserver.testing.server import FakeServer

    try:
        server = FakeServer(**_options(request, FAKE_ONLY + GATEWAY_ONLY))
    except ValueError as exc:
        _bad_options("segmind_server", exc)
        raise
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def segmind_gateway(
    request: pytest.FixtureRequest, segmind_server: FakeServer
) -> Iterator[Gateway]:
    """The gateway in front of `segmind_server`, with team "tests" and its `api_key`."""
    from fakeserver.testing.gateway import Gateway

    limits = _options(request, ()).get("team_limits")
    gateway = Gateway(segmind_server, limits=limits)
    try:
        yield gateway
    finally:
        gateway.stop()
