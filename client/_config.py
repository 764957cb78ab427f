"""Settings of a client as one value object, with the defaults as named constants.

The API key lives in `ApiKey`, whose `repr` and `str` never show it: the only way to
read the secret is `ApiKey.reveal()`, called where the auth header is built.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from workflows import CHARACTER_VIDEO

from ._errors import ConfigError
from ._retry import RetryPolicy

__all__ = [
    "API_KEY_ENV",
    "BASE_URL_ENV",
    "CHARACTER_VIDEO_WORKFLOW_ID",
    "DEFAULT_BASE_URL",
    "DEFAULT_POLL_INTERVAL",
    "DEFAULT_TIMEOUT",
    "DEFAULT_WAIT_TIMEOUT",
    "EXPECTED_RUN_COST",
    "EXPECTED_RUN_SECONDS",
    "ApiKey",
    "AuthStyle",
    "ClientConfig",
]

DEFAULT_BASE_URL = "https://api.segmind.com"
CHARACTER_VIDEO_WORKFLOW_ID = CHARACTER_VIDEO.id
API_KEY_ENV = "SEGMIND_API_KEY"
BASE_URL_ENV = "SEGMIND_BASE_URL"
#: Seconds for connect, read, write and pool; one HTTP exchange, not a whole job.
DEFAULT_TIMEOUT = 30.0
#: The product page asks clients to poll every 7 seconds.
DEFAULT_POLL_INTERVAL = 7.0
DEFAULT_WAIT_TIMEOUT = 1800.0
#: Figures from the product page: a typical run takes this long and costs this much (USD).
EXPECTED_RUN_SECONDS = CHARACTER_VIDEO.run_seconds
EXPECTED_RUN_COST = CHARACTER_VIDEO.price
USER_AGENT = "segmind-character-client/0.1"


class AuthStyle(StrEnum):
    """Which header carries the key. Segmind accepts both."""

    X_API_KEY = "x-api-key"
    BEARER = "bearer"

    @classmethod
    def parse(cls, value: str | AuthStyle) -> AuthStyle:
        if isinstance(value, AuthStyle):
            return value
        try:
            return cls(value.strip().lower())
        except ValueError:
            valid = ", ".join(repr(s.value) for s in cls)
            raise ConfigError(f"unknown auth style {value!r}; expected one of {valid}") from None

    @property
    def header_name(self) -> str:
        return "x-api-key" if self is AuthStyle.X_API_KEY else "Authorization"


class ApiKey:
    """A secret key and where it came from; never printed."""

    __slots__ = ("_value", "source")

    def __init__(self, value: str, source: str) -> None:
        if not value or value != value.strip():
            raise ConfigError(
                f"the API key from {source} is empty or has surrounding whitespace; "
                "check how it is set"
            )
        self._value = value
        self.source = source

    def reveal(self) -> str:
        return self._value

    @classmethod
    def resolve(
        cls, explicit: str | ApiKey | None, *, source: str = "the api_key argument"
    ) -> ApiKey:
        """The explicit key if given, else the `SEGMIND_API_KEY` environment variable."""
        if isinstance(explicit, ApiKey):
            return explicit
        if explicit is not None:
            return cls(explicit, source)
        from_env = os.environ.get(API_KEY_ENV)
        if from_env:
            return cls(from_env, f"the environment variable {API_KEY_ENV}")
        raise ConfigError(
            f"no API key: pass api_key=... (or --api-key) or set the environment "
            f"variable {API_KEY_ENV}"
        )

    def __repr__(self) -> str:
        return f"ApiKey(source={self.source!r}, value=<hidden>)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ApiKey) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> Any:
        raise TypeError("ApiKey cannot be pickled")


def resolve_base_url(explicit: str | None) -> str:
    """The explicit base URL, else `SEGMIND_BASE_URL`, else Segmind's own."""
    return explicit or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL


@dataclass(frozen=True)
class ClientConfig:
    """Everything a client needs to build requests; shared by `Client` and `AsyncClient`."""

    api_key: ApiKey
    base_url: str = DEFAULT_BASE_URL
    auth_style: AuthStyle = AuthStyle.X_API_KEY
    workflow_id: str = CHARACTER_VIDEO_WORKFLOW_ID
    timeout: float = DEFAULT_TIMEOUT
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    user_agent: str = USER_AGENT
    #: Sent on every API request, e.g. the gateway's `Cache-Control: no-cache`.
    headers: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        base = self.base_url.rstrip("/")
        if not base.startswith(("http://", "https://")):
            raise ConfigError(f"base_url must start with http:// or https://, got {base!r}")
        object.__setattr__(self, "base_url", base)
        if self.timeout <= 0:
            raise ConfigError(f"timeout must be positive, got {self.timeout}")

    def auth_headers(self) -> dict[str, str]:
        key = self.api_key.reveal()
        if self.auth_style is AuthStyle.BEARER:
            return {"Authorization": f"Bearer {key}"}
        return {"x-api-key": key}

    def describe_auth(self) -> str:
        """Which header was sent and where the key came from, never the key itself."""
        header = self.auth_style.header_name
        return f"the key was sent in the {header} header and came from {self.api_key.source}"
