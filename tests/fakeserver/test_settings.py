"""Settings from flags, environment and TOML, in that order of precedence."""

from __future__ import annotations

from pathlib import Path

import pytest

from fakeserver.__main__ import parse_args


def test_flags_become_settings() -> None:
    settings, level = parse_args(
        ["--api-key", "k1", "--api-key", "k2", "--plan", "free", "--time-scale", "0.01"]
    )
    assert settings.api_keys == ["k1", "k2"]
    assert settings.rate_limit == 5
    assert settings.time_scale == 0.01
    assert level == "warning"


def test_environment_and_toml_fill_in_what_flags_leave(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "fake.toml"
    config.write_text('price = 2.5\nplan = "free"\napi_keys = ["from-toml"]\n')
    monkeypatch.setenv("FAKESERVER_PLAN", "pro")
    settings, _ = parse_args(["--config", str(config), "--credits", "7"])
    assert settings.price == 2.5  # TOML
    assert settings.rate_limit == 50  # the environment beats TOML
    assert settings.credits == 7  # flags beat both
    assert settings.api_keys == ["from-toml"]


def test_unknown_settings_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "fake.toml"
    config.write_text("prize = 2.5\n")
    with pytest.raises(ValueError, match="prize"):
        parse_args(["--config", str(config)])
