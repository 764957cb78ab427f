"""Python SDK for Segmind's "Consistent Character Video Generation" workflow.

Works against real Segmind, the project's gateway and its fake alike: only the base URL and
the key change. `Client` and `AsyncClient` share one I/O-free core (`client._core`).
"""

from ._async_client import AsyncClient
from ._client import Client
from ._clock import AsyncClock, AsyncSystemClock, Clock, SystemClock
from ._config import (
    API_KEY_ENV,
    BASE_URL_ENV,
    CHARACTER_VIDEO_WORKFLOW_ID,
    DEFAULT_BASE_URL,
    DEFAULT_POLL_INTERVAL,
    DEFAULT_WAIT_TIMEOUT,
    EXPECTED_RUN_COST,
    EXPECTED_RUN_SECONDS,
    ApiKey,
    AuthStyle,
)
from ._errors import (
    STATUS_ERRORS,
    APIError,
    BadGateway,
    BadRequest,
    ConfigError,
    ConnectError,
    ConnectTimeout,
    Forbidden,
    GatewayTimeout,
    GenerationFailed,
    InsufficientCredits,
    InvalidInput,
    InvalidWebhook,
    NotFound,
    RateLimited,
    SegmindError,
    ServerError,
    TransportError,
    TransportTimeout,
    Unauthorized,
    UnexpectedResponse,
    WaitTimeout,
)
from ._models import (
    CharacterVideoInputs,
    Credits,
    JobHandle,
    JobResult,
    JobState,
    JobStatus,
    Progress,
)
from ._output import OutputItem
from ._retry import RetryPolicy
from ._webhooks import WebhookEvent, verify_webhook

__all__ = [
    "API_KEY_ENV",
    "BASE_URL_ENV",
    "CHARACTER_VIDEO_WORKFLOW_ID",
    "DEFAULT_BASE_URL",
    "DEFAULT_POLL_INTERVAL",
    "DEFAULT_WAIT_TIMEOUT",
    "EXPECTED_RUN_COST",
    "EXPECTED_RUN_SECONDS",
    "STATUS_ERRORS",
    "APIError",
    "ApiKey",
    "AsyncClient",
    "AsyncClock",
    "AsyncSystemClock",
    "AuthStyle",
    "BadGateway",
    "BadRequest",
    "CharacterVideoInputs",
    "Client",
    "Clock",
    "ConfigError",
    "ConnectError",
    "ConnectTimeout",
    "Credits",
    "Forbidden",
    "GatewayTimeout",
    "GenerationFailed",
    "InsufficientCredits",
    "InvalidInput",
    "InvalidWebhook",
    "JobHandle",
    "JobResult",
    "JobState",
    "JobStatus",
    "NotFound",
    "OutputItem",
    "Progress",
    "RateLimited",
    "RetryPolicy",
    "SegmindError",
    "ServerError",
    "SystemClock",
    "TransportError",
    "TransportTimeout",
    "Unauthorized",
    "UnexpectedResponse",
    "WaitTimeout",
    "WebhookEvent",
    "verify_webhook",
]
