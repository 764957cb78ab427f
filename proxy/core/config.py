"""The gateway's settings: one value object from flags, `PROXY_*` variables and TOML.

The upstream key is read from `SEGMIND_API_KEY` (or `PROXY_UPSTREAM_KEY`) and held as a
`SecretStr`, so printing the settings, or an error about them, never shows it.
"""

from __future__ import annotations

import base64
import os
import socket
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from workflows import load_modules, registered

__all__ = ["MIN_SECRET_LENGTH", "PRICE", "TEAM_KEY_PREFIX", "ProxySettings", "TeamLimits"]

PRICE = 3.9674  # dollars a run, from the product page
REAL_SEGMIND = "https://api.segmind.com"
TEAM_KEY_PREFIX = "sgw_"  # a gateway team key; never confused with a Segmind key
# An operator secret shorter than this is guessable (or a placeholder left in by mistake).
MIN_SECRET_LENGTH = 16
OUTPUTS_AUTO = "auto"  # a folder beside a SQLite store; none beside PostgreSQL
# Where Segmind's output URLs point (its CDN and the S3 buckets behind it): a guess from
# observed URLs, widened by `output_allow_hosts`.
SEGMIND_STORAGE_HOSTS = ("segmind.com", "*.segmind.com", "*.amazonaws.com", "*.cloudfront.net")
MINT_COMMAND = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'
# The variable each operator secret is read from, for errors that say what to fix.
SECRET_VARIABLES = {
    "admin_key": "PROXY_ADMIN_KEY",
    "metrics_token": "PROXY_METRICS_TOKEN",
    "upstream_events_secret": "PROXY_UPSTREAM_EVENTS_SECRET",
}


def _is_webhook_secret(value: str) -> bool:
    """whsec_ and base64 of 24 bytes or more, as Standard Webhooks signs with."""
    if not value.startswith("whsec_"):
        return False
    try:
        return len(base64.b64decode(value.removeprefix("whsec_"), validate=True)) >= 24
    except ValueError:
        return False


class TeamLimits(BaseModel):
    """A team's quotas; None means no limit."""

    submits_per_minute: int | None = Field(10, ge=0)
    polls_per_minute: int | None = Field(600, ge=0)
    max_concurrent: int | None = Field(10, ge=0)
    daily_budget: float | None = Field(100.0, ge=0)
    monthly_budget: float | None = Field(1000.0, ge=0)
    # The team's share of the company's upstream slots while others wait too (the fair
    # queue, proxy/core/fairqueue.py): a team of weight 2 gets twice a team of weight 1's.
    weight: float = Field(1.0, gt=0, le=1000)

    @field_validator("weight", mode="before")
    @classmethod
    def _no_weight_is_the_default(cls, value: object) -> object:
        # Every other limit's None is "no limit"; a share cannot be unlimited, so a team
        # set with every limit off (all None) keeps the ordinary share.
        return 1.0 if value is None else value


class ProxySettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PROXY_",
        extra="forbid",
        toml_file=None,
        populate_by_name=True,
        # A refused value may be a key: errors say what is wrong, never echo it.
        hide_input_in_errors=True,
    )

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    public_url: str | None = Field(None, description="base of poll URLs; default: served address")
    db: str = Field(
        "gateway.sqlite",
        description="the store: a path or sqlite:///path (SQLite, one machine), or "
        "postgresql://user@host:port/dbname (replicas on several machines)",
    )
    upstream_url: str | None = Field(
        None, description="Segmind's base URL; default: real Segmind when a key is set"
    )
    upstream_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("upstream_key", "SEGMIND_API_KEY", "PROXY_UPSTREAM_KEY")
    )
    upstream_auth: Literal["x-api-key", "bearer"] = "x-api-key"
    upstream_timeout: float = Field(30.0, gt=0)
    upstream_requests_per_minute: int = Field(50, ge=1)
    admin_key: SecretStr | None = Field(
        None, description="guards /admin and /metrics; unset: admin over HTTP is off"
    )
    metrics_token: SecretStr | None = Field(
        None, description="a bearer token Prometheus sends to scrape /metrics"
    )
    # Before `workflows`: pydantic validates fields in order, so the modules have registered
    # their workflows by the time the default of `workflows` is computed.
    workflow_modules: list[str] = Field(
        default_factory=list,
        description="Python modules imported at start that register more workflows",
    )
    workflows: list[str] = Field(
        default_factory=lambda: [w.id for w in registered()],
        description="the workflow ids served (default: every registered workflow)",
    )
    price: float = Field(PRICE, ge=0)
    failed_runs: Literal["charge", "refund"] = Field(
        "charge", description="what a FAILED run costs a team's budget"
    )
    cache_ttl: float = Field(3000.0, ge=0, description="seconds a COMPLETED result is reused")
    result_ttl: float = Field(
        3600.0, gt=0, description="seconds after a run's submit that polls answer 404, as Segmind"
    )
    cache_scope: Literal["team", "shared"] = "team"
    idempotency_ttl: float = Field(86400.0, gt=0)
    max_body_bytes: int = Field(65536, ge=1024)
    header_timeout: float = Field(
        5.0, gt=0, le=300, description="seconds a connection has to send a whole request head"
    )
    body_timeout: float = Field(
        15.0, gt=0, le=600, description="seconds after its head a whole request body must arrive"
    )
    max_connections: int = Field(
        1000, ge=1, description="open client connections; past it a new one is answered 503"
    )
    max_connections_per_client: int = Field(
        100, ge=0, description="open connections from one address (429 past it); 0: no cap"
    )
    max_head_bytes: int = Field(
        32768, ge=1024, description="bytes of one request head (line and headers); 431 past it"
    )
    poll_interval: float = Field(7.0, gt=0, description="seconds between upstream polls")
    expected_run_seconds: float = Field(673.9, gt=0)
    give_up_after: float = Field(
        900.0, gt=0, description="seconds of failing upstream polls before a run is failed"
    )
    generation_deadline: float = Field(
        7200.0, gt=0, description="seconds after submit when an unfinished run is given up"
    )
    default_limits: TeamLimits = Field(default_factory=TeamLimits)
    poll_schedule: Literal["adaptive", "fixed"] = Field(
        "adaptive", description="adaptive: learn run durations; fixed: every poll_interval"
    )
    poll_target_delay: float = Field(
        7.0, gt=0, description="adaptive: mean seconds between a run ending and the gateway knowing"
    )
    poll_min_interval: float = Field(2.0, gt=0)
    upstream_events_secret: SecretStr | None = Field(
        None,
        description="the last part of the URL Segmind's account webhook calls, "
        "/upstream/events/<secret> (16+ characters); unset: that endpoint is off (404)",
    )
    upstream_events_poll_delay: float = Field(
        180.0,
        gt=0,
        description="with upstream events on: the mean detection delay the schedule aims at, "
        "that is for a run whose notification is lost (the others are polled on arrival)",
    )
    webhook_timeout: float = Field(
        15.0,
        gt=0,
        description="seconds one webhook attempt may take in all (connect, send, answer)",
    )
    webhook_schedule: list[float] = Field(
        default_factory=lambda: [0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0],
        description="seconds before each attempt (first: 0), each with +-20% jitter",
    )
    webhook_secret_overlap: float = Field(
        86400.0, ge=0, description="seconds the old secret keeps signing after a rotation"
    )
    webhook_concurrency: int = Field(64, ge=1)
    webhook_allow_networks: list[str] = Field(
        default_factory=list,
        description='networks webhooks may reach though not public, e.g. ["127.0.0.0/8"]',
    )
    image_preflight: bool = Field(
        True,
        description="before a paid run, fetch the start of Character_Image and refuse (400) "
        "a URL that is dead, not a JPEG/PNG/WebP, too large or internal; off: for images "
        "only Segmind can reach (serve --with-fake turns it off unless set)",
    )
    image_preflight_timeout: float = Field(
        5.0, gt=0, le=60, description="seconds the whole image check may take (DNS to bytes)"
    )
    image_preflight_cache_seconds: float = Field(
        600.0, ge=0, description="seconds a good image URL is remembered (a bad one: 30 s at most)"
    )
    image_max_bytes: int = Field(
        20_000_000, ge=1, description="largest Character_Image, by its declared size"
    )
    image_allow_networks: list[str] = Field(
        default_factory=list,
        description='networks an image may be fetched from though not public, e.g. ["10.0.0.0/8"]',
    )
    # -- outputs the gateway keeps (proxy/objects/, proxy/services/mirror.py) ----------
    outputs: str = Field(
        OUTPUTS_AUTO,
        description="where completed runs' videos are kept: a folder path, "
        "s3://bucket/prefix (credentials, region and endpoint from the AWS_* variables), "
        "or none; default: a folder `outputs` beside a SQLite store, none with PostgreSQL",
    )
    outputs_serve: Literal["proxy", "redirect"] = Field(
        "proxy", description="S3 outputs: streamed through the gateway, or a presigned redirect"
    )
    output_max_bytes: int = Field(
        500_000_000, ge=1, description="largest output copied; a larger one is left at Segmind"
    )
    output_max_total_bytes: int | None = Field(
        None, ge=1, description="bytes all kept outputs may take; the oldest unused go first"
    )
    output_retention: float = Field(
        30 * 86400.0, gt=0, description="seconds a kept output lives after its last use"
    )
    output_url_ttl: float = Field(
        86400.0, gt=0, description="seconds a signed output URL handed out stays valid"
    )
    mirror_deadline: float = Field(
        300.0,
        gt=0,
        description="seconds a completed run waits for its outputs to be copied; past it the "
        "run completes with Segmind's URLs and the copy is retried later",
    )
    mirror_file_timeout: float = Field(
        120.0, gt=0, description="seconds one output's copy may take in all (DNS to last byte)"
    )
    mirror_attempts: int = Field(3, ge=1, le=10, description="tries per output in one copy")
    output_allow_hosts: list[str] = Field(
        default_factory=lambda: list(SEGMIND_STORAGE_HOSTS),
        description='hosts outputs are copied from ("*.example.com" matches its subdomains)',
    )
    output_allow_networks: list[str] = Field(
        default_factory=list,
        description='networks outputs may be copied from though not public, e.g. ["127.0.0.0/8"]',
    )
    forwarded_allow_ips: list[str] = Field(
        default_factory=list,
        description='addresses of the proxies in front (nginx), e.g. ["127.0.0.1"]: only '
        "from these are X-Forwarded-For and X-Forwarded-Proto believed (uvicorn's "
        "forwarded_allow_ips); empty: none, the connection's peer is the client",
    )
    credits_check_interval: float = Field(
        300.0,
        gt=0,
        description="seconds between readings of the company's Segmind balance (also read "
        "after an upstream 406); each reading takes one slot of the upstream budget",
    )
    credits_alert_runs: int = Field(
        50,
        ge=0,
        description="send account.credits_low when the Segmind balance falls under this many "
        "runs' worth (0: never)",
    )
    company_webhook_url: str | None = Field(
        None,
        description="where the company's own events go (account.credits_low), signed with "
        "company_webhook_secret; unset: none are sent",
    )
    company_webhook_secret: SecretStr | None = Field(
        None,
        description="the Standard Webhooks secret (whsec_...) that signs the company's events",
    )
    clock: Literal["system", "virtual"] = "system"
    instance_id: str | None = Field(
        None,
        description="this process's name among gateways sharing the store; keep it across "
        "restarts, unique among live processes (default: host name and port)",
    )
    lease_seconds: float = Field(
        30.0,
        gt=0,
        description="real seconds after a process's last heartbeat before another process "
        "takes over polling its runs",
    )
    log_level: str = "INFO"
    log_polls: bool = Field(
        False, description="also log successful polls (every other request is always logged)"
    )

    @field_validator("admin_key", "metrics_token", "upstream_events_secret")
    @classmethod
    def _a_secret_is_long_enough(cls, value: SecretStr | None, info: Any) -> SecretStr | None:
        # An empty key would match an empty header: "set but empty" must not mean "open".
        if value is not None and len(value.get_secret_value().strip()) < MIN_SECRET_LENGTH:
            variable = SECRET_VARIABLES[info.field_name]
            state = "empty" if not value.get_secret_value().strip() else "too short"
            raise ValueError(
                f"{variable} is set but {state}: a secret needs {MIN_SECRET_LENGTH} characters "
                f"or more; make one with {MINT_COMMAND}, or unset {variable} to turn it off"
            )
        return value

    @field_validator("workflow_modules")
    @classmethod
    def _load_workflow_modules(cls, value: list[str]) -> list[str]:
        load_modules(value)
        return value

    @field_validator("upstream_key")
    @classmethod
    def _a_segmind_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        key = value.get_secret_value().strip()
        if not key:
            raise ValueError(
                "SEGMIND_API_KEY is set but empty: set it to your Segmind API key, or unset "
                "it (`unset SEGMIND_API_KEY`) to run against the fake with --with-fake"
            )
        # The client CLI reads a gateway team key from the same variable: in a shell set
        # up to call the gateway, it would send a key Segmind can never accept.
        if key.startswith(TEAM_KEY_PREFIX):
            raise ValueError(
                f"SEGMIND_API_KEY holds a gateway team key ({TEAM_KEY_PREFIX}...), which is "
                "what clients send to this gateway, not what the gateway sends to Segmind. "
                "For the fake upstream start without it (`env -u SEGMIND_API_KEY make run`); "
                "for real Segmind set SEGMIND_API_KEY (or PROXY_UPSTREAM_KEY) to your "
                "Segmind API key"
            )
        return value

    @model_validator(mode="after")
    def _company_events_are_signed(self) -> ProxySettings:
        # An unsigned event about the company's money is one anybody could forge.
        secret = self.company_webhook_secret
        if self.company_webhook_url and not secret:
            raise ValueError(
                "company_webhook_url is set without company_webhook_secret: set "
                "PROXY_COMPANY_WEBHOOK_SECRET to a Standard Webhooks secret (whsec_ and base64, "
                "e.g. from `python -c 'import proxy.core.webhooks as w; print(w.new_secret())'`)"
            )
        if secret is not None and not _is_webhook_secret(secret.get_secret_value()):
            raise ValueError(
                "company_webhook_secret must be whsec_ followed by base64 of 24 bytes or more"
            )
        return self

    @model_validator(mode="after")
    def _results_outlive_the_cache(self) -> ProxySettings:
        # A cache HIT must leave the team time to fetch the videos before they expire.
        if self.cache_ttl >= self.result_ttl:
            raise ValueError(
                f"cache_ttl ({self.cache_ttl:g} s) must be below result_ttl "
                f"({self.result_ttl:g} s): a cached result would be handed out already expired"
            )
        return self

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def instance(self) -> str:
        """This process's instance id: the configured one, or host name and port."""
        return self.instance_id or f"{socket.gethostname()}:{self.port}"

    @property
    def outputs_target(self) -> str | None:
        """Where outputs are kept: a folder path or an s3:// URL; None when they are not
        (`none`, or the default beside a PostgreSQL store, whose replicas share no folder)."""
        value = self.outputs.strip()
        if value.lower() == "none":
            return None
        if value != OUTPUTS_AUTO:
            return value
        if self.db.startswith(("postgresql://", "postgres://")):
            return None
        path = self.db.removeprefix("sqlite:///")
        return os.path.join(os.path.dirname(os.path.abspath(path)), "outputs")

    @property
    def upstream_base_url(self) -> str:
        return (self.upstream_url or REAL_SEGMIND).rstrip("/")

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
    def load(cls, config: str | None = None, **values: Any) -> ProxySettings:
        """Settings from `values`, the environment and a TOML file (`PROXY_CONFIG`)."""
        config = config or os.environ.get("PROXY_CONFIG")
        if not config:
            return cls(**values)
        if not os.path.isfile(config):
            raise ValueError(f"config file {config!r} does not exist")
        with_file = type(
            cls.__name__, (cls,), {"model_config": {**cls.model_config, "toml_file": config}}
        )
        return with_file(**values)  # type: ignore[no-any-return]
