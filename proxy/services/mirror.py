"""Mirroring: when a run completes, copy each of its output files from Segmind's storage
into the gateway's output store (`proxy/objects/`), so that the team's URLs outlive
Segmind's 7 days and a cache HIT never hands out a dead link.

Each file is fetched through the webhooks' SSRF guard (`proxy/core/ssrf/`), from hosts in
`output_allow_hosts` only (every redirect hop too, at most `MAX_REDIRECTS`), at the
addresses the guard vets on connect; streamed into the store (one chunk in memory, never
the file), at most `output_max_bytes` (a larger declared `Content-Length` is refused before
a byte is read); checked by its first bytes to be a video or image of the kind the output
document declares; all under one deadline per file (`mirror_file_timeout`), with up to
`mirror_attempts` tries for what may pass (a 5xx, a dropped connection). The store records
size and SHA-256, and keys the copy by the latter, so identical bytes are kept once.

`keep` never raises for a bad file: it returns what it kept and, if anything could not be
kept, one sentence saying which output and why, for the run's answer and webhook.

It must never: read more than `output_max_bytes` of one file, wait on one past its
deadline, connect to an address the guard refuses or a host off the allowlist, or echo an
output URL's query (Segmind's signed-URL tokens live there) in a message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Final

import httpx

from proxy.core.clock import Clock, fail_after
from proxy.core.config import ProxySettings
from proxy.core.outputs import (
    SNIFF_BYTES,
    KeptOutput,
    OutputItem,
    host_allowed,
    output_items,
    sniff,
)
from proxy.core.ssrf import (
    AddressPolicy,
    GuardedTransport,
    WebhookConnectRefused,
    WebhookUrlError,
    check_url_syntax,
    resolve_and_check,
)
from proxy.objects import (
    ObjectStore,
    ObjectStoreError,
    ObjectStoreUnavailable,
    ObjectTooLarge,
    SourceFailed,
)

__all__ = ["CopyRefused", "Mirror", "MirrorReport"]

log = logging.getLogger("proxy.mirror")

MAX_REDIRECTS: Final = 3
WHAT: Final = "output URL"
ALLOW_SETTING: Final = "output_allow_networks"
RETRY_PAUSE: Final = 2.0  # seconds before a second try, doubled for each further one


class CopyRefused(Exception):
    """A file that will not be copied as it is (wrong kind, too large, a refused host):
    trying again now would give the same answer."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class CopyFailed(Exception):
    """A try that may pass if made again (a 5xx, a dropped connection)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass
class MirrorReport:
    """What `Mirror.keep` did for one run: the copies it holds and, if some output could
    not be kept, why (one sentence naming the output)."""

    items: list[OutputItem]
    kept: list[KeptOutput] = field(default_factory=list)
    problem: str | None = None

    @property
    def complete(self) -> bool:
        return self.problem is None and len(self.kept) == len(self.items)


class Mirror:
    def __init__(
        self,
        settings: ProxySettings,
        clock: Clock,
        objects: ObjectStore,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.objects = objects
        self.policy = AddressPolicy(settings.output_allow_networks, setting=ALLOW_SETTING)
        self.http = httpx.AsyncClient(
            transport=transport or GuardedTransport(self.policy),
            # Each hop is vetted twice: its host against the allowlist (the hook below)
            # and its addresses by the guarded transport when it connects.
            follow_redirects=True,
            max_redirects=MAX_REDIRECTS,
            timeout=httpx.Timeout(settings.mirror_file_timeout, connect=10.0),
            headers={"accept-encoding": "identity", "user-agent": "segmind-gateway-mirror"},
            event_hooks={"request": [self._vet_host]},
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _vet_host(self, request: httpx.Request) -> None:
        host = request.url.host
        if not host_allowed(host, self.settings.output_allow_hosts):
            raise CopyRefused(f"its URL leads to host {host}, which is not in output_allow_hosts")

    async def keep(self, output: str | None) -> MirrorReport:
        """Copy every file `output` (a COMPLETED run's output document) points at, the
        files at once; report what was kept and what was not."""
        report = MirrorReport(output_items(output))
        results = await asyncio.gather(*(self._keep_one(item) for item in report.items))
        problems = []
        for item, result in zip(report.items, results, strict=True):
            if isinstance(result, KeptOutput):
                report.kept.append(result)
            else:
                problems.append(f"{item.keyname or f'output {item.index}'}: {result}")
        if problems:
            report.problem = "the gateway could not keep a copy of " + "; ".join(problems)
        return report

    async def _keep_one(self, item: OutputItem) -> KeptOutput | str:
        """The copy, or why there is none."""
        timeout = self.settings.mirror_file_timeout
        deadline = self.clock.now() + timeout
        pause = RETRY_PAUSE
        reason = "it was never tried"
        for attempt in range(1, self.settings.mirror_attempts + 1):
            try:
                with fail_after(self.clock, max(deadline - self.clock.now(), 0.0)):
                    return await self._copy(item)
            except CopyRefused as exc:
                return exc.message
            except TimeoutError:
                return f"it did not arrive whole within {timeout:g} s (mirror_file_timeout)"
            except CopyFailed as exc:
                reason = exc.message
            log.info("copy of an output failed (try %d): %s", attempt, reason)
            if attempt < self.settings.mirror_attempts:
                if self.clock.now() + pause >= deadline:
                    break
                await self.clock.sleep(pause)
                pause *= 2
        return reason

    async def _copy(self, item: OutputItem) -> KeptOutput:
        try:
            host = check_url_syntax(item.url, policy=self.policy, what=WHAT).hostname
            await resolve_and_check(item.url, self.policy, what=WHAT)
        except WebhookUrlError as exc:
            raise CopyRefused(exc.message) from None
        try:
            async with self.http.stream("GET", item.url) as response:
                return await self._store(item, response)
        except CopyRefused:
            raise
        except WebhookConnectRefused as exc:
            raise CopyRefused(
                f"its URL led to {exc.address or 'an address'} (by a redirect or a changed "
                "DNS answer), which the gateway does not call"
            ) from None
        except WebhookUrlError as exc:
            raise CopyRefused(exc.message) from None
        except httpx.TooManyRedirects:
            raise CopyRefused(f"its URL redirects more than {MAX_REDIRECTS} times") from None
        except httpx.HTTPError as exc:
            # Named by kind only: some httpx messages quote the URL, query included.
            raise CopyFailed(f"fetching it from {host} failed ({type(exc).__name__})") from None

    async def _store(self, item: OutputItem, response: httpx.Response) -> KeptOutput:
        status = response.status_code
        if status >= 500 or status == 429:
            raise CopyFailed(f"Segmind's storage answered HTTP {status}")
        if status != 200:
            raise CopyRefused(f"Segmind's storage answered HTTP {status}, not the file")
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise CopyRefused(f"it came compressed ({encoding}) though identity was asked")
        limit = self.settings.output_max_bytes
        declared = response.headers.get("content-length", "").strip()
        if declared.isdigit() and int(declared) > limit:
            raise CopyRefused(f"it is {int(declared):,} bytes, over output_max_bytes ({limit:,})")
        chunks = response.aiter_raw()
        head = b""
        try:
            async for chunk in chunks:
                head += chunk
                if len(head) >= SNIFF_BYTES:
                    break
        except httpx.HTTPError as exc:
            raise CopyFailed(f"the file stopped coming ({type(exc).__name__})") from None
        found = sniff(head[:SNIFF_BYTES])
        if found is None or found[0] != item.kind:
            got = response.headers.get("content-type", "no Content-Type").split(";")[0]
            what = (
                "an empty file"
                if not head
                else f"{got}, "
                + (f"a {found[0]}" if found else "no known video or image signature")
            )
            raise CopyRefused(f"it is not a {item.kind} as declared ({what})")

        async def body() -> AsyncIterator[bytes]:
            yield head
            async for chunk in chunks:
                yield chunk

        try:
            stored = await self.objects.put(body(), content_type=found[1], max_bytes=limit)
        except ObjectTooLarge:
            raise CopyRefused(f"it is over output_max_bytes ({limit:,} bytes)") from None
        except SourceFailed as exc:
            cause = type(exc.__cause__).__name__ if exc.__cause__ else "an error"
            raise CopyFailed(f"the file stopped coming ({cause})") from None
        except ObjectStoreUnavailable as exc:
            raise CopyFailed(exc.message) from None
        except ObjectStoreError as exc:
            raise CopyRefused(exc.message) from None
        return KeptOutput(
            index=item.index,
            keyname=item.keyname,
            kind=item.kind,
            source=item.url,
            sha256=stored.sha256,
            size=stored.size,
            content_type=found[1],
        )
