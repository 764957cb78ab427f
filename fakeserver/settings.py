"""The fake's settings: one value object, from arguments, `FAKESERVER_*` variables or TOML.

Precedence, highest first: values passed in code (the command line passes its flags this
way), environment variables (`FAKESERVER_PRICE=2.5`; lists as JSON), the TOML file named by
`FAKESERVER_CONFIG` or `--config`, then the defaults below.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from workflows import load_modules

from .accounts import parse_plan
from .catalog import UnknownInputPolicy

__all__ = ["DEMO_KEY", "FakeSettings"]

# The key `make run` accepts when none is given: a fake's key, printed at start-up.
DEMO_KEY = "fake-demo-key"
PRICE = 3.9674  # dollars a run, from the product page
MEDIAN_SECONDS = 673.9  # submit to COMPLETED, from the product page
RESULT_TTL_SECONDS = 3600.0  # results are kept about an hour after submission
OUTPUT_TTL_SECONDS = 7 * 86400.0  # output files are deleted 7 days after inference


class FakeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FAKESERVER_", extra="forbid", toml_file=None)

    host: str = "127.0.0.1"
    port: int = Field(8001, ge=0, le=65535)
    public_url: str | None = Field(
        None, description="base of poll and asset URLs; default: the address served on"
    )
    api_keys: list[str] = Field(default_factory=list)
    restricted_keys: list[str] = Field(
        default_factory=list, description="keys that authenticate but may run no workflow (403)"
    )
    any_key: bool = Field(
        False, description="accept every key, each an account of its own from its first use"
    )
    credits: float = Field(1000.0, ge=0)
    price: float = Field(PRICE, ge=0)
    plan: str = Field("pro", description="free (5/min), pro (50/min), unlimited, or a number")
    duration_median: float = Field(MEDIAN_SECONDS, gt=0)
    duration_sigma: float = Field(0.2, ge=0)
    duration_min: float = Field(300.0, ge=0)
    duration_max: float = Field(1800.0, gt=0)
    time_scale: float = Field(1.0, gt=0, description="multiplies run durations; 0.01: ~7 s runs")
    queued_fraction: float = Field(0.03, ge=0, lt=1, description="share of a run spent QUEUED")
    result_ttl: float = Field(RESULT_TTL_SECONDS, gt=0)
    failure_rate: float = Field(0.0, ge=0, le=1, description="chance that a job ends FAILED")
    failure_key: Literal["error_message", "error", "both"] = "error_message"
    dead_image_hosts: list[str] = Field(
        default_factory=list,
        description="hosts whose Character_Image the fake cannot load: such a run is accepted "
        "and charged, then ends FAILED early in its run, as Segmind does",
    )
    notify_url: str | None = Field(
        None,
        description="POST a GRAPH_RUN-like notification here when a run ends (a guess at "
        "Segmind's account webhook, whose payload is undocumented)",
    )
    notify_delay: float = Field(0.0, ge=0, description="seconds of the clock after a run ends")
    notify_drop_rate: float = Field(
        0.0, ge=0, le=1, description="share of notifications never sent (seeded by --seed)"
    )
    unknown_inputs: UnknownInputPolicy = UnknownInputPolicy.REJECT
    output_keys: list[str] | None = None
    workflow_modules: list[str] = Field(
        default_factory=list, description="modules imported at start that register workflows"
    )
    output_ttl: float = Field(
        OUTPUT_TTL_SECONDS,
        gt=0,
        description="seconds a run's output files are served after it completes (then 404)",
    )
    asset_bytes: int | None = Field(
        None,
        ge=1,
        description="size of each output file (the video, then filler); default: "
        "the bundled videos as they are",
    )
    asset_bytes_per_second: float | None = Field(
        None, gt=0, description="serve output files no faster than this (a slow storage host)"
    )
    seed: int | None = None
    admin_token: str | None = None
    clock: Literal["system", "virtual"] = "system"
    journal_size: int = Field(10_000, ge=1)
    state_file: str | None = Field(
        None, description="keep jobs, credits and a virtual clock's time here across restarts"
    )
    chaos_error_rate: float = Field(0.0, ge=0, le=1)
    chaos_fault_rate: float = Field(0.0, ge=0, le=1)
    chaos_delay_rate: float = Field(0.0, ge=0, le=1)
    chaos_delay_ms: float = Field(200.0, ge=0)
    chaos_delay_kind: Literal["fixed", "lognormal", "trickle"] = "fixed"

    @field_validator("notify_url")
    @classmethod
    def _an_http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"notify_url must be an http(s) URL; got {value!r}")
        return value

    @field_validator("plan")
    @classmethod
    def _known_plan(cls, value: str) -> str:
        parse_plan(value)
        return value

    @field_validator("workflow_modules")
    @classmethod
    def _load_workflow_modules(cls, value: list[str]) -> list[str]:
        load_modules(value)  # the catalog is every registered workflow
        return value

    @property
    def rate_limit(self) -> int:
        return parse_plan(self.plan)

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, TomlConfigSettingsSource(settings_cls)

    @classmethod
    def load(cls, config: str | None = None, **values: Any) -> FakeSettings:
        """Settings from `values`, the environment and a TOML file (`FAKESERVER_CONFIG`)."""
        config = config or os.environ.get("FAKESERVER_CONFIG")
        if not config:
            return cls(**values)
        if not os.path.isfile(config):
            raise ValueError(f"config file {config!r} does not exist")
        with_file = type(
            cls.__name__, (cls,), {"model_config": {**cls.model_config, "toml_file": config}}
        )
        return with_file(**values)  # type: ignore[no-any-return]
