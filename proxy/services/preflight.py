"""Image preflight: before a paid run, check that its `Character_Image` URL answers with
the start of a JPEG, PNG or WebP image of an acceptable size. A dead link, a web page or
an internal address is then refused with a 400 that says what is wrong, before anything
is charged, instead of paying ~$4 for a run Segmind fails because it cannot load the image.

The fetch goes through the webhooks' SSRF guard (`proxy/core/ssrf/`: the URL's host is vetted
at submit time and again on every connect, redirects included), asks for the first bytes
only (`Range`) and reads at most `PROBE_BYTES` whatever the server sends, all under one
deadline on the gateway's clock, so a slow or hostile image host costs a submit at most
`image_preflight_timeout` seconds and a few bytes. Verdicts are remembered per URL for a
short time, in this process only, and per team (as results are cached): a team cannot
learn by timing which image URLs another team used.

A refusal tells the team what it can fix (the URL's form, an address the gateway does
not call, an image too large) and otherwise only that the image could not be fetched:
never whether the address is closed, silent, not HTTP or an HTTP server answering 404,
which made the preflight a port scanner. The log keeps the details for operators.

It must never: read a whole image; connect to an address the guard refuses; run for a
HIT or a JOIN (the gateway asks only for a paid run); or echo the URL's path or query
(signed-URL tokens live there) in an error.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
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


MAX_SIZE_DIGITS = 30  # more than any real size has


def declared_size(response: httpx.Response) -> int | None:
    """The whole image's size as the server states it: a 206's Content-Range total, or a
    200's Content-Length; None when it does not say."""
    if response.status_code == 206:
        total = response.headers.get("content-range", "").rpartition("/")[2].strip()
        return _size(total)
    return _size(response.headers.get("content-length", "").strip())


def _size(digits: str) -> int | None:
    """A stated size; past MAX_SIZE_DIGITS digits it is simply huge (Python refuses to
    read an int of 4,300+ digits, which was a 500), never None: the image is too large."""
    if not (digits.isascii() and digits.isdigit()):
        return None
    return int(digits) if len(digits) <= MAX_SIZE_DIGITS else 10**MAX_SIZE_DIGITS


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
        # (scope, url) -> (when the verdict expires on the clock, the refusal or None)
        self._verdicts: dict[tuple[str, str], tuple[float, str | None]] = {}
        self._checking: dict[tuple[str, str], asyncio.Task[str | None]] = {}

    async def aclose(self) -> None:
        if self._checking:
            await asyncio.gather(*self._checking.values(), return_exceptions=True)
        await self.http.aclose()

    def known_good(self, url: str, scope: str = "") -> bool:
        """A recent check in `scope` (a team's id) found `url` fine (the gateway then need
        not ask whether the run would be paid)."""
        verdict = self._verdicts.get((scope, url))
        return verdict is not None and verdict[1] is None and verdict[0] > self.clock.now()

    async def check(self, url: str, scope: str = "") -> None:
        """Return if `url` starts like an image the upstream can load; else raise
        `BadInput` saying what is wrong with it. Identical checks running at once in one
        `scope` (a team's id) share one fetch and its verdict."""
        key = (scope, url)
        verdict = self._verdicts.get(key)
        if verdict is not None and verdict[0] > self.clock.now():
            problem = verdict[1]
        else:
            task = self._checking.get(key)
            if task is None:
                task = asyncio.get_running_loop().create_task(self._probe(key))
                self._checking[key] = task
                task.add_done_callback(lambda _: self._checking.pop(key, None))
            # Shielded: a caller that goes away leaves the verdict to the others.
            problem = await asyncio.shield(task)
        if problem is not None:
            raise BadInput(f"{problem}; {NOT_CHARGED}")

    async def _probe(self, key: tuple[str, str]) -> str | None:
        found = await self._fetch(key[1])
        ttl = self.settings.image_preflight_cache_seconds
        problem = None if found is None else found.told
        if found is not None:
            ttl = min(ttl, FAILURE_TTL)
            log.info("image preflight refused a Character_Image URL",
                     extra={"reason": found.detail})  # fmt: skip
        if len(self._verdicts) >= CACHE_SIZE:
            self._verdicts.pop(next(iter(self._verdicts)))
        self._verdicts[key] = (self.clock.now() + ttl, problem)
        return problem

    async def _fetch(self, url: str) -> _Refusal | None:
        timeout = self.settings.image_preflight_timeout
        try:
            display = check_url_syntax(url, policy=self.policy, what=WHAT).display
        except WebhookUrlError as exc:
            return _told(exc.message)
        try:
            with fail_after(self.clock, timeout):
                await resolve_and_check(url, self.policy, what=WHAT)
                async with self.http.stream("GET", url) as response:
                    return await self._judge(response, display)
        except WebhookConnectRefused as exc:
            # A redirect, or a DNS answer changed since the check above, led inside.
            return _unfetchable(display, f"led to {exc.address or 'an address'} it does not call")
        except WebhookUrlError as exc:
            return _told(exc.message)
        except (TimeoutError, httpx.TimeoutException):
            return _unfetchable(display, f"no start of the image within {timeout:g} s")
        except httpx.TooManyRedirects:
            return _unfetchable(display, f"more than {MAX_REDIRECTS} redirects")
        except httpx.HTTPError as exc:
            # Named by kind only: some httpx messages quote the URL, query included.
            return _unfetchable(display, f"failed ({type(exc).__name__})")

    async def _judge(self, response: httpx.Response, display: str) -> _Refusal | None:
        status = response.status_code
        if not 200 <= status < 300:
            return _unfetchable(display, f"answered HTTP {status}")
        size = declared_size(response)
        limit = self.settings.image_max_bytes
        if size is not None and size > limit:
            return _told(
                f"{WHAT} {display} is over the gateway's limit of {limit:,} bytes "
                "(image_max_bytes); send a smaller image"
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
            return _unfetchable(display, f"not a JPEG, PNG or WebP image ({got})")
        return None


@dataclass(frozen=True)
class _Refusal:
    told: str  # what the team is told
    detail: str  # what the log keeps, for operators


def _told(message: str) -> _Refusal:
    """A refusal the team can act on as it stands (the URL's form, its size)."""
    return _Refusal(message, message)


def _unfetchable(display: str, detail: str) -> _Refusal:
    """Any other failure, told the same way whatever it was: what answered at the address
    (nothing, something silent, not HTTP, an HTTP error) is not the team's to learn."""
    return _Refusal(
        f"{WHAT} {display} could not be fetched as an image; check that it is a public, "
        "live link to the JPEG, PNG or WebP file itself (not a page that shows it)",
        f"{display}: {detail}",
    )
