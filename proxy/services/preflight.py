"""Image preflight: before a paid run, check that its `Character_Image` URL answers with
the start of a JPEG, PNG or WebP image of an acceptable size. A dead link, a web page or
an internal address is then refused with a 400 that says what is wrong, before anything
is charged, instead of paying ~$4 for a run Segmind fails because it cannot load the image.

The fetch goes through the webhooks' SSRF guard (`proxy/core/ssrf/`: the URL's host is vetted
at submit time and again on every connect, redirects included), asks for the first bytes
only (`Range`) and reads at most `PROBE_BYTES` whatever the server sends, all under one
deadline on the gateway's clock, so a slow or hostile image host costs a submit at most
`image_preflight_timeout` seconds and a few bytes. Verdicts are remembered per URL for a
short time, in this process only.

It must never: read a whole image; connect to an address the guard refuses; run for a
HIT or a JOIN (the gateway asks only for a paid run); or echo the URL's path or query
(signed-URL tokens live there) in an error.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

import httpx

from proxy.core.clock import Clock, fail_after
from proxy.core.config import ProxySettings
from proxy.core.errors import BadInput
from proxy.core.ssrf import (
    AddressPolicy,
    GuardedTransport,
    WebhookConnectRefused,
    WebhookUrlError,
    check_url_syntax,
    resolve_and_check,
)

__all__ = ["PROBE_BYTES", "ImagePreflight", "image_kind"]

log = logging.getLogger("proxy.preflight")

PROBE_BYTES: Final = 32  # more than any signature below needs
MAX_REDIRECTS: Final = 3  # signed-URL services redirect once or twice, never more
FAILURE_TTL: Final = 30.0  # a fixed link should work again soon
CACHE_SIZE: Final = 10_000  # URLs remembered, oldest out first
WHAT: Final = "Character_Image URL"
ALLOW_SETTING: Final = "image_allow_networks"
NOT_CHARGED: Final = "nothing was charged"


def image_kind(head: bytes) -> str | None:
    """The image format whose signature `head` starts with, or None."""
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    return None


def declared_size(response: httpx.Response) -> int | None:
    """The whole image's size as the server states it: a 206's Content-Range total, or a
    200's Content-Length; None when it does not say."""
    if response.status_code == 206:
        total = response.headers.get("content-range", "").rpartition("/")[2].strip()
        return int(total) if total.isdigit() else None
    length = response.headers.get("content-length", "").strip()
    return int(length) if length.isdigit() else None


class ImagePreflight:
    def __init__(
        self,
        settings: ProxySettings,
        clock: Clock,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.policy = AddressPolicy(settings.image_allow_networks, setting=ALLOW_SETTING)
        self.http = httpx.AsyncClient(
            transport=transport or GuardedTransport(self.policy),
            # Each hop is vetted again by the guarded transport when it connects.
            follow_redirects=True,
            max_redirects=MAX_REDIRECTS,
            timeout=settings.image_preflight_timeout,  # a backstop to the clock's deadline
            headers={
                "range": f"bytes=0-{PROBE_BYTES - 1}",
                "accept": "image/jpeg, image/png, image/webp",
                "accept-encoding": "identity",  # the signature is in the raw bytes
                "user-agent": "segmind-gateway-preflight",
            },
        )
        # url -> (when the verdict expires on the clock, the refusal or None for good)
        self._verdicts: dict[str, tuple[float, str | None]] = {}
        self._checking: dict[str, asyncio.Task[str | None]] = {}

    async def aclose(self) -> None:
        if self._checking:
            await asyncio.gather(*self._checking.values(), return_exceptions=True)
        await self.http.aclose()

    def known_good(self, url: str) -> bool:
        """A recent check found `url` fine (the gateway then need not ask whether the run
        would be paid)."""
        verdict = self._verdicts.get(url)
        return verdict is not None and verdict[1] is None and verdict[0] > self.clock.now()

    async def check(self, url: str) -> None:
        """Return if `url` starts like an image the upstream can load; else raise
        `BadInput` saying what is wrong with it. Identical checks running at once share
        one fetch."""
        verdict = self._verdicts.get(url)
        if verdict is not None and verdict[0] > self.clock.now():
            problem = verdict[1]
        else:
            task = self._checking.get(url)
            if task is None:
                task = asyncio.get_running_loop().create_task(self._probe(url))
                self._checking[url] = task
                task.add_done_callback(lambda _: self._checking.pop(url, None))
            # Shielded: a caller that goes away leaves the verdict to the others.
            problem = await asyncio.shield(task)
        if problem is not None:
            raise BadInput(f"{problem}; {NOT_CHARGED}")

    async def _probe(self, url: str) -> str | None:
        problem = await self._fetch(url)
        ttl = self.settings.image_preflight_cache_seconds
        if problem is not None:
            ttl = min(ttl, FAILURE_TTL)
            log.info("image preflight refused a Character_Image URL", extra={"reason": problem})
        if len(self._verdicts) >= CACHE_SIZE:
            self._verdicts.pop(next(iter(self._verdicts)))
        self._verdicts[url] = (self.clock.now() + ttl, problem)
        return problem

    async def _fetch(self, url: str) -> str | None:
        timeout = self.settings.image_preflight_timeout
        try:
            display = check_url_syntax(url, policy=self.policy, what=WHAT).display
        except WebhookUrlError as exc:
            return exc.message
        try:
            with fail_after(self.clock, timeout):
                await resolve_and_check(url, self.policy, what=WHAT)
                async with self.http.stream("GET", url) as response:
                    return await self._judge(response, display)
        except WebhookConnectRefused as exc:
            # A redirect, or a DNS answer changed since the check above, led inside.
            return (
                f"{WHAT} {display} led the gateway to {exc.address or 'an address'} "
                f"(by a redirect or a changed DNS answer), which it does not call; "
                "use a public URL of the image"
            )
        except WebhookUrlError as exc:
            return exc.message
        except (TimeoutError, httpx.TimeoutException):
            return (
                f"{WHAT} {display} did not deliver the start of the image within "
                f"{timeout:g} s; Segmind would likely fail to load it too: use a faster, "
                "public host"
            )
        except httpx.TooManyRedirects:
            return (
                f"{WHAT} {display} redirects more than {MAX_REDIRECTS} times; link the image itself"
            )
        except httpx.HTTPError as exc:
            # Named by kind only: some httpx messages quote the URL, query included.
            if isinstance(exc, httpx.ConnectError):
                reason = "could not be reached (connection refused or no route)"
            elif isinstance(exc, httpx.RemoteProtocolError):
                reason = "answered something that is not valid HTTP"
            else:
                reason = f"failed ({type(exc).__name__})"
            return f"{WHAT} {display} {reason}; check that it is public and live"

    async def _judge(self, response: httpx.Response, display: str) -> str | None:
        status = response.status_code
        if status == 416:  # no first byte to give: an empty file
            return f"{WHAT} {display} is empty (HTTP 416 for its first bytes), not an image"
        if not 200 <= status < 300:
            return (
                f"{WHAT} {display} answered HTTP {status}, not the image: Segmind could not "
                "load it either, and the run would fail and still be paid for; check the URL"
            )
        size = declared_size(response)
        limit = self.settings.image_max_bytes
        if size is not None and size > limit:
            return (
                f"{WHAT} {display} is {size:,} bytes, over the gateway's limit of {limit:,} "
                "bytes (image_max_bytes); send a smaller image"
            )
        head = b""
        # Raw bytes: a server that compresses anyway (identity was asked for) gets its
        # signature judged as sent, and a small compressed chunk is never inflated here.
        async for chunk in response.aiter_raw():
            head += chunk
            if len(head) >= PROBE_BYTES:
                break  # the rest is never read: closing the response drops the connection
        if image_kind(head) is None:
            kind = response.headers.get("content-type", "no Content-Type").split(";")[0]
            got = f"{kind}, {'an empty body' if not head else 'no image signature'}"
            return (
                f"{WHAT} {display} is not a JPEG, PNG or WebP image ({got}); link the image "
                "file itself, not a page that shows it"
            )
        return None
