from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from client import (
    STATUS_ERRORS,
    APIError,
    BadGateway,
    BadRequest,
    Client,
    ConnectError,
    ConnectTimeout,
    Forbidden,
    GatewayTimeout,
    InsufficientCredits,
    NotFound,
    RateLimited,
    RetryPolicy,
    SegmindError,
    ServerError,
    ServiceUnavailable,
    TransportError,
    TransportTimeout,
    Unauthorized,
    UnexpectedResponse,
)
from tests.client.doubles import API_KEY, JOB_ID, Recorder, reply

MakeClient = Callable[..., tuple[Client, Recorder]]
ONE_TRY = RetryPolicy(max_attempts=1)

EXPECTED = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    406: InsufficientCredits,
    429: RateLimited,
    500: ServerError,
    502: BadGateway,
    503: ServiceUnavailable,  # what the gateway answers while it cannot reach Segmind
    504: GatewayTimeout,
}


def test_the_table_lists_every_documented_code() -> None:
    assert STATUS_ERRORS == EXPECTED


@pytest.mark.parametrize(("code", "cls"), sorted(EXPECTED.items()))
def test_each_code_raises_its_class_on_submit(
    make_client: MakeClient, code: int, cls: type
) -> None:
    client, recorder = make_client(reply(code, {"error": f"server says {code}"}), retry=ONE_TRY)
    with pytest.raises(cls) as caught:
        client.submit()
    error = caught.value
    assert isinstance(error, APIError)
    assert error.status_code == code
    assert f"server says {code}" in error.message
    assert recorder.count("POST") == 1


@pytest.mark.parametrize(("code", "cls"), sorted(EXPECTED.items()))
def test_each_code_raises_its_class_on_poll_with_the_request_id(
    make_client: MakeClient, code: int, cls: type[APIError]
) -> None:
    client, _ = make_client(reply(code, {"error": "nope"}), retry=ONE_TRY)
    with pytest.raises(cls) as caught:
        client.status(JOB_ID)
    assert caught.value.request_id == JOB_ID
    assert caught.value.status_code == code


@pytest.mark.parametrize("code", [402, 409, 418, 451, 501, 505, 599])
def test_unknown_codes_become_a_plain_api_error(make_client: MakeClient, code: int) -> None:
    client, _ = make_client(reply(code, "plain text failure"), retry=ONE_TRY)
    with pytest.raises(APIError) as caught:
        client.credits()
    assert type(caught.value) is APIError
    assert caught.value.status_code == code
    assert "plain text failure" in caught.value.message


def test_rate_limited_carries_retry_after(make_client: MakeClient) -> None:
    client, _ = make_client(
        reply(429, {"error": "slow down"}, {"Retry-After": "17"}), retry=ONE_TRY
    )
    with pytest.raises(RateLimited) as caught:
        client.submit()
    assert caught.value.retry_after == 17.0
    assert "retry after 17 s" in caught.value.message


def test_unauthorized_says_which_header_and_key_source_but_never_the_key(
    make_client: MakeClient,
) -> None:
    client, _ = make_client(reply(401, {"error": "bad key"}), auth="bearer")
    with pytest.raises(Unauthorized) as caught:
        client.submit()
    text = str(caught.value) + repr(caught.value)
    assert "Authorization header" in text
    assert "the api_key argument" in text
    assert API_KEY not in text


def test_a_key_echoed_by_the_server_is_redacted(make_client: MakeClient) -> None:
    client, _ = make_client(reply(403, {"error": f"key {API_KEY} may not run this"}), retry=ONE_TRY)
    with pytest.raises(Forbidden) as caught:
        client.submit()
    assert API_KEY not in str(caught.value)
    assert API_KEY not in repr(caught.value.body)
    assert "<redacted>" in caught.value.message


def test_client_repr_hides_the_key(make_client: MakeClient) -> None:
    client, _ = make_client()
    assert API_KEY not in repr(client)
    assert API_KEY not in repr(client.config)
    assert API_KEY not in str(client.config.api_key)


@pytest.mark.parametrize(
    ("exc", "cls"),
    [
        (httpx.ConnectError("refused"), ConnectError),
        (httpx.ConnectTimeout("slow"), ConnectTimeout),
        (httpx.ReadTimeout("slow"), TransportTimeout),
        (httpx.WriteTimeout("slow"), TransportTimeout),
        (httpx.PoolTimeout("slow"), TransportTimeout),
        (httpx.ReadError("reset"), TransportError),
        (httpx.RemoteProtocolError("eof"), TransportError),
    ],
)
def test_httpx_errors_are_translated_with_their_cause(
    make_client: MakeClient, exc: Exception, cls: type[TransportError]
) -> None:
    client, _ = make_client(exc, retry=ONE_TRY)
    with pytest.raises(cls) as caught:
        client.status(JOB_ID)
    assert caught.value.__cause__ is exc
    assert caught.value.request_id == JOB_ID
    assert "api.test" in caught.value.message


def test_connect_timeout_is_both_a_connect_error_and_a_timeout() -> None:
    assert issubclass(ConnectTimeout, ConnectError)
    assert issubclass(ConnectTimeout, TransportTimeout)
    assert ConnectError.nothing_sent
    assert not TransportTimeout.nothing_sent


@pytest.mark.parametrize("body", [b"", b"<html>oops</html>", b"[1, 2]", b'{"status": "QUEUED"}'])
def test_an_unreadable_submit_answer_is_unexpected_and_not_retried(
    make_client: MakeClient, body: bytes
) -> None:
    client, recorder = make_client(reply(200, body))
    with pytest.raises(UnexpectedResponse):
        client.submit()
    assert recorder.count("POST") == 1


def test_error_messages_name_the_action(make_client: MakeClient) -> None:
    client, _ = make_client(reply(404, {"error": "no such request"}))
    with pytest.raises(NotFound) as caught:
        client.status(JOB_ID)
    message: Any = caught.value.message
    assert message.startswith(f"could not poll job {JOB_ID}")
    assert "one hour" in message
    assert isinstance(caught.value, SegmindError)


def test_a_503_carries_retry_after_and_a_poll_retries_it(make_client: MakeClient) -> None:
    busy = reply(503, {"error": "upstream paused"}, headers={"Retry-After": "12"})
    client, _ = make_client(busy, retry=ONE_TRY)
    with pytest.raises(ServiceUnavailable) as caught:
        client.status(JOB_ID)
    assert caught.value.retry_after == 12
    assert "retry after 12 s" in caught.value.message
    client, recorder = make_client(busy, reply(200, {"status": "PROCESSING"}))
    assert client.status(JOB_ID).status == "PROCESSING"
    assert len(recorder.requests) == 2
    client, recorder = make_client(busy, retry=RetryPolicy(max_attempts=3))
    with pytest.raises(ServiceUnavailable):
        client.submit()  # a submit is not retried on 5xx: the run may have started
    assert len(recorder.requests) == 1
