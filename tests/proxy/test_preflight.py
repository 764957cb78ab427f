"""Image preflight: a paid run's Character_Image is fetched (its first bytes only) from a real
HTTP server on loopback before the run is admitted; a dead, non-image, oversized, slow or
internal URL is refused 400, with no upstream call and no charge; a HIT or a JOIN is never
checked. The gateway runs in front of the real fake, on virtual time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest

import workflows
from client import CHARACTER_VIDEO_WORKFLOW_ID
from proxy.core.config import PRICE
from proxy.services.preflight import PROBE_BYTES, image_kind
from tests.proxy.conftest import MakeHarness
from tests.proxy.harness import Harness

pytestmark = pytest.mark.anyio

PNG = b"\x89PNG\r\n\x1a\n" + bytes(200)
JPEG = b"\xff\xd8\xff\xe0" + bytes(200)
WEBP = b"RIFF\x00\x10\x00\x00WEBPVP8 " + bytes(200)
HTML = b"<!doctype html><html><body><img src='me.png'></body></html>"
LIMIT = 1_000_000  # image_max_bytes in these tests
BUDGET = 100.0  # the default daily budget
LOOPBACK = ["127.0.0.0/8"]
UNFETCHABLE = "could not be fetched as an image"


class ImageServer:
    """A raw HTTP/1.1 server on 127.0.0.1, port 0: serves images, pages and failures by
    path, honours `Range` where a real object store would, and counts requests by path."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.ranges: list[str] = []
        self.dead: set[str] = set()  # paths that answer 404 from now on
        self.trickling = asyncio.Event()  # a request reached /slow.png
        self.port = 0
        self._server: asyncio.Server | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 5)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, *lines = head.decode("latin-1").split("\r\n")
            path = request_line.split(" ")[1].split("?")[0]
            headers = {
                name.strip().lower(): value.strip()
                for name, _, value in (line.partition(":") for line in lines if line)
            }
            self.hits[path] += 1
            self.ranges.append(headers.get("range", ""))
            await self._answer(path, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the gateway hung up first: it had read enough
        finally:
            writer.close()

    async def _answer(self, path: str, writer: asyncio.StreamWriter) -> None:
        def send(status: str, body: bytes, *extra: str, length: int | None = None) -> None:
            fields = [f"content-length: {len(body) if length is None else length}", *extra]
            writer.write(f"HTTP/1.1 {status}\r\n{''.join(f + chr(13) + chr(10) for f in fields)}"
                         f"connection: close\r\n\r\n".encode() + body)  # fmt: skip

        if path in self.dead or path == "/gone.png":
            send("404 Not Found", b'{"error": "no such object"}', "content-type: application/json")
        elif path in ("/photo.png", "/photo.webp"):
            # An object store: the asked-for range and the whole size.
            image = PNG if path.endswith(".png") else WEBP
            part = image[:PROBE_BYTES]
            send(
                "206 Partial Content", part, f"content-range: bytes 0-{len(part) - 1}/{len(image)}"
            )
        elif path == "/photo.jpg":
            send("200 OK", JPEG, "content-type: image/jpeg")  # a server that ignores Range
        elif path == "/page.html":
            send("200 OK", HTML, "content-type: text/html; charset=utf-8")
        elif path == "/empty.png":
            send("416 Range Not Satisfiable", b"", "content-range: bytes */0")
        elif path == "/vast.png":
            part = PNG[:PROBE_BYTES]
            send("206 Partial Content", part, f"content-range: bytes 0-31/{'9' * 5000}")
        elif path == "/huge.png":
            # Declares 50 MB and would send them all: the gateway must stop at the header.
            send("200 OK", PNG, "content-type: image/png", length=50_000_000)
            for _ in range(1000):
                writer.write(bytes(65536))
                await writer.drain()
        elif path == "/slow.png":
            send("200 OK", b"", "content-type: image/png", length=len(PNG))
            self.trickling.set()
            for byte in PNG:  # one byte every half second: never done in time
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.5)
        await writer.drain()


@pytest.fixture
async def images() -> AsyncIterator[ImageServer]:
    server = ImageServer()
    await server.start()
    yield server
    await server.stop()


async def checking(make_harness: MakeHarness, **settings: Any) -> Harness:
    """A gateway with preflight on (tests default it off), loopback images allowed."""
    settings.setdefault("image_allow_networks", LOOPBACK)
    return await make_harness(image_preflight=True, image_max_bytes=LIMIT, **settings)


def upstream_submits(harness: Harness) -> int:
    return len(harness.upstream_calls("submit"))


def with_image(url: str, scene: str = "A knight crossing a frozen lake") -> dict[str, str]:
    return {"Character_Image": url, "Scene_1": scene}


async def refused(harness: Harness, key: str, url: str) -> str:
    """The 400's error for a submit with this image; asserts nothing was sent or charged."""
    sent, credits = upstream_submits(harness), await harness.credits(key)
    answer = await harness.submit(key, with_image(url))
    assert answer.status_code == 400, answer.text
    error: str = answer.json()["error"]
    assert "Character_Image URL" in error
    assert "nothing was charged" in error
    assert upstream_submits(harness) == sent
    assert await harness.credits(key) == pytest.approx(credits)
    return error


def test_image_signatures() -> None:
    assert [image_kind(data) for data in (PNG, JPEG, WEBP)] == ["PNG", "JPEG", "WebP"]
    assert image_kind(HTML) is None
    assert image_kind(b"RIFF\x00\x10\x00\x00WAVEfmt ") is None  # RIFF, but audio
    assert image_kind(b"") is None


async def test_jpeg_png_and_webp_images_are_admitted_from_their_first_bytes(
    make_harness: MakeHarness, images: ImageServer
) -> None:
    harness = await checking(make_harness)
    key = harness.team("alpha")
    for path in ("/photo.png", "/photo.jpg", "/photo.webp"):
        answer = await harness.submit(key, with_image(images.url(path)))
        assert answer.status_code == 200, answer.text
        assert answer.headers["x-cache-status"] == "MISS"
    assert upstream_submits(harness) == 3
    assert await harness.credits(key) == pytest.approx(BUDGET - 3 * PRICE)
    # Only the first bytes were asked for.
    assert images.ranges == [f"bytes=0-{PROBE_BYTES - 1}"] * 3


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/gone.png", UNFETCHABLE),
        ("/page.html", UNFETCHABLE),
        ("/empty.png", UNFETCHABLE),
        ("/huge.png", "is over the gateway's limit of 1,000,000 bytes"),
        # A total of 5,000 digits: Python refuses to read such an int (it was a 500).
        ("/vast.png", "is over the gateway's limit of 1,000,000 bytes"),
    ],
)
async def test_dead_non_image_and_oversized_urls_are_refused_with_no_charge(
    make_harness: MakeHarness, images: ImageServer, path: str, expected: str
) -> None:
    harness = await checking(make_harness)
    key = harness.team("alpha")
    error = await refused(harness, key, images.url(path) + "?X-Amz-Signature=s3cret")
    assert expected in error, error
    assert "s3cret" not in error
    assert path not in error
    assert images.hits[path] == 1


async def test_an_unreachable_host_is_refused(make_harness: MakeHarness) -> None:
    harness = await checking(make_harness)
    key = harness.team("alpha")
    # A port nothing listens on: bound, then closed.
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    error = await refused(harness, key, f"http://127.0.0.1:{port}/me.png")
    assert UNFETCHABLE in error


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://169.254.169.254/latest/meta-data/", "the cloud metadata address"),
        ("http://10.0.0.1/me.png", "a private address"),
        ("http://localhost:9/me.png", "a loopback address"),
    ],
)
async def test_internal_addresses_are_refused_by_the_ssrf_guard(
    make_harness: MakeHarness, url: str, expected: str
) -> None:
    harness = await checking(make_harness, image_allow_networks=[])
    key = harness.team("alpha")
    error = await refused(harness, key, url)
    assert expected in error, error
    assert "image_allow_networks" in error
    assert "webhook" not in error


async def test_a_trickling_image_host_is_refused_at_the_deadline(
    make_harness: MakeHarness, images: ImageServer
) -> None:
    harness = await checking(make_harness, image_preflight_timeout=5)
    key = harness.team("alpha")
    submit = asyncio.ensure_future(harness.submit(key, with_image(images.url("/slow.png"))))
    await asyncio.wait_for(images.trickling.wait(), 10)  # the fetch is under way
    await harness.clock.wait_for_sleepers(1)
    harness.clock.advance(5)  # the deadline is on the gateway's clock
    answer = await asyncio.wait_for(submit, 10)
    assert answer.status_code == 400, answer.text
    assert UNFETCHABLE in answer.json()["error"]
    assert upstream_submits(harness) == 0


async def test_hit_and_join_are_never_checked(
    make_harness: MakeHarness, images: ImageServer
) -> None:
    # Nothing remembered: every paid run would fetch the image again.
    harness = await checking(make_harness, image_preflight_cache_seconds=0)
    key = harness.team("alpha")
    body = with_image(images.url("/photo.png"))
    first = await harness.submit(key, body)
    assert first.headers["x-cache-status"] == "MISS"
    assert images.hits["/photo.png"] == 1
    images.dead.add("/photo.png")  # the image is gone now
    joined = await harness.submit(key, body)
    assert joined.status_code == 200, joined.text
    assert joined.headers["x-cache-status"] == "JOIN"
    done = await harness.advance_until_done(key, first.json()["request_id"])
    assert done["status"] == "COMPLETED"
    hit = await harness.submit(key, body)
    assert hit.status_code == 200, hit.text
    assert hit.headers["x-cache-status"] == "HIT"
    assert images.hits["/photo.png"] == 1  # neither the JOIN nor the HIT fetched it
    # A fresh paid run is checked, and refused: the image is dead.
    fresh = await harness.submit(key, body, **{"cache-control": "no-cache"})
    assert fresh.status_code == 400, fresh.text
    assert UNFETCHABLE in fresh.json()["error"]
    assert upstream_submits(harness) == 1


async def test_verdicts_are_remembered_per_url(
    make_harness: MakeHarness, images: ImageServer
) -> None:
    harness = await checking(make_harness)
    key = harness.team("alpha")
    for scene in ("A knight", "A dragon", "A wizard"):
        answer = await harness.submit(key, with_image(images.url("/photo.png"), scene))
        assert answer.headers["x-cache-status"] == "MISS"
    assert images.hits["/photo.png"] == 1
    for _ in range(2):
        await refused(harness, key, images.url("/gone.png"))
    assert images.hits["/gone.png"] == 1
    await harness.advance(31)  # a refusal is remembered for 30 s at most: fixed links work
    await refused(harness, key, images.url("/gone.png"))
    assert images.hits["/gone.png"] == 2


async def test_limits_refuse_before_any_fetch(
    make_harness: MakeHarness, images: ImageServer
) -> None:
    harness = await checking(make_harness)
    key = harness.team("alpha", max_concurrent=0)
    answer = await harness.submit(key, with_image(images.url("/photo.png")))
    assert answer.status_code == 429, answer.text
    assert images.hits["/photo.png"] == 0


async def test_off_the_image_is_not_fetched(make_harness: MakeHarness, images: ImageServer) -> None:
    harness = await make_harness(image_preflight=False)
    key = harness.team("alpha")
    answer = await harness.submit(key, with_image(images.url("/gone.png")))
    assert answer.status_code == 200, answer.text
    assert images.hits["/gone.png"] == 0


async def test_the_workflows_own_default_image_is_not_fetched(make_harness: MakeHarness) -> None:
    # Segmind's sample, on Segmind's storage: out of reach offline (this machine resolves no
    # public name), and nothing to learn from when it is not. `{}` and the spelled-out
    # default are both admitted with no fetch.
    harness = await checking(make_harness)
    key = harness.team("alpha")
    default = workflows.get(CHARACTER_VIDEO_WORKFLOW_ID).defaults["Character_Image"]  # type: ignore[union-attr]
    assert (await harness.submit(key, {})).status_code == 200
    answer = await harness.submit(key, with_image(default, "Another scene"))
    assert answer.status_code == 200, answer.text
    assert upstream_submits(harness) == 2


# -- not a port scanner -----------------------------------------------------------------------


async def _garbage_port() -> asyncio.Server:
    """A port that answers something that is not HTTP."""

    async def talk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n")
        await writer.drain()
        writer.close()

    return await asyncio.start_server(talk, "127.0.0.1", 0)


async def test_a_refusal_never_tells_what_answers_at_the_address(
    make_harness: MakeHarness, images: ImageServer
) -> None:
    """A closed port, a port speaking another protocol, an HTTP 404 and a web page are
    refused in the same words (only the host and port, which the team sent, differ)."""
    harness = await checking(make_harness)
    key = harness.team("alpha", submits_per_minute=None)
    closed = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    closed_port = closed.sockets[0].getsockname()[1]
    closed.close()
    await closed.wait_closed()
    other = await _garbage_port()
    other_port = other.sockets[0].getsockname()[1]
    try:
        urls = {
            f"http://127.0.0.1:{closed_port}/me.png": closed_port,
            f"http://127.0.0.1:{other_port}/me.png": other_port,
            images.url("/gone.png"): images.port,
            images.url("/page.html"): images.port,
            images.url("/empty.png"): images.port,
        }
        told = {
            (await refused(harness, key, url)).replace(str(port), "PORT")
            for url, port in urls.items()
        }
    finally:
        other.close()
    assert len(told) == 1, told
    [error] = told
    assert UNFETCHABLE in error
    for word in ("404", "HTTP", "reached", "refused", "Error", "html"):
        assert word not in error, (word, error)


async def test_a_preflight_counts_against_the_submit_limit(
    make_harness: MakeHarness, images: ImageServer
) -> None:
    """40 submits naming 40 image URLs, at 3 submits a minute: 3 fetches, then 429s
    that fetch nothing, at once and in sequence alike."""
    harness = await checking(make_harness)
    key = harness.team("alpha", submits_per_minute=3)
    urls = [images.url(f"/gone.png?n={n}") for n in range(20)]
    answers = await asyncio.gather(*(harness.submit(key, with_image(u)) for u in urls))
    statuses = Counter(a.status_code for a in answers)
    assert statuses == {400: 3, 429: 17}, statuses
    assert images.hits["/gone.png"] == 3
    for n in range(20, 40):
        answer = await harness.submit(key, with_image(images.url(f"/gone.png?n={n}")))
        assert answer.status_code == 429, answer.text
        assert "submit rate limit" in answer.json()["error"]
    assert images.hits["/gone.png"] == 3
    await harness.advance(60)  # the minute is over: one more submit, one more fetch
    assert (await harness.submit(key, with_image(images.url("/photo.png")))).status_code == 200
    assert images.hits["/photo.png"] == 1


async def test_a_preflighted_submit_counts_once(
    make_harness: MakeHarness, images: ImageServer
) -> None:
    harness = await checking(make_harness)
    key = harness.team("alpha", submits_per_minute=2)
    first = await harness.submit(key, with_image(images.url("/photo.png"), "A knight"))
    assert first.status_code == 200, first.text
    second = await harness.submit(key, with_image(images.url("/photo.jpg"), "A dragon"))
    assert second.status_code == 200, second.text
    assert (await harness.submit(key, with_image(images.url("/photo.webp")))).status_code == 429


async def test_verdicts_are_not_shared_between_teams(
    make_harness: MakeHarness, images: ImageServer
) -> None:
    """One team's check of a URL is not another's: the second team's submit fetches it
    again (a remembered verdict would answer faster, telling the URL was used)."""
    harness = await checking(make_harness)
    alpha, beta = harness.team("alpha"), harness.team("beta")
    await refused(harness, alpha, images.url("/gone.png"))
    await refused(harness, alpha, images.url("/gone.png"))
    assert images.hits["/gone.png"] == 1
    await refused(harness, beta, images.url("/gone.png"))
    assert images.hits["/gone.png"] == 2
    photo = images.url("/photo.png")
    assert (await harness.submit(alpha, with_image(photo))).status_code == 200
    assert (await harness.submit(beta, with_image(photo, "B"))).status_code == 200
    assert images.hits["/photo.png"] == 2
