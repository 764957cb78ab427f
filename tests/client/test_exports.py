import client


def test_exported_names_are_pinned() -> None:
    assert set(client.__all__) == {
        "API_KEY_ENV", "BASE_URL_ENV", "CHARACTER_VIDEO_WORKFLOW_ID", "DEFAULT_BASE_URL",
        "DEFAULT_POLL_INTERVAL", "DEFAULT_WAIT_TIMEOUT", "EXPECTED_RUN_COST",
        "EXPECTED_RUN_SECONDS", "STATUS_ERRORS", "APIError", "ApiKey", "AsyncClient",
        "AsyncClock", "AsyncSystemClock", "AuthStyle", "BadGateway", "BadRequest",
        "CharacterVideoInputs", "Client", "Clock", "ConfigError", "ConnectError",
        "ConnectTimeout", "Credits", "Forbidden", "GatewayTimeout", "GenerationFailed",
        "InsufficientCredits", "InvalidInput", "InvalidWebhook", "JobHandle", "JobResult",
        "JobState", "JobStatus", "NotFound", "OutputItem", "Progress", "RateLimited",
        "RetryPolicy", "SegmindError", "ServerError", "ServiceUnavailable", "SystemClock",
        "TransportError", "TransportTimeout", "Unauthorized", "UnexpectedResponse", "WaitTimeout",
        "WebhookEvent", "decode_output", "verify_webhook",
        # For tools built on the client, the gateway among them:
        "MAX_SCENE_LENGTH", "MAX_URL_LENGTH", "ProgressDisplay", "Scrubber", "validate_inputs",
    }  # fmt: skip


def test_every_exported_name_exists_and_is_public() -> None:
    for name in client.__all__:
        assert hasattr(client, name), name
        value = getattr(client, name)
        if hasattr(value, "__module__"):
            assert value.__module__.startswith("client"), name


def test_every_error_hangs_from_segmind_error() -> None:
    errors = [getattr(client, n) for n in client.__all__]
    for error in errors:
        if isinstance(error, type) and issubclass(error, Exception):
            assert issubclass(error, client.SegmindError), error
