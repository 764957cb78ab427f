"""The API key never comes back out of the client, however a server echoes it (issue 10,
item 4, and the test issue on `scrub`).

`scrub` is checked against an oracle that does not share its pattern: the text is built from
the key echoed several times, each time in a spelling a server might use (URL-encoded, in a
JSON string with escapes, as HTML references, as is), and afterwards none of those spellings
may be left. Then through the client itself (a scripted transport, the real drivers and
core): an HTML page, a text error, a JSON body in UTF-16, a header, a protocol error, each
echoing the key, and nothing the client hands back (errors, their causes, parsed answers)
holds it.
"""

from __future__ import annotations

import html
import json
import traceback
from collections.abc import Callable
from urllib.parse import quote, quote_plus

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from client import (
    BadGateway,
    Client,
    RetryPolicy,
    SegmindError,
    TransportError,
    UnexpectedResponse,
)
from client._errors import scrub
from tests.client.doubles import API_KEY, JOB_ID, Recorder, queued, reply

MakeClient = Callable[..., tuple[Client, Recorder]]
ONE_TRY = RetryPolicy(max_attempts=1)


def _json_double(key: str) -> str:
    return json.dumps(json.dumps(key))[1:-1]


# Every spelling a server may echo a key in; each is (name, how).
SPELLINGS: dict[str, Callable[[str], str]] = {
    "as is": lambda k: k,
    "JSON string, ASCII": lambda k: json.dumps(k)[1:-1],
    "JSON string, UTF-8": lambda k: json.dumps(k, ensure_ascii=False)[1:-1],
    "JSON, every character escaped": lambda k: "".join(
        json.dumps(c)[1:-1] if ord(c) > 0xFFFF else f"\\u{ord(c):04x}" for c in k
    ),
    "JSON, escapes in upper case": lambda k: (
        "".join(f"\\u{ord(c):04X}" for c in k)
        if all(ord(c) <= 0xFFFF for c in k)
        else json.dumps(k)[1:-1]
    ),
    "JSON inside a JSON string": _json_double,
    "URL-encoded": lambda k: quote(k, safe=""),
    "URL-encoded, lower-case hex": lambda k: "".join(
        c if c.isalnum() else quote(c, safe="").lower() for c in k
    ),
    "URL-encoded, form style": lambda k: quote_plus(k, safe=""),
    "URL-encoded twice": lambda k: quote(quote(k, safe=""), safe=""),
    "URL-encoded, every character": lambda k: "".join(f"%{b:02X}" for b in k.encode()),
    "HTML-escaped": lambda k: html.escape(k),
    "HTML, decimal references": lambda k: "".join(f"&#{ord(c)};" for c in k),
    "HTML, hex references": lambda k: "".join(f"&#x{ord(c):x};" for c in k),
}

# Keys made of what servers escape: quotes, backslashes, slashes, percent, plus, ampersand,
# angle brackets, spaces, control characters, non-ASCII and astral characters.
key_characters = st.sampled_from(
    list("abcXYZ0189_-") + list("\"\\/%+&<>' =?#") + ["\t", "\n", "é", "ß", "字", "😀"]
)
keys = st.text(key_characters, min_size=8, max_size=24).filter(lambda k: k == k.strip())
filler = st.text(st.sampled_from(list("abc xyz.:;{}[]\"'\\%&<>=")), max_size=12)


@given(keys, st.lists(st.sampled_from(list(SPELLINGS)), min_size=1, max_size=6), filler)
def test_every_echo_of_the_key_in_every_spelling_is_scrubbed(
    key: str, spellings: list[str], between: str
) -> None:
    echoes = [SPELLINGS[name](key) for name in spellings]
    text = between + between.join(echoes) + between
    out = scrub(text, key)
    for name in SPELLINGS:
        assert SPELLINGS[name](key) not in out, f"the key {name} survived: {out!r}"
    assert out.count("<redacted>") >= len(echoes)


@given(keys, st.integers(min_value=2, max_value=20))
def test_a_key_echoed_many_times_is_scrubbed_every_time(key: str, times: int) -> None:
    out = scrub(" and ".join([key] * times), key)
    assert key not in out
    assert out.count("<redacted>") == times


def test_an_empty_secret_scrubs_nothing() -> None:
    assert scrub("anything at all", "") == "anything at all"
    assert scrub("anything at all", None) == "anything at all"


def test_scrubbing_a_hostile_text_is_linear() -> None:
    # Long runs of what the pattern's repeats match must not make the search quadratic;
    # no timing here, only that it ends (a quadratic pattern takes hours on this text).
    key = 'q"\\w%e&'
    text = ("\\" * 50_000 + "%25" * 20_000 + "&#" + "0" * 50_000) * 2
    assert scrub(text + key, key).endswith("<redacted>")


# -- through the client -----------------------------------------------------------------

ECHO_PAGE = (
    "<html><head><title>502 Bad Gateway</title></head><body>"
    + "<p>" * 30  # past the first 80 characters, where an excerpt would cut a key in two
    + f"upstream refused x-api-key: {API_KEY}<br>"
    + f'<a href="/retry?key={quote(API_KEY, safe="")}">retry</a> {html.escape(API_KEY)} '
    + f"Authorization: Bearer {API_KEY}</body></html>"
)


def everything(exc: BaseException) -> str:
    """All an exception would show: message, repr, body, traceback and its causes' texts."""
    parts = [str(exc), repr(exc), repr(getattr(exc, "body", None))]
    parts.append("".join(traceback.format_exception(exc)))
    link = exc.__cause__ or exc.__context__
    while link is not None:
        parts += [str(link), repr(link), repr(link.args)]
        link = link.__cause__ or link.__context__
    return "\n".join(parts)


def assert_no_key(text: str) -> None:
    for spell in ("as is", "URL-encoded", "JSON, every character escaped", "HTML-escaped"):
        assert SPELLINGS[spell](API_KEY) not in text, f"the key leaked ({spell})"
    # A cut-off echo (the key's tail is also the job id in these doubles, so its head).
    assert API_KEY[:12] not in text, "a piece of the key leaked"


@pytest.mark.parametrize("content_type", ["text/html", "text/plain", None])
def test_a_200_page_echoing_the_key_gives_an_error_without_it(
    make_client: MakeClient, content_type: str | None
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    page = ECHO_PAGE[:60] + API_KEY + ECHO_PAGE[60:]  # one echo inside the excerpt too
    client, _ = make_client(reply(200, page, headers), retry=ONE_TRY)
    with pytest.raises(UnexpectedResponse) as caught:
        client.submit()
    assert "not JSON" in caught.value.message
    assert_no_key(everything(caught.value))


def test_an_error_page_echoing_the_key_gives_an_error_without_it(
    make_client: MakeClient,
) -> None:
    client, _ = make_client(reply(502, ECHO_PAGE, {"content-type": "text/html"}), retry=ONE_TRY)
    with pytest.raises(BadGateway) as caught:
        client.submit()
    assert_no_key(everything(caught.value))


def test_headers_echoing_the_key_are_scrubbed(make_client: MakeClient) -> None:
    echo = {
        "x-request-id": API_KEY,
        "x-echo": f"key={quote(API_KEY)}",
        "content-type": "text/plain",
    }
    client, _ = make_client(reply(500, "no", echo), retry=ONE_TRY)
    with pytest.raises(SegmindError) as caught:
        client.submit()
    assert_no_key(everything(caught.value) + str(caught.value.request_id))


def test_a_poll_answer_echoing_the_key_is_handed_back_without_it(
    make_client: MakeClient,
) -> None:
    escaped = "".join(f"\\u{ord(c):04x}" for c in API_KEY)
    body = (
        '{"status": "FAILED", "error_message": "bad key \\"' + escaped + '\\"", '
        f'"error": "{API_KEY}", "output": "https://cdn.test/v.mp4?k={quote(API_KEY)}"}}'
    )
    client, _ = make_client(reply(200, body, {"content-type": "application/json"}))
    status = client.status(JOB_ID)
    assert status.status == "FAILED"
    assert_no_key(json.dumps([status.error, status.output, dict(status.body)]))


def test_a_utf16_answer_echoing_the_key_is_read_without_it(make_client: MakeClient) -> None:
    """JSON's decoder reads UTF-16 by itself, whatever the charset says (here: nothing)."""
    body = json.dumps({"status": "FAILED", "error": f"bad key {API_KEY}"}).encode("utf-16")
    client, _ = make_client(reply(200, body, {"content-type": "application/json"}))
    status = client.status(JOB_ID)
    assert status.status == "FAILED"
    assert_no_key(json.dumps([status.error, dict(status.body)]))


def test_a_protocol_error_quoting_the_key_is_scrubbed_to_its_roots(
    make_client: MakeClient,
) -> None:
    try:  # the shape httpx gives: its error raised from the transport's own
        raise ValueError(f"illegal status line: b'HTTP/1.1 200 {API_KEY}'")
    except ValueError as inner:
        broken = httpx.RemoteProtocolError(f"illegal status line {API_KEY!r}")
        broken.__cause__ = inner
    client, _ = make_client(broken, retry=ONE_TRY)
    with pytest.raises(TransportError) as caught:
        client.status(JOB_ID)
    assert "RemoteProtocolError" in caught.value.message
    assert_no_key(everything(caught.value))


def test_a_clean_answer_is_handed_on_as_it_came(make_client: MakeClient) -> None:
    client, _ = make_client(queued())
    handle = client.submit()
    assert handle.request_id == JOB_ID
